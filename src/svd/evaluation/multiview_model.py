"""Judging a multi-view model (svd.tasks.multiview) on held-out orbits: the GSO protocol plus 3D consistency.

For every held-out object (the world's eval orbits, whose kinds never appear in training, or
`evaluate.multiview.gso_root` with cameras.json elevations) the model generates the orbit from the object's front view
(view 0, at the model's size) at the object's elevation, one seed per object (params.sample.seed + index). Scored
against the truth at the model's size (area-downsampled, as the protocol resizes):
- psnr / lpips / clip_s: the GSO protocol's per-frame metrics (svd.evaluation.multiview), mean over the views;
- opposite_psnr: PSNR of the view nearest 180 degrees from the front, the one the front view says least about;
- silhouette_iou: IoU of the object masks (pixels more than SILHOUETTE_THRESHOLD grey levels, in some channel, from
  the view's own background: the median of its border pixels, so that a generated orbit whose background is another
  grey than the renders' is judged by its object), mean over the views;
- width_corr: Pearson correlation over the orbit of the silhouette's width (columns the object covers) against the
  truth's: does the generated object turn as the real one does (a box is wide face-on, narrow edge-on)?
Each is a mean over objects with a 95% bootstrap interval over objects. The `copy` baseline repeats the front view
for every view (a model that learned nothing about 3D scores this); model_minus_copy is the paired difference. A
latent model's views pass the VAE, so two references are judged the same way: `roundtrip`, the VAE's round trip of
every true view (what a perfect latent model gives back: its ceiling), and `copy_roundtrip`, the front view's round
trip repeated (the copy baseline a latent model can reach); model_minus_copy_roundtrip is the paired difference.
In tiny, LPIPS and CLIP-S run on random backbones (no weights can be downloaded): their values are marked so.
The generated orbits are written as <folder>/eval/orbits/<object>/NN.png (`svd evaluate multiview --fake` scores
them again) and a few, beside the truth, as GIFs in <folder>/samples/orbits/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svd.config import Params
from svd.errors import InputError
from svd.evaluation.image_to_video import roundtrip
from svd.evaluation.intervals import mean_interval, paired_mean_difference
from svd.evaluation.multiview import (
    ClipSimilarity,
    LpipsScorer,
    match_size,
    open_orbits,
    psnr,
    read_orbit,
    resolve_real,
    score_orbit,
)

SILHOUETTE_THRESHOLD = 24  # grey levels from the background: above the renders' anti-aliasing and VAE noise
CHECKS = ("psnr", "lpips", "clip_s", "opposite_psnr", "silhouette_iou", "width_corr")


# ---------------------------------------------------------------- truth
def held_out_orbits(params: Params, size: tuple[int, int], limit: int | None = None) -> dict[str, Any]:
    """The held-out orbits at `size`: {"names", "orbits" uint8 (N, V, H, W, 3), "elevations" (N,), "path"}."""
    real_path, source = resolve_real(params, None)
    sources = open_orbits(real_path)
    elevations = _elevations(real_path, params.evaluate.multiview.frames)
    names = sorted(sources)[:limit] if limit else sorted(sources)
    h, w = size
    target = np.zeros((1, h, w, 3), np.uint8)
    orbits = []
    for name in names:
        frames = read_orbit(sources[name], params.evaluate.multiview.alpha_background)
        if len(frames) != params.evaluate.multiview.frames:
            raise InputError(
                f"held-out orbit {name} has {len(frames)} views, evaluate.multiview.frames is "
                f"{params.evaluate.multiview.frames}"
            )
        orbits.append(match_size(frames, target, resize_real=True)[0])
    return {
        "names": names,
        "orbits": np.stack(orbits),
        "elevations": np.asarray([elevations[n] for n in names], np.float32),
        "path": str(real_path),
        "source": source,
    }


def _elevations(path: Path, views: int) -> dict[str, float]:
    """Each object's camera elevation: the manifest's elevation column, or each orbit folder's cameras.json (an
    Objaverse-style render folder, read as `svd orbits --source` reads one)."""
    import pandas as pd

    path = Path(path)
    manifest = (
        path
        if path.is_file()
        else next((m for m in (path / "orbits.parquet", path / "eval" / "orbits.parquet") if m.is_file()), None)
    )
    if manifest is not None:
        table = pd.read_parquet(manifest)
        if "elevation" not in table.columns:
            raise InputError(f"{manifest}: no elevation column; a multi-view model needs each orbit's elevation")
        return {str(k): float(v) for k, v in table.groupby("object")["elevation"].first().items()}
    from svd.world.orbits import read_orbit_folder

    frame, _ = read_orbit_folder(path, views)
    return {str(k): float(v) for k, v in frame.groupby("object")["elevation"].mean().items()}


# ---------------------------------------------------------------- 3D checks
def border_colours(orbit: np.ndarray) -> np.ndarray:
    """(V, 3) each view's background: the median colour of its outermost ring of pixels (the object is framed
    inside it)."""
    ring = np.concatenate([orbit[:, 0], orbit[:, -1], orbit[:, 1:-1, 0], orbit[:, 1:-1, -1]], axis=1)
    return np.median(ring, axis=1)


def silhouettes(orbit: np.ndarray) -> np.ndarray:
    """(V, H, W) bool: the object's pixels in each (V, H, W, 3) view, against the view's own background."""
    background = border_colours(orbit).round().astype(np.int16)[:, None, None, :]
    diff = np.abs(orbit.astype(np.int16) - background).max(axis=-1)
    return diff > SILHOUETTE_THRESHOLD


def silhouette_iou(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """(V,) IoU of two (V, H, W) masks; 1 where both are empty."""
    inter = (real & fake).sum(axis=(1, 2))
    union = (real | fake).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def widths(masks: np.ndarray) -> np.ndarray:
    """(V,) columns each view's silhouette covers."""
    return masks.any(axis=1).sum(axis=1).astype(np.float64)


def width_correlation(real: np.ndarray, fake: np.ndarray) -> float:
    """Pearson correlation of two width curves over the orbit; NaN when either is constant."""
    a, b = widths(real), widths(fake)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def opposite_view(views: int) -> int:
    """The view nearest 180 degrees from the front (views evenly spaced over 360 degrees, view 0 the front)."""
    angles = 360.0 * np.arange(views) / views
    return int(np.argmin(np.abs(angles - 180.0)))


def check_orbit(real: np.ndarray, fake: np.ndarray, lpips_fn=None, clip_fn=None) -> dict[str, float]:
    """One object's checks (see the module doc); lpips and clip_s only where their scorers are given."""
    if lpips_fn is not None:
        out = score_orbit(real, fake, lpips_fn, clip_fn)
        out.pop("per_frame")
    else:
        out = {"psnr": float(psnr(real, fake).mean())}
    k = opposite_view(len(real))
    out["opposite_psnr"] = float(psnr(real[k : k + 1], fake[k : k + 1])[0])
    a, b = silhouettes(real), silhouettes(fake)
    out["silhouette_iou"] = float(silhouette_iou(a, b).mean())
    out["width_corr"] = width_correlation(a, b)
    return out


def _interval(values, rounds: int, seed: int) -> dict[str, float]:
    """mean_interval over the finite values (a width curve with no turn has no correlation), with their count."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    return {**mean_interval(x, rounds=rounds, seed=seed), "n": float(len(x))}


# ---------------------------------------------------------------- generation
def generate_for(model: dict, params: Params, truth: dict, seed: int, batch: int = 8) -> np.ndarray:
    """The model's orbits from the truth's front views at their elevations."""
    from svd.tasks.multiview import generate_orbits, to_unit

    meta = model["meta"]
    return generate_orbits(
        model,
        to_unit(truth["orbits"][:, 0]),
        truth["elevations"],
        views=int(meta["views"]),
        fps=float(meta["fps"]),
        motion_bucket=float(meta["motion_bucket"]),
        steps=int(meta["sample_steps"]),
        guidance=tuple(meta["guidance"]),
        cond_aug=float(meta["cond_aug"]),
        seed=seed,
        sigma_data=params.diffusion.sigma_data,
        batch=batch,
    )


def _write_orbits(root: Path, names: list[str], orbits: np.ndarray) -> None:
    for name, orbit in zip(names, orbits):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, view in enumerate(orbit):
            if not cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {folder / f'{i:03d}.png'}")


def evaluate_model(params: Params, folder: Path, *, model: dict | None = None) -> dict[str, Any]:
    """The module docstring's checks of the multi-view model in `folder`."""
    from svd.training.stages import load_model, write_samples

    started = time.perf_counter()
    folder = Path(folder)
    model = model or load_model(folder)
    meta = model["meta"]
    if meta["kind"] != "multi-view":
        raise InputError(f"{folder} holds a {meta['kind']} model; this evaluation is for multi-view models")
    mv = params.evaluate.multiview
    if int(meta["views"]) != mv.frames:
        raise InputError(f"{folder} makes {meta['views']}-view orbits, evaluate.multiview.frames is {mv.frames}")
    truth = held_out_orbits(params, tuple(meta["size"]))
    fake = generate_for(model, params, truth, params.sample.seed)
    views = truth["orbits"].shape[1]
    through_vae = np.stack([roundtrip(model["vae"], orbit) for orbit in truth["orbits"]])
    sides = {
        "model": fake,
        "copy": np.repeat(truth["orbits"][:, :1], views, axis=1),
        "roundtrip": through_vae,
        "copy_roundtrip": np.repeat(through_vae[:, :1], views, axis=1),
    }
    lpips_fn = LpipsScorer(mv.lpips_alexnet, seed=params.seed, batch=mv.batch)
    clip_fn = ClipSimilarity(params.weights, seed=params.seed, batch=mv.batch)
    rows = {
        side: [check_orbit(real, gen, lpips_fn, clip_fn) for real, gen in zip(truth["orbits"], orbits)]
        for side, orbits in sides.items()
    }
    rounds, seed = mv.bootstrap, params.seed
    out: dict[str, Any] = {"objects": len(truth["names"]), "views": int(fake.shape[1]), "size": list(fake.shape[2:4])}
    for side, values in rows.items():
        out[side] = {k: _interval([r[k] for r in values], rounds, seed) for k in CHECKS}
    for baseline in ("copy", "copy_roundtrip"):
        out[f"model_minus_{baseline}"] = {
            k: paired_mean_difference(
                [r[k] for r in rows["model"]], [r[k] for r in rows[baseline]], rounds=rounds, seed=seed
            )
            for k in CHECKS
        }
    out["backbones_pretrained"] = {"lpips": float(lpips_fn.pretrained), "clip": float(clip_fn.pretrained)}
    _write_orbits(folder / "eval" / "orbits", truth["names"], fake)
    n = min(4, len(fake))
    write_samples(
        folder / "samples" / "orbits",
        np.stack([x for i in range(n) for x in (fake[i], truth["orbits"][i])]),
        [f"{lab} {truth['names'][i]}" for i in range(n) for lab in ("model", "truth")],
        float(meta["fps"]),
    )
    per_object = {
        name: {side: rows[side][i] for side in rows} | {"elevation": float(truth["elevations"][i])}
        for i, name in enumerate(truth["names"])
    }
    import json

    (folder / "eval" / "objects.json").write_text(json.dumps(per_object, indent=2, default=float) + "\n")
    out["seconds"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------- during training
class OrbitProbe:
    """on_probe for the multi-view stage: PSNR / LPIPS / CLIP-S (and the 3D checks) of `train.<stage>.multiview.
    probe_objects` held-out orbits, generated by the model in training, every train.probe_every steps: the
    initialisation ablation's convergence curves (MLflow probe.*, the stage's .probe.csv)."""

    def __init__(self, params: Params, stage: str):
        cfg = getattr(params.train, stage)
        mv = params.evaluate.multiview
        self.params, self.stage = params, stage
        self.truth = held_out_orbits(params, tuple(cfg.size), limit=cfg.multiview.probe_objects)
        self.lpips_fn = LpipsScorer(mv.lpips_alexnet, seed=params.seed, batch=mv.batch)
        self.clip_fn = ClipSimilarity(params.weights, seed=params.seed, batch=mv.batch)

    def __call__(self, unet, step: int, tools: dict) -> dict[str, float]:
        import torch

        from svd.tasks.multiview import generate_orbits, to_unit

        params, cfg = self.params, getattr(self.params.train, self.stage)
        guidance = params.diffusion.guidance[cfg.guidance]
        with torch.no_grad():  # the loop hands over the raw model in eval mode
            fake = generate_orbits(
                {"unet": unet, "vae": tools["vae"], "image_encoder": tools["context"]},
                to_unit(self.truth["orbits"][:, 0]), self.truth["elevations"], views=cfg.frames, fps=cfg.fps,
                motion_bucket=cfg.multiview.motion_bucket, steps=cfg.sample_steps or params.sample.steps,
                guidance=tuple(guidance), cond_aug=params.diffusion.cond_aug.inference_sigma,
                seed=params.sample.seed, sigma_data=params.diffusion.sigma_data,
            )  # fmt: skip
        rows = [check_orbit(real, gen, self.lpips_fn, self.clip_fn) for real, gen in zip(self.truth["orbits"], fake)]
        return {f"probe.{k}": float(np.nanmean([r[k] for r in rows])) for k in CHECKS}


__all__ = [
    "OrbitProbe",
    "border_colours",
    "check_orbit",
    "evaluate_model",
    "held_out_orbits",
    "opposite_view",
    "silhouette_iou",
    "silhouettes",
    "width_correlation",
    "widths",
]
