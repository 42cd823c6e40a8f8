"""Stage II on the world's windows with far more windows seen than 2 CPU cores give: trained on a lent GPU, scored
here. The open question it answers (docs/direction.md): does the direction word bind on the world at all, given
10-100x the 38,400 windows the longest CPU run saw and a world large enough not to be memorised, or is something
else missing? On the default world Stage II fits its 276 distinct windows 15-39% better than new footage within
500 steps (docs/direction.md), so train on a larger world as well (below); the default world's job is the control.

Three steps; only `train` needs the GPU, and it imports neither PyAV, pydantic, open_clip nor MLflow (the device
machine has torch, accelerate and safetensors; diffusers travels as a wheel):

    # here: a world three times the default's, curated (1.6 + 4.9 min on 2 cores, 2026-12-02)
    svd world --seed 11 --videos 108 --out /tmp/big/world --no-track
    svd --set paths.metrics=/tmp/big/metrics curate --input /tmp/big/world/videos --out /tmp/big/curated --no-track

    # here: Stage II's inputs, cached: the distinct frames' latents (fp16) and each window's frame indices, the
    # caption embeddings, the UNet inflated from models/image, and the model folder the scorer needs. --set takes
    # `svd --set` overrides; without paths.curated it is the pipeline's curated set (13 MB of latents, 45 s).
    python benchmarks/direction_gpu.py export --job gpu/job-big --set paths.curated=/tmp/big/curated \
        [--set "diffusion.noise.video_tiny=[1.0, 0.8]"]

    # the wheels the device lacks (pure Python; our versions, 7.2 MB), once, here:
    echo /.whl/ >> .git/info/exclude; echo /gpu/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
        diffusers==0.42.1 huggingface_hub==2.4.0 importlib_metadata==9.1.0

    # on the device (device tool `run`, carry [".whl", "gpu/job-big/job.json", "gpu/job-big/latents.safetensors",
    # "gpu/job-big/unet_init"]: 60.7 MiB with the wheels and the working tree, of the 64 MiB a call carries; the
    # model folder stays here); its python3 has torch and accelerate:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    PYTHONUNBUFFERED=1 python3 benchmarks/direction_gpu.py train --job gpu/job-big --out $OUT --batch 64 \
        --minutes 8 --save-every 2500

    # here: colour and direction of the 32 prompts over sampling seeds, for every snapshot that came back
    python benchmarks/direction_gpu.py score --job gpu/job-big --snapshots DIR [--seeds 0 100 200]

`train` runs the project's own loop (`svd.training.loop.train`, `make_step`, the temporal lr groups) with the
exported hyper-parameters, on CUDA when there is one, and writes `unet-NNNNNN.safetensors` every --save-every steps
until --steps or --minutes runs out (the last snapshot is written on the way out), plus `train.log`. Snapshots are
raw weights; the UNet's config is the job's. A job exported before 2026-12-02's frame layout is refused with a
request to export it again.

Not yet run on a GPU (none has been lent). Checked here (2026-12-02): `export` on the pipeline's outputs (2,208
windows of 69 clips, 7,972 distinct frames, 212 captions) and on the world above (243 clips, 7,776 windows, 28,540
distinct frames, 613 captions; 47 MB of latents), `train --steps 2` on CPU from both, `score` of two snapshots
(seed 0: colour 0.88 / 0.81, direction 0.12 / 0.09, i.e. Stage I's colour and no motion yet; 90 s per snapshot and
seed); `tests/test_direction_gpu.py` runs `train` on a synthetic job with PyAV, pydantic, open_clip and MLflow made
unimportable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LATENTS, JOB, UNET_INIT, MODEL = "latents.safetensors", "job.json", "unet_init", "model"


class TimeUp(Exception):
    """The --minutes budget is spent; the snapshot was written before this was raised."""


def export(job: Path, overrides: list[str], threads: int) -> dict:
    """Cache what Stage II trains on, the way `train_diffusion_stage` builds it, into `job`."""
    from safetensors.torch import save_file

    from svd.config import load_params
    from svd.models.vae import encode
    from svd.tasks.text_to_video import TASK as TEXT_TO_VIDEO
    from svd.training.latents import caption_table, read_windows
    from svd.training.stages import (
        _latent_size,
        load_frozen_vae,
        stage_clips,
        vae_downsampling,
        vae_source,
        write_model_file,
    )

    torch.set_num_threads(threads)
    os.chdir(ROOT)  # params.yaml's relative paths are the project's
    params = load_params(ROOT / "params.yaml", overrides=overrides)
    cfg = params.train.video
    vae_src = vae_source(params)
    vae, vae_backend = load_frozen_vae(vae_src)
    text = TEXT_TO_VIDEO.load_context(params, "video")
    unet, init = TEXT_TO_VIDEO.start_unet(params, "video")
    windows = read_windows(
        stage_clips(params, "video"),
        num_frames=cfg.frames,
        fps=cfg.fps,
        size=tuple(cfg.size),
        windows_per_clip=cfg.windows_per_clip,
        augment=cfg.augment,
        motion_score_at_255=params.diffusion.motion_bucket.score_at_255,
        seed=params.seed,
    )
    # The distinct frames' latents and each window's row of indices into them, not the windows themselves:
    # windows of a clip share frames and a reversed window is its reversed row, so this is 2x smaller on the
    # pipeline's set (13 vs 27 MB, with the text in fp16), which leaves room in the device's carry for a larger world.
    frames = encode(vae, windows.frames).half().contiguous()
    text_table, text_index = caption_table(windows.captions, text)
    job.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "frames": frames,
            "index": windows.index.to(torch.int32).contiguous(),
            "text": text_table.half().contiguous(),
            "text_index": text_index,
            "fps_id": windows.fps_id,
            "motion_bucket": windows.motion_bucket,
        },
        str(job / LATENTS),
    )
    unet.save_pretrained(job / UNET_INIT, safe_serialization=True)
    p_mean, p_std = params.diffusion.noise[cfg.noise]
    motion = float(windows.motion_bucket.float().median())
    (job / MODEL).mkdir(exist_ok=True)
    write_model_file(
        params,
        "video",
        job / MODEL,
        vae=vae,
        vae_src=vae_src,
        vae_backend=vae_backend,
        context=TEXT_TO_VIDEO.save_context(job / MODEL, text, params, "video"),
        latent_size=_latent_size(tuple(cfg.size), vae_downsampling(vae)),
        motion=motion,
        noise=(p_mean, p_std),
        init=init,
        steps=0,
    )
    spec = {
        "overrides": overrides,
        "windows": len(windows),
        "frames": int(frames.shape[0]),
        "clips": len(set(windows.clip_ids)),
        "captions": int(text_table.shape[0]) - 1,
        "sigma_data": params.diffusion.sigma_data,
        "p_mean": p_mean,
        "p_std": p_std,
        "text_dropout": params.train.text_dropout,
        "static_weight": cfg.static_weight,
        "lr": cfg.lr,
        "temporal_lr_scale": cfg.temporal_lr_scale,
        "warmup_steps": cfg.warmup_steps,
        "batch": cfg.batch,
        "steps": cfg.steps,
        "seed": params.seed,
        "profile": params.profile,
        "init": init,
    }
    (job / JOB).write_text(json.dumps(spec, indent=1) + "\n")
    return spec


def train_job(
    job: Path,
    out: Path,
    *,
    steps: int,
    batch: int | None,
    lr: float | None,
    minutes: float,
    save_every: int,
    mixed_precision: str,
    log_every: int,
) -> dict:
    """Stage II from the job's inflated UNet on its cached latents; snapshots into `out`."""
    from diffusers import UNetSpatioTemporalConditionModel
    from safetensors.torch import load_file, save_file

    from svd.data.clips import collate
    from svd.diffusion.edm import DenoiserConfig
    from svd.models.inflate import param_groups
    from svd.tasks.text_to_video import make_step
    from svd.training.latents import LatentItems, LatentSet
    from svd.training.loop import lr_lambda, train

    spec = json.loads((job / JOB).read_text())
    tensors = load_file(str(job / LATENTS))
    missing = {"frames", "index", "text", "text_index", "fps_id", "motion_bucket"} - set(tensors)
    if missing:
        raise SystemExit(f"{job / LATENTS} lacks {sorted(missing)}: export the job again with this script")
    latents = tensors["frames"].float()[tensors["index"].long()]  # (N, T, C, h, w)
    n = latents.shape[0]
    data = LatentSet(
        latents,
        tensors["text"].float(),
        tensors["text_index"],
        [""] * n,
        tensors["fps_id"],
        tensors["motion_bucket"],
        [""] * n,
    )
    unet = UNetSpatioTemporalConditionModel.from_pretrained(job / UNET_INIT)
    lr = lr or spec["lr"]
    batch = min(batch or spec["batch"], n)
    step_fn = make_step(
        DenoiserConfig(spec["sigma_data"], spec["p_mean"], spec["p_std"]),
        data.text,
        video=True,
        text_dropout=spec["text_dropout"],
        static_weight=spec["static_weight"],
    )
    optimizer = torch.optim.AdamW(param_groups(unet, lr, spec["temporal_lr_scale"]), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec["warmup_steps"], steps, "constant"))
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a")
    started = time.perf_counter()
    saved: list[int] = []

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    def snapshot(model, step: int) -> None:
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
            str(out / f"unet-{step:06d}.safetensors"),
        )
        saved.append(step)
        elapsed = (time.perf_counter() - started) / 60
        say(f"snapshot step {step} ({step * batch} windows) after {elapsed:.1f} min")
        if elapsed * (1 + save_every / step) > minutes:  # the next snapshot would come after the budget
            raise TimeUp

    device = "cuda" if torch.cuda.is_available() else "cpu"
    say(f"{device}: {n} windows, batch {batch}, lr {lr}, up to {steps} steps / {minutes} min; job {spec}")
    try:
        summary = train(
            step_fn,
            unet,
            optimizer,
            LatentItems(data),
            max_steps=steps,
            ckpt_dir=Path(tempfile.mkdtemp()),
            ckpt_every=10**9,
            lr_scheduler=scheduler,
            log_every=log_every,
            seed=spec["seed"],
            resume=False,
            profile=spec["profile"],
            sample_every=save_every,
            sample_fn=snapshot,
            batch_size=batch,
            collate_fn=collate,
            mixed_precision=mixed_precision,
            progress=False,
            logger=lambda m, s: say(f"step {s} loss {m['loss']:.4f} samples/s {m['samples_per_s']:.0f}"),
        )
        if not saved or saved[-1] != summary["steps"]:
            snapshot(unet, summary["steps"])
    except TimeUp:
        pass
    result = {
        "device": device,
        "snapshots": saved,
        "batch": batch,
        "lr": lr,
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
    say(json.dumps(result))
    log.close()
    return result


def score(job: Path, snapshots: Path, seeds: list[int], threads: int) -> list[dict]:
    """Colour and direction accuracy (the stage's own `evaluate_model`) of each snapshot at each sampling seed."""
    from svd.config import load_params
    from svd.evaluation.prompts import evaluate_model
    from svd.training.stages import load_model

    torch.set_num_threads(threads)
    spec = json.loads((job / JOB).read_text())
    os.chdir(ROOT)
    results = []
    for path in sorted(snapshots.glob("unet-*.safetensors")):
        step = int(path.stem.split("-")[1])
        folder = snapshots / f"model-{step:06d}"
        if not folder.exists():
            shutil.copytree(job / MODEL, folder)
            shutil.copytree(job / UNET_INIT, folder / "unet")
            shutil.copy(path, folder / "unet" / "diffusion_pytorch_model.safetensors")
        loaded = load_model(folder)
        colour, direction = [], []
        for seed in seeds:
            params = load_params(ROOT / "params.yaml", overrides=[*spec["overrides"], f"sample.seed={seed}"])
            got = evaluate_model(params, folder, vae=loaded["vae"], text=loaded["text"], unet=loaded["unet"])
            colour.append(got["colour_accuracy"])
            direction.append(got["direction_accuracy"])
        row = {
            "step": step,
            "seeds": seeds,
            "colour": colour,
            "direction": direction,
            "colour_mean": sum(colour) / len(colour),
            "direction_mean": sum(direction) / len(direction),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="cache Stage II's inputs (here)")
    ex.add_argument("--job", type=Path, required=True)
    ex.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ex.add_argument("--threads", type=int, default=2)
    tr = sub.add_parser("train", help="train from a job (on the GPU)")
    tr.add_argument("--job", type=Path, required=True)
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--steps", type=int, default=200_000)
    tr.add_argument("--batch", type=int, default=None, help="default: the job's train.video.batch")
    tr.add_argument("--lr", type=float, default=None, help="default: the job's train.video.lr")
    tr.add_argument("--minutes", type=float, default=8.0, help="stop at the last snapshot inside this budget")
    tr.add_argument("--save-every", type=int, default=2500)
    tr.add_argument("--mixed-precision", default="no", choices=["no", "bf16"])
    tr.add_argument("--log-every", type=int, default=250)
    sc = sub.add_parser("score", help="score snapshots (here)")
    sc.add_argument("--job", type=Path, required=True)
    sc.add_argument("--snapshots", type=Path, required=True)
    sc.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    sc.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.command == "export":
        print(json.dumps(export(args.job.resolve(), args.overrides, args.threads), indent=1))
    elif args.command == "train":
        train_job(
            args.job.resolve(),
            args.out.resolve(),
            steps=args.steps,
            batch=args.batch,
            lr=args.lr,
            minutes=args.minutes,
            save_every=args.save_every,
            mixed_precision=args.mixed_precision,
            log_every=args.log_every,
        )
    else:
        score(args.job.resolve(), args.snapshots.resolve(), args.seeds, args.threads)


if __name__ == "__main__":
    main()
