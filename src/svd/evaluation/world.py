"""Prompt-following evaluator for videos of the shapes world: is the prompted colour there, and does it move the
prompted way?

Pixels are classified by HSV windows whose thresholds are derived from the world's own palette (`COLOURS`, and
`BG_COLOURS` as the tones an object colour must never be confused with), the largest blob of the prompted colour is
tracked per frame, and a robust (Theil-Sen) line fit of its centroid gives the direction. Everything is measured on
screen: a camera pan in the prompt is ignored, as the generated videos are judged on what they show.

`evaluate_folder` reads a folder of mp4 files plus a manifest: `prompts.json` (either {"file.mp4": "prompt", ...}
or a list of {"file": ..., "prompt": ..., "fps": optional}) or `prompts.parquet` (columns file, prompt, optional fps;
a world `actions.parquet` works too, its `class_name` column being the prompt). Files are relative to the folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from svd.world.scene import BG_COLOURS, COLOURS, SHAPES

MOVING = ("left", "right", "up", "down")
MIN_AREA_FRAC = 0.005  # blob share of the frame to count an object as there (world objects cover 3-10%)
MIN_AREA_PX = 4  # ... and never fewer pixels than this, on tiny frames
PRESENT_FRAC = 0.5  # "most frames": the colour must be there in at least this share of frames
MIN_SPEED = 0.05  # frame sizes per second below which a track is "still" (world eval clips move 0.2-0.5)
HUE_CAP = 30.0  # degrees: widest hue window, so a drifted hue is not claimed by a far colour


@dataclass(frozen=True)
class Prompt:
    colour: str
    shape: str
    direction: str  # left/right/up/down/still


_PROMPT_RE = re.compile(
    r"^\s*an?\s+(?P<colour>[a-z]+)\s+(?P<shape>[a-z]+)\s+(?:moving\s+(?P<dir>[a-z]+)|(?P<still>standing\s+still))"
    r"\s*(?:,\s*the\s+camera\s+(?:pans|zooms)\s+[a-z]+\s*)?\.?\s*$"
)


def parse_prompt(text: str) -> Prompt:
    """'a red circle moving left[, the camera pans right]' / 'a blue square standing still' -> Prompt."""
    if not isinstance(text, str):
        raise ValueError(f"prompt must be a string, got {type(text).__name__}")
    m = _PROMPT_RE.match(text.lower())
    if m is None:
        hint = " (one object per prompt)" if " and " in text.lower() else ""
        raise ValueError(
            f"cannot parse prompt {text!r}{hint}; expected 'a <colour> <shape> moving <left|right|up|down>' or "
            f"'a <colour> <shape> standing still', optionally followed by ', the camera pans <dir>'"
        )
    colour, shape = m["colour"], m["shape"]
    direction = "still" if m["still"] else m["dir"]
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r} in prompt {text!r}; known: {', '.join(COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} in prompt {text!r}; known: {', '.join(SHAPES)}")
    if direction not in MOVING + ("still",):
        raise ValueError(f"unknown direction {direction!r} in prompt {text!r}; known: {', '.join(MOVING)}, still")
    return Prompt(colour, shape, direction)


# ---------------------------------------------------------------- colour rules, derived from the world's palette


@dataclass(frozen=True)
class ColourRule:
    """A pixel is the colour when every bound holds. chroma = max(R,G,B) - min(R,G,B) in [0, 1]: it separates
    the world's vivid object colours from its muted background tones whatever their brightness, so darker or
    washed-out renderings of an object colour still pass."""

    hue: float  # degrees; unused when hue_half == 0 (neutral colours)
    hue_half: float  # half-width of the hue window
    chroma_min: float
    s_max: float  # saturation ceiling (white); 1 for chromatic colours
    v_min: float  # value floor (white); 0 for chromatic colours


def _hsv(rgb) -> np.ndarray:
    """(..., 3) RGB 0-255 -> (..., 3) H in degrees, S and V in [0, 1]."""
    a = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(a, cv2.COLOR_RGB2HSV).reshape(np.shape(rgb))


def _hue_dist(a, b) -> np.ndarray:
    d = np.abs(np.asarray(a, np.float32) - b) % 360.0
    return np.minimum(d, 360.0 - d)


def background_blends(steps: int = 21) -> np.ndarray:
    """(N, 3) RGB: every background tone and every two-tone blend (gradients, noise and soft stripes mix two)."""
    pure = np.asarray(list(BG_COLOURS.values()), np.float32)
    mix = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None, None, None]
    return np.rint(pure[None, :, None] + mix * (pure[None, None, :] - pure[None, :, None])).reshape(-1, 3)


def _derive_rules() -> dict[str, ColourRule]:
    obj = {n: _hsv(c) for n, c in COLOURS.items()}
    bg = _hsv(background_blends())
    bg_chroma = bg[:, 1] * bg[:, 2]
    vivid = {n: v for n, v in obj.items() if v[1] >= 0.5}
    rules = {}
    for name, (h, s, v) in vivid.items():
        gaps = [_hue_dist(h, o[0]) for n, o in vivid.items() if n != name]
        half = float(min(HUE_CAP, 0.5 * min(gaps)))
        # halfway between the object's chroma and the most colourful background blend of a similar hue
        # (brown~red, olive~yellow, navy~blue, teal/olive~green)
        rivals = bg_chroma[_hue_dist(bg[:, 0], h) <= half]
        top = float(rivals.max()) if len(rivals) else 0.0
        if top >= s * v:
            raise RuntimeError(f"world palette: a background blend is as vivid as object colour {name!r}")
        rules[name] = ColourRule(float(h), half, float(0.5 * (s * v + top)), 1.0, 0.0)
    for name in (n for n in obj if n not in vivid):
        h, s, v = obj[name]
        if v < 0.5:
            raise RuntimeError(f"world palette: no rule for dark neutral object colour {name!r}")
        # white: below half the saturation of the bright tinted tones (sand, pink, mint), and brighter than
        # halfway to the brightest background blend that is that unsaturated (light grey)
        pure = _hsv(np.asarray(list(BG_COLOURS.values()), np.float32))
        tinted = pure[(pure[:, 1] > 0.05) & (pure[:, 2] >= 0.5), 1]
        s_max = float(0.5 * tinted.min()) if len(tinted) else 0.15
        greys = bg[bg[:, 1] <= s_max, 2]
        top = float(greys.max()) if len(greys) else 0.0
        if top >= v:
            raise RuntimeError(f"world palette: a background blend is as bright as object colour {name!r}")
        rules[name] = ColourRule(0.0, 0.0, 0.0, s_max, float(0.5 * (v + top)))
    return rules


RULES: dict[str, ColourRule] = _derive_rules()


def _as_uint8(frames) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (T, H, W, 3), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("video has no frames")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"float frames must be RGB in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
        return np.clip(np.rint(np.nan_to_num(a) * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"frames must be uint8 or float in [0, 1], got {a.dtype}")


def _denoise(frame: np.ndarray) -> np.ndarray:
    # a small median removes per-pixel noise (which pushes greys across the white/value thresholds) but keeps
    # edges, so small objects of small frames survive
    k = 3 if min(frame.shape[:2]) < 96 else 5
    return cv2.medianBlur(np.ascontiguousarray(frame), k)


def colour_mask(frames, colour: str) -> np.ndarray:
    """(T, H, W) bool: pixels of the named world colour (after a small median filter); background tones never match."""
    if colour not in RULES:
        raise ValueError(f"unknown colour {colour!r}; known: {', '.join(RULES)}")
    rule = RULES[colour]
    video = _as_uint8(frames)
    out = np.empty(video.shape[:3], bool)
    for i, frame in enumerate(video):
        hsv = cv2.cvtColor(_denoise(frame).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        m = (s * v >= rule.chroma_min) & (s <= rule.s_max) & (v >= rule.v_min)
        if rule.hue_half > 0:
            m &= _hue_dist(h, rule.hue) <= rule.hue_half
        out[i] = m
    return out


def _min_area(h: int, w: int) -> int:
    return max(MIN_AREA_PX, int(np.ceil(MIN_AREA_FRAC * h * w)))


def track(frames, colour: str) -> np.ndarray:
    """(T, 2) centroid (x, y) in pixels of the largest blob of the colour per frame; NaN where it is absent."""
    masks = colour_mask(frames, colour)
    t, h, w = masks.shape
    need = _min_area(h, w)
    out = np.full((t, 2), np.nan)
    for i, m in enumerate(masks):
        n, _, stats, cents = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # the largest blob: stray specks do not pull it
        if stats[best, cv2.CC_STAT_AREA] >= need:
            out[i] = cents[best]
    return out


def _theil_sen(t: np.ndarray, y: np.ndarray) -> float:
    """Median of pairwise slopes: one bad frame (a missed or wrong blob) cannot swing the line."""
    i, j = np.triu_indices(len(t), k=1)
    return float(np.median((y[j] - y[i]) / (t[j] - t[i])))


def judge(frames, prompt: Prompt | str, fps: float) -> dict:
    """Colour presence and on-screen direction of the prompted object.

    colour_fraction: share of frames where the colour's largest blob reaches the minimum area; colour_present
    when that share is at least PRESENT_FRAC. direction: from Theil-Sen slopes of the centroid track along the
    dominant axis ("still" below MIN_SPEED frame sizes per second, "unknown" when the object is not in most
    frames). displacement: (dx, dy) over the clip in frame fractions (x right, y down).
    """
    if isinstance(prompt, str):
        prompt = parse_prompt(prompt)
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    video = _as_uint8(frames)
    t, h, w = video.shape[:3]
    cents = track(video, prompt.colour)
    ok = ~np.isnan(cents[:, 0])
    fraction = float(ok.mean())
    present = fraction >= PRESENT_FRAC
    direction, disp = "unknown", (float("nan"), float("nan"))
    if present and t == 1:
        direction, disp = "still", (0.0, 0.0)  # one frame cannot move
    elif present and ok.sum() >= 2:
        times = np.arange(t, dtype=np.float64)[ok] / fps
        vx = _theil_sen(times, cents[ok, 0]) / w  # frame widths per second
        vy = _theil_sen(times, cents[ok, 1]) / h
        duration = (t - 1) / fps
        disp = (vx * duration, vy * duration)
        if max(abs(vx), abs(vy)) < MIN_SPEED:
            direction = "still"
        elif abs(vx) >= abs(vy):
            direction = "right" if vx > 0 else "left"
        else:
            direction = "down" if vy > 0 else "up"
    return {
        "colour_present": bool(present),
        "colour_fraction": fraction,
        "direction": direction,
        "displacement": (float(disp[0]), float(disp[1])),
        "direction_correct": bool(present and direction == prompt.direction),
    }


def evaluate_videos(videos, prompts: list[str], fps: float | list[float]) -> dict:
    """Score generated videos against their prompts: colour accuracy, direction accuracy, per-prompt judgements."""
    videos, prompts = list(videos), list(prompts)
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    if not videos:
        raise ValueError("no videos to evaluate")
    rates = list(fps) if isinstance(fps, (list, tuple, np.ndarray)) else [fps] * len(videos)
    if len(rates) != len(videos):
        raise ValueError(f"{len(videos)} videos but {len(rates)} fps values")
    parsed = [parse_prompt(p) for p in prompts]  # all prompts checked before any scoring work
    per = []
    for video, text, prompt, rate in zip(videos, prompts, parsed, rates):
        per.append(
            {
                "prompt": text,
                "colour": prompt.colour,
                "shape": prompt.shape,
                "expected": prompt.direction,
                **judge(video, prompt, float(rate)),
            }
        )
    return {
        "colour_accuracy": float(np.mean([p["colour_present"] for p in per])),
        "direction_accuracy": float(np.mean([p["direction_correct"] for p in per])),
        "n": len(per),
        "per_prompt": per,
    }


def _read_manifest(folder: Path, manifest: Path | None) -> list[dict]:
    if manifest is None:
        found = [folder / n for n in ("prompts.json", "prompts.parquet") if (folder / n).exists()]
        if not found:
            raise FileNotFoundError(f"no prompts.json or prompts.parquet in {folder}")
        manifest = found[0]
    manifest = Path(manifest)
    if manifest.suffix == ".json":
        data = json.loads(manifest.read_text())
        rows = [{"file": k, "prompt": v} for k, v in data.items()] if isinstance(data, dict) else list(data)
    elif manifest.suffix == ".parquet":
        import pandas as pd

        rows = pd.read_parquet(manifest).to_dict("records")
    else:
        raise ValueError(f"manifest must be .json or .parquet, got {manifest}")
    out = []
    for row in rows:
        text = row.get("prompt", row.get("class_name"))
        if "file" not in row or text is None:
            raise ValueError(f"manifest row needs 'file' and 'prompt' (or 'class_name'): {row}")
        out.append({"file": str(row["file"]), "prompt": str(text), "fps": row.get("fps")})
    return out


def evaluate_folder(folder: Path | str, manifest: Path | str | None = None, fps: float | None = None) -> dict:
    """evaluate_videos over FOLDER's mp4 files named by its manifest (see the module doc); fps: the manifest's,
    else this argument, else the container's."""
    from svd.io.video import iter_frames, probe

    folder = Path(folder)
    rows = _read_manifest(folder, Path(manifest) if manifest is not None else None)
    videos, prompts, rates = [], [], []
    for row in rows:
        path = folder / row["file"]
        rate = row["fps"]
        if rate is None or (isinstance(rate, float) and np.isnan(rate)):
            rate = fps if fps is not None else probe(path).fps
        videos.append(np.stack(list(iter_frames(path))))
        prompts.append(row["prompt"])
        rates.append(float(rate))
    result = evaluate_videos(videos, prompts, rates)
    for row, item in zip(rows, result["per_prompt"]):
        item["file"] = row["file"]
    return result
