"""Training orbits (svd.world.orbits): renderer, Objaverse-style reader, the manifest's expectations, the CLI."""

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from svd.config import OrbitsParams, load_params
from svd.curation.expectations import ExpectationsFailed
from svd.errors import InputError
from svd.world.evalset import BACKGROUND, OBJECT_KINDS, render_view
from svd.world.orbits import (
    TRAIN_KINDS,
    make_training_object,
    read_orbit_folder,
    render_training_orbits,
    validate_orbit_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
VIEWS, SIZE = 6, 32


def _eval_cfg(views=VIEWS, size=SIZE):
    return load_params(PARAMS).world.eval.model_copy(update={"orbit_frames": views, "orbit_size": size})


def _cfg(objects):
    return OrbitsParams(objects=objects, elevation=(-5.0, 30.0), striped=0.5)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("orbits") / "orbits"
    summary = render_training_orbits(_cfg(len(TRAIN_KINDS)), _eval_cfg(), out, seed=3)
    return out, summary


def _mask(image: np.ndarray) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(BACKGROUND)).max(axis=2) > 8


def _views(out: Path, name: str) -> list[np.ndarray]:
    return [cv2.imread(str(out / "objects" / name / f"{f:03d}.png")) for f in range(VIEWS)]


# ---------------------------------------------------------------- renderer
def test_kinds_are_disjoint_from_the_evaluation_kinds(rendered):
    out, summary = rendered
    assert not set(TRAIN_KINDS) & set(OBJECT_KINDS)
    manifest = pd.read_parquet(out / "orbits.parquet")
    assert set(manifest["kind"]) == set(TRAIN_KINDS) and summary["kinds"] == len(TRAIN_KINDS)


def test_layout_views_and_size_follow_the_eval_config(rendered):
    out, summary = rendered
    manifest = pd.read_parquet(out / "orbits.parquet")
    assert len(manifest) == len(TRAIN_KINDS) * VIEWS
    assert summary["objects"] == len(TRAIN_KINDS) and summary["views"] == VIEWS and summary["size"] == SIZE
    assert summary["quarantined"] == 0 and summary["expectations"]["failed"] == 0
    assert -5 <= summary["elevation_min"] <= summary["elevation_max"] <= 30
    for name, rows in manifest.groupby("object"):
        folder = out / "objects" / name
        assert sorted(p.name for p in folder.glob("*.png")) == [f"{f:03d}.png" for f in range(VIEWS)]
        cameras = json.loads((folder / "cameras.json").read_text())
        assert cameras["format"] == "svd-orbit-v1" and cameras["distance"] == 5.0 and cameras["fov_deg"] == 36.0
        assert list(rows["frame"]) == list(range(VIEWS)) and rows["elevation"].nunique() == 1
        steps = np.diff(np.unwrap(np.radians(rows["azimuth"].to_numpy())))
        assert np.allclose(np.degrees(steps), 360 / VIEWS, atol=1e-3)
        for rel in rows["file"]:  # relative to the manifest's folder
            assert not Path(rel).is_absolute()
            assert cv2.imread(str(out / rel)).shape == (SIZE, SIZE, 3)
    assert json.loads((out / "orbits.json").read_text())["objects"] == len(TRAIN_KINDS)


def test_deterministic_per_seed_and_object(rendered, tmp_path):
    out, _ = rendered
    again = render_training_orbits(_cfg(2), _eval_cfg(), tmp_path / "again", seed=3)  # object i depends on i alone
    assert again["objects"] == 2
    for name in sorted(p.name for p in (tmp_path / "again" / "objects").iterdir()):
        for file in sorted((out / "objects" / name).iterdir()):
            assert file.read_bytes() == (tmp_path / "again" / "objects" / name / file.name).read_bytes()
    other = make_training_object("wedge", np.random.default_rng([4, 5, 0]))
    same = make_training_object("wedge", np.random.default_rng([4, 5, 0]))
    assert np.array_equal(other.vertices, same.vertices) and other.colours == same.colours
    assert not np.array_equal(make_training_object("wedge", np.random.default_rng(1)).vertices, other.vertices)


def _distinct_colours(image: np.ndarray, min_pixels: int = 6) -> int:
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return int(((counts >= min_pixels) & _mask(colours[None])[0]).sum())


def test_striped_objects_have_more_colours_and_well_formed_bands():
    plain_seen = striped_seen = 0
    for k, kind in enumerate(TRAIN_KINDS):
        plain = make_training_object(kind, np.random.default_rng(k), striped=False)
        striped = make_training_object(kind, np.random.default_rng(k), striped=True)
        assert len(set(striped.colours)) > len(set(plain.colours))
        assert len(striped.faces) > len(plain.faces)
        for face in striped.faces:  # coplanar sub-faces with a well-defined normal from their first three points
            pts = striped.vertices[list(face)]
            normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])
            assert np.linalg.norm(normal) > 1e-7
            assert np.abs((pts - pts[0]) @ (normal / np.linalg.norm(normal))).max() < 1e-9
        plain_seen += _distinct_colours(render_view(plain, 30.0, 15.0, 64))
        striped_seen += _distinct_colours(render_view(striped, 30.0, 15.0, 64))
    assert striped_seen > 1.3 * plain_seen


def test_views_turn_around_an_asymmetric_object(rendered):
    out, _ = rendered
    name = next(p.name for p in (out / "objects").iterdir() if p.name.startswith("wedge_"))
    views = _views(out, name)
    assert np.abs(views[0].astype(int) - views[VIEWS // 2].astype(int)).mean() > 10


def test_objects_are_centred_and_fill_a_sane_share_of_the_frame(rendered):
    out, _ = rendered
    for folder in (out / "objects").iterdir():
        for image in _views(out, folder.name):
            mask = _mask(image)
            ys, xs = np.nonzero(mask)
            assert 0.08 < mask.mean() < 0.6, (folder.name, mask.mean())
            assert abs(xs.mean() - SIZE / 2) < 0.15 * SIZE and abs(ys.mean() - SIZE / 2) < 0.15 * SIZE
            assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()), folder.name


# ---------------------------------------------------------------- reader
def _look_at(azimuth: float, elevation: float, distance: float = 4.0) -> list[list[float]]:
    """A camera-to-world matrix (NeRF/OpenGL: the camera looks down its -z) at the given angles, y up."""
    az, el = math.radians(azimuth), math.radians(elevation)
    position = distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    back = position / np.linalg.norm(position)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, np.cross(back, right), back, position
    return matrix.tolist()


def _object(folder: Path, views: int = 4, size: int = 16, schema: str = "v1", angles=None) -> Path:
    folder.mkdir(parents=True)
    angles = angles or [(360.0 * f / views, 12.0) for f in range(views)]
    entries = []
    for f, (azimuth, elevation) in enumerate(angles):
        cv2.imwrite(str(folder / f"{f:03d}.png"), np.full((size, size, 3), 40 * f, np.uint8))
        if schema == "v1":
            entries.append({"file": f"{f:03d}.png", "azimuth_deg": azimuth, "elevation_deg": elevation})
        else:
            entries.append({"file_path": f"./{f:03d}", "transform_matrix": _look_at(azimuth, elevation)})
    key = "views" if schema == "v1" else "frames"
    (folder / "cameras.json").write_text(json.dumps({key: entries}))
    return folder


def test_reader_takes_nerf_style_cameras(tmp_path):
    angles = [(0.0, 0.0), (90.0, 30.0), (200.0, -5.0), (359.5, 60.0)]
    _object(tmp_path / "renders" / "chair_01", schema="nerf", angles=angles)
    frame, quarantine = read_orbit_folder(tmp_path / "renders", 4)
    assert quarantine == [] and list(frame["frame"]) == [0, 1, 2, 3]
    assert np.allclose(frame["azimuth"], [a for a, _ in angles], atol=1e-6)
    assert np.allclose(frame["elevation"], [e for _, e in angles], atol=1e-6)
    assert list(frame["file"]) == [f"renders/chair_01/{f:03d}.png" for f in range(4)]  # relative to ROOT's parent
    assert set(frame["kind"]) == {"chair"} and set(frame["width"]) == {16}


def test_reader_ignores_hidden_entries_and_files(tmp_path):
    root = tmp_path / "renders"
    _object(root / "mug_0001", angles=[(370.0, 5.0), (10.0, 5.0), (100.0, 5.0), (-90.0, 5.0)])
    _object(root / ".cache")
    (root / "README.txt").write_text("renders")
    frame, _ = read_orbit_folder(root, 4)
    assert set(frame["object"]) == {"mug_0001"}
    assert np.allclose(frame["azimuth"], [10.0, 10.0, 100.0, 270.0])  # wrapped into [0, 360)
    frame, _ = read_orbit_folder(root, 4, base=tmp_path / "elsewhere")
    assert all(Path(f).is_absolute() for f in frame["file"])  # outside the manifest's folder: absolute


def _drop_view(folder: Path, keep_entry: bool) -> None:
    (folder / "002.png").unlink()
    if not keep_entry:
        cameras = json.loads((folder / "cameras.json").read_text())
        cameras["views"] = [v for v in cameras["views"] if v["file"] != "002.png"]
        (folder / "cameras.json").write_text(json.dumps(cameras))


BREAKAGES = {
    "missing view": (lambda f: _drop_view(f, keep_entry=False), "3 views, expected 4 (missing 002.png)"),
    "missing file": (lambda f: _drop_view(f, keep_entry=True), "cameras.json names 002.png, which is missing"),
    "no cameras": (lambda f: (f / "cameras.json").unlink(), "no cameras.json"),
    "bad json": (lambda f: (f / "cameras.json").write_text("{views: ["), "not valid JSON"),
    "corrupt png": (lambda f: (f / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "001.png: unreadable image"),
    "mixed sizes": (
        lambda f: cv2.imwrite(str(f / "003.png"), np.zeros((8, 16, 3), np.uint8)),
        "views of mixed sizes",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_reader_errors_name_the_object_in_one_line(tmp_path, breakage):
    root = tmp_path / "renders"
    _object(root / "lamp_0001")
    bad = _object(root / "vase_0002")
    damage, expected = BREAKAGES[breakage]
    damage(bad)
    with pytest.raises(InputError) as err:
        read_orbit_folder(root, 4)
    message = str(err.value)
    assert "\n" not in message and "vase_0002" in message and expected in message, message
    frame, quarantine = read_orbit_folder(root, 4, skip_bad=True)  # the good object survives
    assert set(frame["object"]) == {"lamp_0001"}
    assert [q["object"] for q in quarantine] == ["vase_0002"] and expected in quarantine[0]["reason"]


def test_reader_refuses_empty_or_wholly_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no object folders"):
        read_orbit_folder(tmp_path / "empty", 4)
    with pytest.raises(InputError, match="not a folder"):
        read_orbit_folder(tmp_path / "absent", 4)
    _object(tmp_path / "bad" / "cup_0001", views=3)
    with pytest.raises(InputError, match="no good object"):
        read_orbit_folder(tmp_path / "bad", 4, skip_bad=True)


# ---------------------------------------------------------------- expectations
def test_expectations_pass_on_a_rendered_set_and_fail_on_a_doctored_manifest(rendered, tmp_path):
    out, summary = rendered
    assert summary["expectations"]["expectations"] > 20
    assert (out / "expectations" / "report.txt").read_text().startswith(f"{summary['expectations']['expectations']}")
    assert "Orbit manifest" in (out.with_name(out.name + "-gx") / "report.html").read_text()
    manifest = pd.read_parquet(out / "orbits.parquet")
    doctored = pd.concat([manifest, manifest.iloc[[0]]], ignore_index=True)
    doctored.loc[3, "elevation"] = 120.0
    with pytest.raises(ExpectationsFailed) as err:
        validate_orbit_manifest(doctored, VIEWS, tmp_path / "exp", tmp_path / "gx")
    message = str(err.value)
    assert "\n" not in message
    for failed in ("column=elevation", "column_list=['object', 'frame']", "column=file", "column=object_views"):
        assert failed in message, failed
    assert "FAILED" in (tmp_path / "exp" / "report.txt").read_text()


# ---------------------------------------------------------------- CLI
def _svd(*args):
    from svd.cli import app

    small = ["--set", "orbits.objects=2", "--set", "world.eval.orbit_frames=4", "--set", "world.eval.orbit_size=32"]
    return CliRunner().invoke(app, ["--params", str(PARAMS), *small, "orbits", *args, "--no-track"])


def test_cli_renders_or_indexes_a_source_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _svd("--out", "o")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["objects"] == 2 and summary["views"] == 4 and summary["size"] == 32
    assert len(pd.read_parquet("o/orbits.parquet")) == 8 and Path("o-gx/report.html").is_file()
    assert json.loads(Path("o-metrics.json").read_text())["objects"] == 2

    source = tmp_path / "farm"
    shutil.copytree("o/objects", source)
    _object(source / "broken_0009", views=3)
    result = _svd("--out", "indexed", "--source", str(source))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["objects"] == 2 and summary["quarantined"] == 1 and summary["source"] == str(source)
    assert json.loads(Path("indexed/quarantine.json").read_text())[0]["object"] == "broken_0009"
    manifest = pd.read_parquet("indexed/orbits.parquet")
    assert all(cv2.imread(str(Path("indexed") / f)) is not None for f in manifest["file"])

    (tmp_path / "nothing").mkdir()
    result = _svd("--out", "none", "--source", str(tmp_path / "nothing"))
    assert result.exit_code != 0 and isinstance(result.exception, InputError)


def test_held_out_orbits_from_a_gso_style_folder_take_elevations_from_cameras_json(tmp_path):
    """evaluate.multiview.gso_root: real renders (views + cameras.json per object, either schema) are the held-out
    orbits, each at the mean elevation of its cameras."""
    from svd.evaluation.multiview_model import held_out_orbits

    root = tmp_path / "gso"
    _object(root / "mug", angles=[(90.0 * f, 20.0) for f in range(4)], schema="nerf")
    _object(root / "shoe", angles=[(90.0 * f, 10.0) for f in range(4)])
    params = load_params(PARAMS, overrides=["evaluate.multiview.frames=4", f"evaluate.multiview.gso_root={root}"])
    truth = held_out_orbits(params, (8, 8))
    assert truth["names"] == ["mug", "shoe"] and truth["orbits"].shape == (2, 4, 8, 8, 3)
    np.testing.assert_allclose(truth["elevations"], [20.0, 10.0], atol=1e-5)
    np.testing.assert_array_equal(truth["orbits"][1, 2], 80)  # the third view's grey, area-resized
    (root / "shoe" / "cameras.json").unlink()
    with pytest.raises(InputError, match="shoe"):
        held_out_orbits(params, (8, 8))
