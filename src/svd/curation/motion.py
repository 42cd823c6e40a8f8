"""Motion score: dense optical flow (Farneback) between consecutive samples at 2 fps (paper, App. C).

Per pair of samples: both frames go to grey at `compute_short_side` px on the short side (INTER_AREA), Farneback
gives a dense flow field, the field is downscaled to `flow_short_side` px on the short side (INTER_AREA, as the paper
does: averaging vectors cancels the random-direction flow that noise produces while a pan or a moving object keeps its
direction), and its mean magnitude is taken. The clip's score is the mean over pairs.

Unit (resolution-independent, ours): fraction of the frame's short side moved per second. A pan that crosses the
short side once in 4 s scores 0.25, whatever size the frames were decoded at. Flow vectors are measured in pixels of
the compute size, so dividing by `compute_short_side` and multiplying by the sample rate gives that unit.

Limits (Farneback's, measured): a pan over textured content is measured within ~5% up to ~0.25 short sides/s at
2 fps; faster motion (more than ~1/8 of the frame between samples) saturates and reads low; flat, texture-free
regions read as still (a pan over large flat shapes reads 5-15% low) and a small moving object reads ~0.6-0.8x its
area x speed. Static frames with sensor or compression noise score ~0.001, a slow pan (0.05/s) ~0.05.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from svd.config import Motion


def _size(h: int, w: int, short: int) -> tuple[int, int]:
    """(width, height) with the short side = `short`, aspect kept."""
    scale = short / min(h, w)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def _grey(frame: np.ndarray, short: int) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"motion_score expects RGB frames (H, W, 3), got shape {frame.shape}")
    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    interp = cv2.INTER_AREA if min(h, w) >= short else cv2.INTER_LINEAR
    return cv2.resize(g, _size(h, w, short), interpolation=interp)


def _levels(short: int) -> int:
    # pyramid down to ~8 px on the short side: at 2 fps a fast pan moves tens of percent of the frame per sample
    return max(1, int(np.floor(np.log2(max(short, 8) / 8))) + 1)


def _winsize(short: int) -> int:
    # ~1/4 of the short side (15 px at 64), measured: smaller windows read flat regions of a pan as still (-20%),
    # larger ones average a small moving object into its static surround (x0.3 at 31 px); 15 keeps both within ~-40%
    return max(5, (short // 8) * 2 - 1)


def pair_flow(a: np.ndarray, b: np.ndarray, cfg: Motion) -> np.ndarray:
    """Flow a->b at compute size, downscaled to the flow size: (h, w, 2) in compute-size pixels."""
    flow = cv2.calcOpticalFlowFarneback(
        a,
        b,
        None,
        pyr_scale=0.5,
        levels=_levels(cfg.compute_short_side),
        winsize=_winsize(cfg.compute_short_side),
        iterations=3,
        poly_n=7,
        poly_sigma=1.5,
        flags=0,
    )
    h, w = flow.shape[:2]
    return cv2.resize(flow, _size(h, w, cfg.flow_short_side), interpolation=cv2.INTER_AREA)


def flow_fields(frames: Sequence[np.ndarray], cfg: Motion) -> list[np.ndarray]:
    """The flow field of every consecutive pair of frames sampled at cfg.fps (what the motion score and the camera
    fit, svd.curation.camera, both read)."""
    if len(frames) < 2:
        raise ValueError(f"motion_score needs at least 2 frames sampled at {cfg.fps} fps, got {len(frames)}")
    grey = [_grey(f, cfg.compute_short_side) for f in frames]
    return [pair_flow(a, b, cfg) for a, b in zip(grey[:-1], grey[1:])]


def score_of_fields(fields: Sequence[np.ndarray], cfg: Motion) -> float:
    mags = [float(np.linalg.norm(flow, axis=2).mean()) for flow in fields]
    return float(np.mean(mags)) / cfg.compute_short_side * cfg.fps


def motion_score(frames: Sequence[np.ndarray], cfg: Motion) -> float:
    """Mean optical-flow magnitude of a clip, in short sides per second (see module docstring)."""
    return score_of_fields(flow_fields(frames, cfg), cfg)
