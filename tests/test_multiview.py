"""GSO multi-view metrics: PSNR against skimage, LPIPS (random AlexNet + the package's linear layers, weights files,
no downloads), CLIP-S, orbit folders and manifests, per-object failures, and the `svd evaluate multiview` contract."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from svd.config import MultiviewParams, load_params
from svd.errors import InputError, WeightsError
from svd.evaluation import multiview as mv
from svd.io.video import write_video
from svd.world.evalset import make_object, render_view

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
FRAMES = 21
SIZE = 32


def orbit(kind: str = "cube", size: int = SIZE, frames: int = FRAMES, seed: int = 0) -> np.ndarray:
    """(T, S, S, 3) uint8: a world object seen from a full circle, like a GSO render."""
    mesh = make_object(kind, np.random.default_rng(seed))
    return np.stack([render_view(mesh, 360.0 * f / frames, 15.0, size, supersample=2) for f in range(frames)])


def noisy(frames: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(frames.shape)
    return np.clip(frames + sigma * noise, 0, 255).round().astype(np.uint8)


def write_pngs(folder: Path, frames: np.ndarray, digits: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:0{digits}d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    return orbit("cube")


@pytest.fixture(scope="module")
def lpips_random() -> mv.LpipsScorer:
    torch.set_num_threads(1)
    return mv.LpipsScorer(None, seed=0)


@pytest.fixture(scope="module")
def clip_tiny() -> mv.ClipSimilarity:
    return mv.ClipSimilarity(load_params(PARAMS).weights, seed=0)


# ------------------------------------------------------------------------------------------------------- PSNR


def test_psnr_matches_skimage_per_frame(cube):
    from skimage.metrics import peak_signal_noise_ratio

    fake = noisy(cube, 12.0)
    ours = mv.psnr(cube, fake)
    ref = [peak_signal_noise_ratio(a / 255.0, b / 255.0, data_range=1.0) for a, b in zip(cube, fake)]
    assert ours.shape == (FRAMES,)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert mv.psnr(cube, cube).tolist() == [mv.PSNR_CAP_DB] * FRAMES  # identical: capped, finite
    with pytest.raises(ValueError, match="differ in shape"):
        mv.psnr(cube, cube[:, :16])


# ------------------------------------------------------------------------------------------------------ LPIPS


def test_lpips_identical_is_zero_and_grows_with_noise(cube, lpips_random):
    assert lpips_random.backbone == "random" and not lpips_random.pretrained
    frames = cube[:3]
    assert np.abs(lpips_random(frames, frames)).max() < 1e-6
    ramp = [float(lpips_random(frames, noisy(frames, s)).mean()) for s in (4, 8, 16, 32, 64)]
    assert all(b > a for a, b in zip(ramp, ramp[1:])), ramp
    assert ramp[0] > 0


def test_lpips_uses_the_shipped_linear_layers(lpips_random):
    import inspect

    import lpips

    shipped = torch.load(
        Path(inspect.getfile(lpips.LPIPS)).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    state = lpips_random.model.state_dict()
    for key, value in shipped.items():
        assert torch.equal(state[key], value), key


def test_lpips_scales_inputs_to_minus_one_one_once(lpips_random):
    seen = []
    hook = lpips_random.model.scaling_layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        frames = np.zeros((2, SIZE, SIZE, 3), np.uint8)
        frames[:, :, SIZE // 2 :] = 255
        lpips_random(frames, frames[::-1].copy())
    finally:
        hook.remove()
    x = torch.cat(seen)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0  # [0, 1] input or a double scaling would miss these


def test_lpips_never_downloads(monkeypatch, tmp_path):
    import lpips
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    with pytest.raises(AssertionError, match="download attempted"):  # the guard bites on the package's default
        lpips.LPIPS(net="alex", verbose=False)
    mv.LpipsScorer(None)
    path = tmp_path / "alexnet.pth"
    torch.save(_alexnet(3).state_dict(), path)
    mv.LpipsScorer(str(path))


def _alexnet(seed: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None).eval()


def test_lpips_alexnet_file_matches_in_memory_weights(tmp_path, cube, lpips_random):
    import lpips

    alex = _alexnet(7)
    path = tmp_path / "alexnet.pth"
    torch.save(alex.state_dict(), path)
    scorer = mv.LpipsScorer(str(path))
    assert scorer.pretrained and scorer.backbone == str(path)

    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # shipped linear layers, random trunk
    for part in ref.net.children():  # put the in-memory AlexNet layers in place
        for child in list(part._modules):
            part._modules[child] = alex.features[int(child)]
    real, fake = cube[:4], noisy(cube[:4], 20)
    with torch.inference_mode():
        expected = (
            ref(
                torch.from_numpy(real).permute(0, 3, 1, 2) / 127.5 - 1,
                torch.from_numpy(fake).permute(0, 3, 1, 2) / 127.5 - 1,
            )
            .reshape(-1)
            .numpy()
        )
    got = scorer(real, fake)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got, lpips_random(real, fake))  # the file really replaced the random trunk

    torch.save(
        {f"{k.split('.', 1)[1]}": v for k, v in alex.state_dict().items() if k.startswith("features.")},
        tmp_path / "features.pth",
    )  # a features-only state dict works too
    np.testing.assert_allclose(mv.LpipsScorer(str(tmp_path / "features.pth"))(real, fake), expected, rtol=1e-5)


def test_lpips_bad_weights_files_name_the_setting(tmp_path):
    with pytest.raises(WeightsError, match="evaluate.multiview.lpips_alexnet: .*not a file"):
        mv.LpipsScorer(str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="evaluate.multiview.lpips_alexnet: cannot read"):
        mv.LpipsScorer(str(corrupt))
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "features.0.bias": torch.zeros(8)}, wrong)
    with pytest.raises(WeightsError, match="evaluate.multiview.lpips_alexnet: .*does not fit"):
        mv.LpipsScorer(str(wrong))
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match="evaluate.multiview.lpips_alexnet"):
        mv.LpipsScorer(str(other))


def test_lpips_refuses_frames_too_small(lpips_random):
    small = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="at least"):
        lpips_random(small, small)
    ok = np.zeros((1, mv.LPIPS_MIN_SIDE, mv.LPIPS_MIN_SIDE, 3), np.uint8)
    assert lpips_random(ok, ok).shape == (1,)


# ----------------------------------------------------------------------------------------------------- CLIP-S


def test_clip_s_identical_one_different_less(cube, clip_tiny):
    assert clip_tiny.backbone == "random" and not clip_tiny.pretrained
    np.testing.assert_allclose(clip_tiny(cube[:3], cube[:3]), 1.0, atol=1e-5)
    other = orbit("pyramid", seed=3)[:3]
    assert (clip_tiny(cube[:3], other) < 1.0 - 1e-4).all()
    emb = clip_tiny.embed(cube[:3])
    np.testing.assert_allclose(emb.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_clip_s_preprocesses_each_frame_once(cube, clip_tiny, monkeypatch):
    from PIL import Image

    calls = []
    original = clip_tiny.preprocess
    monkeypatch.setattr(clip_tiny, "preprocess", lambda img: calls.append(1) or original(img))
    seen = []
    hook = clip_tiny.model.visual.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        clip_tiny.embed(cube[:3])
    finally:
        hook.remove()
    assert len(calls) == 3
    expected = torch.stack([original(Image.fromarray(f)) for f in cube[:3]])
    assert torch.equal(torch.cat(seen), expected)  # the model saw its own preprocessing, applied once


# ----------------------------------------------------------------------------------------------------- orbits


def test_scan_folder_layouts_and_problems(tmp_path, cube):
    root = tmp_path / "orbits"
    write_pngs(root / "cube", cube[:3])
    write_video(root / "prism.mp4", cube[:3], fps=8)
    (root / "prism.gif").write_bytes(b"GIF89a")  # previews and notes are ignored
    (root / "notes.json").write_text("{}")
    (root / "empty").mkdir()
    write_pngs(root / "gappy", cube[:3])
    (root / "gappy" / "001.png").unlink()
    write_pngs(root / "named", cube[:1])
    shutil.copy(root / "named" / "000.png", root / "named" / "front.png")
    write_pngs(root / "both", cube[:2])
    write_video(root / "both.mp4", cube[:2], fps=8)

    found = mv.scan_folder(root)
    assert set(found) == {"cube", "prism", "gappy", "named", "both"}
    assert [p.name for p in found["cube"].frames] == ["000.png", "001.png", "002.png"]
    assert found["prism"].video == root / "prism.mp4"
    assert "frame 1 is missing" in found["gappy"].problem
    assert "numbered" in found["named"].problem
    assert "two orbits named 'both'" in found["both"].problem
    assert mv.read_orbit(found["cube"]).shape == (3, SIZE, SIZE, 3)
    assert mv.read_orbit(found["prism"]).shape == (3, SIZE, SIZE, 3)
    with pytest.raises(InputError, match="frame 1 is missing"):
        mv.read_orbit(found["gappy"])
    with pytest.raises(InputError, match="no orbits in"):
        mv.scan_folder(tmp_path / "orbits" / "empty")


def test_world_manifest_and_rgba_frames(tmp_path, cube):
    world = tmp_path / "world"
    rows = []
    for f in range(3):
        rel = f"eval/orbits/cube/{f:02d}.png"
        rows.append({"object": "cube", "frame": f, "azimuth": 0.0, "elevation": 0.0, "file": rel})
    write_pngs(world / "eval" / "orbits" / "cube", cube[:3], digits=2)
    pd.DataFrame(rows).to_parquet(world / "eval" / "orbits.parquet")
    for path in (world / "eval" / "orbits.parquet", world / "eval", world):  # manifest, eval folder, world root
        found = mv.open_orbits(path)
        np.testing.assert_array_equal(mv.read_orbit(found["cube"]), cube[:3])

    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 2] = 200  # red (BGR order) where opaque; hidden colour where transparent
    rgba[:, : SIZE // 2, 3] = 255
    (tmp_path / "gso" / "mug").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "gso" / "mug" / "000.png"), rgba)
    frames = mv.read_orbit(mv.scan_folder(tmp_path / "gso")["mug"], background=255)
    assert frames[0, 0, 0].tolist() == [200, 0, 0] and frames[0, 0, -1].tolist() == [255, 255, 255]


def test_failures_are_per_object(tmp_path, cube, lpips_random, clip_tiny):
    real, fake = tmp_path / "real", tmp_path / "fake"
    pyramid = orbit("pyramid", seed=2)
    for name, frames in (
        ("cube", cube),
        ("pyramid", pyramid),
        ("short", cube),
        ("broken", cube),
        ("big", cube),
        ("wide", cube),
        ("lonely", cube),
    ):
        write_pngs(real / name, frames if name != "big" else orbit("cube", size=64))
    write_pngs(fake / "cube", cube)
    write_pngs(fake / "pyramid", noisy(pyramid, 10))
    write_pngs(fake / "short", cube[:20])
    write_pngs(fake / "broken", cube)
    (fake / "broken" / "005.png").write_bytes(b"garbage")
    write_pngs(fake / "big", cube)  # real is 64 px: resized to the generated 32 px
    write_pngs(fake / "wide", np.concatenate([cube, cube], axis=2))
    write_pngs(fake / "extra", cube)

    params = MultiviewParams()
    result = mv.evaluate_orbits(mv.scan_folder(real), mv.scan_folder(fake), params, lpips_random, clip_tiny)
    objects, failed = result["objects"], result["failed"]
    assert set(objects) == {"cube", "pyramid", "big"}
    assert objects["cube"]["psnr"] == mv.PSNR_CAP_DB and objects["cube"]["lpips"] < 1e-6
    assert objects["pyramid"]["psnr"] < 40 and objects["pyramid"]["lpips"] > objects["cube"]["lpips"]
    assert objects["big"]["resized_real"] and objects["big"]["size"] == [SIZE, SIZE]
    assert len(objects["cube"]["per_frame"]["psnr"]) == FRAMES
    assert "20 frames" in failed["short"] and "evaluate.multiview.frames" in failed["short"]
    assert "cannot read image" in failed["broken"] and "005.png" in failed["broken"]
    assert "aspect" in failed["wide"]
    assert "missing in the generated" in failed["lonely"]
    assert "no ground-truth" in failed["extra"]

    strict = MultiviewParams(resize_real=False)
    only_big = mv.evaluate_orbits(mv.scan_folder(real), mv.scan_folder(fake), strict, lpips_random, clip_tiny)
    assert "resize_real is false" in only_big["failed"]["big"]
    with pytest.raises(InputError, match="no object names in common"):
        mv.evaluate_orbits({"a": mv.OrbitSource("a")}, {"b": mv.OrbitSource("b")}, params, lpips_random, clip_tiny)
    with pytest.raises(InputError, match="no orbit could be scored"):
        mv.evaluate_orbits(
            {"short": mv.scan_folder(real)["short"]},
            {"short": mv.scan_folder(fake)["short"]},
            params,
            lpips_random,
            clip_tiny,
        )


def test_real_source_defaults_name_the_setting(tmp_path):
    params = load_params(PARAMS, overrides=[f"paths.world={tmp_path}/world"])
    with pytest.raises(InputError, match="svd world"):
        mv.resolve_real(params, None)
    gso = load_params(PARAMS, overrides=[f"evaluate.multiview.gso_root={tmp_path}/gso"])
    with pytest.raises(InputError, match="evaluate.multiview.gso_root"):
        mv.resolve_real(gso, None)
    (tmp_path / "gso").mkdir()
    assert mv.resolve_real(gso, None) == (tmp_path / "gso", "gso")
    with pytest.raises(InputError, match="--real"):
        mv.resolve_real(params, tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------- CLI


def _svd(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from svd.cli import main

    monkeypatch.setattr(sys, "argv", ["svd", "--params", str(PARAMS), "--set", "threads=1", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_cli_multiview_contract(tmp_path, monkeypatch, capsys, cube):
    real, same, worse = tmp_path / "real", tmp_path / "same", tmp_path / "worse"
    for i, kind in enumerate(("cube", "pyramid")):
        frames = cube if kind == "cube" else orbit(kind, seed=i)
        write_video(real / f"{kind}.mp4", frames, fps=8)
        same.mkdir(exist_ok=True)
        shutil.copy(real / f"{kind}.mp4", same / f"{kind}.mp4")
        write_video(worse / f"{kind}.mp4", noisy(frames, 25, seed=i), fps=8)

    reports = {}
    for name, fake in (("same", same), ("worse", worse)):
        out = tmp_path / f"{name}.json"
        code, stdout, stderr = _svd(
            monkeypatch, capsys, "evaluate", "multiview", "--real", str(real), "--fake", str(fake), "--out", str(out)
        )
        assert code == 0, stderr
        assert json.loads(stdout)["out"] == str(out)
        reports[name] = json.loads(out.read_text())
    same_r, worse_r = reports["same"], reports["worse"]
    for key in (
        "psnr",
        "lpips",
        "clip_s",
        "n_objects",
        "n_failed",
        "objects",
        "failed",
        "backbones",
        "paper",
        "lpips_backbone",
        "clip_backbone",
        "frames",
        "averaging",
    ):
        assert key in same_r, key
    assert same_r["n_objects"] == 2 and same_r["n_failed"] == 0 and set(same_r["objects"]) == {"cube", "pyramid"}
    assert same_r["lpips_backbone"] == "random" and same_r["clip_backbone"] == "random"
    assert same_r["backbones"]["lpips"]["pretrained"] is False
    assert same_r["paper"]["methods"]["SVD-MV"] == {"psnr": 16.83, "lpips": 0.14, "clip_s": 0.89}
    assert same_r["paper"]["comparable"] is False and "random" in same_r["paper"]["note"]
    assert same_r["psnr"] == mv.PSNR_CAP_DB and same_r["lpips"] < 1e-6 and same_r["clip_s"] > 1 - 1e-5
    assert worse_r["psnr"] < same_r["psnr"] and worse_r["lpips"] > same_r["lpips"]
    assert worse_r["clip_s"] < same_r["clip_s"]
    assert same_r["psnr"] == pytest.approx(np.mean([o["psnr"] for o in same_r["objects"].values()]))
    for key in ("psnr", "lpips", "clip_s"):  # intervals over the objects, around the mean
        assert worse_r[f"{key}_lo"] <= worse_r[key] <= worse_r[f"{key}_hi"]
    per_object = [o["psnr"] for o in worse_r["objects"].values()]
    assert worse_r["psnr_lo"] >= min(per_object) and worse_r["psnr_hi"] <= max(per_object)

    # one object short of frames: recorded, the other still scored, a warning printed
    write_video(worse / "cube.mp4", cube[:10], fps=8)
    code, _, stderr = _svd(
        monkeypatch,
        capsys,
        "evaluate",
        "multiview",
        "--real",
        str(real),
        "--fake",
        str(worse),
        "--out",
        str(tmp_path / "partial.json"),
    )
    partial = json.loads((tmp_path / "partial.json").read_text())
    assert code == 0 and partial["n_objects"] == 1 and "10 frames" in partial["failed"]["cube"]
    assert "warning: cube" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fake", "{tmp}/nowhere"], "--fake"),
        (["--real", "{tmp}/nowhere", "--fake", "{tmp}"], "--real"),
        (
            ["--set", "evaluate.multiview.lpips_alexnet={tmp}/alexnet.pth", "--fake", "{tmp}/fake"],
            "evaluate.multiview.lpips_alexnet",
        ),
    ],
)
def test_cli_bad_inputs_exit_2(tmp_path, monkeypatch, capsys, cube, args, message):
    write_pngs(tmp_path / "fake" / "cube", cube[:2])
    write_pngs(tmp_path / "real" / "cube", cube[:2])
    args = [a.format(tmp=tmp_path) for a in args]
    sets = [a for i, a in enumerate(args) if i > 0 and args[i - 1] == "--set"]
    rest = [a for i, a in enumerate(args) if a != "--set" and a not in sets]
    if "--real" not in rest:
        rest += ["--real", str(tmp_path / "real")]
    pre = [x for s in sets for x in ("--set", s)]
    code, _, stderr = _svd(monkeypatch, capsys, *pre, "evaluate", "multiview", *rest, "--out", str(tmp_path / "m.json"))
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr and "Traceback" not in stderr
