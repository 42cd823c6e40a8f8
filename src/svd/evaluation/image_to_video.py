"""The image-to-video checks (issue 18), on the world's held-aside action clips (never training clips): each clip's
first frame conditions the model, the rest is the real continuation. Everything is judged at the model's own size,
frames and fps; the held-aside clips (64x64) are resized to it like diffusers' pipeline resizes a conditioning image
of another aspect (bilinear, antialiased, no crop).

- fidelity: PSNR of each sample's frame 0 against the conditioning frame, beside the VAE's own round trip of that
  frame (the ceiling of a latent model); the gap must stay within `max_gap_db`.
- identity: the clip's object (its colour mask, svd.evaluation.world's rules) is one blob in every frame, never
  split or gone, and its centroid never jumps more than a quarter of the frame between consecutive frames; share of
  samples that pass, at the model's default motion bucket.
- motion control: `motion_clips` clips sampled at `motion_buckets` buckets spread over the 5th-95th percentile of
  the buckets training saw; motion is measured by curation's own annotator (Farneback, short sides per second, the
  measure the buckets are made from); Spearman rho between bucket and mean motion, and lowest / highest.
- better than the trivial answers: FVD (the project's extractor, evaluate.fvd) of the samples and of the
  conditioning frame repeated (a still video) against the real continuations, with a paired bootstrap interval of the
  difference; and the scene: PSNR outside the object's masks (the conditioning frame's and each frame's, dilated)
  against the conditioning frame, beside the VAE round trip's, and beside a text-to-video sample of the same caption
  (which knows nothing of the scene and must score far lower).
Every mean carries a seeded bootstrap interval over the samples (evaluate.image_to_video.bootstrap) as `lo` / `hi`;
each goal's verdict is `met` (1 or 0), so the metrics file holds numbers only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from svd.config import Params
from svd.errors import InputError
from svd.evaluation.intervals import bootstrap, mean_interval

DILATE_PX = 2  # object masks grow by this before the scene is judged outside them (anti-aliased edges, blur)


# ---------------------------------------------------------------- data
def held_aside(
    params: Params, frames: int, fps: float, size: tuple[int, int], per_class: int | None = None
) -> dict[str, Any]:
    """The world's eval action clips at (frames, fps, size): uint8 videos (N, T, H, W, 3), colours, captions; the
    first `per_class` clips of each class when given (the FVD real set grows without growing these checks)."""
    import pandas as pd

    from svd.evaluation.ucf101 import read_clip, resize_video, stride_for

    world = Path(params.paths.world)
    table = world / "eval" / "actions.parquet"
    if not table.is_file():
        raise InputError(f"no held-aside clips at {table}: run `svd world` first")
    videos, colours, captions, files = [], [], [], []
    rows = pd.read_parquet(table)
    if per_class is not None:
        rows = rows.groupby("class_name", sort=False).head(per_class)
    for row in rows.itertuples():
        stride = stride_for(float(row.fps), fps)
        try:
            clip = read_clip(world / row.file, frames, stride)
        except InputError:
            continue  # too short for this frame count: the others are still scored
        videos.append(resize_video(clip, size))
        colours.append(row.colour)
        captions.append(row.class_name)
        files.append(row.file)
    if not videos:
        raise InputError(f"no held-aside clip of {table} holds {frames} frames at {fps:g} fps")
    return {"videos": np.stack(videos), "colours": colours, "captions": captions, "files": files}


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def roundtrip(vae, frames: np.ndarray) -> np.ndarray:
    """uint8 frames through the VAE (encode mean, decode): what a perfect latent model could give back."""
    from svd.models.vae import decode, encode
    from svd.training.denoiser import to_uint8

    return to_uint8(decode(vae, encode(vae, to_unit(frames)))[:, None]).numpy()[:, 0]


# ---------------------------------------------------------------- per-sample measures
def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (peak 255) of uint8 images/videos, over the pixels where `mask` (broadcast over channels) holds."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        m = np.broadcast_to(mask[..., None], d.shape)
        if not m.any():
            return float("nan")
        mse = float(d[m].mean())
    else:
        mse = float(d.mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def object_masks(video: np.ndarray, colour: str) -> np.ndarray:
    """(T, H, W) bool: the named colour's pixels, dilated by DILATE_PX."""
    from svd.evaluation.world import colour_mask

    kernel = np.ones((2 * DILATE_PX + 1, 2 * DILATE_PX + 1), np.uint8)
    masks = colour_mask(video, colour)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


def identity(video: np.ndarray, colour: str) -> dict[str, Any]:
    """One blob of `colour` in every frame (blobs under the world evaluator's minimum area are specks, not objects),
    and no centroid jump over a quarter of the frame between consecutive frames."""
    from svd.evaluation.world import _min_area, colour_mask

    masks = colour_mask(video, colour)
    t, h, w = masks.shape
    need = _min_area(h, w)
    counts, cents = [], []
    for m in masks:
        n, _, stats, c = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= need]
        counts.append(len(big))
        cents.append(c[big[0]] if len(big) == 1 else (np.nan, np.nan))
    cents = np.asarray(cents, np.float64)
    steps = np.abs(np.diff(cents, axis=0)) / np.array([w / 4, h / 4])
    jump = float(np.nanmax(steps)) if np.isfinite(steps).any() else float("nan")
    one_blob = all(c == 1 for c in counts)
    return {
        "ok": bool(one_blob and jump <= 1.0),
        "one_blob": bool(one_blob),
        "missing_frames": counts.count(0),
        "split_frames": sum(c > 1 for c in counts),
        "max_jump_quarters": jump,
    }


def scene_psnr(video: np.ndarray, cond: np.ndarray, colour: str) -> float:
    """PSNR of every frame against the conditioning frame outside the object (its mask in the conditioning frame and
    in that frame, dilated), pooled over the frames."""
    cond_mask = object_masks(cond[None], colour)[0]
    outside = ~(object_masks(video, colour) | cond_mask[None])
    return psnr(video, np.broadcast_to(cond, video.shape), outside)


def measured_motion(video: np.ndarray, fps: float, motion_cfg) -> float:
    """Curation's motion score (Farneback, short sides per second) of a sample at its own frame rate."""
    from svd.curation.motion import motion_score

    return motion_score(list(video), motion_cfg.model_copy(update={"fps": float(fps)}))


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


# ---------------------------------------------------------------- the evaluation
def _fvd(params: Params, real: np.ndarray, fake: np.ndarray, still: np.ndarray, ecfg) -> dict[str, Any] | None:
    """FVD of the samples and of the still video against the real continuations, with the paired interval of the
    difference (clips resampled on all three sides). None when no extractor is configured or found."""
    from svd.errors import WeightsError
    from svd.evaluation.fvd import _resampled_fd, frechet_distance, load_extractor

    try:
        extractor = load_extractor(params.evaluate.fvd)
    except (WeightsError, InputError, FileNotFoundError) as exc:
        return {"skipped": f"no FVD extractor ({str(exc)[:120]})"}
    k = params.evaluate.fvd.frames
    if real.shape[1] < k:
        return {"skipped": f"the model makes {real.shape[1]} frames; the FVD extractor reads {k} (evaluate.fvd.frames)"}
    feats = [extractor.features_of(v[:, :k]) for v in (real, fake, still)]
    r, f, s = feats
    n = len(r)

    def diff(idx: np.ndarray) -> float:
        return frechet_distance(r[idx], f[idx]) - frechet_distance(r[idx], s[idx])

    def spread(fake: np.ndarray) -> dict[str, float]:  # each FVD's own interval, on the same resampled clips
        ci = bootstrap(
            lambda idx: _resampled_fd(r[idx], fake[idx]), n, rounds=ecfg.bootstrap, seed=ecfg.seed,
            confidence=ecfg.confidence,
        )  # fmt: skip
        return {"lo": ci["lo"], "hi": ci["hi"]} if ci else {}

    value = frechet_distance(r, f)
    baseline = frechet_distance(r, s)
    interval = bootstrap(diff, n, rounds=ecfg.bootstrap, seed=ecfg.seed, confidence=ecfg.confidence)
    return {
        "samples": value,
        "samples_interval": spread(f),
        "still": baseline,
        "still_interval": spread(s),
        "difference": {"mean": value - baseline, **(interval or {})},
        "met": float(interval is not None and interval["hi"] < 0),
        "extractor": extractor.description,
    }


def _t2v_scene(params: Params, real: dict, cond: np.ndarray, size: tuple[int, int], ecfg) -> dict[str, Any] | None:
    """Scene PSNR of the newest text-to-video model's samples for the first `t2v_clips` clips' captions (the model
    that does not see the frame): the number the image-to-video model must beat."""
    from svd.evaluation.ucf101 import resize_video
    from svd.tasks.text_to_video import generate as t2v_generate
    from svd.training.sampling import newest_video_model
    from svd.training.stages import load_model

    try:
        folder = newest_video_model(params)
    except InputError:
        return None
    model = load_model(folder)
    meta = model["meta"]
    k = min(ecfg.t2v_clips, len(cond))
    videos = t2v_generate(
        model["unet"],
        model["vae"],
        model["text"],
        real["captions"][:k],
        latent_size=tuple(meta["latent_size"]),
        num_frames=real["videos"].shape[1],
        steps=params.sample.steps,
        guidance=params.sample.guidance,
        seed=ecfg.seed,
        fps=meta["fps"],
        motion_bucket=meta["motion_bucket"],
        sigma_data=params.diffusion.sigma_data,
    )
    videos = np.stack([resize_video(v, size) for v in videos])
    values = [scene_psnr(v, c, colour) for v, c, colour in zip(videos, cond[:k], real["colours"][:k])]
    return {
        "model": str(folder),
        "clips": k,
        **mean_interval(values, rounds=ecfg.bootstrap, seed=ecfg.seed, confidence=ecfg.confidence),
    }


def evaluate_model(params: Params, folder: Path, *, model: dict | None = None) -> dict[str, Any]:
    """Every check of the module docstring for the image-to-video model in `folder`; samples of the first clips are
    written to folder/samples/ (mp4 + GIF) and the per-sample table to folder/samples/i2v_eval.parquet."""
    import pandas as pd

    from svd.tasks.image_to_video import generate
    from svd.training.stages import load_model, write_samples

    started = time.perf_counter()
    folder = Path(folder)
    model = model or load_model(folder)
    meta = model["meta"]
    if meta["kind"] != "image-to-video":
        raise InputError(f"{folder} holds a {meta['kind']} model; this evaluation is for image-to-video models")
    ecfg = params.evaluate.image_to_video
    sampler = params.diffusion.sampler
    size = tuple(meta["size"])
    try:
        real = held_aside(params, meta["frames"], meta["fps"], size, ecfg.clips_per_class)
    except InputError as exc:  # e.g. a 25-frame model and the world's 2-s clips: say so, the model is still written
        return {"skipped": str(exc)}
    videos = real["videos"]
    n_clips, frames = videos.shape[:2]
    cond = videos[:, 0]

    def sample(images: np.ndarray, buckets, seed: int) -> np.ndarray:
        return generate(
            model["unet"],
            model["vae"],
            model["image_encoder"],
            to_unit(images),
            num_frames=frames,
            steps=meta["sample_steps"],
            guidance=tuple(meta["guidance"]),
            seed=seed,
            fps=meta["fps"],
            motion_bucket=buckets,
            cond_aug=meta["cond_aug"],
            sigma_min=sampler.sigma_min,
            sigma_max=sampler.sigma_max,
            rho=sampler.rho,
            method=sampler.method,
            sigma_data=params.diffusion.sigma_data,
        )

    reps = ecfg.samples_per_clip
    clip_of = np.repeat(np.arange(n_clips), reps)
    gen = sample(cond[clip_of], float(meta["motion_bucket"]), ecfg.seed)
    rt = roundtrip(model["vae"], cond)
    colours = [real["colours"][i] for i in clip_of]
    rows = []
    for j, (video, i) in enumerate(zip(gen, clip_of)):
        ident = identity(video, colours[j])
        rows.append(
            {
                "clip": real["files"][i],
                "caption": real["captions"][i],
                "sample": j,
                "psnr_frame0": psnr(video[0], cond[i]),
                "psnr_roundtrip": psnr(rt[i], cond[i]),
                "scene_psnr": scene_psnr(video, cond[i], colours[j]),
                "scene_psnr_roundtrip": scene_psnr(rt[i][None], cond[i], colours[j]),
                "identity": ident["ok"],
                "split_frames": ident["split_frames"],
                "missing_frames": ident["missing_frames"],
                "max_jump_quarters": ident["max_jump_quarters"],
                "motion": measured_motion(video, meta["fps"], params.curate.motion),
            }
        )
    table = pd.DataFrame(rows)
    boot = {"rounds": ecfg.bootstrap, "seed": ecfg.seed, "confidence": ecfg.confidence}
    gap = (table["psnr_roundtrip"] - table["psnr_frame0"]).to_numpy()
    scene_gap = (table["scene_psnr_roundtrip"] - table["scene_psnr"]).to_numpy()
    result: dict[str, Any] = {
        "clips": int(n_clips),
        "samples": int(len(table)),
        "frames": int(frames),
        "fps": float(meta["fps"]),
        "size": list(size),
        "motion_bucket": float(meta["motion_bucket"]),
        "fidelity": {
            "psnr_frame0": float(table["psnr_frame0"].mean()),
            "psnr_roundtrip": float(table["psnr_roundtrip"].mean()),
            "gap_db": mean_interval(gap, **boot),
            "met": float(gap.mean() <= ecfg.max_gap_db),
        },
        "identity": {
            **mean_interval(table["identity"].to_numpy(), **boot),
            "met": float(table["identity"].mean() >= ecfg.identity_goal),
        },
        "scene": {
            "psnr": mean_interval(table["scene_psnr"].to_numpy(), **boot),
            "psnr_roundtrip": float(table["scene_psnr_roundtrip"].mean()),
            "gap_db": mean_interval(scene_gap, **boot),
            "met": float(scene_gap.mean() <= ecfg.max_gap_db),
        },
    }
    result["fvd"] = _fvd(params, videos, gen[::reps], np.repeat(cond[:, None], frames, axis=1), ecfg)

    # motion control: the same clips at buckets spread over what training saw
    pct = meta.get("motion_percentiles")  # [5th, 50th, 95th] of the buckets training saw
    lo, hi = (pct[0], pct[-1]) if pct else (0.0, 255.0)
    buckets = np.linspace(float(lo), float(hi), ecfg.motion_buckets).round()
    picks = np.linspace(0, n_clips - 1, min(ecfg.motion_clips, n_clips)).round().astype(int)
    sweep = sample(np.tile(cond[picks], (len(buckets), 1, 1, 1)), np.repeat(buckets, len(picks)), ecfg.seed)
    motion = np.array([measured_motion(v, meta["fps"], params.curate.motion) for v in sweep])
    per_bucket = motion.reshape(len(buckets), len(picks)).mean(axis=1)
    rho = spearman(buckets, per_bucket)
    ratio = float(per_bucket[0] / per_bucket[-1]) if per_bucket[-1] > 0 else float("nan")

    def rho_of(idx: np.ndarray) -> float:  # clips resampled, every bucket keeps its clips' pairing
        m = motion.reshape(len(buckets), len(picks))[:, idx].mean(axis=1)
        return spearman(buckets, m)

    result["motion"] = {
        "buckets": buckets.tolist(),
        "mean_motion": per_bucket.tolist(),
        "spearman": {
            "value": rho,
            **(bootstrap(rho_of, len(picks), rounds=ecfg.bootstrap, seed=ecfg.seed, confidence=ecfg.confidence) or {}),
        },
        "low_high_ratio": ratio,
        "clips": int(len(picks)),
        "real_motion": float(np.mean([measured_motion(v, meta["fps"], params.curate.motion) for v in videos])),
        "met": float(rho >= ecfg.spearman_goal and ratio <= ecfg.low_high_ratio),
    }
    if ecfg.t2v_clips:
        t2v = _t2v_scene(params, real, cond, size, ecfg)
        if t2v is not None:  # compared on the same clips (the first samples of the first t2v_clips clips)
            same = table[(table["sample"] % reps == 0) & (table["sample"] // reps < t2v["clips"])]["scene_psnr"]
            result["scene"]["t2v_psnr"] = t2v
            result["scene"]["beats_t2v"] = float(same.mean() > t2v["mean"])

    out = folder / "samples"
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "i2v_eval.parquet", index=False)
    show = min(8, len(gen))
    write_samples(
        out,
        np.concatenate([cond[clip_of[:show], None], gen[:show]], axis=1),
        [f"{real['captions'][i]} (first frame, then the sample)" for i in clip_of[:show]],
        meta["fps"],
    )
    result["seconds"] = time.perf_counter() - started
    return result


__all__ = [
    "evaluate_model",
    "held_aside",
    "identity",
    "measured_motion",
    "object_masks",
    "psnr",
    "roundtrip",
    "scene_psnr",
    "spearman",
]
