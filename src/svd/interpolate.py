"""`svd interpolate IN.mp4 --out OUT.mp4` and `svd sample --interpolate`: 4x the frame rate with an interpolation
model (svd.tasks.interpolation).

A video of n frames becomes 4n - 3: each pair of consecutive frames is one window [kept, filled x 3, kept] and
neighbouring windows share their kept frame, so no frame appears twice. The kept frames are the input's own pixels
(at the model's size); the filled ones are the model's. The output's rate is 4x the input's.

Inputs the model cannot take as they are, each said in `warnings`:
- a variable-frame-rate file: its frames are first resampled to a constant rate (its mean rate, nearest frame in
  time), so the output plays at a constant 4x that rate;
- an audio stream: dropped (the output holds video only);
- another size or aspect: resized to the model's (svd.io.image.resize_frame);
- a rate the model did not train at: interpolated anyway, as the model's fps id is extrapolated.
A file that is not a video, or holds a single frame, is refused with a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from svd.config import Params
from svd.errors import InputError

RATE = 4  # output frames per input frame interval


def constant_rate(
    frames: list[np.ndarray], times: list[float | None], fps: float
) -> tuple[list[np.ndarray], float, bool]:
    """(frames at a constant rate, that rate, whether the input was variable): a variable-rate stream is resampled to
    its mean rate by taking, at each tick, the frame shown then (the latest one that started at or before it)."""
    from svd.io.video import FrameClock

    clock = FrameClock(times, fps)
    if not clock.variable or len(frames) < 2:
        return frames, float(fps), False
    span = clock.at(len(frames) - 1)
    rate = (len(frames) - 1) / span if span > 0 else float(fps)
    starts = np.asarray([clock.at(i) for i in range(len(frames))])
    ticks = np.arange(int(round(span * rate)) + 1) / rate
    picks = np.clip(np.searchsorted(starts, ticks + 1e-9, side="right") - 1, 0, len(frames) - 1)
    return [frames[i] for i in picks], float(rate), True


def interpolate_frames(
    model: dict[str, Any], frames: np.ndarray, fps: float, *, params: Params, seed: int, steps: int | None = None
) -> np.ndarray:
    """uint8 (4n - 3, H, W, 3) from uint8 (n, H, W, 3) at the model's size (see the module docstring)."""
    from svd.evaluation.image_to_video import to_unit
    from svd.tasks.interpolation import interpolate_pairs

    n = frames.shape[0]
    if n < 2:
        raise InputError(f"interpolation needs at least 2 frames, got {n}")
    meta = model["meta"]
    sampler = params.diffusion.sampler
    filled = interpolate_pairs(
        model["unet"], model["vae"], model["image_encoder"], to_unit(frames[:-1]), to_unit(frames[1:]),
        frames=RATE + 1, steps=steps or int(meta["sample_steps"]), seed=seed, fps=fps * RATE,
        motion_bucket=float(meta["motion_bucket"]), cond_aug=float(meta["cond_aug"]), sigma_min=sampler.sigma_min,
        sigma_max=sampler.sigma_max, rho=sampler.rho, method=sampler.method, sigma_data=params.diffusion.sigma_data,
    )[:, 1:-1]  # fmt: skip
    out = []
    for i in range(n - 1):
        out.append(frames[i])
        out.extend(filled[i])
    out.append(frames[-1])
    return np.stack(out)


def resolve_interpolator(params: Params, ref: str | None) -> Path:
    """The interpolation model folder: `ref` (a folder or models:/NAME@ALIAS) or the pipeline's models/interp."""
    from svd.training.sampling import resolve_model
    from svd.training.stages import MODEL_FILE, read_model, stage_dir

    if ref is None:
        folder = stage_dir(params, "interp")
        if not (folder / MODEL_FILE).is_file():
            raise InputError(
                f"no interpolation model at {folder}: run `svd train --stage interp` (or `make run`), or pass "
                f"--interpolation-model"
            )
    else:
        folder = resolve_model(params, ref)
    kind = read_model(folder)["kind"]
    if kind != "interpolation":
        raise InputError(f"{folder} holds a {kind} model, not an interpolation model")
    return folder


def check_rate(meta: dict, fps: float, warnings: list[str]) -> None:
    if abs(fps * RATE - float(meta["fps"])) > 1e-6:
        warnings.append(
            f"the input's {fps:g} fps becomes {fps * RATE:g} fps; the model trained at {meta['fps']:g} fps out "
            f"({float(meta['fps']) / RATE:g} fps in): other rates extrapolate its fps id"
        )


def interpolate_file(
    params: Params, src: Path, out: Path, *, model: str | None = None, seed: int | None = None,
    steps: int | None = None, scale: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """`svd interpolate`: OUT.mp4 (and a GIF beside it) at 4x the input's rate; the result names what was done."""
    from svd.io.image import resize_frame
    from svd.io.video import VideoReadError, probe, read_timed, write_gif, write_video
    from svd.training.stages import load_model

    src, out = Path(src), Path(out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out {out}: the output must be an .mp4 file")
    if out.resolve() == src.resolve():
        raise InputError(f"--out {out} is the input: write the interpolated video elsewhere")
    try:
        info = probe(src)
        frames, times, has_audio = read_timed(src)
    except VideoReadError as exc:
        raise InputError(f"{src}: {exc}") from None
    if len(frames) < 2:
        raise InputError(f"{src} holds {len(frames)} frame(s): interpolation needs at least 2")
    warnings: list[str] = []
    frames, fps, variable = constant_rate(frames, times, info.fps)
    if variable:
        warnings.append(f"variable frame rate: resampled to a constant {fps:.3f} fps (nearest frame) first")
    if has_audio:
        warnings.append("the input's audio stream is dropped: the output holds video only")
    folder = resolve_interpolator(params, model)
    loaded = load_model(folder)
    meta = loaded["meta"]
    check_rate(meta, fps, warnings)
    size = tuple(meta["size"])
    resized = []
    for f in frames:
        r, notes = resize_frame(f, size)
        resized.append(r)
        if notes and len(resized) == 1:
            warnings.extend(notes)
    video = interpolate_frames(
        loaded, np.stack(resized), fps, params=params, seed=params.sample.seed if seed is None else seed, steps=steps
    )
    big = video.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else video
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, big, fps * RATE)
    write_gif(out.with_suffix(".gif"), big, fps * RATE)
    return {
        "model": str(folder),
        "input": {"path": str(src), "frames": len(times), "fps": info.fps, "variable_rate": variable},
        "output": {
            "mp4": str(out),
            "gif": str(out.with_suffix(".gif")),
            "frames": int(video.shape[0]),
            "fps": fps * RATE,
        },
        "size": list(video.shape[1:3]),
        "warnings": warnings,
    }


__all__ = ["RATE", "constant_rate", "interpolate_file", "interpolate_frames", "resolve_interpolator"]
