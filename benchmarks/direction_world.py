"""Does a Stage II variant bind the direction word on the world's data? The world-side twin of direction_toy.py.

A learnability probe, not a speed benchmark. It trains Stage II the way the pipeline does (`train_diffusion_stage`,
inflated from the pipeline's Stage I in models/image, on the frozen VAE in models/vae), with any `--set` overrides,
into a scratch folder (OUT/models/video; models/ is never written), then reports:

- colour and direction accuracy of the 32 eval prompts (the stage's own `evaluate_model`: guidance 7, 25 Euler
  steps) for each sampling seed, and their means (one seed alone moves direction by +-0.1); OUT/models/video/samples
  keeps the last seed's samples;
- the caption's word gaps (`svd.evaluation.caption_sensitivity`, no steering): the relative rise of the denoising
  loss when the direction word, the colour word or the whole caption is swapped out, at sigma 0.5-10, on
  single-object windows of the curated set the run trained on (a gap near 0 means the word is ignored).

Checkpoints land in OUT, so re-running with a larger --steps continues the same run (the stage's fingerprint leaves
the step count out). With --only-single, Stage II trains on the single-object, static-camera, moving windows only.
With --train-image, Stage I is trained too (into OUT/models/image, with the same overrides) instead of copied from
models/image, and its colour accuracy over the seeds is reported as `image`; --stop-after-image skips Stage II.

Measured 2026-12-01 on 2 cores (README, "Training stages"; direction over seeds 0/100/200, chance 0.25):

    # noise focused on sigma 1-10 for 2,400 steps at a constant lr (44 min): direction 0.14, word gap <= 0.6%
    python benchmarks/direction_world.py --out /tmp/probe --steps 2400 \\
        --set "diffusion.noise.video_tiny=[1.0, 0.8]" --set train.lr_schedule=constant

    # on a curated set of another world (here: solid backgrounds only, rendered with a one-off patch of
    # svd.world.scene.sample_background, then `svd curate`): 0.23, gap within +-0.3% at sigma 0.5-5
    python benchmarks/direction_world.py --out /tmp/probe-solid --set paths.curated=/tmp/solid/curated \\
        --set "diffusion.noise.video_tiny=[1.0, 0.8]"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import svd.training.latents as latents  # noqa: E402
from svd.config import load_params  # noqa: E402
from svd.evaluation.caption_sensitivity import caption_sensitivity, single_object  # noqa: E402
from svd.evaluation.prompts import evaluate_model  # noqa: E402
from svd.training.stages import load_model, train_diffusion_stage  # noqa: E402


def only_single_object_moving(read_windows):
    """read_windows, keeping the windows whose caption names one moving object and no camera motion."""

    def wrapped(*args, **kwargs):
        w = read_windows(*args, **kwargs)
        keep = [i for i, c in enumerate(w.captions) if single_object(c) and "still" not in c]
        return latents.Windows(
            w.frames,
            w.index[keep],
            [w.captions[i] for i in keep],
            w.fps_id[keep],
            w.motion_bucket[keep],
            [w.clip_ids[i] for i in keep],
            [w.flips[i] for i in keep],
        )

    return wrapped


def score(params_at, folder: Path, seeds: list[int], trained_eval: dict, trained_seed: int) -> dict:
    """The stage's own `evaluate_model` at every sampling seed (params_at(seed): the run's params with sample.seed
    set); the seed the stage already scored at the end of training is not sampled again."""
    loaded = load_model(folder)
    colour, direction = [], []
    for seed in seeds:
        scores = (
            trained_eval
            if seed == trained_seed
            else evaluate_model(params_at(seed), folder, vae=loaded["vae"], text=loaded["text"], unet=loaded["unet"])
        )
        colour.append(scores["colour_accuracy"])
        if "direction_accuracy" in scores:  # an image model is scored on colour only
            direction.append(scores["direction_accuracy"])
    result = {"seeds": seeds, "colour": colour, "colour_mean": float(np.mean(colour))}
    if direction:
        result.update(direction=direction, direction_mean=float(np.mean(direction)))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="scratch folder (models, checkpoints, probe.json)")
    ap.add_argument("--steps", type=int, default=None, help="Stage II steps (default: train.video.steps)")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, as `svd --set` takes it (repeatable)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    ap.add_argument("--windows", type=int, default=48, help="single-object windows for the word gaps")
    ap.add_argument(
        "--only-single", action="store_true", help="train on single-object, static-camera, moving windows only"
    )
    ap.add_argument(
        "--train-image",
        action="store_true",
        help="train Stage I in OUT with the overrides too, instead of copying models/image",
    )
    ap.add_argument("--stop-after-image", action="store_true", help="with --train-image: report Stage I only")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.stop_after_image and not args.train_image:
        ap.error("--stop-after-image needs --train-image")
    torch.set_num_threads(args.threads)

    out = args.out.resolve()  # before the chdir, so a relative --out means the caller's folder
    os.chdir(ROOT)  # params.yaml's relative paths (data/curated, models/image) are the project's
    models = out / "models"
    overrides = [f"paths.models={models}", *args.overrides]
    if args.steps is not None:
        overrides.append(f"train.video.steps={args.steps}")

    def params_at(seed: int | None = None):
        return load_params(
            ROOT / "params.yaml", overrides=overrides + ([] if seed is None else [f"sample.seed={seed}"])
        )

    params = params_at()
    copied = ("vae",) if args.train_image else ("vae", "image")
    for stage in copied:  # Stage II's inputs, copied once so a rerun resumes against the same files
        source = ROOT / "models" / stage
        if not source.is_dir():
            raise SystemExit(f"{source} not found: run `make run` (or `dvc repro train_{stage}`) first")
        if not (models / stage).exists():
            shutil.copytree(source, models / stage, ignore=shutil.ignore_patterns("checkpoints"))
    result: dict = {"overrides": args.overrides}
    if args.train_image:
        start = time.perf_counter()
        trained = train_diffusion_stage(params, "image")
        trained["eval"] = evaluate_model(params, Path(trained["model_dir"]))
        result["image"] = {
            "steps": trained["steps"],
            "train_minutes": round((time.perf_counter() - start) / 60, 1),
            **score(params_at, Path(trained["model_dir"]), args.seeds, trained["eval"], params.sample.seed),
        }
        print(json.dumps(result["image"], indent=1), flush=True)
        if args.stop_after_image:
            out.mkdir(parents=True, exist_ok=True)
            (out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
            return
    if args.only_single:
        latents.read_windows = only_single_object_moving(latents.read_windows)

    start = time.perf_counter()
    trained = train_diffusion_stage(params, "video")
    trained["eval"] = evaluate_model(params, Path(trained["model_dir"]))
    minutes = (time.perf_counter() - start) / 60
    folder = Path(trained["model_dir"])
    result.update(
        {
            "only_single": args.only_single,
            "steps": trained["steps"],
            "windows": trained["windows"],
            "train_minutes": round(minutes, 1),
            **score(params_at, folder, args.seeds, trained["eval"], params.sample.seed),
        }
    )
    gaps = caption_sensitivity(params, folder, windows=args.windows, seed=params.seed, steer=False)
    result["sigmas"] = gaps["sigmas"]
    result["word_gap"] = gaps["relative_gap"]
    (out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
