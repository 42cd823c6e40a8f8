"""Curation throughput, each number a ratio against anchors measured in the same run on the same video.

    python benchmarks/curation.py                 # 640x360 world video, ~40 s long
    python benchmarks/curation.py --memory        # instead: peak RSS of `svd curate` on 1 and 10 minutes of 1080p

(a) decode only (PyAV, at the decode size curation uses)      -- the floor
(b) PySceneDetect's own CLI `detect-adaptive` on the same file  -- the tool users would reach for
(c) our pass: decode + three-level cut cascade + trimming + Farneback motion per clip
(d) full curation of the video (cuts, motion, CRAFT text, CLIP scores, filters' inputs)
Goals (issue 2): (c) no slower than (b); (d) at least 5x real time on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def make_world_video(out: Path, size: tuple[int, int], seconds_hint: float, seed: int = 11) -> Path:
    from svd.config import load_params
    from svd.world import generate_world

    params = load_params(
        ROOT / "params.yaml",
        overrides=[
            f"world.sizes=[[{size[0]}, {size[1]}]]",
            "world.videos=1",
            "world.solo.videos=0",
            "world.broken_inputs=false",
            f"world.shots_per_video=[{max(2, int(seconds_hint // 4))}, {max(2, int(seconds_hint // 4))}]",
            "world.shot_seconds=[3.0, 5.0]",
            "world.eval.videos_per_class=1",
            "world.eval.orbit_objects=1",
        ],
    )
    generate_world(params.world, out, seed=seed)
    return out / "videos" / "v0000.mp4"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_benchmark(video: Path, params) -> dict:
    from svd.curation.annotate import Annotators
    from svd.curation.motion import motion_score
    from svd.curation.pipeline import TruthIndex, curate_video
    from svd.curation.segment import Segmenter
    from svd.io.video import iter_decoded, iter_frames, probe

    info = probe(video)
    cfg = params.curate

    def decode():
        return sum(1 for _ in iter_frames(video, short_side=cfg.decode_short_side))

    def scenedetect_cli():
        exe = Path(sys.executable).parent / "scenedetect"
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [str(exe), "-i", str(video), "-o", tmp, "-q", "detect-adaptive", "list-scenes", "-q"],
                check=True,
                capture_output=True,
                timeout=1800,
            )

    def our_pass():
        seg = Segmenter(cfg.cuts, info.fps, cut_short_side=cfg.cuts.short_side)
        step = max(1, int(round(info.fps / cfg.motion.fps)))
        scores = []
        pieces = []
        for i, frame in enumerate(iter_decoded(video, short_side=cfg.decode_short_side)):
            pieces += seg.push(i, frame)
        pieces += seg.finish()
        for piece in pieces:
            if len(piece.frames) > step:
                scores.append(motion_score(piece.frames[::step], cfg.motion))
        return len(pieces)

    annotators = Annotators(params)

    def full():
        return curate_video(video, "bench", params, annotators, TruthIndex(None))

    t_decode, frames = timed(decode)
    t_cli, _ = timed(scenedetect_cli)
    t_ours, pieces = timed(our_pass)
    t_full, result = timed(full)
    duration = frames / info.fps
    return {
        "video": f"{info.width}x{info.height} @ {info.fps:g} fps, {duration:.1f} s, {frames} frames",
        "seconds": {"a_decode": t_decode, "b_scenedetect_cli": t_cli, "c_cuts_motion": t_ours, "d_full": t_full},
        "x_realtime": {
            "a_decode": duration / t_decode,
            "b_scenedetect_cli": duration / t_cli,
            "c_cuts_motion": duration / t_ours,
            "d_full": duration / t_full,
        },
        "ratios": {
            "c_over_b": t_ours / t_cli,
            "c_over_a": t_ours / t_decode,
            "d_over_a": t_full / t_decode,
            "d_over_b": t_full / t_cli,
        },
        "clips": len(result["clips"]),
        "goals": {"c_no_slower_than_b": t_ours <= t_cli, "d_at_least_5x_realtime": duration / t_full >= 5.0},
    }


def peak_rss_of_curate(video_dir: Path, out: Path) -> float:
    """Peak resident memory (MiB) of a `svd curate` process, polled every 0.1 s (its own RSS, not ffmpeg's)."""
    import psutil

    svd = Path(sys.executable).parent / "svd"
    proc = subprocess.Popen(
        [
            str(svd),
            "--params",
            str(ROOT / "params.yaml"),
            "--set",
            "curate.write_clips=false",
            "--set",
            "curate.text.enabled=false",
            "--set",
            "curate.clip.enabled=false",
            "--set",
            f"paths.metrics={out}/metrics",  # never the project's DVC metrics
            "curate",
            "--no-track",
            "--input",
            str(video_dir),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"svd curate failed: {proc.stderr.read().decode()[-500:]}")
    return peak / 2**20


def make_long_1080p(path: Path, minutes: float) -> None:
    """Long 1080p video from ffmpeg's own sources with a cut every 20 s (fast to make, realistic to decode)."""
    from ffmpeg_sources import FFMPEG

    sources = ["testsrc2", "mandelbrot", "smptebars", "rgbtestsrc"]
    n = max(1, int(minutes * 3))
    inputs, labels = [], []
    for i in range(n):
        inputs += ["-f", "lavfi", "-t", "20", "-i", f"{sources[i % len(sources)]}=size=1920x1080:rate=25"]
        labels.append(f"[{i}:v]")
    graph = "".join(labels) + f"concat=n={n}:v=1:a=0[v]"
    subprocess.run(
        [
            FFMPEG,
            "-y",
            "-loglevel",
            "error",
            *inputs,
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            str(path),
        ],
        check=True,
        timeout=3600,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="measure peak RSS on 1 and 10 min of 1080p instead")
    args = parser.parse_args()

    from svd.config import load_params
    from svd.runtime import set_threads

    params = load_params(ROOT / "params.yaml", overrides=[f"threads={args.threads}"])
    set_threads(params.threads)
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        if args.memory:  # flat memory: the same peak for 1 and 10 minutes
            report = {}
            for minutes in (1.0, 10.0):
                d = Path(tmp) / f"long{minutes:g}"
                d.mkdir()
                make_long_1080p(d / "long.mp4", minutes)
                report[f"{minutes:g}_min_1080p_peak_rss_mib"] = peak_rss_of_curate(d, Path(tmp) / f"out{minutes:g}")
                (d / "long.mp4").unlink()
        else:
            report = run_benchmark(make_world_video(Path(tmp) / "world", (w, h), args.seconds), params)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
