"""numpy/cv2 rasteriser for shapes-world shots: a background texture in world space warped by the camera,
shapes drawn with sub-pixel precision, optional degradation, then burned-in text in screen space."""

from __future__ import annotations

import math

import cv2
import numpy as np

from svd.world.scene import BG_COLOURS, COLOURS, ShotSpec, TextItem

FONT = cv2.FONT_HERSHEY_SIMPLEX
SHIFT = 4  # cv2 fixed-point bits: positions in 1/16 px, so slow motion is smooth, not 1-px jumps
_ONE = 1 << SHIFT
TEXT_COLOURS = {"white": (250, 250, 250), "yellow": (250, 225, 40)}


def background_texture(spec: ShotSpec, x0: float, y0: float, w: int, h: int) -> np.ndarray:
    """RGB uint8 texture whose pixel (i, j) shows world point (x0 + j, y0 + i)."""
    bg = spec.background
    a = np.asarray(BG_COLOURS[bg.colours[0]], dtype=np.float32)
    b = np.asarray(BG_COLOURS[bg.colours[-1]], dtype=np.float32)
    if bg.kind == "solid":
        return np.broadcast_to(a.astype(np.uint8), (h, w, 3)).copy()
    xs = (x0 + np.arange(w, dtype=np.float32))[None, :]
    ys = (y0 + np.arange(h, dtype=np.float32))[:, None]
    rad = math.radians(bg.angle)
    if bg.kind == "gradient":
        # cosine ramp with a period of two frame widths, so a pan sweeps visibly through it without clipping flat
        proj = xs * math.cos(rad) + ys * math.sin(rad)
        s = 0.5 - 0.5 * np.cos(np.pi * proj / spec.width)
    elif bg.kind == "stripes":
        u = (xs * math.cos(rad) + ys * math.sin(rad)) / bg.period
        s = 0.5 + 0.5 * np.sin(2 * np.pi * u) if bg.soft else (u - np.floor(u) < 0.5).astype(np.float32)
    elif bg.kind == "checker":
        s = ((np.floor(xs / bg.period) + np.floor(ys / bg.period)) % 2).astype(np.float32)
    elif bg.kind == "noise":
        # value noise: a coarse random grid (one cell per `period` world px) smoothly upsampled
        rng = np.random.default_rng(bg.seed)
        step = bg.period
        gx0, gy0 = math.floor(x0 / step) - 1, math.floor(y0 / step) - 1
        gw, gh = int(math.ceil(w / step)) + 4, int(math.ceil(h / step)) + 4
        grid = rng.random((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * step), int(gh * step)), interpolation=cv2.INTER_CUBIC)
        ox, oy = int(round(x0 - gx0 * step)), int(round(y0 - gy0 * step))
        s = np.clip(big[oy : oy + h, ox : ox + w], 0.0, 1.0)
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}")
    s = np.broadcast_to(s, (h, w))[..., None]
    return np.clip(a + (b - a) * s + 0.5, 0, 255).astype(np.uint8)


def _text_layout(item: TextItem, width: int, height: int) -> tuple[float, int, int, int, int]:
    """(scale, thickness, ring, x, baseline_y): ring is the outline width / box padding in px."""
    # OpenCV 5 draws a TrueType face where thickness > 1 means bold (Hershey in OpenCV 4: stroke width), so
    # outlines come from dilating the glyph mask, never from a thicker stroke
    thick = 2 if item.role == "headline" else 1
    (_, h1), _ = cv2.getTextSize(item.text, FONT, 1.0, thick)
    scale = max(item.height_frac * height, 8.0) / h1  # below ~8 px glyphs stop being legible words
    (tw, th), base = cv2.getTextSize(item.text, FONT, scale, thick)
    if tw > 0.92 * width:
        scale *= 0.92 * width / tw
        (tw, th), base = cv2.getTextSize(item.text, FONT, scale, thick)
    ring = max(1, int(round(0.15 * th)))
    m = int(round(0.05 * height)) + 2 * ring
    mx = int(round(0.04 * width)) + 2 * ring
    anchor = item.anchor
    x = {"top_left": mx, "bottom_left": mx, "top_right": width - mx - tw, "bottom_right": width - mx - tw}.get(
        anchor, (width - tw) // 2
    )
    if anchor.startswith("top"):
        y = m + th
    elif anchor.startswith("bottom"):
        y = height - m - max(base, ring)
    else:
        y = (height + th) // 2
    return scale, thick, ring, int(x), int(y)


def _render_item(item: TextItem, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied RGB float32 HxWx3, alpha float32 HxW) of one overlay: glyphs over a dark outline or box."""
    scale, thick, ring, x, y = _text_layout(item, width, height)
    glyph = np.zeros((height, width), np.uint8)
    cv2.putText(glyph, item.text, (x, y), FONT, scale, 255, thick, cv2.LINE_AA)
    g = glyph.astype(np.float32) / 255.0
    if item.style == "outline":
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
        back = cv2.dilate(glyph, kernel).astype(np.float32) / 255.0
    else:
        ys, xs = np.nonzero(glyph)
        back = np.zeros_like(g)
        if len(ys):
            pad = ring + 1
            back[max(0, ys.min() - pad) : ys.max() + 1 + pad, max(0, xs.min() - pad) : xs.max() + 1 + pad] = 0.82
    alpha = g + back * (1 - g)
    colour = np.asarray(TEXT_COLOURS[item.colour], np.float32)
    dark = np.asarray((12, 12, 16), np.float32)
    premult = g[..., None] * colour + (back * (1 - g))[..., None] * dark
    return premult, alpha


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def text_layer(spec: ShotSpec) -> tuple[np.ndarray, np.ndarray, float, list[tuple[int, int, int, int]]]:
    """(premultiplied RGB, alpha HxWx1, text_area, boxes) of the shot's overlays.

    boxes: (x1, y1, x2, y2), end-exclusive, one per overlay, around every pixel it touches (outline or box
    included); text_area is the share of the frame their union covers.
    """
    w, h = spec.width, spec.height
    premult = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    union = np.zeros((h, w), bool)
    boxes = []
    for item in spec.texts:
        p, a = _render_item(item, w, h)
        premult = p + premult * (1 - a)[..., None]  # "over" compositing, in drawing order
        alpha = a + alpha * (1 - a)
        box = _bbox(a > 0)
        if box is not None:
            boxes.append(box)
            union[box[1] : box[3], box[0] : box[2]] = True
    return premult, alpha[..., None], float(union.mean()), boxes


def text_boxes(spec: ShotSpec) -> list[tuple[int, int, int, int]]:
    """Screen boxes of the shot's overlays, as in text_layer."""
    return text_layer(spec)[3] if spec.texts else []


def draw_shape(img: np.ndarray, shape: str, colour: tuple[int, int, int], cx: float, cy: float, half: float) -> None:
    """Filled, anti-aliased shape centred at (cx, cy), inside a box of half-size `half` (sub-pixel precise)."""
    if shape == "circle":
        cv2.circle(
            img, (round(cx * _ONE), round(cy * _ONE)), max(1, round(half * _ONE)), colour, -1, cv2.LINE_AA, SHIFT
        )
        return
    if shape == "square":
        s = 0.85 * half
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
    elif shape == "triangle":
        pts = [(0.0, -half), (half, 0.8 * half), (-half, 0.8 * half)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    poly = np.array([[round((cx + px) * _ONE), round((cy + py) * _ONE)] for px, py in pts], np.int32)
    cv2.fillPoly(img, [poly], colour, cv2.LINE_AA, SHIFT)


class ShotRenderer:
    """Renders local frame k of a shot (k in [-pre, n_frames + post)); local time is k / fps."""

    def __init__(self, spec: ShotSpec):
        self.spec = spec
        w, h = spec.width, spec.height
        k = np.arange(-spec.pre, spec.n_frames + spec.post)
        cx, cy, z = spec.camera.at(k / spec.fps, w, h)
        # world rectangle the camera ever sees, plus a small border for bilinear sampling
        x0 = math.floor(float((cx - w / (2 * z)).min())) - 2
        y0 = math.floor(float((cy - h / (2 * z)).min())) - 2
        x1 = math.ceil(float((cx + w / (2 * z)).max())) + 2
        y1 = math.ceil(float((cy + h / (2 * z)).max())) + 2
        self.origin = (x0, y0)
        self.texture = background_texture(spec, x0, y0, x1 - x0, y1 - y0)
        self.layer, self.alpha, self.text_area, self.text_box = None, None, 0.0, None
        if spec.texts:
            premult, alpha, self.text_area, _ = text_layer(spec)
            box = _bbox(alpha[..., 0] > 0)
            if box is not None:
                # composite only inside the overlays' bounding box: most of the frame has no text
                self.text_box = (slice(box[1], box[3]), slice(box[0], box[2]))
                self.layer = premult[self.text_box]
                self.alpha = alpha[self.text_box]
        self._cached: np.ndarray | None = None

    def base(self, k: int) -> np.ndarray:
        """Background and objects, no degradation or text."""
        spec = self.spec
        if not spec.moving and self._cached is not None:
            return self._cached.copy()
        w, h = spec.width, spec.height
        t = k / spec.fps
        cx, cy, z = (float(v) for v in spec.camera.at(t, w, h))
        ox, oy = self.origin
        m = np.array([[z, 0.0, (ox - cx) * z + w / 2.0], [0.0, z, (oy - cy) * z + h / 2.0]], np.float64)
        img = cv2.warpAffine(self.texture, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for obj in spec.objects:
            px, py = obj.position(t)
            draw_shape(
                img, obj.shape, COLOURS[obj.colour], (px - cx) * z + w / 2.0, (py - cy) * z + h / 2.0, obj.half * z
            )
        if not spec.moving:
            self._cached = img.copy()
        return img

    def frame(self, k: int) -> np.ndarray:
        spec = self.spec
        img = self.base(k)
        if spec.quality == "noise":
            rng = np.random.default_rng([spec.seed, k + 1_000_000])  # per frame, so any order gives the same frame
            noise = rng.standard_normal(img.shape, dtype=np.float32) * spec.quality_strength
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        elif spec.quality == "blur":
            img = cv2.GaussianBlur(img, (0, 0), spec.quality_strength)
        elif spec.quality == "washed":
            a = spec.quality_strength
            img = cv2.convertScaleAbs(img, alpha=a, beta=(1 - a) * 215.0)  # low contrast, lifted blacks
        if self.text_box is not None:
            region = img[self.text_box].astype(np.float32)
            img[self.text_box] = np.clip(region * (1 - self.alpha) + self.layer + 0.5, 0, 255).astype(np.uint8)
        return img
