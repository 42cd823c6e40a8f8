"""The world evaluator on the world's own held-aside action clips (ground truth known), degraded copies of them,
and negative controls that prove it can fail."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from svd.config import load_params
from svd.evaluation.world import (
    RULES,
    Prompt,
    background_blends,
    colour_mask,
    evaluate_folder,
    evaluate_videos,
    judge,
    parse_prompt,
    track,
)
from svd.io.video import iter_frames
from svd.world import generate_world
from svd.world.scene import BG_COLOURS, COLOURS

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
FPS = 8.0
# every colour, shape and direction (still included), one clip per class; the long videos are kept tiny
OVERRIDES = [
    "world.videos=1",
    "world.solo.videos=0",
    "world.broken_inputs=false",
    "world.sizes=[[64,36]]",
    "world.shots_per_video=[1,1]",
    "world.shot_seconds=[0.5,0.5]",
    "world.eval.colours=[red,green,blue,yellow,white,purple]",
    "world.eval.shapes=[circle,square,triangle]",
    "world.eval.directions=[left,right,up,down,still]",
    "world.eval.action_frames=16",
    f"world.eval.action_fps={int(FPS)}",
    "world.eval.action_size=64",
    "world.eval.videos_per_class=1",
    "world.eval.orbit_objects=1",
    "world.eval.orbit_frames=2",
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("world-eval")
    cv2.setNumThreads(1)
    generate_world(load_params(PARAMS, overrides=OVERRIDES).world, out, seed=5)
    rows = pd.read_parquet(out / "eval" / "actions.parquet")
    videos = [np.stack(list(iter_frames(out / f))) for f in rows["file"]]
    return {"out": out, "rows": rows, "videos": videos, "prompts": list(rows["class_name"])}


def _moving_accuracy(result) -> float:
    moving = [p["direction_correct"] for p in result["per_prompt"] if p["expected"] != "still"]
    return float(np.mean(moving))


# ---------------------------------------------------------------- prompts


def test_parse_prompt_forms():
    assert parse_prompt("a red circle moving left") == Prompt("red", "circle", "left")
    assert parse_prompt("A White Triangle standing still.") == Prompt("white", "triangle", "still")
    assert parse_prompt("a blue square moving up, the camera pans right") == Prompt("blue", "square", "up")
    assert parse_prompt("a purple circle moving down, the camera zooms in") == Prompt("purple", "circle", "down")


@pytest.mark.parametrize(
    "text, match",
    [
        ("a pink circle moving left", "unknown colour"),
        ("a red hexagon moving left", "unknown shape"),
        ("a red circle moving sideways", "unknown direction"),
        ("a red circle moving left and a blue square moving up", "one object per prompt"),
        ("red things", "cannot parse"),
        ("", "cannot parse"),
    ],
)
def test_parse_prompt_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        parse_prompt(text)


# ---------------------------------------------------------------- colour rules


def test_rules_cover_palette_and_never_match_backgrounds():
    assert set(RULES) == set(COLOURS)
    for name, rgb in COLOURS.items():
        swatch = np.broadcast_to(np.asarray(rgb, np.uint8), (1, 8, 8, 3))
        matched = {c for c in COLOURS if colour_mask(swatch, c).all()}
        assert matched == {name}, (name, matched)
    # every background tone and every two-tone blend of them (gradients, noise) is no object colour
    blends = background_blends().astype(np.uint8)
    frame = np.repeat(blends[None, :, None, :], 3, axis=2)  # (1, N, 3, 3): a column of swatches, median-safe
    for c in COLOURS:
        assert not colour_mask(frame, c).any(), c
    for tone in BG_COLOURS.values():
        swatch = np.broadcast_to(np.asarray(tone, np.uint8), (1, 8, 8, 3))
        assert not any(colour_mask(swatch, c).any() for c in COLOURS)


def test_white_needs_low_saturation_and_high_value():
    for rgb, expected in [
        ((245, 245, 245), True),
        ((190, 190, 190), False),
        ((220, 160, 170), False),
        ((250, 235, 235), True),
        ((128, 128, 128), False),
    ]:
        swatch = np.broadcast_to(np.asarray(rgb, np.uint8), (1, 6, 6, 3))
        assert bool(colour_mask(swatch, "white").all()) is expected, rgb


def test_track_follows_a_drawn_disc_and_is_nan_when_absent():
    frames = np.full((6, 48, 48, 3), 70, np.uint8)
    for i in range(4):
        cv2.circle(frames[i], (10 + 5 * i, 24), 5, COLOURS["green"], -1)
    cents = track(frames, "green")
    assert np.allclose(cents[:4, 0], [10, 15, 20, 25], atol=0.5)
    assert np.allclose(cents[:4, 1], 24, atol=0.5)
    assert np.isnan(cents[4:]).all()


def test_float_frames_and_bad_input():
    frames = np.full((4, 32, 32, 3), 0.5, np.float32)
    assert judge(frames, "a red circle moving left", FPS)["colour_present"] is False
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        judge(frames * 2 - 1.5, "a red circle moving left", FPS)
    with pytest.raises(ValueError, match="T, H, W, 3"):
        judge(np.zeros((4, 32, 32)), "a red circle moving left", FPS)
    with pytest.raises(ValueError, match="prompts"):
        evaluate_videos([frames], [], FPS)


# ---------------------------------------------------------------- real eval clips


def test_clean_clips_score_perfectly(clips):
    result = evaluate_videos(clips["videos"], clips["prompts"], FPS)
    assert result["n"] == 6 * 3 * 5
    assert result["colour_accuracy"] == 1.0
    assert result["direction_accuracy"] >= 0.95
    for p in result["per_prompt"]:
        if p["direction_correct"] and p["expected"] in ("left", "right"):
            assert abs(p["displacement"][0]) > abs(p["displacement"][1])


def _blur(v):
    return np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in v])


def _noise(v, rng):
    return np.clip(v + rng.normal(0.0, 20.0, v.shape), 0, 255).astype(np.uint8)


def _down_up(v):
    h, w = v.shape[1:3]
    return np.stack([cv2.resize(cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA), (w, h)) for f in v])


def _small(v):
    return np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in v])


@pytest.mark.parametrize("kind", ["blur", "noise", "down_up_32", "native_32", "first_8_frames", "all_at_once"])
def test_degraded_clips_still_score(clips, kind):
    rng = np.random.default_rng(0)
    make = {
        "blur": _blur,
        "noise": lambda v: _noise(v, rng),
        "down_up_32": _down_up,
        "native_32": _small,
        "first_8_frames": lambda v: v[:8],
        "all_at_once": lambda v: _noise(_blur(_small(v[:8])), rng),
    }[kind]
    result = evaluate_videos([make(v) for v in clips["videos"]], clips["prompts"], FPS)
    assert result["colour_accuracy"] >= 0.9, kind
    assert result["direction_accuracy"] >= 0.9, kind


# ---------------------------------------------------------------- negative controls: the evaluator can fail


def test_wrong_colour_prompts_fail(clips):
    names = list(COLOURS)
    wrong = []
    for text in clips["prompts"]:
        p = parse_prompt(text)
        other = names[(names.index(p.colour) + 1) % len(names)]  # always a different colour
        wrong.append(text.replace(p.colour, other, 1))
    result = evaluate_videos(clips["videos"], wrong, FPS)
    assert result["colour_accuracy"] <= 0.05
    assert result["direction_accuracy"] <= 0.05  # an absent object has no correct direction


def test_shuffled_prompts_score_low(clips):
    order = np.random.default_rng(1).permutation(len(clips["prompts"]))
    result = evaluate_videos(clips["videos"], [clips["prompts"][i] for i in order], FPS)
    assert result["colour_accuracy"] <= 0.35  # chance of a same-colour pairing is 1/6


def test_reversed_frames_give_wrong_directions(clips):
    result = evaluate_videos([v[::-1] for v in clips["videos"]], clips["prompts"], FPS)
    assert result["colour_accuracy"] == 1.0
    assert _moving_accuracy(result) <= 0.05
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}
    flipped = [p["direction"] == opposite[p["expected"]] for p in result["per_prompt"]]
    assert np.mean(flipped) >= 0.95


def test_static_frame_is_still(clips):
    statics = [np.repeat(v[:1], len(v), axis=0) for v in clips["videos"]]
    result = evaluate_videos(statics, clips["prompts"], FPS)
    assert all(p["direction"] == "still" for p in result["per_prompt"])
    assert _moving_accuracy(result) == 0.0
    assert all(p["displacement"] == (0.0, 0.0) for p in result["per_prompt"])


def test_uniform_grey_has_no_colour(clips):
    grey = np.full_like(clips["videos"][0], 128)
    result = evaluate_videos([grey] * len(COLOURS), [f"a {c} circle moving left" for c in COLOURS], FPS)
    assert result["colour_accuracy"] == 0.0
    assert all(p["colour_fraction"] == 0.0 and p["direction"] == "unknown" for p in result["per_prompt"])


# ---------------------------------------------------------------- folders


def test_evaluate_folder_json_and_world_manifest(clips, tmp_path):
    out, rows = clips["out"], clips["rows"].head(10)
    folder = tmp_path / "generated"
    folder.mkdir()
    manifest = {}
    for rel, prompt in zip(rows["file"], rows["class_name"]):
        name = Path(rel).name
        (folder / name).write_bytes((out / rel).read_bytes())
        manifest[name] = prompt
    (folder / "prompts.json").write_text(json.dumps(manifest))
    result = evaluate_folder(folder)  # fps from the containers
    assert result["n"] == 10 and result["colour_accuracy"] == 1.0 and result["direction_accuracy"] >= 0.9
    assert {p["file"] for p in result["per_prompt"]} == set(manifest)
    # the world's own manifest (file relative to OUT, class_name as the prompt, fps column) works as is
    whole = evaluate_folder(out, manifest=out / "eval" / "actions.parquet")
    assert whole["n"] == len(clips["rows"]) and whole["colour_accuracy"] == 1.0
    with pytest.raises(FileNotFoundError, match="prompts"):
        evaluate_folder(tmp_path)
