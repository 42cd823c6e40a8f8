"""Training orbits for the multi-view finetune (SVD-MV, paper §4.4): an Objaverse stand-in.

The world renders 360-degree turntable orbits of convex solids whose kinds are disjoint from the held-out evaluation
orbits' (svd.world.evalset.OBJECT_KINDS, the GSO stand-in), as Objaverse is disjoint from GSO, with per-face HSV
colours and, on a share of the objects, striped faces (a texture made as geometry: every face is cut into coplanar
bands, so evalset.render_view, exact for convex solids, draws them).

Layout, Objaverse-render style; the reader below reads it on every run, so the same code reads a real render folder:

    OUT/objects/<kind>_<index:04d>/000.png ... 020.png     RGB views, view 0 the front view the model is conditioned on
    OUT/objects/<kind>_<index:04d>/cameras.json            {"format": "svd-orbit-v1", "distance", "fov_deg",
                                                             "views": [{"file", "azimuth_deg", "elevation_deg"}, ...]}
    OUT/orbits.parquet      the manifest: object, frame, file, azimuth, elevation, kind, width, height
    OUT/orbits.json         the summary (also the CLI's metrics)
    OUT/quarantine.json     objects of a --source folder left out, with the reason (empty list when none)
    OUT/expectations/report.txt   the Great Expectations verdict on the manifest
    OUT-gx/                 the GX project and report.html, beside OUT: its timestamps would change OUT's hash

The manifest's `file` is relative to the manifest's own folder (OUT), POSIX separators: `objects/<object>/000.png`
for rendered orbits; for a --source folder outside OUT, the view's absolute path. Either way `OUT / file` opens it.

Views per orbit and their size are the evaluation's (world.eval.orbit_frames, world.eval.orbit_size): training and
evaluation share them.
"""

from __future__ import annotations

import colorsys
import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from svd.config import EvalWorld, OrbitsParams
from svd.errors import InputError
from svd.world.evalset import OBJECT_KINDS, Mesh, render_view

STREAM_TRAIN_ORBITS = 5  # evalset uses 3 (actions) and 4 (eval orbits)
FORMAT = "svd-orbit-v1"
DISTANCE = 5.0  # evalset.render_view's camera distance and field of view
FOV_DEG = 36.0
TRAIN_KINDS = ("tetrahedron", "hexagonal_prism", "frustum", "bipyramid", "slab", "wedge", "tower", "antiprism")
RADIUS = (1.2, 1.5)  # the object's farthest vertex from its centre: silhouettes fill about 40-75% of the frame
ASPECT = (0.8, 1.25)  # per-axis stretch before the radius is set
BANDS = (4, 8)  # stripes across the object

assert not set(TRAIN_KINDS) & set(OBJECT_KINDS), "training kinds must stay disjoint from the evaluation kinds"


# ---------------------------------------------------------------- geometry
def _ring(n: int, radius: float, y: float, phase: float = 0.0) -> list[list[float]]:
    """n points of a regular polygon in the x-z plane at height y."""
    return [
        [radius * math.cos(phase + 2 * math.pi * k / n), y, radius * math.sin(phase + 2 * math.pi * k / n)]
        for k in range(n)
    ]


def _solid(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices of a convex solid of `kind` (y up), before stretching and scaling."""
    if kind == "tetrahedron":
        return np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64)
    if kind == "hexagonal_prism":  # lying down: the hexagon in x-y, extruded along z
        length = rng.uniform(0.9, 1.5)
        hexagon = [(math.cos(math.pi * k / 3), math.sin(math.pi * k / 3)) for k in range(6)]
        return np.array([[x, y, z] for z in (-length, length) for x, y in hexagon], np.float64)
    if kind == "frustum":  # a truncated square pyramid
        top = rng.uniform(0.35, 0.7)
        return np.array(_ring(4, 1.0, -0.8, math.pi / 4) + _ring(4, top, 0.8, math.pi / 4), np.float64)
    if kind == "bipyramid":  # pentagonal
        height = rng.uniform(0.9, 1.3)
        return np.array(_ring(5, 1.0, 0.0) + [[0, height, 0], [0, -height, 0]], np.float64)
    if kind == "slab":  # a short, wide octagonal prism
        half = rng.uniform(0.2, 0.35)
        return np.array(_ring(8, 1.0, -half, math.pi / 8) + _ring(8, 1.0, half, math.pi / 8), np.float64)
    if kind == "wedge":  # a right-triangle prism (a ramp), extruded along z
        depth = rng.uniform(0.6, 1.0)
        tri = [(-1.0, -0.6), (1.0, -0.6), (-1.0, 0.8)]
        return np.array([[x, y, z] for z in (-depth, depth) for x, y in tri], np.float64)
    if kind == "tower":  # a tall standing hexagonal prism
        half = rng.uniform(1.1, 1.6)
        return np.array(_ring(6, 0.6, -half) + _ring(6, 0.6, half), np.float64)
    if kind == "antiprism":  # square: the top square turned 45 degrees on the bottom one
        half = rng.uniform(0.45, 0.7)
        return np.array(_ring(4, 1.0, -half) + _ring(4, 1.0, half, math.pi / 4), np.float64)
    raise ValueError(f"unknown training orbit object {kind!r} (kinds: {', '.join(TRAIN_KINDS)})")


def _hull_faces(vertices: np.ndarray) -> list[np.ndarray]:
    """The convex hull's faces as polygons (K, 3), coplanar hull triangles merged, points in order around the face."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(vertices)
    faces: list[tuple[np.ndarray, set[int]]] = []
    for simplex, equation in zip(hull.simplices, hull.equations):
        for plane, members in faces:
            if np.allclose(plane, equation, atol=1e-7):
                members.update(int(i) for i in simplex)
                break
        else:
            faces.append((equation, {int(i) for i in simplex}))
    polygons = []
    for plane, members in faces:
        pts = vertices[sorted(members)]
        centre = pts.mean(axis=0)
        u = pts[0] - centre
        u /= np.linalg.norm(u)
        v = np.cross(plane[:3], u)
        angles = np.arctan2((pts - centre) @ v, (pts - centre) @ u)
        polygons.append(pts[np.argsort(angles)])
    return polygons


def _clip(polygon: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon (K, 3) where p @ normal >= offset."""
    out = []
    n = len(polygon)
    for k in range(n):
        a, b = polygon[k], polygon[(k + 1) % n]
        da, db = a @ normal - offset, b @ normal - offset
        if da >= 0:
            out.append(a)
        if (da >= 0) != (db >= 0):
            out.append(a + (b - a) * (da / (da - db)))
    return np.array(out).reshape(-1, 3)


def _clean(polygon: np.ndarray, eps: float = 1e-9) -> np.ndarray | None:
    """Drop repeated and collinear points; start at the corner with the widest triangle, so a renderer that takes
    the normal from the first three points gets a well-defined one. None when nothing of area is left."""
    pts = list(polygon)
    changed = True
    while changed and len(pts) >= 3:
        changed = False
        for k in range(len(pts)):
            a, b, c = pts[k - 1], pts[k], pts[(k + 1) % len(pts)]
            if np.linalg.norm(b - a) < 1e-7 or np.linalg.norm(np.cross(b - a, c - b)) < eps:
                del pts[k]
                changed = True
                break
    if len(pts) < 3:
        return None
    pts = np.array(pts)
    n = len(pts)
    widths = [np.linalg.norm(np.cross(pts[(k + 1) % n] - pts[k], pts[(k + 2) % n] - pts[k])) for k in range(n)]
    start = int(np.argmax(widths))
    if widths[start] < 1e-6:
        return None
    return np.roll(pts, -start, axis=0)


def _hsv(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def make_training_object(kind: str, rng: np.random.Generator, striped: bool = False) -> Mesh:
    """A convex solid of `kind` (TRAIN_KINDS) centred on the origin: stretched per axis, scaled to a random radius,
    one HSV colour per face; striped: every face cut into bands along one random direction, alternating the face's
    colour with a stripe colour (a pastel or a dark one) shared by the object."""
    vertices = _solid(kind, rng) * rng.uniform(*ASPECT, size=3)
    vertices -= (vertices.min(axis=0) + vertices.max(axis=0)) / 2  # the bounding box's centre on the origin
    vertices *= rng.uniform(*RADIUS) / np.linalg.norm(vertices, axis=1).max()
    faces = _hull_faces(vertices)
    colours = [_hsv(rng, (0.35, 0.95), (0.5, 1.0)) for _ in faces]
    polygons: list[np.ndarray] = []
    face_colours: list[tuple[int, int, int]] = []
    if striped:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        # light (a pastel, never the background's near-white grey) or dark
        stripe = _hsv(rng, (0.3, 0.5), (0.85, 1.0)) if rng.random() < 0.5 else _hsv(rng, (0.3, 0.9), (0.12, 0.3))
        along = vertices @ direction
        bands = int(rng.integers(BANDS[0], BANDS[1] + 1))
        width = (along.max() - along.min()) / bands
        phase = along.min() - rng.uniform(0, width)  # bands start anywhere, not on a vertex
        for face, colour in zip(faces, colours):
            proj = face @ direction
            first, last = int((proj.min() - phase) // width), int((proj.max() - phase) // width)
            for band in range(first, last + 1):
                part = _clip(face, direction, phase + band * width)
                part = _clip(part, -direction, -(phase + (band + 1) * width)) if len(part) >= 3 else part
                part = _clean(part) if len(part) >= 3 else None
                if part is not None:
                    polygons.append(part)
                    face_colours.append(colour if band % 2 == 0 else stripe)
    else:
        for face, colour in zip(faces, colours):
            part = _clean(face)
            polygons.append(part)
            face_colours.append(colour)
    flat = np.concatenate(polygons)
    index, start = [], 0
    for polygon in polygons:
        index.append(tuple(range(start, start + len(polygon))))
        start += len(polygon)
    return Mesh(flat, tuple(index), tuple(face_colours))


# ---------------------------------------------------------------- rendering
def orbits_gx_dir(out: Path) -> Path:
    """Where the Great Expectations project of the orbits in OUT goes: beside it, OUT-gx (as `curate` does)."""
    out = Path(out)
    if not out.name:
        out = out.resolve()
    return out.with_name(out.name + "-gx")


def _clear(out: Path, keep: Path | None = None) -> None:
    """Remove what an earlier run wrote into OUT (never the folder `keep`, a source being read)."""
    objects = out / "objects"
    if objects.is_dir() and not (keep is not None and keep.resolve().is_relative_to(objects.resolve())):
        shutil.rmtree(objects)
    for name in ("orbits.parquet", "orbits.json", "quarantine.json"):
        (out / name).unlink(missing_ok=True)


def render_training_orbits(cfg: OrbitsParams, eval_cfg: EvalWorld, out: Path, seed: int) -> dict:
    """Render cfg.objects orbits into OUT/objects (eval_cfg.orbit_frames views of eval_cfg.orbit_size px each),
    read them back with read_orbit_folder into OUT/orbits.parquet, validate that manifest; return the summary."""
    out = Path(out)
    views, size = eval_cfg.orbit_frames, eval_cfg.orbit_size
    lo, hi = cfg.elevation
    _clear(out)
    root = out / "objects"
    striped_objects = 0
    for i in range(cfg.objects):
        kind = TRAIN_KINDS[i % len(TRAIN_KINDS)]
        name = f"{kind}_{i:04d}"
        rng = np.random.default_rng([seed, STREAM_TRAIN_ORBITS, i])
        striped = bool(rng.random() < cfg.striped)
        striped_objects += striped
        mesh = make_training_object(kind, rng, striped)
        elevation = round(float(rng.uniform(lo, hi)), 4)
        start = float(rng.uniform(0, 360))
        folder = root / name
        folder.mkdir(parents=True)
        cameras = []
        for f in range(views):
            azimuth = round((start + 360.0 * f / views) % 360.0, 4) % 360.0
            file = f"{f:03d}.png"
            view = render_view(mesh, azimuth, elevation, size)
            if not cv2.imwrite(str(folder / file), cv2.cvtColor(view, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {folder / file}")
            cameras.append({"file": file, "azimuth_deg": azimuth, "elevation_deg": elevation})
        meta = {"format": FORMAT, "distance": DISTANCE, "fov_deg": FOV_DEG, "kind": kind, "striped": striped}
        (folder / "cameras.json").write_text(json.dumps({**meta, "views": cameras}, indent=1) + "\n")
    frame, quarantine = read_orbit_folder(root, views)
    return _finish(frame, quarantine, out, views, {"source": None, "striped": striped_objects / max(1, cfg.objects)})


def import_orbit_folder(source: Path, out: Path, views: int) -> dict:
    """Index an Objaverse-style render folder (SOURCE/<object>/NNN.png + cameras.json) into OUT/orbits.parquet
    without copying a view: broken objects go to OUT/quarantine.json (a render farm leaves a few; the set is kept),
    the rest is validated like a rendered set. Returns the summary."""
    source, out = Path(source), Path(out)
    _clear(out, keep=source)
    frame, quarantine = read_orbit_folder(source, views, skip_bad=True, base=out)
    return _finish(frame, quarantine, out, views, {"source": str(source)})


def _finish(frame: pd.DataFrame, quarantine: list[dict], out: Path, views: int, extra: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / "orbits.parquet")
    (out / "quarantine.json").write_text(json.dumps(quarantine, indent=1) + "\n")
    report = validate_orbit_manifest(frame, views, out / "expectations", orbits_gx_dir(out))
    per_object = frame.groupby("object", sort=True).first()
    summary = {
        "objects": int(per_object.shape[0]),
        "views": views,
        "size": int(frame["height"].max()),
        "kinds": int(per_object["kind"].nunique()),
        "per_kind": {k: int(v) for k, v in per_object["kind"].value_counts().sort_index().items()},
        **extra,
        "elevation_min": float(per_object["elevation"].min()),
        "elevation_max": float(per_object["elevation"].max()),
        "quarantined": len(quarantine),
        "expectations": {"expectations": report["expectations"], "failed": report["failed"]},
    }
    (out / "orbits.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# ---------------------------------------------------------------- reading
def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _angles_from_matrix(matrix, where: str) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of a 4x4 camera-to-world matrix: y up, azimuth = atan2(x, z) mod 360."""
    try:
        m = np.asarray(matrix, np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError(f"{where}: transform_matrix is not a finite 4x4 matrix")
    x, y, z = m[:3, 3]
    distance = math.sqrt(x * x + y * y + z * z)
    if distance < 1e-9:
        raise InputError(f"{where}: the camera sits at the object's centre")
    return math.degrees(math.atan2(x, z)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, y / distance))))


def _cameras(folder: Path) -> list[tuple[str, float, float]]:
    """(file, azimuth, elevation) per view from folder/cameras.json: svd-orbit-v1 or NeRF-style."""
    path = folder / "cameras.json"
    if not path.is_file():
        raise InputError(f"orbit folder {folder}: no cameras.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"orbit {path}: not valid JSON ({str(err).splitlines()[0]})") from None
    entries = []
    if isinstance(data, dict) and isinstance(data.get("views"), list):
        for k, view in enumerate(data["views"]):
            try:
                file = str(view["file"])
                azimuth, elevation = float(view["azimuth_deg"]) % 360.0, float(view["elevation_deg"])
            except (TypeError, KeyError, ValueError):
                raise InputError(f"orbit {path}: view {k} lacks a file, azimuth_deg or elevation_deg number") from None
            entries.append((file, azimuth, elevation))
    elif isinstance(data, dict) and isinstance(data.get("frames"), list):
        for k, view in enumerate(data["frames"]):
            if not isinstance(view, dict) or "file_path" not in view or "transform_matrix" not in view:
                raise InputError(f"orbit {path}: frame {k} lacks file_path or transform_matrix")
            file = str(view["file_path"]).removeprefix("./")
            file = file if Path(file).suffix else file + ".png"  # NeRF's blender sets name views without .png
            entries.append((file, *_angles_from_matrix(view["transform_matrix"], f"orbit {path} ({file})")))
    else:
        raise InputError(f'orbit {path}: neither svd-orbit-v1 (a "views" list) nor NeRF-style (a "frames" list)')
    for _, azimuth, elevation in entries:
        if not (math.isfinite(azimuth) and math.isfinite(elevation)):
            raise InputError(f"orbit {path}: an angle is not finite")
    return entries


def _read_object(folder: Path, views: int, base: Path) -> list[dict]:
    entries = _cameras(folder)
    files = [file for file, _, _ in entries]
    if len(set(files)) != len(files):
        twice = sorted({f for f in files if files.count(f) > 1})
        raise InputError(f"orbit {folder}: cameras.json names {', '.join(twice[:3])} twice")
    if len(entries) != views:
        missing = ""
        if all(re.fullmatch(r"\d{3}\.png", f) for f in files):
            absent = [f"{k:03d}.png" for k in range(views) if f"{k:03d}.png" not in files]
            if absent:
                missing = f" (missing {', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''})"
        raise InputError(f"orbit {folder}: {len(entries)} views, expected {views}{missing}")
    for file in files:
        if not (folder / file).is_file():
            raise InputError(f"orbit {folder}: cameras.json names {file}, which is missing")
    rows, first = [], None
    for frame, (file, azimuth, elevation) in enumerate(sorted(entries, key=lambda e: _natural(e[0]))):
        path = folder / file
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"orbit {path}: unreadable image")
        height, width = image.shape[:2]
        if first is None:
            first = (file, width, height)
        elif (width, height) != first[1:]:
            raise InputError(
                f"orbit {folder}: views of mixed sizes "
                f"({first[0]} is {first[1]}x{first[2]}, {file} is {width}x{height})"
            )
        try:
            rel = path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            rel = path.resolve().as_posix()  # outside the manifest's folder: absolute, so base / file still opens it
        rows.append(
            {
                "object": folder.name,
                "frame": frame,
                "file": rel,
                "azimuth": azimuth,
                "elevation": elevation,
                "kind": folder.name.rsplit("_", 1)[0] if "_" in folder.name else "unknown",
                "width": width,
                "height": height,
            }
        )
    return rows


MANIFEST_COLUMNS = {
    "object": "object",
    "frame": "int64",
    "file": "object",
    "azimuth": "float64",
    "elevation": "float64",
    "kind": "object",
    "width": "int64",
    "height": "int64",
}


def read_orbit_folder(
    root: Path, views: int, skip_bad: bool = False, base: Path | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """Read an Objaverse-style render folder, ROOT/<object>/<view>.png + ROOT/<object>/cameras.json (svd-orbit-v1:
    {"views": [{"file", "azimuth_deg", "elevation_deg"}]}, or NeRF-style: {"frames": [{"file_path",
    "transform_matrix" (camera-to-world, y up)}]}), into (manifest, quarantine).

    The manifest has one row per view: object, frame (0-based, in natural file-name order), file (relative to `base`,
    default ROOT's parent, which is where the manifest goes; a view outside `base`: its absolute path), azimuth
    (degrees in [0, 360)), elevation (degrees), kind (the object name before its last `_`, else "unknown"), width,
    height. Every object must have exactly `views` readable views of one size. Hidden entries and files at ROOT are
    ignored. A bad object raises InputError (one line naming it), or with skip_bad=True goes to the quarantine,
    [{"object", "reason"}], and the rest is kept. No good object at all is an InputError."""
    root = Path(root)
    base = root.parent if base is None else Path(base)
    if not root.is_dir():
        raise InputError(f"orbit folder {root}: not a folder")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not folders:
        raise InputError(f"orbit folder {root}: no object folders (expected {root}/<object>/000.png + cameras.json)")
    rows, quarantine = [], []
    for folder in folders:
        try:
            rows += _read_object(folder, views, base)
        except InputError as err:
            if not skip_bad:
                raise
            quarantine.append({"object": folder.name, "reason": str(err)})
    if not rows:
        reasons = "; ".join(q["reason"] for q in quarantine[:3])
        raise InputError(f"orbit folder {root}: no good object among {len(folders)} ({reasons})")
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).astype(MANIFEST_COLUMNS)
    return frame, quarantine


# ---------------------------------------------------------------- expectations
def build_orbit_suite(gx, views: int):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="orbit_manifest")
    for column, dtype in MANIFEST_COLUMNS.items():
        suite.add_expectation(E.ExpectColumnToExist(column=column))
        suite.add_expectation(
            E.ExpectColumnValuesToBeOfType(column=column, type_=dtype if dtype != "object" else "str")
        )
    for column in ("object", "frame", "file", "azimuth", "elevation"):
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=["object", "frame"]))
    suite.add_expectation(E.ExpectColumnValuesToBeUnique(column="file"))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="frame", min_value=0, max_value=views - 1))
    suite.add_expectation(
        E.ExpectColumnValuesToBeBetween(column="azimuth", min_value=0, max_value=360, strict_max=True)
    )
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="elevation", min_value=-90, max_value=90))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="width", min_value=2))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="height", min_value=2))
    # every object a whole orbit: its row count, computed per row (object_views), is the view count
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="object_views", min_value=views, max_value=views))
    return suite


def validate_orbit_manifest(df: pd.DataFrame, views: int, out_dir: Path, gx_dir: Path) -> dict:
    """Run the "orbit_manifest" suite in a fresh GX project at gx_dir (data docs and report.html included); write
    report.txt into out_dir; raise ExpectationsFailed with a readable report on failure (curation's runner)."""
    from svd.curation.expectations import run_suite

    table = df.copy()
    if "object" in table.columns:
        table["object_views"] = table.groupby("object", dropna=False)["object"].transform("size").astype("int64")
    return run_suite(
        lambda gx: build_orbit_suite(gx, views),
        table,
        names=("orbits", "manifest", "all_views", "orbits"),
        title="Orbit manifest",
        unit="views",
        module="svd.world.orbits",
        out_dir=out_dir,
        gx_dir=gx_dir,
    )
