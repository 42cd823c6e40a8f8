"""`svd world`: write the whole shapes world (long videos + truth, held-aside eval set, broken inputs) to OUT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from svd.config import World
from svd.world.broken import write_broken
from svd.world.compose import alt_text, background_phrase, plan_solo, plan_video, render_video
from svd.world.evalset import write_actions, write_orbits

STREAM_ALT = 2

SCHEMAS = {
    "videos": pa.schema(
        [
            ("video", pa.string()),
            ("file", pa.string()),
            ("fps", pa.float64()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("n_frames", pa.int64()),
            ("alt_text", pa.string()),
        ]
    ),
    "shots": pa.schema(
        [
            ("video", pa.string()),
            ("shot", pa.int64()),
            ("start_frame", pa.int64()),
            ("end_frame", pa.int64()),
            ("description", pa.string()),
            ("camera", pa.string()),
            ("static", pa.bool_()),
            ("moving", pa.bool_()),
            ("text", pa.string()),
            ("text_area", pa.float64()),
            ("quality", pa.string()),
            ("objects", pa.string()),
            ("colours", pa.string()),
            ("directions", pa.string()),
            ("background", pa.string()),
        ]
    ),
    "transitions": pa.schema(
        [
            ("video", pa.string()),
            ("frame", pa.int64()),
            ("span_start", pa.int64()),
            ("kind", pa.string()),
            ("style", pa.string()),
        ]
    ),
    "actions": pa.schema(
        [
            ("file", pa.string()),
            ("class_name", pa.string()),
            ("colour", pa.string()),
            ("shape", pa.string()),
            ("direction", pa.string()),
            ("n_frames", pa.int64()),
            ("fps", pa.float64()),
        ]
    ),
    "orbits": pa.schema(
        [
            ("object", pa.string()),
            ("frame", pa.int64()),
            ("azimuth", pa.float64()),
            ("elevation", pa.float64()),
            ("file", pa.string()),
        ]
    ),
    "broken": pa.schema([("file", pa.string()), ("kind", pa.string()), ("expected_error", pa.string())]),
}


def _write(rows: list[dict], name: str, path: Path) -> None:
    # explicit schemas: stable column types even when a table is empty (e.g. no transitions)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[name]), path)


def _clear(out: Path) -> None:
    """Remove what an earlier run wrote here, so no stale video or eval file outlives its manifest."""
    for sub in ("videos", "eval"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    for name in ("videos.parquet", "shots.parquet", "transitions.parquet", "broken.parquet", "world.json"):
        (out / name).unlink(missing_ok=True)


def generate_world(cfg: World, out: Path, seed: int, videos: int | None = None) -> dict:
    """Render the shapes world into OUT and return (and write to OUT/world.json) a summary of what it holds.

    Deterministic: the same cfg and seed give identical manifests and identical decoded frames.
    """
    out = Path(out)
    n_videos = cfg.videos if videos is None else int(videos)
    if n_videos < 1:
        raise ValueError(f"videos must be at least 1, got {n_videos}")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # frames are small: thread fan-out costs more than it saves on contended cores
    try:
        _clear(out)
        (out / "videos").mkdir(parents=True, exist_ok=True)
        video_rows, shot_rows, transition_rows = [], [], []
        plans = [plan_video(cfg, seed, i) for i in range(n_videos)]
        plans += [plan_solo(cfg, seed, i) for i in range(cfg.solo.videos)]
        for index, plan in enumerate(plans):
            rel = f"videos/{plan.name}.mp4"
            n_frames, areas = render_video(plan, out / rel, gop=max(1, round(plan.fps * cfg.gop_seconds)), crf=cfg.crf)
            clean, spans, total = plan.layout()
            if n_frames != total:  # the truth below is only right if every planned frame was written
                raise RuntimeError(f"{plan.name}: wrote {n_frames} frames, planned {total}")
            alt = alt_text(plan, np.random.default_rng([seed, STREAM_ALT, index]))
            video_rows.append(
                {
                    "video": plan.name,
                    "file": rel,
                    "fps": float(plan.fps),
                    "width": plan.width,
                    "height": plan.height,
                    "n_frames": n_frames,
                    "alt_text": alt,
                }
            )
            for i, (spec, (start, end), area) in enumerate(zip(plan.shots, clean, areas)):
                shot_rows.append(
                    {
                        "video": plan.name,
                        "shot": i,
                        "start_frame": start,
                        "end_frame": end,
                        "description": spec.description(),
                        "camera": spec.camera.kind,
                        "static": spec.static,
                        "moving": spec.moving,
                        "text": spec.text(),
                        "text_area": area,
                        "quality": spec.quality,
                        "objects": spec.objects_json(),
                        "colours": ",".join(o.colour for o in spec.objects),
                        "directions": ",".join(o.direction for o in spec.objects),
                        "background": background_phrase(spec),
                    }
                )
            for tr, (span_start, frame) in zip(plan.transitions, spans):
                transition_rows.append(
                    {"video": plan.name, "frame": frame, "span_start": span_start, "kind": tr.kind, "style": tr.style}
                )
        _write(video_rows, "videos", out / "videos.parquet")
        _write(shot_rows, "shots", out / "shots.parquet")
        _write(transition_rows, "transitions", out / "transitions.parquet")

        (out / "eval").mkdir(parents=True, exist_ok=True)
        action_rows = write_actions(cfg.eval, out, seed, cfg.crf)
        orbit_rows = write_orbits(cfg.eval, out, seed)
        _write(action_rows, "actions", out / "eval" / "actions.parquet")
        _write(orbit_rows, "orbits", out / "eval" / "orbits.parquet")

        broken_rows = write_broken(out, seed) if cfg.broken_inputs else []
        _write(broken_rows, "broken", out / "broken.parquet")
    finally:
        cv2.setNumThreads(threads)

    total_frames = sum(r["n_frames"] for r in video_rows)
    summary = {
        "seed": seed,
        "videos": len(video_rows),
        "solo_videos": cfg.solo.videos,
        "shots": len(shot_rows),
        "transitions": len(transition_rows),
        "cuts": sum(r["kind"] == "cut" for r in transition_rows),
        "fades": sum(r["kind"] == "fade" for r in transition_rows),
        "fades_black": sum(r["style"] == "fade_black" for r in transition_rows),
        "dissolves": sum(r["style"] == "dissolve" for r in transition_rows),
        "static_shots": sum(r["static"] for r in shot_rows),
        "moving_shots": sum(r["moving"] for r in shot_rows),
        "text_shots": sum(bool(r["text"]) for r in shot_rows),
        "low_quality_shots": sum(r["quality"] != "clean" for r in shot_rows),
        "eval_actions": len(action_rows),
        "eval_action_classes": len({r["class_name"] for r in action_rows}),
        "eval_orbit_objects": len({r["object"] for r in orbit_rows}),
        "eval_orbit_frames": len(orbit_rows),
        "broken": len(broken_rows),
        "total_frames": total_frames,
        "total_seconds": round(sum(r["n_frames"] / r["fps"] for r in video_rows), 3),
    }
    (out / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
