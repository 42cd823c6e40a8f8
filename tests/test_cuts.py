"""Cut detection: the scoring maths, the cascade on ffmpeg-made video (an outside source), and on the world."""

from pathlib import Path

import pandas as pd
import pytest

from ffmpeg_sources import make_video
from svd.config import load_params
from svd.curation.cuts import Detection, merge_detections, score_boundaries
from svd.curation.segment import Segmenter, boundary_rows
from svd.io.video import iter_frames, probe


def test_score_boundaries_counts():
    truth = [(10, 10), (40, 52)]
    assert score_boundaries([(10, 10), (45, 50)], truth)["f1"] == 1.0
    # off by more than the tolerance, and a spurious one
    s = score_boundaries([(13, 13), (80, 80)], truth)
    assert (s["tp"], s["precision"], s["recall"]) == (0, 0.0, 0.0)
    # one prediction cannot match two truths
    s = score_boundaries([(10, 10)], [(10, 10), (11, 11)])
    assert s["tp"] == 1 and s["recall"] == 0.5
    assert score_boundaries([], [])["f1"] == 1.0


def test_merge_explains_coarse_detections_by_finer_ones():
    dets = [Detection(60, 0, 1), Detection(60, 1, 4), Detection(72, 2, 12)]
    bounds = merge_detections(dets)
    assert [(b.frame, b.gradual) for b in bounds] == [(60, False)]


def test_merge_keeps_unexplained_coarse_detections_as_gradual_spans():
    bounds = merge_detections([Detection(120, 1, 4), Detection(124, 1, 4), Detection(200, 0, 1)], merge_gap=6)
    assert [(b.span_start, b.frame, b.gradual) for b in bounds] == [(117, 124, True), (200, 200, False)]


def _detect(path: Path, params) -> list[dict]:
    info = probe(path)
    seg = Segmenter(params.curate.cuts, info.fps, cut_short_side=params.curate.cuts.short_side)
    for i, frame in enumerate(iter_frames(path, short_side=params.curate.decode_short_side)):
        seg.push(i, frame)
    seg.finish()
    return boundary_rows(seg.shots)


def test_cascade_on_ffmpeg_test_sources(tmp_path, params_file):
    """Hard cuts, a fade, a fade through black and a dissolve made by ffmpeg's xfade: all found, none extra."""
    path = tmp_path / "sources.mp4"
    truth = make_video(path)
    rows = _detect(path, load_params(params_file))
    score = score_boundaries([(r["span_start"], r["frame"]) for r in rows], [(a, b) for a, b, _ in truth])
    assert score["f1"] == 1.0, (rows, truth)
    kinds = {r["frame"]: r["kind"] for r in rows}
    assert kinds[75] == "cut" and kinds[185] == "cut"
    assert sorted(k for k in kinds.values()) == ["cut", "cut", "fade", "fade", "fade"]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    from svd.world import generate_world

    out = tmp_path_factory.mktemp("world")
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml",
                         overrides=["world.videos=4", "world.broken_inputs=false"])
    generate_world(params.world, out, seed=3)
    return out


def test_cascade_on_the_world(small_world, params_file):
    params = load_params(params_file)
    videos = pd.read_parquet(small_world / "videos.parquet")
    transitions = pd.read_parquet(small_world / "transitions.parquet")
    tp = pred = true = 0
    for _, v in videos.iterrows():
        rows = _detect(small_world / v["file"], params)
        t = transitions[transitions["video"] == v["video"]]
        s = score_boundaries([(r["span_start"], r["frame"]) for r in rows], list(zip(t["span_start"], t["frame"])))
        tp, pred, true = tp + s["tp"], pred + s["predicted"], true + s["truth"]
    precision, recall = tp / pred, tp / true
    assert 2 * precision * recall / (precision + recall) >= 0.9, (tp, pred, true)
