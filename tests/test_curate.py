"""End to end on a small world: the contract of every curation output, quarantine, expectations, tracking."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from svd.cli import app
from svd.config import load_params
from svd.curation.expectations import ExpectationsFailed, validate_clips
from svd.io.video import iter_frames

pytestmark = pytest.mark.slow  # a world and a full curation run

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "world.videos=3",
    "world.solo.videos=2",
    "world.sizes=[[192, 108]]",
    "world.shots_per_video=[3, 4]",
    "curate.text.short_side=128",
]

CLIP_COLUMNS = {
    "video": "object",
    "clip_id": "object",
    "start_frame": "int64",
    "end_frame": "int64",
    "start_s": "float64",
    "end_s": "float64",
    "fps": "float64",
    "width": "int64",
    "height": "int64",
    "motion_score": "float64",
    "camera_motion": "object",
    "camera_confidence": "float64",
    "camera_pan_x": "float64",
    "camera_zoom": "float64",
    "text_area": "float64",
    "aesthetic": "float64",
    "clip_score": "float64",
    "caption": "object",
    "caption_coca": "object",
    "caption_video": "object",
    "caption_llm": "object",
    "keep": "bool",
    "drop_reason": "object",
}


def _cli(*args: str):
    runner = CliRunner()
    result = runner.invoke(app, ["--params", str(ROOT / "params.yaml"), *args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    sets = [f"--set={s}" for s in SMALL] + [
        f"--set=paths.mlflow_uri=sqlite:///{base}/mlruns/mlflow.db",
        f"--set=paths.mlflow_artifacts={base}/mlruns/artifacts",
        f"--set=paths.metrics={base}/metrics",
    ]
    r = _cli(*sets, "world", "--out", str(base / "world"), "--seed", "5")
    assert r.exit_code == 0, r.output
    r = _cli(*sets, "curate", "--input", str(base / "world" / "videos"), "--out", str(base / "curated"))
    assert r.exit_code == 0, r.output
    return base


def test_clips_parquet_contract(curated):
    clips = pd.read_parquet(curated / "curated" / "clips.parquet")
    assert len(clips) > 0
    for column, dtype in CLIP_COLUMNS.items():
        assert column in clips, column
        if dtype == "object":  # text: pandas 3 reads it back as its string dtype; all-null text stays object
            assert str(clips[column].dtype) in ("str", "string", "object"), column
        else:
            assert str(clips[column].dtype) == dtype, column
    assert clips["clip_id"].is_unique
    assert (clips["end_frame"] > clips["start_frame"]).all()
    assert (clips["keep"] == (clips["drop_reason"] == "")).all()
    annotated = clips[clips["drop_reason"] != "too_short"]
    assert annotated["motion_score"].notna().all() and annotated["text_area"].between(0, 1).all()
    from svd.curation.camera import LABELS

    assert annotated["camera_motion"].isin(LABELS).all() and annotated["camera_confidence"].between(0, 1).all()
    # tiny profile: no captioner weights, so no model captions; training text is the world's source description
    assert clips["caption_coca"].isna().all() and (clips["backend_caption_coca"] == "none").all()
    kept = clips[clips["keep"]]
    assert (kept["caption_source"] == "source_description").all() and kept["caption"].str.len().gt(0).all()
    assert (clips["backend_clip"].str.endswith("random")).all()


def test_kept_clip_files_decode(curated):
    clips = pd.read_parquet(curated / "curated" / "clips.parquet")
    for _, row in clips[clips["keep"]].iterrows():
        frames = list(iter_frames(curated / "curated" / row["file"]))
        assert len(frames) == row["file_end_frame"] - row["file_start_frame"]
        assert row["file_start_frame"] >= row["start_frame"]  # snapped forward to a keyframe, never earlier
    assert list((curated / "curated" / "previews").glob("*.gif"))


def test_shots_quarantine_and_summary(curated):
    out = curated / "curated"
    shots = pd.read_parquet(out / "shots.parquet")
    assert list(shots.columns)[:5] == ["video", "frame", "span_start", "kind", "level"]
    assert set(shots["kind"]) <= {"cut", "fade"}
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    broken = pd.read_parquet(curated / "world" / "broken.parquet")
    assert len(quarantine) == len(broken) == 5
    assert quarantine["video"].str.startswith("broken_").all()
    assert quarantine["reason"].str.len().gt(5).all() and not quarantine["reason"].str.contains("\n").any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quarantined"] == 5 and summary["videos_ok"] == 3 + 2  # three long videos, two solo
    assert summary["filters"]["aesthetic"]["applied"] is False  # random CLIP never decides
    assert summary["filters"]["motion"]["applied"] is True
    assert summary["truth"]["cuts"]["f1"] >= 0.8
    camera = summary["truth"]["camera"]  # the camera annotator against the world's truth, per class it rendered
    assert set(camera) <= {"static", "pan_left", "pan_right", "zoom_in", "zoom_out"} and "static" in camera
    assert all(0 <= c["f1"] <= 1 and c["clips"] > 0 for c in camera.values())
    assert (out / "expectations" / "report.txt").read_text().startswith(f"{summary['expectations']['expectations']}")
    assert Path(summary["expectations"]["data_docs"]).is_file()
    # the GX project (timestamps, random store ids) lives beside the dataset, never in it
    assert Path(summary["expectations"]["data_docs"]).is_relative_to(curated / "curated-gx")
    assert not list(out.rglob("*.html")) and "seconds" not in summary
    metrics = json.loads((curated / "metrics" / "curate.json").read_text())
    assert metrics["kept"] == summary["kept"]


def test_stage_run_is_tracked_with_lineage(curated):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{curated}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["svd"], output_format="list")
    by_stage = {r.data.tags["svd.step"]: r for r in runs}
    assert {"world", "curate"} <= set(by_stage)
    run = by_stage["curate"]
    assert "dvc.stage" not in run.data.tags  # run by `svd curate`, not by `dvc repro`: no DVC stage to name
    assert len(run.data.tags["git.commit"]) >= 7 and run.data.tags["input.videos.sha256"] != "missing"
    assert run.data.params["curate.filters.motion_bottom"] == "0.25"
    assert run.data.metrics["kept"] >= 1


def test_expectations_failure_is_readable(curated, tmp_path, params_file):
    clips = pd.read_parquet(curated / "curated" / "clips.parquet")
    clips.loc[0, "end_frame"] = clips.loc[0, "start_frame"] - 1
    clips.loc[1, "clip_id"] = clips.loc[2, "clip_id"]
    with pytest.raises(ExpectationsFailed) as exc:
        validate_clips(clips, load_params(params_file).curate, tmp_path / "report", tmp_path / "gx")
    message = str(exc.value)
    assert "expect_column_pair_values_a_to_be_greater_than_b" in message and "clip_id" in message
    assert "FAILED" in (tmp_path / "report" / "report.txt").read_text()
    assert list((tmp_path / "gx").rglob("local_site/index.html"))
    # the offline page: every expectation with its verdict, nothing loaded from a network
    page = (tmp_path / "gx" / "report.html").read_text()
    assert "FAILED" in page and "passed" in page and "expect_column_pair_values_a_to_be_greater_than_b" in page
    assert "http" not in page and "<script" not in page and "<link" not in page


def _file_digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(f.relative_to(folder)): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def test_recuration_of_the_same_videos_is_byte_identical(curated):
    """DVC hashes data/curated; if a second run of the same inputs changed any byte (a timestamp, a GX store id,
    a wall time), `dvc repro` would retrain every model downstream for nothing."""
    out = curated / "curated"
    before = _file_digests(out)
    sets = [f"--set={s}" for s in SMALL] + [f"--set=paths.metrics={curated}/metrics-again"]
    r = _cli(*sets, "curate", "--no-track", "--input", str(curated / "world" / "videos"), "--out", str(out))
    assert r.exit_code == 0, r.output
    after = _file_digests(out)
    assert len(before) > 10 and after == before, sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    )
    metrics = json.loads((curated / "metrics-again" / "curate.json").read_text())
    assert metrics["clips"] > 0 and "seconds" not in metrics  # wall times go to MLflow: git tracks this file


def test_bad_inputs_meet_one_line_errors(tmp_path):
    """The real command: exit code 2 and one line on stderr naming the problem, no traceback."""
    import subprocess
    import sys

    svd = Path(sys.executable).parent / "svd"
    r = subprocess.run(
        [
            str(svd),
            "--params",
            str(ROOT / "params.yaml"),
            "--set",
            "curate.cuts.min_clip_s=abc",
            "curate",
            "--no-track",
            "--input",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "curate.cuts.min_clip_s" in r.stderr
    r = subprocess.run(
        [
            str(svd),
            "--params",
            str(ROOT / "params.yaml"),
            "curate",
            "--no-track",
            "--input",
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "input folder not found" in r.stderr and "Traceback" not in r.stderr
    # with no --out it would overwrite the pipeline's DVC output behind DVC's back: refused, one line, the fix named
    r = subprocess.run(
        [str(svd), "--params", str(ROOT / "params.yaml"), "curate", "--no-track"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DVC_STAGE": ""},
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "dvc repro curate" in r.stderr, r.stderr
    assert not (tmp_path / "data").exists()
    (tmp_path / "empty").mkdir()
    from svd.curation.pipeline import list_videos
    from svd.errors import InputError

    with pytest.raises(InputError, match="no video files"):
        list_videos(tmp_path / "empty")


def test_variable_frame_rate_clip_times_are_the_frames_own(tmp_path):
    """A variable-frame-rate video (3 frames dropped from a 25 fps source before a cut): the clip after the cut
    starts at its first frame's presentation time, not at index / average fps (issue 20)."""
    import numpy as np

    from test_video_io import write_vfr

    y, x = np.mgrid[0:64, 0:96] / 16.0
    smooth = np.sin(x) * np.cos(0.7 * y)  # a low-frequency texture, so a pan reads as motion, not as cuts
    base = [
        np.stack([110 + 90 * smooth, 60 + 30 * smooth, 40 + 0 * smooth], axis=2),  # reddish
        np.stack([30 + 0 * smooth, 90 - 40 * smooth, 130 + 90 * smooth], axis=2),  # bluish
    ]
    pts = [40 * k for k in range(150) if not 20 <= k < 23]  # 147 frames; a cut at display index 80
    frames = [np.roll(base[i >= 80], i, axis=1).astype(np.uint8) for i in range(len(pts))]  # two panning shots
    (tmp_path / "in").mkdir()
    write_vfr(tmp_path / "in" / "vfr.mp4", frames, pts)
    sets = [
        f"--set=paths.mlflow_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"--set=paths.mlflow_artifacts={tmp_path}/mlruns/artifacts",
        f"--set=paths.metrics={tmp_path}/metrics",
        "--set=curate.workers=1",
    ]
    r = _cli(*sets, "curate", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-track")
    assert r.exit_code == 0, r.output
    clips = pd.read_parquet(tmp_path / "out" / "clips.parquet").sort_values("start_frame")
    after = clips[clips.start_frame >= 70].iloc[0]
    assert abs(after.start_frame - 80) <= 2, clips[["start_frame", "end_frame"]]
    shown = pts[int(after.start_frame)] / 1000
    assert after.start_s == pytest.approx(shown) and abs(after.start_frame / after.fps - shown) > 0.04
    assert after.duration_s == pytest.approx(after.end_s - after.start_s)
