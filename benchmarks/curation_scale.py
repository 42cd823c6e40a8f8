"""Curation's per-video work on more workers: local process pool with 1 and 2 workers, and Ray with 2 actors, on the
same batch of world videos, in one run. Ratios are against the local 1-worker anchor.

    python benchmarks/curation_scale.py               # 16 videos of the default world sizes
    python benchmarks/curation_scale.py --videos 32 --ray-address auto   # Ray on an existing cluster

Start-up is printed apart: until the last worker has built its annotators (CRAFT int8, CLIP, captioners), for the
pool including its processes' imports, for Ray including starting the private cluster. Throughput is
videos / (wall - start-up).
The dataset-level steps that follow (filters, expectations, clip files) are the same for every engine and not timed.
Goal (issue 19): Ray with 2 workers >= 1.7x local with 1 on 2 cores. A worker is one core (Ray: cpus_per_worker 1,
so one thread), so the anchor runs one worker on one thread; one worker given every core's threads is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--ray-address", default="", help="join this cluster instead of starting a private one")
    args = ap.parse_args()

    from svd.config import load_params
    from svd.curation.engines import map_videos
    from svd.curation.pipeline import list_videos, video_name
    from svd.world import generate_world

    base = [f"world.videos={args.videos}", "world.solo.videos=0", "world.broken_inputs=false"]
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world(load_params(ROOT / "params.yaml", overrides=base).world, world, seed=args.seed)
        files = list_videos(world / "videos")
        jobs = [(str(p), video_name(p, world / "videos")) for p in files]

        rows = []
        cores = os.cpu_count() or 1
        for label, sets in [
            ("local, 1 worker", ["curate.engine=local", "curate.workers=1", "threads=1"]),
            (f"local, 1 x {cores} thr", ["curate.engine=local", "curate.workers=1", f"threads={cores}"]),
            ("local, 2 workers", ["curate.engine=local", "curate.workers=2", "threads=2"]),
            ("ray, 2 workers", ["curate.engine=ray", "curate.workers=2", f"curate.ray.address={args.ray_address}"]),
        ]:
            params = load_params(ROOT / "params.yaml", overrides=base + sets)
            started = time.perf_counter()
            results, engine = map_videos(params, jobs, str(world))
            wall = time.perf_counter() - started
            startup = engine["startup_seconds"]
            clips = sum(len(r.get("clips", [])) for r in results)
            rows.append(
                {
                    "engine": label,
                    "wall_s": wall,
                    "startup_s": startup,
                    "clips": clips,
                    "videos_per_s": len(jobs) / max(wall - startup, 1e-9),
                }
            )
            print(
                f"{label:18s} wall {wall:6.1f} s  start-up {startup:5.1f} s  "
                f"{rows[-1]['videos_per_s']:.3f} videos/s  ({clips} clips)",
                flush=True,
            )

    anchor = rows[0]["videos_per_s"]
    print(f"\n{len(jobs)} videos, {os.cpu_count()} cores; ratios against local, 1 worker:")
    for row in rows:
        print(f"  {row['engine']:18s} x{row['videos_per_s'] / anchor:.2f}")
    ray_ratio = rows[3]["videos_per_s"] / anchor
    print(
        f"goal: ray, 2 workers >= 1.7x local, 1 worker: {'met' if ray_ratio >= 1.7 else 'NOT met'} (x{ray_ratio:.2f})"
    )


if __name__ == "__main__":
    main()
