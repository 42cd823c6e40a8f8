"""EDM preconditioning, training noise, loss, and SVD micro-conditioning, each checked against float64 numpy/scipy
references written out independently here (the paper's formulas, not the module's code)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from svd.diffusion import (
    STAGE_NOISE,
    DenoiserConfig,
    added_time_ids,
    denoise,
    edm_loss,
    fps_id,
    loss_weight,
    micro_condition_embedding,
    motion_bucket,
    noise_augment,
    precondition,
    sample_training_sigmas,
    timestep_embedding,
    v_target,
)

SIGMAS = np.geomspace(0.002, 700.0, 97)


def ref_coefficients(s: np.ndarray, sd: float):
    """Karras et al. 2022 Table 1 with SVD's negative c_out (sgm VScaling)."""
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = -s * sd / np.sqrt(s**2 + sd**2)
    c_in = 1.0 / np.sqrt(s**2 + sd**2)
    c_noise = np.log(s) / 4.0
    return c_skip, c_out, c_in, c_noise


def test_coefficients_paper_form_at_sigma_data_1():
    s = SIGMAS
    got = [c.numpy() for c in precondition(torch.from_numpy(s))]
    # the paper's App. D formulas, written for sigma_data = 1
    want = [1 / (s**2 + 1), -s / np.sqrt(s**2 + 1), 1 / np.sqrt(s**2 + 1), 0.25 * np.log(s)]
    for g, w in zip(got, want):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sd", [0.5, 1.0, 2.0])
def test_coefficients_general_sigma_data(sd):
    got = [c.numpy() for c in precondition(torch.from_numpy(SIGMAS), sd)]
    for g, w in zip(got, ref_coefficients(SIGMAS, sd)):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=0)


def test_scalar_sigma_and_float32_agree_with_float64():
    for s in (0.002, 0.7, 700.0):
        got = precondition(s)
        want = ref_coefficients(np.array(s), 1.0)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.item(), w, rtol=1e-6)
    c32 = precondition(torch.from_numpy(SIGMAS).float())
    c64 = precondition(torch.from_numpy(SIGMAS))
    for a, b in zip(c32, c64):
        assert a.dtype == torch.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)


def test_c_in_gives_unit_variance_input():
    # Var(c_in * (x0 + s n)) = c_in^2 (sd^2 + s^2) = 1 for data of std sd: EDM's input normalisation
    for sd in (0.5, 1.0):
        c_in = precondition(torch.from_numpy(SIGMAS), sd)[2].numpy()
        np.testing.assert_allclose(c_in**2 * (sd**2 + SIGMAS**2), 1.0, rtol=1e-14)


def _oracle(x0: np.ndarray, n: np.ndarray, s: np.ndarray, sd: float, calls: list):
    """A 'perfect network': returns the v target (sd*n - (s/sd) x0)/sqrt(s^2+sd^2), derived by hand from
    D = c_skip x + c_out F = x0 with the negative c_out, and records what it was called with."""
    sb = s.reshape(-1, *([1] * (x0.ndim - 1)))
    v = (sd * n - (sb / sd) * x0) / np.sqrt(sb**2 + sd**2)

    def model_fn(z, c_noise, **cond):
        calls.append((z.detach().clone(), c_noise.detach().clone(), cond))
        return torch.from_numpy(v).to(z.dtype)

    return model_fn


@pytest.mark.parametrize("sd", [1.0, 0.5])
def test_perfect_network_recovers_x0_at_every_sigma(sd):
    rng = np.random.default_rng(0)
    s = SIGMAS
    b = s.shape[0]
    x0 = rng.normal(size=(b, 3, 2, 4, 4)) * sd
    n = rng.normal(size=x0.shape)
    x = x0 + s.reshape(-1, 1, 1, 1, 1) * n
    calls = []
    d = denoise(_oracle(x0, n, s, sd, calls), torch.from_numpy(x), torch.from_numpy(s), sigma_data=sd, tag="c")
    np.testing.assert_allclose(d.numpy(), x0, rtol=0, atol=1e-11)
    # the network saw c_in * x and c_noise = ln(s)/4 with shape (B,), and the conditioning untouched
    z, c_noise, cond = calls[0]
    np.testing.assert_allclose(z.numpy(), x / np.sqrt(s**2 + sd**2).reshape(-1, 1, 1, 1, 1), rtol=1e-14)
    assert c_noise.shape == (b,)
    np.testing.assert_allclose(c_noise.numpy(), np.log(s) / 4, rtol=1e-14)
    assert cond == {"tag": "c"}
    # v_target is the same quantity
    np.testing.assert_allclose(
        v_target(torch.from_numpy(x0), torch.from_numpy(n), torch.from_numpy(s), sd).numpy(),
        (sd * n - (s.reshape(-1, 1, 1, 1, 1) / sd) * x0) / np.sqrt(s.reshape(-1, 1, 1, 1, 1) ** 2 + sd**2),
        rtol=1e-12,
        atol=1e-14,
    )


def test_denoise_float32_matches_float64_and_scalar_sigma():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 2, 3, 5)) * 3
    w = rng.normal(size=x.shape)

    def model_fn(z, c_noise):
        return z * 0.3 + torch.from_numpy(w).to(z.dtype) * c_noise.reshape(-1, 1, 1, 1)

    s = np.array([0.002, 0.3, 5.0, 700.0])
    d64 = denoise(model_fn, torch.from_numpy(x), torch.from_numpy(s))
    d32 = denoise(model_fn, torch.from_numpy(x).float(), torch.from_numpy(s).float())
    assert d32.dtype == torch.float32
    np.testing.assert_allclose(d32.numpy(), d64.numpy(), rtol=1e-5, atol=1e-5)
    # numpy reference of the whole denoiser
    c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in ref_coefficients(s, 1.0))
    ref = c_skip * x + c_out * (c_in * x * 0.3 + w * c_noise)
    np.testing.assert_allclose(d64.numpy(), ref, rtol=1e-12, atol=1e-12)
    # a scalar sigma is the same sigma for every sample
    d_scalar = denoise(model_fn, torch.from_numpy(x), 5.0)
    d_vec = denoise(model_fn, torch.from_numpy(x), torch.full((4,), 5.0, dtype=torch.float64))
    np.testing.assert_allclose(d_scalar.numpy(), d_vec.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        denoise(model_fn, torch.from_numpy(x), torch.ones(3))


def test_loss_weight_matches_paper():
    s = SIGMAS
    np.testing.assert_allclose(loss_weight(torch.from_numpy(s)).numpy(), (1 + s**2) / s**2, rtol=1e-14)
    np.testing.assert_allclose(
        loss_weight(torch.from_numpy(s), 0.5).numpy(), (s**2 + 0.25) / (0.5 * s) ** 2, rtol=1e-14
    )


@pytest.mark.parametrize("sd", [1.0, 0.5])
def test_loss_is_plain_v_mse(sd):
    """lambda * |D - x0|^2 = lambda * c_out^2 * |F - v|^2 and lambda * c_out^2 = 1: the EDM loss is the unweighted
    MSE of the network output against the v target, at every sigma."""
    rng = np.random.default_rng(2)
    s = SIGMAS
    b = s.shape[0]
    x0 = rng.normal(size=(b, 2, 3, 3)) * sd
    n = rng.normal(size=x0.shape)
    f = rng.normal(size=x0.shape)  # an arbitrary (wrong) network output
    loss = edm_loss(
        lambda z, c: torch.from_numpy(f), torch.from_numpy(x0), torch.from_numpy(s), torch.from_numpy(n), sigma_data=sd
    )
    assert loss.shape == (b,)
    sb = s.reshape(-1, 1, 1, 1)
    v = (sd * n - (sb / sd) * x0) / np.sqrt(sb**2 + sd**2)
    want = ((f - v) ** 2).reshape(b, -1).mean(axis=1)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-9)
    # and literally the weighted denoising error, computed from the numpy coefficients
    c_skip, c_out, _, _ = (c.reshape(-1, 1, 1, 1) for c in ref_coefficients(s, sd))
    d = c_skip * (x0 + sb * n) + c_out * f
    weighted = ((sb**2 + sd**2) / (sb * sd) ** 2 * (d - x0) ** 2).reshape(b, -1).mean(axis=1)
    np.testing.assert_allclose(loss.numpy(), weighted, rtol=1e-9)
    # a perfect network has zero loss
    calls = []
    perfect = edm_loss(
        _oracle(x0, n, s, sd, calls), torch.from_numpy(x0), torch.from_numpy(s), torch.from_numpy(n), sigma_data=sd
    )
    assert float(perfect.abs().max()) < 1e-18


def test_loss_float32_matches_float64():
    rng = np.random.default_rng(3)
    s = np.geomspace(0.01, 100, 8)
    x0, n, f = (rng.normal(size=(8, 4, 4)) for _ in range(3))
    args64 = [torch.from_numpy(a) for a in (x0, s, n)]
    l64 = edm_loss(lambda z, c: torch.from_numpy(f), *args64)
    l32 = edm_loss(lambda z, c: torch.from_numpy(f).float(), *[a.float() for a in args64])
    np.testing.assert_allclose(l32.numpy(), l64.numpy(), rtol=1e-3)


def test_static_weight_splits_the_error_over_frames():
    """static_weight w: |e - mean_t e|^2 + w |mean_t e|^2 per element (lambda-weighted); w = 1 is plain EDM, w = 0
    ignores any error that is the same in every frame. Reference: a per-pixel loop in float64 numpy."""
    rng = np.random.default_rng(4)
    b, t = 5, 6
    s = np.geomspace(0.1, 50, b)
    x0, n, f = (rng.normal(size=(b, t, 2, 3, 4)) for _ in range(3))
    args = [torch.from_numpy(a) for a in (x0, s, n)]
    plain = edm_loss(lambda z, c: torch.from_numpy(f), *args)
    np.testing.assert_allclose(
        edm_loss(lambda z, c: torch.from_numpy(f), *args, static_weight=1.0).numpy(), plain.numpy(), rtol=1e-12
    )
    sb = s.reshape(-1, 1, 1, 1, 1)
    c_skip, c_out, _, _ = (c.reshape(-1, 1, 1, 1, 1) for c in ref_coefficients(s, 1.0))
    e = c_skip * (x0 + sb * n) + c_out * f - x0
    for w in (0.0, 0.25):
        want = np.zeros(b)
        for i in range(b):
            for pixel in np.ndindex(*e.shape[2:]):
                series = e[(i, slice(None)) + pixel]
                m = series.mean()
                want[i] += ((series - m) ** 2).sum() + w * t * m**2
            want[i] *= (s[i] ** 2 + 1) / s[i] ** 2 / e[i].size
        got = edm_loss(lambda z, c: torch.from_numpy(f), *args, static_weight=w)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # w = 0: a network output off by the same amount in every frame costs nothing more
    offset = rng.normal(size=(b, 1, 2, 3, 4))
    shifted = edm_loss(lambda z, c: torch.from_numpy(f + offset), *args, static_weight=0.0)
    np.testing.assert_allclose(
        shifted.numpy(), edm_loss(lambda z, c: torch.from_numpy(f), *args, static_weight=0.0).numpy(), rtol=1e-10
    )
    assert float(plain.min()) > 0
    with pytest.raises(ValueError, match="static_weight must be in"):
        edm_loss(lambda z, c: torch.from_numpy(f), *args, static_weight=1.5)
    with pytest.raises(ValueError, match="needs videos"):
        edm_loss(
            lambda z, c: torch.from_numpy(f[:, 0]),
            *[torch.from_numpy(a[:, 0]) if a.ndim > 1 else torch.from_numpy(a) for a in (x0, s, n)],
            static_weight=0.5,
        )


def test_training_sigmas_are_lognormal():
    g = torch.Generator().manual_seed(0)
    p_mean, p_std = STAGE_NOISE["i2v_hq"]
    s = sample_training_sigmas(200_000, p_mean, p_std, g, dtype=torch.float64)
    assert s.shape == (200_000,) and bool((s > 0).all())
    ln = np.log(s.numpy())
    se = p_std / math.sqrt(ln.size)
    assert abs(ln.mean() - p_mean) < 4 * se
    assert abs(ln.std() - p_std) < 4 * p_std / math.sqrt(2 * ln.size)
    assert stats.kstest(ln, stats.norm(loc=p_mean, scale=p_std).cdf).pvalue > 1e-3
    # a shifted distribution is rejected: the test has power
    assert stats.kstest(ln, stats.norm(loc=p_mean + 0.02, scale=p_std).cdf).pvalue < 1e-3
    # seeded -> reproducible, another seed -> different
    draw = lambda seed: sample_training_sigmas(64, p_mean, p_std, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))


def test_stage_presets_and_config():
    assert STAGE_NOISE == {
        "image": (-1.2, 1.0),
        "video": (-1.2, 1.2),
        "hq": (0.5, 1.4),
        "i2v_base": (0.7, 1.6),
        "i2v_hq": (1.0, 1.6),
        "interpolation": (1.0, 1.2),
        "video_tiny": (0.5, 1.4),
        "image_tiny": (0.5, 1.4),
    }  # ours (tiny), not the paper's
    cfg = DenoiserConfig.from_stage("hq")
    assert (cfg.sigma_data, cfg.p_mean, cfg.p_std) == (1.0, 0.5, 1.4)
    s = cfg.sample_sigmas(50_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(float(torch.log(s).mean()) - 0.5) < 0.03
    with pytest.raises(ValueError, match="unknown stage"):
        DenoiserConfig.from_stage("nope")
    with pytest.raises(ValueError, match="p_std"):
        DenoiserConfig(p_std=0.0)


# ---------------------------------------------------------------- micro-conditioning


def ref_embedding(v: np.ndarray, dim: int, max_period: float = 10000.0, flip: bool = True, shift: float = 0.0):
    half = dim // 2
    freqs = np.array([max_period ** (-k / (half - shift)) for k in range(half)])
    a = v[:, None] * freqs[None, :]
    e = np.concatenate([np.cos(a), np.sin(a)] if flip else [np.sin(a), np.cos(a)], axis=1)
    return np.pad(e, ((0, 0), (0, dim % 2)))


def test_timestep_embedding_matches_float64_reference():
    v = np.array([0.0, 5.0, 6.0, 24.0, 127.0, 255.0, 0.02, -3.5])
    for dim in (256, 7, 2):
        got = timestep_embedding(torch.from_numpy(v), dim)
        assert got.shape == (v.size, dim) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), ref_embedding(v, dim), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        timestep_embedding(torch.from_numpy(v), 64, flip_sin_to_cos=False, downscale_freq_shift=1).numpy(),
        ref_embedding(v, 64, flip=False, shift=1),
        rtol=1e-12,
        atol=1e-12,
    )
    # float32 input (the model's dtype): arguments up to 255 rad lose ~255 * 6e-8
    np.testing.assert_allclose(
        timestep_embedding(torch.from_numpy(v).float(), 256).numpy(), ref_embedding(v, 256), atol=1e-4
    )
    # integers become float32
    assert timestep_embedding(torch.tensor([1, 2]), 8).dtype == torch.float32


def test_timestep_embedding_matches_diffusers_add_time_proj():
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    v = torch.tensor([5.0, 127.0, 0.02])
    proj = embeddings.Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(v, 256), proj(v), rtol=0, atol=1e-5)


def test_added_time_ids_and_embedding():
    ids = added_time_ids(7, 127, 0.02)
    torch.testing.assert_close(ids, torch.tensor([[6.0, 127.0, 0.02]]))
    ids = added_time_ids(torch.tensor([6.0, 25.0]), 127, torch.tensor([0.02, 0.05]))
    torch.testing.assert_close(ids, torch.tensor([[5.0, 127.0, 0.02], [24.0, 127.0, 0.05]]))
    assert added_time_ids(7, 127, 0.02, batch_size=3).shape == (3, 3)
    with pytest.raises(ValueError, match="inconsistent batch sizes"):
        added_time_ids(torch.tensor([6.0, 7.0]), torch.tensor([1.0, 2.0, 3.0]), 0.0)
    assert fps_id(7) == 6
    emb = micro_condition_embedding(ids.double(), 256)
    assert emb.shape == (2, 768)
    # per sample: [emb(fps_id), emb(motion), emb(cond_aug)]
    ref = np.concatenate([ref_embedding(ids[:, k].double().numpy(), 256) for k in range(3)], axis=1)
    np.testing.assert_allclose(emb.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_motion_bucket_mapping():
    scores = np.array([0.0, 0.001, 0.05, 0.25, 0.4999, 0.5, 1.0, 3.0, -0.1])
    want = np.clip(np.round(255 * scores / 0.5), 0, 255)
    np.testing.assert_array_equal(motion_bucket(scores), want)
    assert motion_bucket(0.25) == 128 and isinstance(motion_bucket(0.25), int)
    np.testing.assert_array_equal(motion_bucket(torch.from_numpy(scores)).numpy(), want)
    assert motion_bucket(0.1, score_at_255=0.2) == 128
    dense = np.linspace(0, 1, 2001)
    b = motion_bucket(dense)
    assert (np.diff(b) >= 0).all() and b.min() == 0 and b.max() == 255  # monotone and clipped
    with pytest.raises(ValueError, match="NaN"):
        motion_bucket(float("nan"))
    with pytest.raises(ValueError, match="score_at_255"):
        motion_bucket(0.1, score_at_255=0)


def test_noise_augment_statistics_and_reproducibility():
    image = torch.zeros(4000, 3, 4, 4, dtype=torch.float64)
    aug, s = noise_augment(image, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4000,)
    ln = np.log(s.numpy())
    assert abs(ln.mean() + 3.0) < 4 * 0.5 / math.sqrt(4000)
    assert abs(ln.std() - 0.5) < 0.03
    # (aug - image)/sigma is standard normal per sample
    z = (aug / s.reshape(-1, 1, 1, 1)).numpy().ravel()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    aug2, s2 = noise_augment(image, generator=torch.Generator().manual_seed(0))
    assert torch.equal(aug, aug2) and torch.equal(s, s2)
    # inference: a fixed strength
    img = torch.ones(2, 3, 8, 8)
    aug, s = noise_augment(img, sigma=0.02, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s, torch.full((2,), 0.02))
    assert abs(float((aug - img).std()) - 0.02) < 0.004
