"""`svd curate`: videos in, a curated clip set out.

Per video, one streaming decode feeds the cut cascade and the segmenter, which hands each finished clip (with its
frames) to the annotators; broken inputs go to the quarantine with a one-line reason and the batch goes on. Then the
dataset-level steps: the paper's filters (they need every clip's score), the expectations suite, the clip files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from svd.config import Params
from svd.curation.annotate import Annotators, ClipFrames
from svd.curation.cuts import score_boundaries
from svd.curation.filters import apply_filters, auroc
from svd.curation.segment import Segmenter, boundary_rows
from svd.errors import InputError
from svd.io.video import (
    FrameClock,
    VideoReadError,
    iter_decoded,
    iter_frames,
    probe,
    reencode_clip,
    remux_clip,
    write_gif,
)

MEDIA_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".m4a", ".mp3", ".wav"}


def list_videos(input_dir: Path) -> list[Path]:
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise InputError(f"input folder not found: {input_dir}")
    if not input_dir.is_dir():
        raise InputError(f"input must be a folder of videos, got a file: {input_dir}")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    if not files:
        raise InputError(f"no video files ({', '.join(sorted(MEDIA_SUFFIXES))}) in {input_dir}")
    return files


def video_name(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace("/", "__")


class TruthIndex:
    """The world's per-shot truth, for source descriptions (matched to clips by frame overlap) and scoring."""

    def __init__(self, folder: Path | None):
        self.shots = pd.DataFrame()
        self.transitions = pd.DataFrame()
        if folder is None:
            return
        folder = Path(folder)
        if (folder / "shots.parquet").is_file():
            self.shots = pd.read_parquet(folder / "shots.parquet")
        if (folder / "transitions.parquet").is_file():
            self.transitions = pd.read_parquet(folder / "transitions.parquet")

    def shot_for(self, video: str, start: int, end: int) -> dict | None:
        """The truth shot overlapping [start, end) most, if it covers at least half the clip."""
        if self.shots.empty:
            return None
        shots = self.shots[self.shots["video"] == video]
        if shots.empty:
            return None
        overlap = (np.minimum(shots["end_frame"], end) - np.maximum(shots["start_frame"], start)).clip(lower=0)
        best = overlap.idxmax()
        if overlap[best] * 2 < (end - start):
            return None
        return shots.loc[best].to_dict()


def curate_video(path: Path, name: str, params: Params, annotators: Annotators, truth: TruthIndex) -> dict:
    """One decode pass over one video -> clip rows and detected boundaries. Raises VideoReadError."""
    cfg = params.curate
    info = probe(path)
    segmenter = Segmenter(cfg.cuts, info.fps, cut_short_side=cfg.cuts.short_side)
    min_frames = max(2, int(round(cfg.cuts.min_clip_s * info.fps)))
    rows: list[dict] = []

    def handle(pieces) -> None:
        for piece in pieces:
            row = {
                "video": name,
                "clip_id": f"{name}_{len(rows):04d}",
                "shot": piece.shot,
                "start_frame": piece.start,
                "end_frame": piece.end,
                # start_s / end_s / duration_s: from the frames' own times once the stream is read (FrameClock)
                "fps": float(info.fps),
                "width": info.width,
                "height": info.height,
                "split": piece.split,
                "drop_reason": "" if piece.end - piece.start >= min_frames else "too_short",
            }
            match = truth.shot_for(name, piece.start, piece.end)
            if row["drop_reason"] == "":
                row.update(
                    annotators.annotate(ClipFrames(piece.frames, info.fps), match["description"] if match else None)
                )
            rows.append(row)

    count, times = 0, []
    for index, frame in enumerate(iter_decoded(path, short_side=cfg.decode_short_side)):
        times.append(frame.time)
        handle(segmenter.push(index, frame))
        count += 1
    if count == 0:
        raise VideoReadError("video stream holds no frames")
    handle(segmenter.finish())
    clock = FrameClock(times, info.fps)
    for row in rows:
        start, end = row["start_frame"], row["end_frame"]
        row.update(start_s=clock.at(start), end_s=clock.at(end), duration_s=clock.span(start, end))
    boundaries = [{"video": name, **b} for b in boundary_rows(segmenter.shots)]
    return {"clips": rows, "boundaries": boundaries, "frames": count, "fps": info.fps, "info": info.to_dict()}


def gx_dir_for(out_dir: Path) -> Path:
    """Where `curate` puts the Great Expectations project of a curation into out_dir: beside it, not inside, since
    its timestamps would change the dataset's hash (svd.curation.expectations)."""
    out_dir = Path(out_dir)
    if not out_dir.name:  # "." or "/": no name to extend; relative paths stay relative (summary.json records it)
        out_dir = out_dir.resolve()
    return out_dir.with_name(out_dir.name + "-gx")


def curate(params: Params, input_dir: Path, out_dir: Path, truth: Path | None = None, progress=None) -> dict:
    """Curate the videos under input_dir into out_dir (and its GX project into gx_dir_for(out_dir)). Every file in
    out_dir is a function of the inputs and params, so an unchanged re-curation keeps the dataset's DVC hash; the
    returned summary adds the wall time and how the engine ran (MLflow keeps them, not the dataset).
    progress(done, total) is called as videos finish (svd.curation.engines)."""
    started = time.perf_counter()
    files = list_videos(input_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), video_name(p, Path(input_dir))) for p in files]
    truth_dir = str(truth) if truth else None

    from svd.curation.engines import map_videos

    results, engine = map_videos(params, jobs, truth_dir, progress)
    annotators = SimpleNamespace(backends=results[0]["backends"], real=results[0]["real"])

    clips, boundaries, quarantine, frames = [], [], [], 0
    for (path, name), result in zip(jobs, results):
        if "error" in result:
            quarantine.append({"video": name, "file": path, "reason": result["error"]})
            continue
        clips.extend(result["clips"])
        boundaries.extend(result["boundaries"])
        frames += result["frames"]

    clips_df = _frame_clips(clips, annotators)
    clips_df, filter_report = apply_filters(clips_df, params.curate.filters, annotators.real)
    for name, item in filter_report.items():
        item["backend"] = _filter_backend(name, annotators)

    if params.curate.write_clips:
        clips_df = _write_clip_files(clips_df, dict(jobs_by_name(jobs)), out_dir, params)

    from svd.curation.expectations import validate_clips

    expectations = validate_clips(clips_df, params.curate, out_dir / "expectations", gx_dir_for(out_dir))

    shots_df = pd.DataFrame(boundaries, columns=["video", "frame", "span_start", "kind", "level", "detected_frame"])
    quarantine_df = pd.DataFrame(quarantine, columns=["video", "file", "reason"])
    clips_df.to_parquet(out_dir / "clips.parquet", index=False)
    shots_df.to_parquet(out_dir / "shots.parquet", index=False)
    quarantine_df.to_parquet(out_dir / "quarantine.parquet", index=False)

    seconds = time.perf_counter() - started
    summary = {
        "videos": len(files),
        "videos_ok": len(files) - len(quarantine),
        "quarantined": len(quarantine),
        "frames": frames,
        "clips": int(len(clips_df)),
        "kept": int(clips_df["keep"].sum()) if len(clips_df) else 0,
        "filters": filter_report,
        "backends": annotators.backends,
        "expectations": expectations,
    }
    if truth is not None:
        summary["truth"] = score_against_truth(clips_df, shots_df, TruthIndex(Path(truth)))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return {**summary, "seconds": round(seconds, 2), "engine": engine}


def jobs_by_name(jobs: list[tuple[str, str]]):
    for path, name in jobs:
        yield name, path


def _frame_clips(rows: list[dict], annotators: Annotators) -> pd.DataFrame:
    columns = [
        "video",
        "clip_id",
        "shot",
        "start_frame",
        "end_frame",
        "start_s",
        "end_s",
        "duration_s",
        "fps",
        "width",
        "height",
        "split",
        "motion_score",
        "camera_motion",
        "camera_confidence",
        "camera_pan_x",
        "camera_pan_y",
        "camera_zoom",
        "camera_explained",
        "text_area",
        "aesthetic",
        "clip_score",
        "caption",
        "caption_source",
        "caption_coca",
        "caption_video",
        "caption_llm",
        "source_description",
        "drop_reason",
    ]
    df = pd.DataFrame(rows)
    for column in columns:
        if column not in df:
            df[column] = None
    df = df[columns]
    for column in ("start_frame", "end_frame", "width", "height", "shot"):
        df[column] = df[column].astype("int64")
    for column in (
        "start_s", "end_s", "duration_s", "fps", "motion_score", "text_area", "aesthetic", "clip_score",
        "camera_confidence", "camera_pan_x", "camera_pan_y", "camera_zoom", "camera_explained",
    ):  # fmt: skip
        df[column] = df[column].astype("float64")
    df["split"] = df["split"].astype(bool)
    for column in (
        "video",
        "clip_id",
        "drop_reason",
        "caption",
        "caption_source",
        "caption_coca",
        "caption_video",
        "caption_llm",
        "source_description",
    ):
        df[column] = df[column].astype("string")  # nullable text: an all-null caption column stays text
    for name in ("motion", "text", "clip", "caption_coca", "caption_video", "caption_llm"):
        df[f"backend_{name}"] = annotators.backends.get(name, "disabled")
    return df


def _filter_backend(name: str, annotators: Annotators) -> str:
    key = {"motion": "motion", "text": "text", "text_area": "text", "aesthetic": "clip", "clip_score": "clip"}[name]
    return annotators.backends.get(key, "disabled")


def _write_clip_files(df: pd.DataFrame, sources: dict[str, str], out_dir: Path, params: Params) -> pd.DataFrame:
    """Kept clips as their own mp4 (stream copy from the next keyframe, or frame-exact re-encode), plus GIF previews
    of the first few so a person can look."""
    df = df.copy()
    clip_dir = out_dir / "clips"
    preview_dir = out_dir / "previews"
    df["file"], df["file_start_frame"], df["file_end_frame"] = None, pd.NA, pd.NA
    min_s = params.curate.cuts.min_clip_s
    previews = 0
    for i, row in df[df["keep"]].iterrows():
        src, dst = sources[row["video"]], clip_dir / f"{row['clip_id']}.mp4"
        try:
            if params.curate.cuts.snap_to_keyframes:
                s, e = remux_clip(src, dst, int(row["start_frame"]), int(row["end_frame"]))
            else:
                s, e = reencode_clip(src, dst, int(row["start_frame"]), int(row["end_frame"]))
        except ValueError:
            s, e = int(row["end_frame"]), int(row["end_frame"])
        if (e - s) / row["fps"] < min_s:
            dst.unlink(missing_ok=True)
            df.loc[i, ["keep", "drop_reason"]] = [False, "keyframe_snap"]
            df.loc[i, "drop_reasons"] = "keyframe_snap"
            continue
        df.loc[i, ["file", "file_start_frame", "file_end_frame"]] = [str(dst.relative_to(out_dir)), s, e]
        if previews < 8:
            frames = list(iter_frames(dst, short_side=128))
            write_gif(preview_dir / f"{row['clip_id']}.gif", frames[:: max(1, len(frames) // 24)], fps=8)
            previews += 1
    df["file_start_frame"] = df["file_start_frame"].astype("Int64")
    df["file_end_frame"] = df["file_end_frame"].astype("Int64")
    return df


def camera_scores(predicted: list[str], truth: list[str]) -> dict:
    """Per camera class of the truth: precision, recall, F1 and its count (the camera-motion annotator against the
    world's ground truth)."""
    out = {}
    for label in sorted(set(truth)):
        tp = sum(p == label and t == label for p, t in zip(predicted, truth))
        n_pred, n_true = sum(p == label for p in predicted), sum(t == label for t in truth)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "clips": n_true}
    return out


def score_against_truth(clips: pd.DataFrame, shots: pd.DataFrame, truth: TruthIndex) -> dict:
    """Cut F1 (tolerance 2 frames), clips leaking across true transitions, and how well the motion and text scores
    separate the world's static and text shots (AUROC)."""
    out: dict = {}
    if not truth.transitions.empty:
        totals = {"tp": 0, "predicted": 0, "truth": 0}
        for video, t in truth.transitions.groupby("video"):
            p = shots[shots["video"] == video]
            s = score_boundaries(list(zip(p["span_start"], p["frame"])), list(zip(t["span_start"], t["frame"])))
            for k in totals:
                totals[k] += s[k]
        precision = totals["tp"] / totals["predicted"] if totals["predicted"] else 1.0
        recall = totals["tp"] / totals["truth"] if totals["truth"] else 1.0
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        out["cuts"] = {**totals, "precision": precision, "recall": recall, "f1": f1}
        leaks = whole = 0
        for _, c in clips.iterrows():
            t = truth.transitions[truth.transitions["video"] == c["video"]]
            cut = (t["kind"] == "cut") & (t["frame"] > c["start_frame"]) & (t["frame"] < c["end_frame"])
            overlap = np.minimum(t["frame"], c["end_frame"]) - np.maximum(t["span_start"], c["start_frame"])
            fade = (t["kind"] == "fade") & (overlap > 2)  # more transition frames than the cut tolerance
            spans_both = (t["span_start"] > c["start_frame"]) & (t["frame"] < c["end_frame"])
            leaks += int((cut | fade).any())
            whole += int(spans_both.any())
        out["clips_with_transition_frames"] = leaks  # a cut inside, or > 2 frames of a fade/dissolve
        out["clips_spanning_a_whole_transition"] = whole
    if not truth.shots.empty and len(clips):
        clips = clips[clips["drop_reason"] != "too_short"]  # not annotated
        matched = [truth.shot_for(r["video"], r["start_frame"], r["end_frame"]) for _, r in clips.iterrows()]
        has = [m is not None for m in matched]
        sub = clips[has]
        m = [x for x in matched if x is not None]
        if len(sub) and sub["motion_score"].notna().all():
            moving = np.array([bool(x["moving"]) for x in m])
            out["motion_auroc_moving_vs_static"] = auroc(sub["motion_score"].to_numpy(), moving)
        if len(sub) and sub["text_area"].notna().all():
            texted = np.array([float(x["text_area"]) > 0 for x in m])
            out["text_auroc_text_vs_none"] = auroc(sub["text_area"].to_numpy(), texted)
        if len(sub) and "camera_motion" in sub and sub["camera_motion"].notna().all():
            out["camera"] = camera_scores(sub["camera_motion"].tolist(), [str(x["camera"]) for x in m])
        kept = sub["keep"].to_numpy()
        out["kept_static_shots"] = int(sum(k and not x["moving"] for k, x in zip(kept, m)))
        out["kept_text_shots"] = int(sum(k and float(x["text_area"]) > 0.0 for k, x in zip(kept, m)))
        out["matched_clips"] = int(len(sub))
    return out
