"""How much does the tiny FVD depend on the exact feature net? (issue 20: a reference net that is the same everywhere)

The net's training is deterministic on one machine (same bytes twice: tests/test_fvd.py), but float reductions are
ordered differently by another CPU's kernels (AVX2 vs AVX-512 code paths in oneDNN / MKL) or another thread count,
and 600 steps of training amplify those last-bit differences into other weights. This trains the net as the
pipeline does and under perturbations that stand in for another machine (another thread count: the same math,
another reduction order), plus another training seed (a wholly different net, the upper bound), then scores the
same sets under each: the pipeline's Stage III samples (data/evaluate/hq) and the sanity variants. The spread of
each FVD across nets is what a machine change can cost.

    python benchmarks/fvd_net_variation.py [--runs threads1,threads2,seed1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def train_net(params, out: Path, threads: int, seed: int) -> dict:
    from svd.evaluation.i3d import train_feature_net
    from svd.runtime import set_threads

    set_threads(threads)
    started = time.perf_counter()
    summary = train_feature_net(params.world.eval, params.evaluate.fvd.feature_net, out, seed=seed)
    summary["sha256"] = hashlib.sha256((out / "i3d.safetensors").read_bytes()).hexdigest()[:16]
    summary["seconds"] = time.perf_counter() - started
    set_threads(1)  # scoring on one thread, the same for every net
    return summary


def score(params, weights: Path) -> dict[str, float]:
    from svd.evaluation.fvd import frechet_distance, load_extractor
    from svd.evaluation.fvd_sanity import fvd_sanity
    from svd.evaluation.ucf101 import ClipProtocol, read_manifest, real_set, real_stats, sample_stats

    fvd_cfg = params.evaluate.fvd.model_copy(update={"i3d_weights": str(weights)})
    extractor = load_extractor(fvd_cfg)
    protocol = ClipProtocol.of(params.evaluate.video)
    real = real_stats(real_set(params), protocol, extractor, cache=None)
    out = {}
    hq = Path(params.evaluate.video.out_root) / "hq"
    if (hq / "manifest.parquet").is_file():
        fake = sample_stats(hq, read_manifest(hq), protocol, extractor)
        out["hq_samples"] = frechet_distance(real.features, fake.features)
    sanity = fvd_sanity(params, extractor, protocol, real.features)
    out.update({k.removesuffix(".fvd"): v for k, v in sanity.items() if k.endswith(".fvd")})
    return out


def main() -> None:
    from svd.config import load_params

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="threads1,threads2,seed1", help="comma list of threadsN / seedN")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the params')")
    args = ap.parse_args()
    over = [f"evaluate.fvd.feature_net.steps={args.steps}"] if args.steps else []
    params = load_params("params.yaml", overrides=over)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="svd-fvd-var-") as tmp:
        for run in args.runs.split(","):
            threads = int(run[7:]) if run.startswith("threads") else 1
            seed = params.seed + int(run[4:]) if run.startswith("seed") else params.seed
            net = train_net(params, Path(tmp) / run, threads, seed)
            rows[run] = {k: net[k] for k in ("sha256", "heldout_accuracy", "seconds")}
            rows[run].update(score(params, Path(tmp) / run / "i3d.safetensors"))
            print(run, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[run].items()}))
    keys = [k for k in next(iter(rows.values())) if k not in ("sha256", "seconds")]
    print("\nFVD under each net (same sets):")
    print("| set | " + " | ".join(rows) + " | spread (max - min) |")
    print("|---|" + "---|" * (len(rows) + 1))
    for k in keys:
        vals = [rows[r][k] for r in rows]
        print(f"| {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.ptp(vals):.3f} |")
    print("weights identical:", {r: rows[r]["sha256"] for r in rows})


if __name__ == "__main__":
    main()
