"""Frame interpolation on the world's held-aside clips (issue 22), called from above training after the interp stage.

Each held-aside clip (16 frames at 8 fps, at the model's size) keeps every `gap`-th frame; the model fills the three
frames between each pair of kept frames (at 1/4, 2/4 and 3/4 of the way; gap 4: the dropped frames themselves; gap
8: frames 2, 4 and 6 of each 8), conditioned on the rate those frames make (8 fps at gap 4, 4 fps at gap 8).

Judged where a latent model can be judged fairly, and beside three answers that need no model:
- `region`: PSNR against the VAE's round trip of the true frames, inside the moving object's region (its colour
  masks, svd.evaluation.world, over the whole window from one kept frame to the next, united and dilated by
  REGION_DILATE_PX); the baselines start from the round-tripped kept frames, as the model's frames pass the VAE;
- `frame`: PSNR of the whole frame against the raw frames (the VAE's own round trip sits beside it: the ceiling of
  a latent model); the baselines start from the raw kept frames;
- baselines: `blend` (linear blending of the kept frames), `flow` (OpenCV Farneback flow between them, both
  directions, each kept frame warped to the frame's time with the linear-motion approximation of Super SloMo, then
  blended), and `offset` (the true frame one step before: a model one frame late).
On the default world's 128 clips at gap 4 (no model needed) this protocol gives region: blend 22.4, offset 21.5, flow
31.3 dB; frame: round trip 25.5, blend 27.4 dB: the issue's reference (22.2 / 21.3 / 30.6; 25.2 / 27.3). At gap 8
flow warping falls to 18.4 dB in the region, blending to 17.8.
Each score is pooled per clip (MSE over its filled frames, then dB) and carries a bootstrap interval over the clips;
the model's lead over blending is a paired interval. The goal (the issue's): region >= blending + `goal_db` at gap 4.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svd.config import Params
from svd.errors import InputError
from svd.evaluation.image_to_video import held_aside, roundtrip, to_unit
from svd.evaluation.intervals import mean_interval, paired_mean_difference

CLIP_FRAMES = 16  # the held-aside clips' length at their own 8 fps
CLIP_FPS = 8.0
FILLED = 3  # frames the model fills between two kept frames (4x the rate)
REGION_DILATE_PX = 4  # the object's window region grows by this (40x64 frames; the reference numbers)
FARNEBACK = dict(pyr_scale=0.5, levels=6, winsize=21, iterations=8, poly_n=7, poly_sigma=1.5, flags=0)
# ^ 40x64 frames whose objects move 15-25 px between kept frames at gap 4: a 9-px window finds 23 dB, this 30 dB


def _mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is None:
        return float(d.mean())
    m = np.broadcast_to(mask[..., None], d.shape)
    return float(d[m].mean()) if m.any() else float("nan")


def _db(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def flow_interpolate(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The frame at time t in (0, 1) between uint8 frames a and b: Farneback flow both ways, the intermediate flows by
    Super SloMo's linear-motion approximation (F_t0 = -(1-t) t F_01 + t^2 F_10, F_t1 = (1-t)^2 F_01 - t (1-t) F_10),
    each end backward-warped to t and blended by closeness in time."""
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    f01 = cv2.calcOpticalFlowFarneback(ga, gb, None, **FARNEBACK)
    f10 = cv2.calcOpticalFlowFarneback(gb, ga, None, **FARNEBACK)
    ft0 = -(1 - t) * t * f01 + t * t * f10
    ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
    h, w = ga.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def warp(img, f):
        return cv2.remap(img, xs + f[..., 0], ys + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    out = (1 - t) * warp(a, ft0).astype(np.float64) + t * warp(b, ft1).astype(np.float64)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def windows(gap: int, n: int = CLIP_FRAMES) -> list[tuple[int, int, list[int]]]:
    """(kept start, kept end, the true frames the filled ones land on) of every pair of kept frames."""
    if gap % (FILLED + 1):
        raise ValueError(f"gap must be a multiple of {FILLED + 1} (filled frames land on true frames), got {gap}")
    step = gap // (FILLED + 1)
    return [(k, k + gap, [k + step * j for j in range(1, FILLED + 1)]) for k in range(0, n - gap, gap)]


def region_masks(video: np.ndarray, colour: str, start: int, end: int) -> np.ndarray:
    """(H, W) bool: the object's colour masks over frames start..end, united, dilated by REGION_DILATE_PX."""
    from svd.evaluation.world import colour_mask

    union = colour_mask(video[start : end + 1], colour).any(axis=0).astype(np.uint8)
    kernel = np.ones((2 * REGION_DILATE_PX + 1, 2 * REGION_DILATE_PX + 1), np.uint8)
    return cv2.dilate(union, kernel) > 0


def baselines(videos: np.ndarray, gap: int) -> dict[str, np.ndarray]:
    """Per method but the model: (N, pairs, FILLED, H, W, 3) uint8 guesses from the kept frames of `videos`."""
    out = {m: [] for m in ("blend", "flow", "offset")}
    for clip_rt in videos:
        per = {m: [] for m in out}
        for s, e, targets in windows(gap):
            ts = [(j - s) / (e - s) for j in targets]
            a, b = clip_rt[s], clip_rt[e]
            per["blend"].append(
                [np.clip((1 - t) * a + t * b.astype(np.float64) + 0.5, 0, 255).astype(np.uint8) for t in ts]
            )
            per["flow"].append([flow_interpolate(a, b, t) for t in ts])
            per["offset"].append([clip_rt[j - 1] for j in targets])
        for m in out:
            out[m].append(per[m])
    return {m: np.asarray(v, dtype=np.uint8) for m, v in out.items()}


def score(
    real: np.ndarray,
    rt: np.ndarray,
    colours: list[str],
    guesses: dict[str, np.ndarray],
    gap: int,
    raw_guesses: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per method, per clip: region PSNR (`guesses` vs the round trip, in the object's window region) and frame PSNR
    (`raw_guesses`, default `guesses`, vs the raw frames)."""
    raw_guesses = {**guesses, **(raw_guesses or {})}
    out: dict[str, dict[str, list[float]]] = {m: {"region": [], "frame": []} for m in guesses}
    out["roundtrip"] = {"frame": []}
    pairs = windows(gap)
    for i, colour in enumerate(colours):
        targets = [j for _, _, js in pairs for j in js]
        masks = np.stack([region_masks(real[i], colour, s, e) for s, e, js in pairs for _ in js])
        truth_rt, truth = rt[i][targets], real[i][targets]
        for m, g in guesses.items():
            filled = g[i].reshape(-1, *g.shape[-3:])
            raw = raw_guesses[m][i].reshape(-1, *g.shape[-3:])
            out[m]["region"].append(_db(_mse(filled, truth_rt, masks)))
            out[m]["frame"].append(_db(_mse(raw, truth)))
        out["roundtrip"]["frame"].append(_db(_mse(truth_rt, truth)))
    return {m: {k: np.asarray(v) for k, v in d.items()} for m, d in out.items()}


def evaluate_model(params: Params, folder: Path, *, model: dict | None = None) -> dict[str, Any]:
    """The module docstring's checks of the interpolation model in `folder`; samples of the first clips (the filled
    frames between kept ones, beside the truth) go to folder/samples/."""
    from svd.tasks.interpolation import interpolate_pairs
    from svd.training.stages import load_model, write_samples

    started = time.perf_counter()
    folder = Path(folder)
    model = model or load_model(folder)
    meta = model["meta"]
    if meta["kind"] != "interpolation":
        raise InputError(f"{folder} holds a {meta['kind']} model; this evaluation is for interpolation models")
    ecfg = params.evaluate.interpolation
    sampler = params.diffusion.sampler
    real_set = held_aside(params, CLIP_FRAMES, CLIP_FPS, tuple(meta["size"]), ecfg.clips_per_class)
    real, colours = real_set["videos"], real_set["colours"]
    rt = np.stack([roundtrip(model["vae"], clip) for clip in real])
    out: dict[str, Any] = {"clips": len(real), "goal_db": ecfg.goal_db}
    for gap in ecfg.gaps:
        pairs = windows(gap)
        starts = np.stack([clip[s] for clip in real for s, _, _ in pairs])
        ends = np.stack([clip[e] for clip in real for _, e, _ in pairs])
        fps = CLIP_FPS * (FILLED + 1) / gap  # the rate of the window the model fills
        filled = interpolate_pairs(
            model["unet"], model["vae"], model["image_encoder"], to_unit(starts), to_unit(ends),
            frames=FILLED + 2, steps=int(meta["sample_steps"]), seed=ecfg.seed, fps=fps,
            motion_bucket=float(meta["motion_bucket"]), cond_aug=float(meta["cond_aug"]),
            sigma_min=sampler.sigma_min, sigma_max=sampler.sigma_max, rho=sampler.rho, method=sampler.method,
            sigma_data=params.diffusion.sigma_data,
        )[:, 1:-1]  # fmt: skip
        guesses = {"model": filled.reshape(len(real), len(pairs), FILLED, *filled.shape[-3:])}
        guesses.update(baselines(rt, gap))
        scores = score(real, rt, colours, guesses, gap, raw_guesses=baselines(real, gap))
        rounds, seed = ecfg.bootstrap, ecfg.seed
        g: dict[str, Any] = {"fps": fps}
        for method, kinds in scores.items():
            g[method] = {k: mean_interval(v, rounds=rounds, seed=seed) for k, v in kinds.items()}
        g["model_minus_blend"] = {
            k: paired_mean_difference(scores["model"][k], scores["blend"][k], rounds=rounds, seed=seed)
            for k in ("region", "frame")
        }
        g["met"] = float(g["model_minus_blend"]["region"]["diff"] >= ecfg.goal_db)
        out[f"gap{gap}"] = g
        # the first clips' windows: kept, filled, kept (the model's), above the truth
        n = min(4, len(real))
        rows = []
        for i in range(n):
            s, e, js = pairs[0]
            model_row = [real[i][s], *guesses["model"][i, 0], real[i][e]]
            rows += [np.stack(model_row), real[i][s : e + 1 : gap // (FILLED + 1)]]
        write_samples(
            folder / "samples" / f"gap{gap}",
            np.stack(rows),
            [f"{lab} {j}" for j in range(n) for lab in ("model", "truth")],
            fps,
        )
    out["seconds"] = time.perf_counter() - started
    return out


__all__ = ["baselines", "evaluate_model", "flow_interpolate", "region_masks", "score", "windows"]
