"""Long web-like videos: several shots joined by hard cuts or fades, streamed straight into an mp4, plus the truth.

Frame layout of one video (0-based display order, end-exclusive ranges):
    shot 0 clean [s0, e0) | transition span [e0, f1) | shot 1 clean [f1, e1) | ...
A cut has an empty span (f1 == e0). In a fade, the span's frames mix the end of the previous shot (rendered past
its clean frames) with the start of the next (rendered before its clean frames) and belong to no shot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svd.config import World
from svd.io.video import VideoWriter
from svd.world.render import ShotRenderer
from svd.world.scene import BG_COLOURS, ShotSpec, sample_shot, solo_shot

STREAM_VIDEO = 1  # rng stream ids, so adding a sampling step elsewhere never shifts another stream
STREAM_SOLO = 3  # (2 is generate.STREAM_ALT)


@dataclass(frozen=True)
class Transition:
    kind: str  # cut / fade
    style: str  # cut / fade_black / dissolve
    length: int  # frames in the span (0 for a cut)


@dataclass(frozen=True)
class VideoPlan:
    name: str
    width: int
    height: int
    fps: int
    shots: tuple[ShotSpec, ...]
    transitions: tuple[Transition, ...]  # transitions[i] joins shots[i] and shots[i + 1]

    def layout(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
        """(clean [start, end) per shot, (span_start, frame) per transition, total frames)."""
        shots, spans, pos = [], [], 0
        for i, spec in enumerate(self.shots):
            shots.append((pos, pos + spec.n_frames))
            pos += spec.n_frames
            if i < len(self.transitions):
                spans.append((pos, pos + self.transitions[i].length))
                pos += self.transitions[i].length
        return shots, spans, pos


def plan_video(cfg: World, seed: int, index: int) -> VideoPlan:
    rng = np.random.default_rng([seed, STREAM_VIDEO, index])
    width, height = (int(v) for v in cfg.sizes[rng.integers(len(cfg.sizes))])
    fps = int(cfg.fps[rng.integers(len(cfg.fps))])
    lo, hi = cfg.shots_per_video
    n_shots = int(rng.integers(lo, hi + 1))
    lengths = []
    for _ in range(n_shots):
        secs = (
            rng.uniform(*cfg.short_shot_seconds)
            if rng.random() < cfg.short_shot_prob
            else rng.uniform(*cfg.shot_seconds)
        )
        lengths.append(max(3, int(round(secs * fps))))
    transitions = []
    for _ in range(n_shots - 1):
        if rng.random() < cfg.fade_prob:
            length = max(2, int(round(rng.uniform(*cfg.fade_seconds) * fps)))
            transitions.append(Transition("fade", "fade_black" if rng.random() < 0.5 else "dissolve", length))
        else:
            transitions.append(Transition("cut", "cut", 0))
    shots: list[ShotSpec] = []
    for i, n in enumerate(lengths):
        pre = transitions[i - 1].length if i > 0 else 0
        post = transitions[i].length if i < len(transitions) else 0
        avoid = shots[-1].background.colours if shots else ()
        shots.append(
            sample_shot(
                rng,
                width,
                height,
                fps,
                n,
                pre,
                post,
                cfg.static_prob,
                cfg.text_prob,
                cfg.low_quality_prob,
                avoid_bg=avoid,
            )
        )
    return VideoPlan(f"v{index:04d}", width, height, fps, tuple(shots), tuple(transitions))


def plan_solo(cfg: World, seed: int, index: int) -> VideoPlan:
    """A one-shot video (cfg.solo): one object crossing the frame's centre mid-shot on a plain tone. Its first frame
    is a keyframe, so the curated clip starts where the shot does and every window shows a centred track."""
    solo = cfg.solo
    unknown = [t for t in solo.tones if t not in BG_COLOURS]
    if unknown:
        raise ValueError(f"world.solo.tones: unknown {unknown}; known: {', '.join(BG_COLOURS)}")
    rng = np.random.default_rng([seed, STREAM_SOLO, index])
    width, height = (int(v) for v in cfg.sizes[rng.integers(len(cfg.sizes))])
    fps = int(cfg.fps[rng.integers(len(cfg.fps))])
    n = max(3, int(round(rng.uniform(*solo.seconds) * fps)))
    spec = solo_shot(rng, width, height, fps, n, solo.tones, solo.centre_spread, solo.size_frac, solo.speed_frac)
    return VideoPlan(f"s{index:04d}", width, height, fps, (spec,), ())


def plan_named(cfg: World, seed: int, name: str) -> VideoPlan:
    """The plan of the video `name` of the world (v0003: a long video, s0003: a solo one)."""
    kind, index = name[0], int(name[1:])
    if kind == "v":
        return plan_video(cfg, seed, index)
    if kind == "s":
        return plan_solo(cfg, seed, index)
    raise ValueError(f"not a world video name: {name!r}")


def _blend(a: np.ndarray | None, wa: float, b: np.ndarray | None, wb: float, shape) -> np.ndarray:
    acc = np.zeros(shape, np.float32)
    if a is not None and wa > 0:
        acc += a.astype(np.float32) * wa
    if b is not None and wb > 0:
        acc += b.astype(np.float32) * wb
    return np.clip(acc + 0.5, 0, 255).astype(np.uint8)


def fade_weights(style: str, j: int, length: int) -> tuple[float, float]:
    """Weights of the outgoing and incoming shot in frame j of a fade span; never (1, 0) or (0, 1)."""
    if style == "dissolve":
        s = (j + 1) / (length + 1)
        return 1.0 - s, s
    # fade through black: out over the first frames, one fully black frame at (length - 1) // 2, then in
    black = (length - 1) // 2
    if j < black:
        return 1.0 - (j + 1) / (black + 1), 0.0
    if j == black:
        return 0.0, 0.0
    return 0.0, (j - black) / (length - black)


def render_video(plan: VideoPlan, path: Path, gop: int, crf: int) -> tuple[int, list[float]]:
    """Stream the plan into an mp4; returns (frames written, text_area per shot)."""
    shape = (plan.height, plan.width, 3)
    areas: list[float] = []
    with VideoWriter(path, plan.fps, gop=gop, crf=crf) as writer:
        current = ShotRenderer(plan.shots[0])
        for i, spec in enumerate(plan.shots):
            areas.append(current.text_area)
            for k in range(spec.n_frames):
                writer.write(current.frame(k))
            if i == len(plan.shots) - 1:
                break
            nxt = ShotRenderer(plan.shots[i + 1])
            tr = plan.transitions[i]
            for j in range(tr.length):
                wa, wb = fade_weights(tr.style, j, tr.length)
                a = current.frame(spec.n_frames + j) if wa > 0 else None
                b = nxt.frame(j - tr.length) if wb > 0 else None
                writer.write(_blend(a, wa, b, wb, shape))
            current = nxt
        return writer.frames, areas


def background_phrase(spec: ShotSpec) -> str:
    bg = spec.background
    names = " and ".join(dict.fromkeys(bg.colours))
    return {
        "solid": f"plain {names}",
        "gradient": f"{names} gradient",
        "stripes": f"{names} stripes",
        "checker": f"{names} checkerboard",
        "noise": f"mottled {names}",
    }[bg.kind]


def alt_text(plan: VideoPlan, rng: np.random.Generator) -> str:
    """Alt-text-like line for the whole video: the first distinct objects, in order of appearance."""
    seen = list(dict.fromkeys(f"a {o.colour} {o.shape}" for s in plan.shots for o in s.objects))
    named = seen[:3] + (["other shapes"] if len(seen) > 3 else [])  # alt text is short: the first few, not all
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    templates = [
        "shapes on coloured backgrounds: {}",
        "animated video of {}",
        "{} on patterned backgrounds",
        "simple shapes video with {}",
    ]
    text = templates[rng.integers(len(templates))].format(listed)
    if any(s.texts for s in plan.shots):
        text += ", with captions"
    return text
