"""Cascaded cut detection: PySceneDetect detectors fed from the one decoded stream, each at its own frame rate.

Why a cascade (paper, App. C): a detector comparing consecutive frames finds hard cuts exactly but misses gradual
transitions (fades, dissolves), whose per-frame change is small; the same detector on a sub-sampled stream sees the
whole change across a few samples and fires. So level 0 runs at the native rate and places hard cuts to the frame;
coarser levels catch what the finer ones missed, and such a detection marks a gradual transition somewhere inside
the sampling interval that produced it (later refined by trimming, see segment.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scenedetect.common import FrameTimecode
from scenedetect.detector import FlashFilter, SceneDetector
from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector, ThresholdDetector

from svd.config import CutLevel


@dataclass(frozen=True)
class Detection:
    frame: int  # first frame (native index) the detector attributes to the new shot
    level: int  # cascade level that fired (0 = finest)
    stride: int  # that level's sampling stride in native frames: the transition lies in (frame - stride, frame]


def level_stride(level: CutLevel, fps: float) -> int:
    """Native frames between the samples a level sees (fps 0 = every frame)."""
    if level.fps <= 0 or level.fps >= fps:
        return 1
    return max(1, int(round(fps / level.fps)))


class ColourHistogramDetector(SceneDetector):
    """A PySceneDetect detector on HSV colour histograms (total-variation distance between samples).

    Why: per-pixel detectors (content, hash) score a camera pan over a textured background as high as a dissolve,
    because every pixel changes; a colour histogram barely moves under pans, zooms and moving objects but follows
    the mix of two shots. Measured on the world (see README): at 2 fps it separates every transition from every
    within-shot pair, where ContentDetector at any size cannot. Twin-comparison shot detection rests on the same idea.
    """

    def __init__(self, threshold: float = 0.6, min_scene_len: int = 1):
        super().__init__()
        self.threshold = threshold
        self.min_scene_len = min_scene_len
        self._last_hist: np.ndarray | None = None
        self._last_cut: int | None = None
        self.last_score: float | None = None

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        hist = frame_histogram(frame_img, bgr=True)
        cuts: list[FrameTimecode] = []
        if self._last_hist is not None:
            self.last_score = 0.5 * float(np.abs(hist - self._last_hist).sum())
            n = timecode.frame_num
            if self.last_score >= self.threshold and (
                self._last_cut is None or n - self._last_cut >= self.min_scene_len
            ):
                cuts.append(timecode)
                self._last_cut = n
        self._last_hist = hist
        return cuts

    def get_metrics(self) -> list[str]:
        return ["colour_hist_distance"]


def _make_detector(level: CutLevel):
    # Integer min-scene lengths in the level's own samples; SUPPRESS reports a cut when it happens (no look-ahead
    # delay), which keeps the streaming segmenter's finalisation delay known.
    n = level.min_scene_frames
    if level.detector == "content":
        return ContentDetector(threshold=level.threshold, min_scene_len=n, filter_mode=FlashFilter.Mode.SUPPRESS)
    if level.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=level.threshold, min_scene_len=n)
    if level.detector == "histogram":
        return HistogramDetector(threshold=level.threshold, min_scene_len=n)
    if level.detector == "hash":
        return HashDetector(threshold=level.threshold, min_scene_len=n)
    if level.detector == "colour_histogram":
        return ColourHistogramDetector(threshold=level.threshold, min_scene_len=n)
    if level.detector == "threshold":
        return ThresholdDetector(threshold=level.threshold, min_scene_len=n)
    raise ValueError(f"unknown detector {level.detector!r}")


class CutCascade:
    """Feed frames in order with `push`; it returns the detections each level makes on the way."""

    def __init__(self, levels: list[CutLevel], fps: float, short_side: int = 96):
        self.fps = fps
        self.short_side = short_side
        self.levels = list(levels)
        self.strides = [level_stride(level, fps) for level in self.levels]
        self.detectors = [_make_detector(level) for level in self.levels]
        self._level_fps = [fps / s for s in self.strides]
        self._size: tuple[int, int] | None = None

    @property
    def max_delay(self) -> int:
        """Native frames after which a transition's detections are all in (a level may report up to one
        window late: adaptive detectors look ahead a few samples)."""
        return max(s * (lvl.min_scene_frames + 3) for s, lvl in zip(self.strides, self.levels))

    def detector_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) of the frames the detectors see: short side `short_side`."""
        if self._size is None:
            scale = min(1.0, self.short_side / min(height, width))
            self._size = (max(8, int(round(width * scale))), max(8, int(round(height * scale))))
        return self._size

    def push(self, index: int, small_bgr: np.ndarray) -> list[Detection]:
        """Feed the next frame, already at detector size and in BGR (PySceneDetect works in OpenCV's order)."""
        found: list[Detection] = []
        for level, (detector, stride) in enumerate(zip(self.detectors, self.strides)):
            if index % stride:
                continue
            sample = index // stride
            for tc in detector.process_frame(FrameTimecode(sample, fps=self._level_fps[level]), small_bgr):
                found.append(Detection(frame=int(tc.frame_num) * stride, level=level, stride=stride))
        return found

    def flush(self, last_index: int) -> list[Detection]:
        found: list[Detection] = []
        for level, (detector, stride) in enumerate(zip(self.detectors, self.strides)):
            post = getattr(detector, "post_process", None)
            if post is None:
                continue
            tc = FrameTimecode(last_index // stride, fps=self._level_fps[level])
            for cut in post(tc) or []:
                frame = cut.frame_num if hasattr(cut, "frame_num") else int(cut)
                found.append(Detection(frame=int(frame) * stride, level=level, stride=stride))
        return found


@dataclass(frozen=True)
class Boundary:
    frame: int  # first frame of the new shot (before trimming)
    span_start: int  # first frame that may belong to the transition (== frame for a hard cut)
    level: int  # finest level that found it
    gradual: bool  # only coarse levels saw it: a fade or dissolve


def merge_detections(detections: list[Detection], tolerance: int = 2, merge_gap: int = 0) -> list[Boundary]:
    """One boundary per transition. A coarse detection explained by a finer one (within its sampling interval,
    +/- tolerance) is the same transition and is dropped; the rest are gradual transitions spanning their interval.
    Boundaries closer than `merge_gap` frames where one is gradual are one transition (a long fade fires several
    times, and its darkest frames may even trip the finest level): they merge into one span."""
    hard: list[Boundary] = []
    gradual: list[Boundary] = []
    by_level = sorted(detections, key=lambda d: (d.level, d.frame))
    kept: list[Detection] = []
    for det in by_level:
        lo, hi = det.frame - det.stride - tolerance, det.frame + tolerance
        if any(k.level < det.level and lo <= k.frame <= hi for k in kept):
            continue
        if any(k.level == det.level and k.frame == det.frame for k in kept):
            continue
        kept.append(det)
    for det in kept:
        if det.stride == 1:
            hard.append(Boundary(det.frame, det.frame, det.level, False))
        else:
            gradual.append(Boundary(det.frame, max(0, det.frame - det.stride + 1), det.level, True))
    gradual.sort(key=lambda b: b.span_start)
    merged: list[Boundary] = []
    for b in gradual:
        if merged and b.span_start <= merged[-1].frame + 1:
            last = merged[-1]
            merged[-1] = Boundary(max(last.frame, b.frame), last.span_start, min(last.level, b.level), True)
        else:
            merged.append(b)
    out = sorted(hard + merged, key=lambda b: b.frame)
    result: list[Boundary] = []
    for b in out:
        if result and b.span_start <= result[-1].frame + merge_gap and (b.gradual or result[-1].gradual):
            prev = result[-1]
            result[-1] = Boundary(
                max(prev.frame, b.frame), min(prev.span_start, b.span_start), min(prev.level, b.level), True
            )
        else:
            result.append(b)
    return result


@functools.lru_cache(maxsize=4)
def _soft_bin_tables(bins: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """For each HSV channel, lookup tables over its 8-bit values: the two nearest bin centres and their weights.
    OpenCV's 8-bit hue runs 0..179 and is circular; saturation and value run 0..255 and clamp at the ends."""
    tables = []
    for channel, span in enumerate((180.0, 256.0, 256.0)):
        pos = np.arange(256, dtype=np.float64) * bins / span - 0.5  # position in bin-centre units
        low = np.floor(pos)
        upper = (pos - low).astype(np.float32)
        low = low.astype(np.intp)
        pair = (
            (low % bins, (low + 1) % bins)
            if channel == 0
            else (np.clip(low, 0, bins - 1), np.clip(low + 1, 0, bins - 1))
        )
        tables.append((pair[0], pair[1], 1.0 - upper, upper))
    return tables


def frame_histogram(frame: np.ndarray, bins: int = 8, bgr: bool = False) -> np.ndarray:
    """Normalised HSV colour histogram (bins^3) of a small frame: the per-frame signature of the coarse cascade
    levels and of transition trimming. Frames above ~100 px are sub-sampled first (a histogram needs no detail).

    Soft-binned: each pixel's mass is split between the two nearest bin centres of every channel (trilinear, hue
    circular). Why: flat synthetic colours (test cards, the world's backgrounds) often sit on a bin edge, where a
    one-level change from compression noise or a decoder's rounding moved a whole colour bar to the next bin and
    made a static shot look like a transition; with soft bins a one-level change moves 1/32 of a bin's mass."""
    step = max(1, min(frame.shape[:2]) // 48)
    small = frame[::step, ::step]
    hsv = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_BGR2HSV if bgr else cv2.COLOR_RGB2HSV)
    pixels = hsv.reshape(-1, 3)
    corners = []  # per channel: [(lower bin, its weight), (upper bin, its weight)], each per pixel
    for channel, (lower, upper, lower_weight, upper_weight) in enumerate(_soft_bin_tables(bins)):
        value = pixels[:, channel]
        corners.append([(lower[value], lower_weight[value]), (upper[value], upper_weight[value])])
    hist = np.zeros(bins**3, dtype=np.float64)
    for h, wh in corners[0]:
        for s, ws in corners[1]:
            hs, whs = (h * bins + s) * bins, wh * ws
            for v, wv in corners[2]:
                hist += np.bincount(hs + v, weights=whs * wv, minlength=bins**3)
    return (hist / max(hist.sum(), 1.0)).astype(np.float32)


def score_boundaries(
    predicted: list[tuple[int, int]], truth: list[tuple[int, int]], tolerance: int = 2
) -> dict[str, float]:
    """Precision/recall/F1 of detected boundaries against the truth, one-to-one matching.

    Each item is (span_start, frame). A prediction matches a true boundary when its frame is within `tolerance` of
    the true frame, or, for a gradual transition, when it lies inside [span_start - tol, frame + tol] of the truth.
    """
    used: set[int] = set()
    tp = 0
    for _, p_frame in sorted(predicted, key=lambda x: x[1]):
        best, best_dist = None, None
        for i, (t_start, t_frame) in enumerate(truth):
            if i in used:
                continue
            inside = t_start - tolerance <= p_frame <= t_frame + tolerance
            near = abs(p_frame - t_frame) <= tolerance
            if inside or near:
                dist = abs(p_frame - t_frame)
                if best is None or dist < best_dist:
                    best, best_dist = i, dist
        if best is not None:
            used.add(best)
            tp += 1
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "tp": tp,
        "predicted": len(predicted),
        "truth": len(truth),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
