"""Held-aside evaluation data: labelled action clips (a UCF-101 stand-in) and 360-degree orbits of simple 3D
objects (a GSO stand-in for multi-view evaluation). Never mixed into the long training videos."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from svd.config import EvalWorld
from svd.io.video import write_video
from svd.world.render import ShotRenderer
from svd.world.scene import action_shot, check_names, object_phrase, slug

STREAM_ACTIONS = 3
STREAM_ORBITS = 4


def write_actions(ecfg: EvalWorld, out: Path, seed: int, crf: int) -> list[dict]:
    """OUT/eval/actions/<colour>_<shape>_<direction>_<k>.mp4 for every class; returns the manifest rows."""
    check_names(ecfg.colours, ecfg.shapes, ecfg.directions)
    if ecfg.action_size % 2:
        raise ValueError(f"world.eval.action_size must be even for H.264 (yuv420p), got {ecfg.action_size}")
    rows = []
    classes = itertools.product(enumerate(ecfg.colours), enumerate(ecfg.shapes), enumerate(ecfg.directions))
    for (ci, colour), (si, shape), (di, direction) in classes:
        for k in range(ecfg.videos_per_class):
            rng = np.random.default_rng([seed, STREAM_ACTIONS, ci, si, di, k])
            spec = action_shot(rng, ecfg.action_size, ecfg.action_fps, ecfg.action_frames, colour, shape, direction)
            renderer = ShotRenderer(spec)
            rel = f"eval/actions/{slug(colour, shape, direction)}_{k}.mp4"
            n = write_video(out / rel, (renderer.frame(i) for i in range(spec.n_frames)), ecfg.action_fps, crf=crf)
            rows.append(
                {
                    "file": rel,
                    "class_name": object_phrase(colour, shape, direction),
                    "colour": colour,
                    "shape": shape,
                    "direction": direction,
                    "n_frames": n,
                    "fps": float(ecfg.action_fps),
                }
            )
    return rows


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (V, 3), y up, centred near the origin
    faces: tuple[tuple[int, ...], ...]
    colours: tuple[tuple[int, int, int], ...]  # one RGB per face


FACE_PALETTE = [
    (220, 50, 50),
    (50, 170, 60),
    (50, 90, 220),
    (240, 200, 40),
    (160, 70, 200),
    (240, 140, 40),
    (40, 180, 190),
    (230, 230, 230),
]


def _box(sx: float, sy: float, sz: float, colours) -> Mesh:
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)], np.float64)
    # index = 4*(x>0) + 2*(y>0) + (z>0)
    faces = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
    return Mesh(v, faces, tuple(colours))


def _pyramid(colours) -> Mesh:
    v = np.array([[-1, -0.7, -1], [1, -0.7, -1], [1, -0.7, 1], [-1, -0.7, 1], [0, 1.0, 0]], np.float64)
    faces = ((0, 1, 2, 3), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4))
    return Mesh(v, faces, tuple(colours))


def _prism(colours) -> Mesh:
    a = [
        (math.cos(t), math.sin(t)) for t in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)
    ]
    v = np.array([[x, y, z] for z in (-0.9, 0.9) for x, y in a], np.float64)  # triangle in x-y, extruded along z
    faces = ((0, 1, 2), (3, 4, 5), (0, 1, 4, 3), (1, 2, 5, 4), (2, 0, 3, 5))
    return Mesh(v, faces, tuple(colours))


def _octahedron(colours) -> Mesh:
    v = np.array([[1.1, 0, 0], [-1.1, 0, 0], [0, 1.1, 0], [0, -1.1, 0], [0, 0, 1.1], [0, 0, -1.1]], np.float64)
    faces = tuple((a, b, c) for a in (0, 1) for b in (2, 3) for c in (4, 5))
    return Mesh(v, faces, tuple(colours))


OBJECT_KINDS = ("cube", "pyramid", "box", "prism", "octahedron")


def make_object(kind: str, rng: np.random.Generator) -> Mesh:
    perm = [FACE_PALETTE[i] for i in rng.permutation(len(FACE_PALETTE))]
    if kind == "cube":
        return _box(0.85, 0.85, 0.85, perm[:6])
    if kind == "box":
        a, b = perm[0], perm[1]
        return _box(1.2, 0.55, 0.7, [a, a, b, b, perm[2], perm[2]])
    if kind == "pyramid":
        return _pyramid(perm[:5])
    if kind == "prism":
        return _prism(perm[:5])
    if kind == "octahedron":
        return _octahedron(perm[:8])
    raise ValueError(f"unknown orbit object {kind!r}")


LIGHT = np.array([0.45, 0.8, 0.4]) / np.linalg.norm([0.45, 0.8, 0.4])  # fixed in the world, like a studio light
BACKGROUND = (235, 235, 235)


def render_view(mesh: Mesh, azimuth: float, elevation: float, size: int, supersample: int = 4) -> np.ndarray:
    """Flat/Lambert-shaded perspective view from a camera orbiting the y axis at distance 5; RGB uint8."""
    big = size * supersample
    img = np.empty((big, big, 3), np.uint8)
    img[:] = BACKGROUND
    az, el = math.radians(azimuth), math.radians(elevation)
    dist = 5.0
    cam = dist * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    fwd = -cam / dist
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    rel = mesh.vertices - cam
    depth = rel @ fwd
    focal = 0.5 * big / math.tan(math.radians(18))  # ~36 degree field of view: the object fills ~65% of the frame
    sx = big / 2 + focal * (rel @ right) / depth
    sy = big / 2 - focal * (rel @ up) / depth
    centre = mesh.vertices.mean(axis=0)
    drawn = []
    for face, colour in zip(mesh.faces, mesh.colours):
        pts = mesh.vertices[list(face)]
        normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])
        normal /= np.linalg.norm(normal)
        if normal @ (pts.mean(axis=0) - centre) < 0:
            normal = -normal  # winding-independent: convex meshes, so outward is away from the centre
        if normal @ (cam - pts.mean(axis=0)) <= 1e-9:
            continue  # back face
        shade = 0.45 + 0.55 * max(0.0, float(normal @ LIGHT))
        poly = np.stack([sx[list(face)], sy[list(face)]], axis=1)
        drawn.append((float(depth[list(face)].mean()), poly, tuple(int(round(c * shade)) for c in colour)))
    for _, poly, colour in sorted(drawn, key=lambda d: -d[0]):  # painter's algorithm: far faces first
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def write_orbits(ecfg: EvalWorld, out: Path, seed: int) -> list[dict]:
    """OUT/eval/orbits/<object>/<frame:02d>.png: a full orbit per object at one sampled elevation."""
    rows = []
    lo, hi = ecfg.orbit_elevation
    for i in range(ecfg.orbit_objects):
        kind = OBJECT_KINDS[i % len(OBJECT_KINDS)]
        name = kind if i < len(OBJECT_KINDS) else f"{kind}_{i // len(OBJECT_KINDS) + 1}"
        rng = np.random.default_rng([seed, STREAM_ORBITS, i])
        mesh = make_object(kind, rng)
        elevation = float(rng.uniform(lo, hi))
        folder = out / "eval" / "orbits" / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(ecfg.orbit_frames):
            azimuth = 360.0 * f / ecfg.orbit_frames
            rel = f"eval/orbits/{name}/{f:02d}.png"
            view = render_view(mesh, azimuth, elevation, ecfg.orbit_size)
            if not cv2.imwrite(str(out / rel), cv2.cvtColor(view, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {out / rel}")
            rows.append({"object": name, "frame": f, "azimuth": azimuth, "elevation": elevation, "file": rel})
    return rows
