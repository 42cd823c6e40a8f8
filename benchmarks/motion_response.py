"""Does a text-to-video model respond to motion_bucket_id? Mean measured motion of the same prompts and seeds at
several buckets (curation's own Farneback annotator, short sides per second).

    python benchmarks/motion_response.py [MODEL_FOLDER] [--buckets 6 25 116 200]

A model that learned the micro-conditioning moves more at higher buckets; a flat row means the bucket controls
nothing, and an image-to-video finetune of it cannot learn motion control either (README, "Image-to-video").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from svd.config import load_params
from svd.evaluation.image_to_video import measured_motion
from svd.tasks.text_to_video import generate
from svd.training.stages import load_model

COLOURS, SHAPES, DIRECTIONS = ("red", "blue"), ("circle", "square"), ("left", "right", "up", "down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="models/hq")
    parser.add_argument("--buckets", type=float, nargs="+", default=[6.0, 25.0, 116.0, 200.0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(params.threads)
    model = load_model(args.model)
    meta = model["meta"]
    prompts = [f"a {c} {s} moving {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS]
    print(
        f"{args.model}: {len(prompts)} prompts, seeds 0-{len(prompts) - 1}, {meta['frames']} frames at "
        f"{meta['fps']:g} fps"
    )
    for bucket in args.buckets:
        videos = generate(
            model["unet"],
            model["vae"],
            model["text"],
            prompts,
            latent_size=tuple(meta["latent_size"]),
            num_frames=meta["frames"],
            steps=params.sample.steps,
            guidance=params.sample.guidance,
            seed=0,
            fps=meta["fps"],
            motion_bucket=bucket,
            sigma_data=params.diffusion.sigma_data,
        )
        motion = np.array([measured_motion(v, meta["fps"], params.curate.motion) for v in videos])
        print(
            f"bucket {bucket:5.0f}: motion {motion.mean():.4f} +- {motion.std(ddof=1) / np.sqrt(len(motion)):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
