"""Camera motion from the optical flow the motion score already computes (issue 22): static, pan left, pan right,
zoom in, zoom out, or other, with a confidence.

Per pair of samples (2 fps), the flow field u(p) is fitted by a global camera model about the frame centre c,

    u(p) = t + s (p - c)

(translation t: a pan; isotropic scale s: a zoom; a rotation or a tilt-and-pan mix is left to the residual). The fit
is robust, so an object moving over a panning background does not drag the estimate: t is the median of the field
after the scale is removed, s the median of the radial projection (u - t) . r / |r|^2 over points away from the
centre, repeated twice. Units (like the motion score): t in short sides per second, s as log-zoom per second.

The clip's parameters are the medians over its pairs; the label follows from them (curate.camera thresholds):
- pan: |t_x| above `min_pan` and above both the vertical motion and the zoom's edge speed; film usage, as the world:
  "pan_right" turns the camera right, so the scene slides LEFT on screen (t_x < 0);
- zoom: |s| above `min_zoom` and the zoom's edge speed (|s| x half the short side) above the translation; s > 0
  (flow pointing outward) is "zoom_in";
- static: neither. A moving object on a still camera is static here: its flow is a minority of the field, so the
  medians ignore it;
- other: the dominant motion is vertical (a tilt) or the model explains less than `min_explained` of the flow's
  energy where anything moves (handheld shake, rotation, several motions).

Confidence: for a moving label, the share of flow energy the model explains times how far the winning motion clears
its threshold (saturating at 2x); for static, how far below both thresholds the motion stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

LABELS = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out", "other")


@dataclass(frozen=True)
class CameraFit:
    tx: float  # short sides per second, + = the scene moves right on screen
    ty: float  # short sides per second, + = down
    zoom: float  # log-zoom per second, + = the scene grows (zoom in)
    explained: float  # share of the flow's energy the model explains (1 = all of it; 1 when nothing moves)


@dataclass(frozen=True)
class CameraMotion:
    label: str
    confidence: float
    fit: CameraFit

    def to_row(self) -> dict:
        f = asdict(self.fit)
        return {
            "camera_motion": self.label,
            "camera_confidence": float(self.confidence),
            "camera_pan_x": f["tx"],
            "camera_pan_y": f["ty"],
            "camera_zoom": f["zoom"],
            "camera_explained": f["explained"],
        }


def fit_pair(flow: np.ndarray, centre_frac: float = 0.2) -> tuple[float, float, float, float]:
    """(tx, ty, s, explained) of one flow field (h, w, 2) in pixels per pair, positions in pixels of the same grid;
    s per pixel of distance from the centre."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rx, ry = xs - (w - 1) / 2, ys - (h - 1) / 2
    r2 = rx * rx + ry * ry
    far = r2 > (centre_frac * min(h, w)) ** 2
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    s = 0.0
    tx, ty = float(np.median(u)), float(np.median(v))
    for _ in range(3):  # alternate: scale from what the translation leaves, translation from what the scale leaves
        if far.any():
            s = float(np.median(((u - tx) * rx + (v - ty) * ry)[far] / r2[far]))
        tx, ty = float(np.median(u - s * rx)), float(np.median(v - s * ry))
    ru, rv = u - (tx + s * rx), v - (ty + s * ry)
    total = float(np.mean(u * u + v * v))
    explained = 1.0 if total < 1e-12 else max(0.0, 1.0 - float(np.mean(ru * ru + rv * rv)) / total)
    return tx, ty, s, explained


def fit_clip(fields: Sequence[np.ndarray], compute_short_side: int, fps: float) -> CameraFit:
    """The clip's camera parameters: medians over its pairs' fits, in short sides (and log-zoom) per second.
    `fields`: flow fields as `svd.curation.motion.pair_flow` returns them (vectors in compute-size pixels, on a
    grid downscaled from the compute size)."""
    if not fields:
        raise ValueError("camera motion needs at least one flow field (two sampled frames)")
    rows = []
    for flow in fields:
        h, w = flow.shape[:2]
        grid = compute_short_side / min(h, w)  # compute-size pixels per grid cell
        tx, ty, s, explained = fit_pair(flow)
        # s is per grid cell of distance; a vector of s x d_grid pixels at d_grid cells is s / grid per pixel
        rows.append((tx / compute_short_side * fps, ty / compute_short_side * fps, s / grid * fps, explained))
    tx, ty, zoom, explained = (float(np.median(c)) for c in zip(*rows))
    return CameraFit(tx=tx, ty=ty, zoom=zoom, explained=explained)


def classify(fit: CameraFit, min_pan: float, min_zoom: float, min_explained: float) -> CameraMotion:
    """The label and its confidence from a clip's fit (see the module doc for the rules)."""
    pan, tilt = abs(fit.tx), abs(fit.ty)
    edge = abs(fit.zoom) * 0.5  # the zoom's speed at the short side's edge, in short sides per second
    pan_ratio, zoom_ratio = pan / min_pan, abs(fit.zoom) / min_zoom
    if pan_ratio < 1 and zoom_ratio < 1 and tilt < min_pan:
        return CameraMotion("static", float(1 - max(pan_ratio, zoom_ratio, tilt / min_pan)), fit)
    if fit.explained < min_explained:
        return CameraMotion("other", float(1 - fit.explained), fit)
    if zoom_ratio >= 1 and edge >= max(pan, tilt):
        label, margin = ("zoom_in" if fit.zoom > 0 else "zoom_out"), zoom_ratio
    elif pan_ratio >= 1 and pan >= max(tilt, edge):
        label, margin = ("pan_right" if fit.tx < 0 else "pan_left"), pan_ratio
    else:  # a tilt (vertical pan) leads: not one of the paper's classes
        return CameraMotion("other", float(fit.explained * min(1.0, tilt / min_pan / 2)), fit)
    return CameraMotion(label, float(fit.explained * min(1.0, margin / 2)), fit)


def label_video(frames: Sequence[np.ndarray], fps: float, motion, camera) -> CameraMotion:
    """The camera motion of a video (RGB uint8 frames at `fps`) as curation labels a clip: flow between samples
    at `camera.fps` (svd.curation.motion at `motion`'s sizes), the global fit, the labels (`camera`:
    curate.camera). Used by the annotator and by the camera-LoRA evaluation, on generated videos."""
    from svd.curation.motion import flow_fields

    step = max(1, int(round(fps / camera.fps)))
    fields = flow_fields(list(frames[::step]), motion.model_copy(update={"fps": camera.fps}))
    fit = fit_clip(fields, motion.compute_short_side, fps / step)
    return classify(fit, camera.min_pan, camera.min_zoom, camera.min_explained)


__all__ = ["LABELS", "CameraFit", "CameraMotion", "classify", "fit_clip", "fit_pair", "label_video"]
