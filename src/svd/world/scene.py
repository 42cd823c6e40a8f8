"""Shot specifications for the shapes world and their seeded sampling.

A shot is described in *world* coordinates (pixels of the frame at zoom 1); the camera maps world to screen with
`screen = (world - centre(t)) * zoom(t) + frame_centre`, so a pan or zoom moves the background and the objects alike.
Camera naming follows film usage: "pan_right" turns the camera to the right, so the scene slides LEFT on screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# Pure, saturated hues for objects, so "a red circle" is unambiguous to a captioner and to a colour mask.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 190, 40),
    "blue": (30, 60, 230),
    "yellow": (245, 215, 30),
    "white": (245, 245, 245),
    "purple": (150, 40, 190),
}

# Muted tones for backgrounds; a shot only uses those far enough from its object colours (see `distinct`).
BG_COLOURS: dict[str, tuple[int, int, int]] = {
    "charcoal": (38, 38, 42),
    "slate": (70, 80, 95),
    "grey": (128, 128, 128),
    "light grey": (190, 190, 190),
    "sand": (200, 185, 150),
    "teal": (40, 110, 110),
    "olive": (110, 110, 50),
    "brown": (110, 70, 45),
    "pink": (220, 160, 170),
    "mint": (150, 200, 170),
    "navy": (30, 35, 80),
}

SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down", "still")
CAMERAS = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out")
BACKGROUNDS = ("solid", "gradient", "stripes", "checker", "noise")
QUALITIES = ("noise", "blur", "washed")

# Unit vectors on screen (y grows downwards).
DIR_VEC = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "still": (0.0, 0.0)}

# Minimum RGB distance between an object colour and every background tone it sits on.
MIN_COLOUR_DISTANCE = 120.0
# Minimum RGB distance between the two tones of a moving camera's texture (issue 22: flow must see the pan).
MIN_TEXTURE_CONTRAST = 110.0

HEADLINES = [
    "BREAKING NEWS",
    "SALE 50% OFF",
    "LIVE",
    "NEW EPISODE",
    "TOP 10 SHAPES",
    "FREE SHIPPING",
    "LIMITED OFFER",
    "WATCH TILL THE END",
    "EXCLUSIVE",
    "SUBSCRIBE",
]
SUBTITLES = [
    "and then it started to move",
    "look at this one",
    "I can't believe it",
    "subscribe for more videos",
    "this is the best part",
    "wait for it",
    "nobody expected this",
    "the shapes are back",
    "link in the description",
    "thanks for watching",
]
WATERMARKS = ["@shapes_tv", "www.shapes.tv", "HD", "shapesworld.com", "#shapes", "REPLAY"]


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str
    direction: str
    half: float  # half-extent of the shape in world px
    x0: float  # world position at local time 0 (the first clean frame)
    y0: float
    speed: float  # world px per second along DIR_VEC[direction]

    def position(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = DIR_VEC[self.direction]
        return self.x0 + dx * self.speed * t, self.y0 + dy * self.speed * t


@dataclass(frozen=True)
class CameraSpec:
    kind: str  # one of CAMERAS
    rate: float  # pan: world px/s; zoom: log-zoom per second (always >= 0; the kind gives the sign)
    z_start: float = 1.0  # zoom at local time t_min (the first rendered frame)
    t_min: float = 0.0

    def at(self, t: np.ndarray | float, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre_x, centre_y, zoom) at local time t."""
        t = np.asarray(t, dtype=np.float64)
        cx = np.full_like(t, width / 2.0)
        cy = np.full_like(t, height / 2.0)
        z = np.ones_like(t)
        if self.kind == "pan_right":
            cx = cx + self.rate * t
        elif self.kind == "pan_left":
            cx = cx - self.rate * t
        elif self.kind == "zoom_in":
            z = self.z_start * np.exp(self.rate * (t - self.t_min))
        elif self.kind == "zoom_out":
            z = self.z_start * np.exp(-self.rate * (t - self.t_min))
        return cx, cy, z


@dataclass(frozen=True)
class BackgroundSpec:
    kind: str  # one of BACKGROUNDS
    colours: tuple[str, ...]  # BG_COLOURS names: one for solid, two otherwise
    period: float = 32.0  # stripes/checker/noise feature size in world px
    angle: float = 0.0  # stripes and gradient direction, degrees
    soft: bool = False  # stripes with smooth (sine) edges
    seed: int = 0  # noise pattern seed


@dataclass(frozen=True)
class TextItem:
    text: str
    role: str  # headline / subtitle / watermark
    colour: str  # "white" or "yellow"
    style: str  # "outline" or "box"
    height_frac: float  # cap height as a share of frame height
    anchor: str  # top / bottom / top_left / top_right / bottom_left / bottom_right / centre


@dataclass(frozen=True)
class ShotSpec:
    width: int
    height: int
    fps: float
    n_frames: int  # clean frames
    pre: int  # frames rendered before the clean ones (fade-in from the previous shot)
    post: int  # frames rendered after them (fade-out into the next shot)
    background: BackgroundSpec
    objects: tuple[ObjectSpec, ...]
    camera: CameraSpec
    static: bool
    texts: tuple[TextItem, ...] = ()
    quality: str = "clean"
    quality_strength: float = 0.0
    seed: int = 0  # per-shot seed for the temporal noise of low-quality shots

    @property
    def moving(self) -> bool:
        return self.camera.kind != "static" or any(o.direction != "still" for o in self.objects)

    def description(self) -> str:
        return describe(self.objects, self.camera.kind)

    def objects_json(self) -> str:
        return json.dumps([{"shape": o.shape, "colour": o.colour, "direction": o.direction} for o in self.objects])

    def text(self) -> str:
        return " | ".join(t.text for t in self.texts)


def object_phrase(colour: str, shape: str, direction: str) -> str:
    verb = "standing still" if direction == "still" else f"moving {direction}"
    return f"a {colour} {shape} {verb}"


def describe(objects: tuple[ObjectSpec, ...] | list[ObjectSpec], camera: str) -> str:
    text = " and ".join(object_phrase(o.colour, o.shape, o.direction) for o in objects)
    if camera.startswith("pan_"):
        text += f", the camera pans {camera[4:]}"
    elif camera.startswith("zoom_"):
        text += f", the camera zooms {camera[5:]}"
    return text


def slug(colour: str, shape: str, direction: str) -> str:
    return f"{colour}_{shape}_{direction}"


def _segment_distance(c: tuple[int, int, int], a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Smallest RGB distance from colour c to the blend segment a..b (gradients and noise blend two tones)."""
    ca, cb, cc = (np.asarray(x, dtype=np.float64) for x in (a, b, c))
    s = np.linspace(0.0, 1.0, 9)[:, None]
    return float(np.min(np.linalg.norm(ca + s * (cb - ca) - cc, axis=1)))


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def distinct(obj_colour: str, bg: BackgroundSpec) -> bool:
    tones = [BG_COLOURS[n] for n in bg.colours]
    a, b = tones[0], tones[-1]
    return _segment_distance(COLOURS[obj_colour], a, b) >= MIN_COLOUR_DISTANCE


def check_names(colours: list[str], shapes: list[str], directions: list[str]) -> None:
    for kind, names, known in (
        ("colour", colours, COLOURS),
        ("shape", shapes, SHAPES),
        ("direction", directions, DIRECTIONS),
    ):
        for n in names:
            if n not in known:
                raise ValueError(f"unknown world {kind} {n!r}; known: {', '.join(known)}")


def sample_background(
    rng: np.random.Generator, obj_colours: list[str], avoid: tuple[str, ...] = (), textured: bool = False
) -> BackgroundSpec:
    """A background whose tones are all far from the given object colours and share none with `avoid`.

    textured: a 2-D texture with contrast (checker or noise, tones at least MIN_TEXTURE_CONTRAST apart): a moving
    camera must have something to show its motion on, and flow cannot see a pan along stripes (the aperture problem),
    over a smooth gradient, or over pale, soft noise. (Cells of 24-48 px instead of 12-44 read worse: zoom F1 0.76 /
    0.84 against 0.96 / 0.94 on the default world.)
    """
    kinds = ("checker", "noise") if textured else BACKGROUNDS
    for _ in range(400):
        kind = kinds[rng.integers(len(kinds))]
        names = list(BG_COLOURS)
        n = 1 if kind == "solid" else 2
        picked = tuple(names[i] for i in rng.choice(len(names), size=n, replace=False))
        spec = BackgroundSpec(
            kind=kind,
            colours=picked,
            # value noise under a moving camera keeps cells <= 24 px: coarser, smooth cells show a zoom as almost no
            # flow at curation's 64 px (15 of 15 missed zooms on a held-out seed were on 24-44 px noise)
            period=float(rng.uniform(12, 24 if textured and kind == "noise" else 44)),
            angle=float(rng.choice([0.0, 45.0, 90.0, 135.0]) if kind == "stripes" else rng.uniform(0, 360)),
            soft=bool(rng.random() < 0.4),
            seed=int(rng.integers(2**31)),
        )
        if set(picked) & set(avoid):
            continue  # consecutive shots share no tone, so a hard cut between them is a visible change
        if textured and _distance(BG_COLOURS[picked[0]], BG_COLOURS[picked[1]]) < MIN_TEXTURE_CONTRAST:
            continue
        if all(distinct(c, spec) for c in obj_colours):
            return spec
    raise RuntimeError(f"no background is distinct from colours {obj_colours}")


def _frame_times(pre: int, n: int, post: int, fps: float) -> np.ndarray:
    return np.arange(-pre, n + post, dtype=np.float64) / fps


def feasible_interval(
    half: float, direction: str, speed: float, camera: CameraSpec, t: np.ndarray, width: int, height: int, margin: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """World start positions (x0, y0) that keep the whole shape on screen at every time in t.

    screen(t) = (p0 + v t - c(t)) z(t) + frame_centre is affine in p0 for each t, so the constraint
    lo <= screen +- half*z <= hi gives one interval per frame; their intersection is exact.
    """
    cx, cy, z = camera.at(t, width, height)
    dx, dy = DIR_VEC[direction]
    out = []
    for d, c, size in ((dx, cx, width), (dy, cy, height)):
        g = (d * speed * t - c) * z + size / 2.0
        lo = (margin + half * z - g) / z
        hi = (size - margin - half * z - g) / z
        out.append((float(lo.max()), float(hi.min())))
    return out[0], out[1]


def sample_objects_and_camera(
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: float,
    n: int,
    pre: int,
    post: int,
    colours: list[str],
    shapes: list[str],
    directions: list[str],
    camera_kind: str,
    speed_frac: tuple[float, float] = (0.15, 0.35),
    size_frac: tuple[float, float] = (0.10, 0.17),
) -> tuple[tuple[ObjectSpec, ...], CameraSpec]:
    """Place objects so each stays fully visible over the rendered frames, slowing motion only when it must."""
    t = _frame_times(pre, n, post, fps)
    span = max(t[-1] - t[0], 1.0 / fps)
    margin = 2.0
    short = min(width, height)
    halves = [float(rng.uniform(*size_frac) * short) for _ in colours]
    speeds = []
    for d, h in zip(directions, halves):
        if d == "still":
            speeds.append(0.0)
            continue
        size = width if d in ("left", "right") else height
        want = float(rng.uniform(*speed_frac) * size)
        room = size - 2 * margin - 2 * h
        speeds.append(min(want, 0.9 * room / span))  # a static camera alone must not push it off screen
    if camera_kind.startswith("pan"):
        rate = float(rng.uniform(0.08, 0.22) * width)
    elif camera_kind.startswith("zoom"):
        rate = float(rng.uniform(0.08, 0.18))
        rate = min(rate, np.log(1.8) / span)  # at most 1.8x over the shot
    else:
        rate = 0.0
    t_min = float(t[0])

    def make_camera(r: float) -> CameraSpec:
        if camera_kind == "zoom_out":
            # ends at zoom 1, so the visible world never exceeds one frame (the texture stays small)
            return CameraSpec(camera_kind, r, z_start=float(np.exp(r * (t[-1] - t[0]))), t_min=t_min)
        return CameraSpec(camera_kind, r, z_start=1.0, t_min=t_min)

    for attempt in range(40):
        cam = make_camera(rate)
        boxes = [
            feasible_interval(h, d, s, cam, t, width, height, margin) for h, d, s in zip(halves, directions, speeds)
        ]
        bad = [i for i, ((xl, xh), (yl, yh)) in enumerate(boxes) if xl > xh or yl > yh]
        if not bad:
            break
        # slow down the camera and the objects that do not fit; after many tries freeze them (always fits)
        rate *= 0.85
        for i in bad:
            speeds[i] *= 0.85
        if attempt == 38:
            rate = 0.0
            speeds = [0.0 for _ in speeds]
    else:  # pragma: no cover - zero motion always fits because 2*half < frame size
        raise RuntimeError("could not place objects")

    best = None
    for _ in range(60):
        pos = [(float(rng.uniform(*bx)), float(rng.uniform(*by))) for bx, by in boxes]
        gap = _min_gap(pos, halves, directions, speeds, t)
        if best is None or gap > best[0]:
            best = (gap, pos)
        if gap > 0:
            break  # no overlap at any time: occlusion would muddle the truth
    pos = best[1]
    objs = tuple(
        ObjectSpec(shape=s, colour=c, direction=d, half=h, x0=p[0], y0=p[1], speed=v)
        for s, c, d, h, p, v in zip(shapes, colours, directions, halves, pos, speeds)
    )
    return objs, make_camera(rate)


def _min_gap(pos, halves, directions, speeds, t) -> float:
    if len(pos) < 2:
        return 1.0
    tracks = []
    for (x0, y0), d, v in zip(pos, directions, speeds):
        dx, dy = DIR_VEC[d]
        tracks.append((x0 + dx * v * t, y0 + dy * v * t))
    gap = np.inf
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            # world gap (bounding boxes, Chebyshev) is a good proxy: both objects share one camera
            dist = np.maximum(np.abs(tracks[i][0] - tracks[j][0]), np.abs(tracks[i][1] - tracks[j][1]))
            gap = min(gap, float((dist - 1.15 * (halves[i] + halves[j])).min()))
    return gap


def sample_text(rng: np.random.Generator) -> tuple[TextItem, ...]:
    """One or two burned-in overlays (headline, subtitle, corner watermark), small to large, in separate rows."""
    roles = ["subtitle", "headline", "watermark"]  # placement order: the subtitle claims the bottom row first
    k = 1 if rng.random() < 0.6 else 2
    chosen = sorted(rng.choice(len(roles), size=k, replace=False))
    free_rows = ["top", "centre", "bottom"]
    items = []
    for i in chosen:
        role = roles[i]
        if role == "subtitle":
            text = SUBTITLES[rng.integers(len(SUBTITLES))]
            size = float(rng.uniform(0.05, 0.09))
            anchor = "bottom"
            free_rows.remove("bottom")
        elif role == "headline":
            text = HEADLINES[rng.integers(len(HEADLINES))]
            size = float(rng.uniform(0.10, 0.22))
            anchor = str(rng.choice(free_rows))
            free_rows.remove(anchor)
        else:
            text = WATERMARKS[rng.integers(len(WATERMARKS))]
            size = float(rng.uniform(0.04, 0.07))
            row = str(rng.choice([r for r in free_rows if r != "centre"]))
            anchor = f"{row}_{rng.choice(['left', 'right'])}"
        items.append(
            TextItem(
                text=text,
                role=role,
                colour=str(rng.choice(["white", "yellow"])),
                style=str(rng.choice(["outline", "box"])),
                height_frac=size,
                anchor=anchor,
            )
        )
    return tuple(items)


def sample_shot(
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: float,
    n: int,
    pre: int,
    post: int,
    static_prob: float,
    text_prob: float,
    low_quality_prob: float,
    avoid_bg: tuple[str, ...] = (),
) -> ShotSpec:
    """A random shot of a long web video."""
    static = bool(rng.random() < static_prob)
    n_obj = 1 if rng.random() < 0.5 else 2
    colours = [str(c) for c in rng.choice(list(COLOURS), size=n_obj, replace=False)]
    shapes = [str(SHAPES[rng.integers(len(SHAPES))]) for _ in range(n_obj)]
    if static:
        camera = "static"
        directions = ["still"] * n_obj
    else:
        camera = str(rng.choice(CAMERAS, p=[0.45, 0.15, 0.15, 0.125, 0.125]))
        directions = [str(rng.choice(DIRECTIONS, p=[0.22, 0.22, 0.22, 0.22, 0.12])) for _ in range(n_obj)]
        if camera == "static" and all(d == "still" for d in directions):
            directions[0] = str(rng.choice(DIRECTIONS[:4]))  # a non-static shot must move
    bg = sample_background(rng, colours, avoid=avoid_bg, textured=camera != "static")
    objs, cam = sample_objects_and_camera(rng, width, height, fps, n, pre, post, colours, shapes, directions, camera)
    texts = sample_text(rng) if rng.random() < text_prob else ()
    quality, strength = "clean", 0.0
    if rng.random() < low_quality_prob:
        quality = str(QUALITIES[rng.integers(len(QUALITIES))])
        strength = {"noise": rng.uniform(18, 32), "blur": rng.uniform(2.0, 3.5), "washed": rng.uniform(0.35, 0.5)}[
            quality
        ]
    return ShotSpec(
        width=width,
        height=height,
        fps=float(fps),
        n_frames=n,
        pre=pre,
        post=post,
        background=bg,
        objects=objs,
        camera=cam,
        static=static,
        texts=texts,
        quality=quality,
        quality_strength=float(strength),
        seed=int(rng.integers(2**31)),
    )


def solo_shot(
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: float,
    n: int,
    tones: list[str],
    centre_spread: float,
    size_frac: tuple[float, float],
    speed_frac: tuple[float, float],
) -> ShotSpec:
    """One object moving across a plain tone under a still camera, at the frame's centre (+- centre_spread of the
    frame) in its middle frame: a short web clip whose every window shows where its word says it goes."""
    colour = str(rng.choice(list(COLOURS)))
    shape = str(SHAPES[rng.integers(len(SHAPES))])
    direction = str(DIRECTIONS[rng.integers(4)])
    usable = [t for t in tones if distinct(colour, BackgroundSpec("solid", (t,)))]
    if not usable:
        raise ValueError(f"no solo tone of {tones} is distinct from the colour {colour}")
    background = BackgroundSpec("solid", (usable[int(rng.integers(len(usable)))],))
    objects, camera = sample_objects_and_camera(
        rng, width, height, fps, n, 0, 0, [colour], [shape], [direction], "static", speed_frac, size_frac
    )
    o = objects[0]
    # the sampler caps the speed at 0.9 x room / span, so a track centred mid-shot stays on screen
    (dx, dy), t_mid = DIR_VEC[direction], (n - 1) / 2 / fps
    jx, jy = rng.uniform(-centre_spread, centre_spread, 2) * np.array([width, height])
    x0 = width / 2 + jx - dx * o.speed * t_mid
    y0 = height / 2 + jy - dy * o.speed * t_mid
    (xl, xh), (yl, yh) = feasible_interval(
        o.half, direction, o.speed, camera, _frame_times(0, n, 0, fps), width, height, 2.0
    )
    obj = ObjectSpec(shape, colour, direction, o.half, float(np.clip(x0, xl, xh)), float(np.clip(y0, yl, yh)), o.speed)
    return ShotSpec(
        width=width,
        height=height,
        fps=float(fps),
        n_frames=n,
        pre=0,
        post=0,
        background=background,
        objects=(obj,),
        camera=camera,
        static=False,
        seed=int(rng.integers(2**31)),
    )


def action_shot(
    rng: np.random.Generator, size: int, fps: float, n: int, colour: str, shape: str, direction: str
) -> ShotSpec:
    """One object of a given class over a random background, static camera, clean: an evaluation clip."""
    bg = sample_background(rng, [colour])
    objs, cam = sample_objects_and_camera(
        rng,
        size,
        size,
        fps,
        n,
        0,
        0,
        [colour],
        [shape],
        [direction],
        "static",
        speed_frac=(0.45, 0.7),
        size_frac=(0.13, 0.18),
    )
    return ShotSpec(
        width=size,
        height=size,
        fps=float(fps),
        n_frames=n,
        pre=0,
        post=0,
        background=bg,
        objects=objs,
        camera=cam,
        static=direction == "still",
        seed=int(rng.integers(2**31)),
    )
