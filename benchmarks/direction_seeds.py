"""Colour, direction and identity of a text-to-video model over several sampling seeds, with intervals (issue 21).

The pipeline's own evaluation (`svd evaluate stage`) samples the eval prompts once, at `sample.seed`; one seed's
direction varies by about +-0.1 on the world. This samples the same prompts at each `--seeds` value (prompt i at
seed + i, as the pipeline does) without writing into the model folder, scores them with the world evaluator, and
checks identity as the image-to-video checks do (one blob of the named colour in every frame, no jump over a quarter
of the frame). It prints per seed and pooled over seeds, each pooled share with a bootstrap interval over the
samples, as JSON.

    python benchmarks/direction_seeds.py --model models/hq --seeds 0 100 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a text-to-video model folder (models/video, models/hq)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from svd.config import load_params
    from svd.evaluation.image_to_video import identity
    from svd.evaluation.intervals import mean_interval
    from svd.evaluation.world import evaluate_videos
    from svd.tasks.text_to_video import generate
    from svd.training.stages import eval_prompts, load_model

    params = load_params()
    model = load_model(args.model)
    meta = model["meta"]
    if meta["kind"] != "text-to-video":
        raise SystemExit(f"{args.model} holds a {meta['kind']} model; this scores text-to-video models")
    prompts = eval_prompts(params)
    sampler = params.diffusion.sampler
    rows, per_seed = [], {}
    for seed in args.seeds:
        videos = generate(
            model["unet"],
            model["vae"],
            model["text"],
            prompts,
            latent_size=tuple(meta["latent_size"]),  # the pipeline's evaluation settings (prompts.evaluate_model)
            num_frames=meta["frames"],
            steps=params.sample.steps,
            guidance=params.sample.guidance,
            seed=seed,
            fps=meta["fps"],
            motion_bucket=meta["motion_bucket"],
            sigma_min=sampler.sigma_min,
            sigma_max=sampler.sigma_max,
            rho=sampler.rho,
            method=sampler.method,
            sigma_data=params.diffusion.sigma_data,
        )
        scores = evaluate_videos(list(videos), prompts, meta["fps"])
        for video, judged in zip(videos, scores["per_prompt"]):
            rows.append(
                {
                    "seed": seed,
                    "colour": float(judged["colour_present"]),
                    "direction": float(judged["direction_correct"]),
                    "identity": float(identity(video, judged["colour"])["ok"]),
                }
            )
        mine = [r for r in rows if r["seed"] == seed]
        per_seed[seed] = {k: float(np.mean([r[k] for r in mine])) for k in ("colour", "direction", "identity")}
        print(json.dumps({"seed": seed, **per_seed[seed]}), flush=True)
    boot = {"rounds": 1000, "seed": 0}
    pooled = {k: mean_interval([r[k] for r in rows], **boot) for k in ("colour", "direction", "identity")}
    report = {"model": str(args.model), "prompts": len(prompts), "seeds": args.seeds, "per_seed": per_seed, **pooled}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
