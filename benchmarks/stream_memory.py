"""Peak memory of Stage II training on the curated set at 1x and 4x its size: streamed (train.stream, from shards)
and cached, in one run. Each condition is its own process (peak RSS, ru_maxrss); ratios are against the same
path's 1x anchor.

    python benchmarks/stream_memory.py                 # needs make run's data/curated, models/vae, models/image
    python benchmarks/stream_memory.py --steps 40 --times 8

The 4x set is every curated clip 4 times under new ids (the same files): four times the windows to read, cache or
stream. Goal (issue 19): the streamed path's peak at 4x within 10% of its peak at 1x; the cached path grows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def replicate_curated(curated: Path, out: Path, times: int) -> Path:
    """The curated folder with every clip `times` times (ids suffixed r0, r1, ...; the same clip files)."""
    import pandas as pd

    shutil.copytree(curated, out, ignore=shutil.ignore_patterns("previews", "expectations"))
    df = pd.read_parquet(out / "clips.parquet")
    copies = [df.assign(clip_id=df["clip_id"] + f"r{k}") for k in range(times)]
    pd.concat(copies, ignore_index=True).to_parquet(out / "clips.parquet")
    return out


def child(args) -> None:
    """One condition: train Stage II for --steps steps, print the peak RSS."""
    import torch

    from svd.config import load_params
    from svd.training.stages import train_diffusion_stage

    torch.set_num_threads(args.threads)
    params = load_params(
        ROOT / "params.yaml",
        overrides=[
            f"paths.curated={args.curated}",
            f"paths.shards={args.shards}",
            f"paths.models={args.models}",
            f"train.stream.enabled={args.mode == 'stream'}",
            f"train.video.steps={args.steps}",
            f"train.ckpt_every={args.steps}",
            f"train.sample_every={10 * args.steps}",
            f"threads={args.threads}",
        ],
    )
    summary = train_diffusion_stage(params, "video")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak, "windows": summary["windows"], "seconds": summary["train_seconds"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--times", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["stream", "cache"])
    ap.add_argument("--curated")
    ap.add_argument("--shards")
    ap.add_argument("--models")
    args = ap.parse_args()
    if args.child:
        return child(args)

    from svd.config import load_params
    from svd.data.shards import write_shards

    params = load_params(ROOT / "params.yaml")
    curated, models = ROOT / params.paths.curated, ROOT / params.paths.models
    for need in (curated / "clips.parquet", models / "vae", models / "image" / "unet"):
        if not need.exists():
            sys.exit(f"{need} not found: run `make run` (or dvc repro train_image) first")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for times in (1, args.times):
            root = replicate_curated(curated, tmp / f"curated-x{times}", times)
            shards = tmp / f"shards-x{times}"
            write_shards(root, shards, samples_per_shard=params.shards.samples_per_shard)
            for mode in ("stream", "cache"):
                out = tmp / f"models-{mode}-x{times}"
                out.mkdir()
                for stage in ("vae", "image"):
                    (out / stage).symlink_to(models / stage)
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--mode",
                    mode,
                    "--curated",
                    str(root),
                    "--shards",
                    str(shards),
                    "--models",
                    str(out),
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                if done.returncode:
                    sys.exit(f"{mode} x{times} failed:\n{done.stderr[-3000:]}")
                results[(mode, times)] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"Stage II (tiny), {args.steps} steps, peak RSS; ratio vs the same path at 1x")
    print(f"{'path':8} {'data':>5} {'windows':>8} {'peak MiB':>9} {'ratio':>6}")
    for mode in ("stream", "cache"):
        anchor = results[(mode, 1)]["peak_mib"]
        for times in (1, args.times):
            r = results[(mode, times)]
            print(f"{mode:8} {f'{times}x':>5} {r['windows']:>8} {r['peak_mib']:>9.0f} {r['peak_mib'] / anchor:>6.2f}")
    ratio = results[("stream", args.times)]["peak_mib"] / results[("stream", 1)]["peak_mib"]
    print(f"goal: streamed {args.times}x / 1x <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'} ({ratio:.3f})")


if __name__ == "__main__":
    main()
