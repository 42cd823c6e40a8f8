"""Streaming segmentation: frames in, finished clips out, with memory bounded by the longest clip.

The decoded stream passes through once. Frames wait in a buffer only until the cut cascade can no longer place a
boundary among them (its delay is known); then the shot before the boundary is trimmed of transition frames, split
into clips of at most `max_clip_s`, and handed on with its frames so every annotator reads from this one pass. A shot
longer than `max_clip_s` is emitted piece by piece, so a ten-minute single take never sits in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from svd.config import Cuts
from svd.curation.cuts import Boundary, CutCascade, Detection, frame_histogram, merge_detections
from svd.io.video import ArrayFrame, YuvFrame


class LazyFrames(Sequence):
    """A clip's frames, converted to RGB (H, W, 3) uint8 only when indexed: annotators read a few per clip."""

    def __init__(self, frames: list[YuvFrame | ArrayFrame]):
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [f.rgb() for f in self._frames[item]]
        return self._frames[item].rgb()


@dataclass
class Piece:
    """A clip candidate: frames [start, end) of shot `shot`, with the frames themselves (decode size, RGB)."""

    shot: int
    start: int
    end: int
    frames: LazyFrames = field(repr=False)
    split: bool  # one of several pieces of a shot longer than max_clip_s


@dataclass
class Shot:
    index: int
    start: int  # first clean frame (after trimming)
    end: int  # exclusive, after trimming
    boundary: Boundary | None  # the boundary that opened this shot (None for the first)


class Segmenter:
    def __init__(self, cfg: Cuts, fps: float, cut_short_side: int = 96):
        self.cfg = cfg
        self.fps = fps
        self.cascade = CutCascade(cfg.levels, fps, short_side=cut_short_side)
        self.max_clip = max(2, int(round(cfg.max_clip_s * fps)))
        self.max_trim = max(0, int(round(cfg.max_trim_s * fps)))
        self.merge_gap = int(round(cfg.merge_tolerance_s * fps))
        self.delay = self.cascade.max_delay + self.merge_gap + 2
        self._buffer: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self._detections: list[Detection] = []
        self._open = 0  # first frame of the open (not yet emitted) part of the current shot
        self._open_boundary: Boundary | None = None
        self._shot_started = True  # the open part begins its shot (so its start edge may be trimmed)
        self._shot_index = 0
        self._shot_first = 0  # trimmed start of the current shot
        self._extra_start_trim = 0  # a gradual boundary's span: the shot opens at its start and trims past it
        self._fragment_of: Boundary | None = None
        self.shots: list[Shot] = []
        self.detections: list[Detection] = []
        self.last_index = -1

    def push(self, index: int, frame: YuvFrame | ArrayFrame | np.ndarray) -> list[Piece]:
        self.last_index = index
        if isinstance(frame, np.ndarray):
            frame = ArrayFrame(frame)
        h, w = frame.shape[:2]
        small = frame.bgr(*self.cascade.detector_size(h, w))  # one downscale serves detectors and histogram
        self._buffer.append((index, frame, frame_histogram(small, bgr=True)))
        found = self.cascade.push(index, small)
        self._detections.extend(found)
        self.detections.extend(found)
        return self._drain(final_limit=index - self.delay, at_end=False)

    def finish(self) -> list[Piece]:
        if self.last_index < 0:
            return []
        found = self.cascade.flush(self.last_index)
        self._detections.extend(found)
        self.detections.extend(found)
        return self._drain(final_limit=self.last_index + 1, at_end=True)

    # -- internals -------------------------------------------------------------------------------------------
    def _drain(self, final_limit: int, at_end: bool) -> list[Piece]:
        out: list[Piece] = []
        while True:
            boundaries = [
                b for b in merge_detections(self._detections, merge_gap=self.merge_gap) if b.span_start > self._open
            ]
            nxt = boundaries[0] if boundaries else None
            if nxt is not None and nxt.frame <= final_limit:
                out.extend(self._close_shot(end=max(self._open, nxt.span_start)))
                self._start_shot(nxt)
                continue
            horizon = nxt.span_start if nxt is not None else final_limit
            if horizon - self._open > self.max_clip + self.max_trim and self._open + self.max_clip <= final_limit:
                out.extend(self._emit_piece(self._open, self._open + self.max_clip, trim_start=self._shot_started))
                continue
            if at_end:
                out.extend(self._close_shot(end=self.last_index + 1, final=True))
            return out

    def _frames(self, start: int, end: int) -> LazyFrames:
        return LazyFrames([f for i, f, _ in self._buffer if start <= i < end])

    def _hists(self, start: int, end: int) -> np.ndarray:
        return np.stack([h for i, _, h in self._buffer if start <= i < end])

    def _drop_before(self, frame: int) -> None:
        while self._buffer and self._buffer[0][0] < frame:
            self._buffer.popleft()
        self._detections = [d for d in self._detections if d.frame >= frame - 64]

    def _trim(self, start: int, end: int, trim_start: bool, trim_end: bool) -> tuple[int, int]:
        """Move the edges inwards past frames whose colour histogram is far from the shot's own frames next to the
        edge: the dark or blended frames of a fade or dissolve that the boundary's sampling interval did not cover.
        The reference is the second just past the furthest an edge may move (not the shot's middle), so a zoom
        or pan that slowly changes the colours over the shot is not mistaken for a transition. A shot too short for
        that (both edges may reach its middle) is measured against its steadiest run of frames."""
        n = end - start
        if n < 4 or self.max_trim == 0:
            return start, end
        hists = self._hists(start, end)
        window = max(2, int(round(self.fps)))
        start_limit = min(self.max_trim + self._extra_start_trim, n // 2)
        end_limit = min(self.max_trim, n // 2)

        def distance(ref: np.ndarray) -> np.ndarray:
            return 0.5 * np.abs(hists - ref).sum(axis=1)

        core_lo, core_hi = start_limit, n - end_limit  # frames that neither edge may trim away
        if core_hi - core_lo >= 2:
            start_ref = np.median(hists[core_lo : min(core_hi, core_lo + window)], axis=0)
            end_ref = np.median(hists[max(core_lo, core_hi - window) : core_hi], axis=0)
        else:
            # a short shot: both edges may move past its middle, so a window next to one edge limit would reach into
            # the other edge's transition. Take the steadiest run of frames instead: a fade or dissolve changes the
            # colours frame after frame, the shot's own frames do not.
            run = max(2, min(window, n // 3))
            steps = np.concatenate([[0.0], np.cumsum(0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1))])
            change = steps[run - 1 :] - steps[: n - run + 1]  # total change within each run of `run` frames
            best = int(np.argmin(change))
            start_ref = end_ref = np.median(hists[best : best + run], axis=0)

        s, e = 0, n
        if trim_start:
            dist = distance(start_ref)
            while s < start_limit and dist[s] > self.cfg.trim_threshold:
                s += 1
        if trim_end:
            dist = distance(end_ref)
            while n - e < end_limit and e - 1 > s and dist[e - 1] > self.cfg.trim_threshold:
                e -= 1
        return start + s, start + e

    def _emit_piece(self, start: int, end: int, trim_start: bool) -> list[Piece]:
        s, e = self._trim(start, end, trim_start=trim_start, trim_end=False)
        if self._shot_started:
            self._shot_first = s
        piece = Piece(self._shot_index, s, e, self._frames(s, e), split=True)
        self._shot_started = False
        self._extra_start_trim = 0
        self._open = end
        self._drop_before(end)
        return [piece]

    def _is_fragment(self, s: int, e: int) -> bool:
        """A short run between two boundaries that is itself part of a transition: a long fade or dissolve fires
        several detectors at several moments. Real short shots hold steady content; fragments don't."""
        if self._open_boundary is None or e - s > self.max_trim:
            return False
        if e - s < max(2, self.merge_gap):  # shorter than a flash of 0.25 s: not a shot anyone would keep
            return True
        # drift across the middle half: a fragment keeps changing throughout, while a real short shot may keep a
        # frame or two of the fade that led into it (a fade from black into a dark shot is hard to trim exactly)
        hists = self._hists(s, e)
        quarter = (e - s) // 4
        drift = 0.5 * float(np.abs(hists[quarter] - hists[-1 - quarter]).sum())
        return drift > self.cfg.trim_threshold

    def _close_shot(self, end: int, final: bool = False) -> list[Piece]:
        start = self._open
        out: list[Piece] = []
        if end > start:
            s, e = self._trim(start, end, trim_start=self._shot_started, trim_end=True)
            if self._shot_started and not final and self._is_fragment(s, e):
                self._fragment_of = self._open_boundary  # the next boundary absorbs this one
                return out
            if self._shot_started:
                self._shot_first = s
            out.append(Piece(self._shot_index, s, e, self._frames(s, e), split=not self._shot_started))
            shot_end = e
        else:
            shot_end = start
            if self._shot_started:
                self._shot_first = start
        self.shots.append(Shot(self._shot_index, self._shot_first, shot_end, self._open_boundary))
        self._extra_start_trim = 0
        return out

    def _start_shot(self, boundary: Boundary) -> None:
        # A gradual transition's detections only bound it, so the new shot opens at the span's first frame and
        # trimming walks past the transition frames; a hard cut opens exactly at its frame.
        if self._fragment_of is not None:  # one transition seen as several boundaries: merge them
            first = self._fragment_of
            boundary = Boundary(boundary.frame, boundary.span_start, min(first.level, boundary.level), True)
            self._fragment_of = None
        else:
            self._shot_index += 1
        self._open = boundary.span_start if boundary.gradual else boundary.frame
        self._extra_start_trim = boundary.frame - self._open
        self._open_boundary = boundary
        self._shot_started = True
        self._drop_before(self._open)


def boundary_rows(shots: list[Shot]) -> list[dict]:
    """Detected shot boundaries after trimming: `frame` = first clean frame of the new shot, `span_start` = first
    frame after the previous shot's clean frames; a fade when only coarse levels saw it or trimming removed frames."""
    rows = []
    for prev, shot in zip(shots, shots[1:]):
        b = shot.boundary
        if b is None:
            continue
        span_start = min(prev.end, shot.start)
        gap = shot.start - span_start
        kind = "fade" if (b.gradual or gap >= 3) else "cut"
        rows.append(
            {"frame": shot.start, "span_start": span_start, "kind": kind, "level": b.level, "detected_frame": b.frame}
        )
    return rows
