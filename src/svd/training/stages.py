"""`svd train --stage vae|image|video|hq`: the recipe's stages as functions of the params, one output folder each.

    models/vae/    vae/ (diffusers AutoencoderKL, frozen afterwards), recon.png, checkpoints/      (tiny profile only)
    models/image/  unet/ (UNet2DConditionModel), svd_model.json, checkpoints/                      Stage I
    models/video/  unet/ (UNetSpatioTemporalConditionModel), svd_model.json, samples/, checkpoints/ Stage II
    models/hq/     same as video                                                                    Stage III

Stage I starts from `weights.unet_image` (a100: SD 2.1's UNet, finetuned to EDM's continuous noise) or from scratch
(tiny); Stage II inflates Stage I's UNet (svd.models.inflate: spatial weights copied, temporal layers new); Stage III
continues Stage II on the best-scoring clips (svd.data.subset_hq) with the shifted noise preset and EMA. Every stage
trains on latents encoded once (svd.training.latents) and resumes from its newest checkpoint after a kill.

`svd_model.json` makes a folder self-describing for `svd sample`: the stage, profile, where the VAE and text encoder
come from, the training size, frames, fps and median motion bucket (the sampler's defaults).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd.config import ConfigError, Params
from svd.errors import InputError, WeightsError
from svd.models.inflate import param_groups
from svd.runtime import distributed

STAGES = ("vae", "image", "video", "hq", "i2v", "i2v_xt", "lora_horizontal", "lora_zoom", "lora_static", "interp")
MODEL_FILE = "svd_model.json"
Logger = Callable[[dict, int], None]


def stage_name(params: Params, stage: str) -> str:
    """Name of a stage's outputs (model folder, metrics file, MLflow run): the stage, or `<stage>-uncurated` when
    it trains on every clip (`train.<stage>.data: uncurated`, the curation ablation), so an ablation run sits beside
    the pipeline's model instead of overwriting it."""
    if stage != "vae" and getattr(params.train, stage).data == "uncurated":
        return f"{stage}-uncurated"
    return stage


def stage_dir(params: Params, stage: str) -> Path:
    return Path(params.paths.models) / stage_name(params, stage)


def parent_stage(params: Params, stage: str) -> str | None:
    """The stage whose output `stage` starts from (its task says: fixed for Stages I-III, params for i2v)."""
    from svd import tasks

    return None if stage == "vae" else tasks.for_stage(stage).parent(params, stage)


def require_dir(folder: Path, what: str, fix: str) -> Path:
    if not folder.is_dir() or not any(folder.iterdir()):
        raise InputError(f"{what} not found at {folder}: {fix}")
    return folder


# ---------------------------------------------------------------- frozen parts
VAE_SOURCE_FILE = "source.json"


def vae_source(params: Params) -> str:
    """Where the frozen VAE of Stages I-III comes from, as the VAE stage recorded it: its own trained VAE (tiny) or
    the weights.vae it checked (a100)."""
    folder = stage_dir(params, "vae")
    record = folder / VAE_SOURCE_FILE
    if not record.is_file():
        raise InputError(f"no VAE recorded at {record}: run `svd train --stage vae` first")
    source = json.loads(record.read_text())["source"]
    return str((folder / source).resolve()) if source == "vae" else source


def load_frozen_vae(source: str):
    from svd.models.vae import load_vae

    vae, backend = load_vae(source)
    vae.requires_grad_(False)
    return vae.eval(), backend


def vae_downsampling(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


# ---------------------------------------------------------------- data
def curated_root(params: Params) -> Path:
    root = Path(params.paths.curated)
    if not (root / "clips.parquet").is_file():
        raise InputError(f"no curated set at {root} (clips.parquet missing): run `svd curate` first")
    return root


def stage_clips(params: Params, stage: str):
    """The clips a diffusion stage trains on: curated (kept) clips, all clips (uncurated ablation) or the HQ subset;
    a camera LoRA's, those of its camera classes (`train.<stage>.lora.camera`)."""
    from svd.data.clips import CuratedSet, subset_camera, subset_hq

    cfg = getattr(params.train, stage)
    root = curated_root(params)
    if cfg.data == "uncurated":
        clips = CuratedSet(root, curated=False, source_dir=Path(params.paths.world) / "videos")
    else:
        clips = CuratedSet(root)
        if cfg.data == "hq":
            clips = subset_hq(clips, cfg.hq_fraction)
    if cfg.lora is not None:
        clips = subset_camera(clips, cfg.lora.camera, cfg.lora.min_confidence)
        if len(clips) == 0:
            raise InputError(
                f"the curated set at {root} holds no clips of camera motion {', '.join(cfg.lora.camera)} with "
                f"confidence >= {cfg.lora.min_confidence} for stage {stage}"
            )
    if len(clips) == 0:
        raise InputError(
            f"the curated set at {root} holds no clips for stage {stage} (data: {cfg.data}); check the curate filters"
        )
    return clips


def _latent_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    h, w = size
    if h % factor or w % factor:
        raise ConfigError(f"train size {list(size)} is not divisible by the VAE's downsampling {factor}")
    return h // factor, w // factor


# ---------------------------------------------------------------- models
def read_model(folder: str | Path) -> dict:
    """svd_model.json of a stage folder (InputError when the folder is not a model of ours)."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise InputError(f"{folder} is not an svd model folder ({MODEL_FILE} missing)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- stages
def train_vae_stage(params: Params, logger: Logger | None = None, progress: bool = False) -> dict[str, Any]:
    from svd.data.clips import CuratedSet
    from svd.models.vae import TINY_VAE
    from svd.training.vae import train_vae

    cfg = params.train.vae
    out = stage_dir(params, "vae")
    if not cfg.train:
        # a100: nothing to train; check that weights.vae loads and record it for the later stages
        if not params.weights.vae:
            raise WeightsError(
                "weights.vae: not set; point it at a diffusers VAE folder (SD 2.1's vae/) or set "
                "train.vae.train=true to train one"
            )
        vae, backend = load_frozen_vae(params.weights.vae)
        out.mkdir(parents=True, exist_ok=True)
        (out / VAE_SOURCE_FILE).write_text(json.dumps({"source": params.weights.vae, "backend": backend}) + "\n")
        from svd.models.vae import num_parameters

        return {
            "trained": False,
            "backend": backend,
            "parameters": num_parameters(vae),
            "scaling_factor": float(vae.config.scaling_factor),
        }
    vae_cfg = dict(TINY_VAE)
    vae_cfg["sample_size"] = min(cfg.size)
    CuratedSet(curated_root(params))  # the kept clips it trains on: errors name what is missing
    fresh_checkpoints(out / "checkpoints", fingerprint(params, "vae"))
    summary = train_vae(
        params.paths.curated,
        out,
        cfg=vae_cfg,
        steps=cfg.steps,
        batch_size=cfg.batch,
        lr=cfg.lr,
        size=tuple(cfg.size),
        seed=params.seed,
        ckpt_every=params.train.ckpt_every,
        logger=logger,
        profile=params.profile,
        frames_per_clip=cfg.frames_per_clip,
        kl_weight=cfg.kl_weight,
        grad_weight=cfg.grad_weight,
        lowpass_weight=cfg.lowpass_weight,
        lr_schedule=params.train.lr_schedule,
        recon_loss=cfg.recon_loss,
        patch=tuple(cfg.patch) if cfg.patch else None,
        warmup_steps=cfg.warmup_steps,
        progress=progress,
    )
    (out / VAE_SOURCE_FILE).write_text(json.dumps({"source": "vae", "backend": "trained"}) + "\n")
    return {"trained": True, **summary}


def per_process_batch(params: Params, stage: str, global_batch: int) -> int:
    """A stage's `batch` is the global batch of one optimizer step; each process takes global / (processes x
    train.grad_accumulation) per micro-batch, so the recipe, the data order and the noise draws stay the same
    however many processes run it (svd.training.loop)."""
    processes, accumulation = distributed().num_processes, params.train.grad_accumulation
    if global_batch % (processes * accumulation):
        raise ConfigError(
            f"train.{stage}.batch (global, {global_batch} here) must be divisible by processes x "
            f"train.grad_accumulation = {processes} x {accumulation}"
        )
    return global_batch // (processes * accumulation)


IMAGE_CONDITIONED = ("i2v", "lora_", "interp", "mv")  # the stages whose tasks read a CLIP image embedding


def fingerprint(params: Params, stage: str) -> str:
    """What a stage's checkpoints depend on besides the step count: its params and its inputs' contents. A
    checkpoint is resumed only under the same fingerprint (a retried or killed run), never after a change."""
    import hashlib

    from svd import tracking

    cfg = getattr(params.train, stage).model_dump()
    cfg.pop("steps", None)  # more steps continue the same run
    parts = {
        "stage": stage,
        "cfg": cfg,
        "seed": params.seed,
        "profile": params.profile,
        "unet": params.model.unet.model_dump(),
        "noise": params.diffusion.noise,
        "text_dropout": params.train.text_dropout,
        "lr_schedule": params.train.lr_schedule,
        "text": [params.weights.text_model, params.weights.text_pretrained],
        "inputs": {k: tracking.hash_path(v) for k, v in sorted(stage_inputs(params, stage).items())},
    }
    if streams(params, stage):  # another data order (kept out of cached runs' fingerprints)
        parts["stream"] = params.train.stream.model_dump()
    if stage.startswith(IMAGE_CONDITIONED):  # what only they read (kept out of the others' fingerprints)
        parts["image_to_video"] = {
            "encoder": [params.weights.image_encoder, params.model.image_encoder.model_dump()],
            "cond_aug": params.diffusion.cond_aug.model_dump(),
        }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def fresh_checkpoints(ckpt_dir: Path, print_: str) -> bool:
    """Keep ckpt_dir for resuming when it was written under the same fingerprint, else empty it; True if kept."""
    import shutil

    marker = ckpt_dir / "fingerprint.txt"
    if ckpt_dir.is_dir() and marker.is_file() and marker.read_text().strip() == print_:
        return True
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    marker.write_text(print_ + "\n")
    return False


def streams(params: Params, stage: str) -> bool:
    """Whether `stage` reads its windows as a stream: train.stream.enabled, for the tasks that stream (Stages I-III;
    the image-to-video stages always cache theirs)."""
    from svd import tasks

    return params.train.stream.enabled and stage in tasks.STAGE_TASKS and tasks.for_stage(stage).streams


def window_stream(params: Params, clips, **window_args):
    """The stage's windows as a stream (train.stream) from the shards (paths.shards) or the clip files."""
    from svd.data.shards import ShardSet
    from svd.training.stream import WindowStream

    st = params.train.stream
    shards = ShardSet(params.paths.shards) if st.source == "shards" else None
    return WindowStream(clips, buffer=st.buffer, shards=shards, clips_per_unit=st.clips_per_unit, **window_args)


def eval_prompts(params: Params, n: int | None = None) -> list[str]:
    """The fixed prompt set: the world's eval classes (colour x shape x direction), cycled to n."""
    ev = params.world.eval
    base = [f"a {c} {s} moving {d}" for c in ev.colours for s in ev.shapes for d in ev.directions]
    n = n or params.sample.eval_prompts
    return [base[i % len(base)] for i in range(n)]


def train_diffusion_stage(
    params: Params,
    stage: str,
    logger: Logger | None = None,
    progress: bool = False,
    on_samples: Callable[[Path, int], None] | None = None,
    on_probe: Callable[[torch.nn.Module, int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train a diffusion stage (I image, II video, III hq, i2v, i2v_xt) through its task (svd.tasks) and write its
    folder. Scoring it is the caller's business (the task names its evaluator; training imports no evaluation).

    Every `train.sample_every` steps the task's preview inputs are sampled with the current weights into
    samples/step-NNNNNN/ (mp4 + GIF) and handed to `on_samples(folder, step)` (the CLI logs them to MLflow).
    Every `train.probe_every` steps `on_probe(model, step, tools)` measures the model in training, with the stage's
    frozen parts in `tools` (vae, context, the Windows arguments), so it loads nothing twice (the CLI's word gaps)."""
    from svd import tasks
    from svd.data.clips import collate
    from svd.training.latents import read_windows
    from svd.training.loop import lr_lambda, scale_updates, train

    if stage not in tasks.STAGE_TASKS:
        raise ValueError(f"not a diffusion stage: {stage!r}")
    task = tasks.for_stage(stage)
    started = time.perf_counter()
    cfg = getattr(params.train, stage)
    if cfg.noise not in params.diffusion.noise:
        raise ConfigError(
            f"train.{stage}.noise: {cfg.noise!r} is not a preset of diffusion.noise "
            f"({', '.join(params.diffusion.noise)})"
        )
    video = stage != "image"
    if video and cfg.frames < 2:
        raise ConfigError(f"train.{stage}.frames must be >= 2 for a video stage")
    if not video and cfg.frames != 1:
        raise ConfigError("train.image.frames must be 1 (Stage I trains on single frames)")
    if not video and cfg.static_weight != 1.0:
        raise ConfigError(
            "train.image.static_weight must be 1 (it weighs the error's mean over frames; images have one)"
        )
    out = stage_dir(params, stage)
    own_data = getattr(task, "data_root", None)  # a task with a data set of its own (multi-view: orbits)
    clips = None if own_data else stage_clips(params, stage)
    vae_src = task.vae_source(params, stage) or vae_source(params)
    vae, vae_backend = load_frozen_vae(vae_src)
    context = task.load_context(params, stage)
    latent_size = _latent_size(tuple(cfg.size), vae_downsampling(vae))
    if vae.config.latent_channels != params.model.unet.in_channels:
        raise ConfigError(
            f"model.unet.in_channels is {params.model.unet.in_channels} but the VAE ({vae_src}) has "
            f"{vae.config.latent_channels} latent channels; make them equal"
        )
    unet, init = task.start_unet(params, stage)

    window_args = dict(
        num_frames=cfg.frames,
        fps=cfg.fps,
        size=tuple(cfg.size),
        windows_per_clip=cfg.windows_per_clip,
        augment=cfg.augment,
        motion_score_at_255=params.diffusion.motion_bucket.score_at_255,
        seed=params.seed,
    )
    if own_data:
        items, info = task.own_set(params, stage, vae, context)
    elif streams(params, stage):
        vae.to(distributed().device)  # each batch is encoded when taken: on the accelerator
        items, info = task.streaming_set(window_stream(params, clips, **window_args), vae, context)
    else:
        windows = read_windows(clips, **window_args)
        items, info = task.training_set(windows, vae, context)
        del windows
    step_fn = task.make_step(params, stage, items, vae)
    groups = [
        {**g, "params": [p for p in g["params"] if p.requires_grad]}
        for g in param_groups(unet, cfg.lr, cfg.temporal_lr_scale if video else 1.0)
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0)
    new_inputs = task.new_inputs(unet, init)
    if (
        new_inputs
        and cfg.new_inputs_lr_scale != 1.0
        and params.train.parallel == "fsdp"
        and distributed().num_processes > 1
    ):
        raise ConfigError(
            f"train.{stage}.new_inputs_lr_scale must be 1 under train.parallel=fsdp (it rescales "
            f"columns of whole parameters, which FSDP shards)"
        )
    scale_updates(optimizer, new_inputs, cfg.new_inputs_lr_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.warmup_steps, cfg.steps, params.train.lr_schedule)
    )
    batch = per_process_batch(params, stage, min(cfg.batch, len(items)))
    buckets = items.data.motion_bucket.numpy()
    motion = float(np.median(buckets))

    dist = distributed()
    if dist.is_main_process:
        fresh_checkpoints(out / "checkpoints", fingerprint(params, stage))
    dist.wait_for_everyone()  # every process decides to resume (or not) from what the main process left
    preview, labels = task.preview(params, stage, {"vae": vae, "context": context, "latent_size": latent_size}, items)

    tools = {"vae": vae, "context": context, "clips": clips, "window_args": window_args}

    def sample_fn(model, step: int) -> None:
        folder = out / "samples" / f"step-{step:06d}"
        write_samples(folder, preview(model), labels, cfg.fps)
        if on_samples is not None:
            on_samples(folder, step)

    summary = train(
        step_fn,
        unet,
        optimizer,
        items,
        max_steps=cfg.steps,
        ckpt_dir=out / "checkpoints",
        sample_every=params.train.sample_every,
        sample_fn=sample_fn,
        probe_every=params.train.probe_every,
        probe_fn=(lambda model, step: on_probe(model, step, tools)) if on_probe is not None else None,
        ckpt_every=params.train.ckpt_every,
        lr_scheduler=scheduler,
        ema_decay=cfg.ema,
        log_every=params.train.log_every,
        logger=logger,
        seed=params.seed,
        profile=params.profile,
        batch_size=batch,
        collate_fn=collate,
        keep_last=params.train.keep_last,
        mixed_precision=params.train.mixed_precision,
        gradient_checkpointing=params.train.gradient_checkpointing,
        progress=progress,
        gradient_accumulation=params.train.grad_accumulation,
        parallel=params.train.parallel,
    )
    if not dist.is_main_process:  # the main process writes the folder; the others are done
        return {
            "stage": stage,
            "rank": dist.process_index,
            "final_loss": summary["final_loss"],
            "steps": summary["steps"],
        }

    # the stage's model: the last checkpoint's weights (EMA where used), as a diffusers folder
    from svd.training.checkpoint import load_weights
    from svd.training.fsdp import is_sharded

    if is_sharded(unet):  # sharded in place by the loop: load the checkpoint into an unsharded copy
        unet = task.start_unet(params, stage)[0]
    load_weights(summary["checkpoint"], model=unet, which="ema" if cfg.ema else "model", profile=params.profile)
    unet.eval()
    task.save_weights(unet, out, params, stage)
    p_mean, p_std = params.diffusion.noise[cfg.noise]
    write_model_file(
        params,
        stage,
        out,
        vae=vae,
        vae_src=vae_src,
        vae_backend=vae_backend,
        context=task.save_context(out, context, params, stage),
        latent_size=latent_size,
        motion=motion,
        noise=(p_mean, p_std),
        init=init,
        steps=summary["steps"],
        extra={
            "motion_range": [float(buckets.min()), float(buckets.max())],
            "motion_percentiles": [float(q) for q in np.percentile(buckets, [5, 50, 95])],
        },
    )
    task.finish(params, stage, out)
    return {
        "stage": stage,
        "kind": task.model_kind(stage),
        "final_loss": summary["final_loss"],
        "steps": summary["steps"],
        "resumed_from": summary["resumed_from"],
        "train_seconds": summary["seconds"],
        "samples_per_s": summary["samples_per_s"],
        "history": summary["history"],
        **info,
        **({"clips": len(clips)} if clips is not None else {}),
        "parameters": sum(p.numel() for p in unet.parameters()),
        "trainable_parameters": sum(p.numel() for p in unet.parameters() if p.requires_grad),
        "context_encoder": "pretrained" if context.pretrained else "random",
        "text_encoder": ("pretrained" if context.pretrained else "random") if task.kind == "text-to-video" else "n/a",
        "model_dir": str(out),
        "seconds": time.perf_counter() - started,
    }


def write_model_file(
    params: Params,
    stage: str,
    out: Path,
    *,
    vae,
    vae_src: str,
    vae_backend: str,
    context: dict,
    latent_size: tuple[int, int],
    motion: float,
    noise: tuple[float, float],
    init: str,
    steps: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bundle the VAE into `out` (when small) and write `out/svd_model.json`, what `load_model` and the samplers read
    to rebuild the model's conditioning. `context`: the task's record of its frozen encoder (Task.save_context)."""
    from svd import tasks

    cfg = getattr(params.train, stage)
    meta = {
        "stage": stage,
        "kind": tasks.for_stage(stage).model_kind(stage),
        "profile": params.profile,
        # a task that names its VAE (a LoRA: its base's) is not bundled again
        "vae": context["vae"] if "vae" in context else _bundle_vae(vae, vae_src, out),
        "vae_backend": vae_backend,
        **context,
        "size": list(cfg.size),
        "latent_size": list(latent_size),
        "frames": cfg.frames,
        "fps": cfg.fps,
        "motion_bucket": motion,
        **(extra or {}),
        "noise": list(noise),
        "data": cfg.data,
        "init": init,
        "steps": steps,
        "ema": cfg.ema,
    }
    (out / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


BUNDLE_VAE_MAX_BYTES = 64 * 2**20


def _bundle_vae(vae, source: str, out: Path) -> str:
    """A small VAE is saved into the model folder (out/vae), so the folder, a DVC checkout of it or a registry
    download samples anywhere; a large one (SD 2.1's, 335 MB) is referenced by its source."""
    size = sum(p.numel() * p.element_size() for p in vae.parameters())
    if size > BUNDLE_VAE_MAX_BYTES:
        return str(Path(source).resolve()) if Path(source).exists() else source
    vae.save_pretrained(out / "vae", safe_serialization=True)
    return "vae"


def write_samples(folder: Path, videos: np.ndarray, prompts: list[str], fps: float, scale: int = 4) -> list[Path]:
    """mp4 + GIF preview per video (nearest-upscaled `scale`x so a person can see them), a prompts.json manifest."""
    from svd.io.video import write_gif, write_video

    folder.mkdir(parents=True, exist_ok=True)
    manifest, paths = {}, []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        big = video.repeat(scale, axis=1).repeat(scale, axis=2)
        name = f"{i:02d}_{prompt.replace(' ', '_')[:60]}"
        write_video(folder / f"{name}.mp4", big, fps)
        write_gif(folder / f"{name}.gif", big, fps)
        manifest[f"{name}.mp4"] = prompt
        paths.append(folder / f"{name}.mp4")
    (folder / "prompts.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def load_model(folder: str | Path) -> dict[str, Any]:
    """unet + frozen VAE + the task's context encoder (`text` or `image_encoder`) of a stage folder, as
    svd_model.json names them."""
    from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

    from svd import tasks

    folder = Path(folder)
    meta = read_model(folder)
    if meta["kind"] == "camera-lora":
        return _load_lora_model(folder, meta)
    cls = UNet2DConditionModel if meta["kind"] == "text-to-image" else UNetSpatioTemporalConditionModel
    unet_dir = require_dir(folder / "unet", "the model's UNet", "the folder is incomplete; re-run its stage")
    try:
        unet = cls.from_pretrained(unet_dir).eval()
    except Exception as exc:  # noqa: BLE001 - any unreadable weight file is the same user-facing problem
        raise InputError(f"cannot load the UNet in {unet_dir} ({exc.__class__.__name__})") from None
    vae, _ = load_frozen_vae(str(folder / meta["vae"]) if meta["vae"] == "vae" else meta["vae"])
    context = tasks.for_kind(meta["kind"]).load_saved_context(folder, meta)
    if "mask_embedding" in context:  # interpolation's learned mask embedding lives on its UNet, as in training
        from svd.tasks.interpolation import add_mask_embedding

        add_mask_embedding(unet, context["mask_embedding"])
    return {"unet": unet, "vae": vae, "meta": meta, "text": None, **context}


def _load_lora_model(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A camera LoRA's base model (the folder its svd_model.json names) with the adapter on at scale 1; `adapters`
    maps the loaded adapters to their scales. The adapter's base digest is checked against the base's weights."""
    from svd.models.lora import load_adapter, set_scales

    base = Path(meta["base"])
    if not (base / MODEL_FILE).is_file():
        raise InputError(
            f"{folder} is an adapter on the base model {base}, which is not there: check that model out "
            f"(`dvc pull {base}`) or train it"
        )
    model = load_model(base)
    name = load_adapter(model["unet"], folder / meta["adapter"], name=meta["adapter_name"])
    set_scales(model["unet"], {name: 1.0})
    return {**model, "meta": meta, "base_meta": model["meta"], "adapters": {name: 1.0}}


__all__ = [
    "STAGES",
    "eval_prompts",
    "load_model",
    "read_model",
    "registry_aliases",
    "stage_dir",
    "stage_name",
    "train_diffusion_stage",
    "train_vae_stage",
    "write_samples",
]


# ---------------------------------------------------------------- tracking
def _registered_names() -> dict[str, str]:
    from svd import tasks

    names = {stage: tasks.for_stage(stage).registered_name(stage) for stage in tasks.STAGE_TASKS}
    return {stage: name for stage, name in names.items() if name}


REGISTERED_NAME = _registered_names()  # stage -> registered model (svd-t2v for video and hq, svd-i2v, ...)


def registry_aliases(params: Params, stage: str) -> list[str]:
    """Aliases a newly trained video model takes. On the pipeline's own data it becomes `<stage>` and `newest`; an
    ablation run (`train.<stage>.data: uncurated`) only takes `<stage>-uncurated`, so the pipeline's aliases (and
    `svd sample`'s default) keep pointing at the pipeline's models while both sides stay in the registry."""
    name = stage_name(params, stage)
    return [name] if name != stage else [stage, "newest"]


def stage_inputs(params: Params, stage: str) -> dict[str, Path]:
    """The files a stage's lineage tags hash: the curated clip table (or the task's own data set's manifest) and
    the parent stage's weights."""
    from svd import tasks

    task = tasks.for_stage(stage) if stage in tasks.STAGE_TASKS else None
    own_data = getattr(task, "data_root", None)
    if own_data:
        inputs = {"data": own_data(params, stage)}
    else:
        inputs = {"curated": Path(params.paths.curated) / "clips.parquet"}
    public = getattr(params.weights, f"{stage}_pipeline", None)  # a public model finetuned instead of the parent
    if public:
        from svd import tasks

        inputs["pretrained"] = tasks.for_stage(stage).pretrained(params, stage) / "unet"
        return {k: v for k, v in inputs.items() if v.exists()}
    parent = parent_stage(params, stage)
    if parent == "vae" and not params.train.vae.train:
        return inputs
    if parent is not None:
        sub = "vae" if parent == "vae" else "unet"
        inputs[parent] = stage_dir(params, parent) / sub
    return {k: v for k, v in inputs.items() if v.exists()}


def track_stage(params: Params, stage: str, summary: dict[str, Any], register: bool = True) -> None:
    """Tags, artifacts and (video stages) a registry version for the active MLflow run."""
    import mlflow

    from svd import tracking

    out = stage_dir(params, stage)
    mlflow.set_tags(
        {
            "svd.stage": stage,
            "svd.train_data": getattr(params.train, stage).data if stage != "vae" else "curated",
            "svd.text_encoder": summary.get("text_encoder", "n/a"),
            "svd.context_encoder": summary.get("context_encoder", "n/a"),
        }
    )
    if stage == "vae":
        tracking.log_artifacts(out / "recon.png")
        return
    tracking.log_artifacts(out / MODEL_FILE)
    for item in (out / "samples").glob("*"):  # the final samples (previews were logged as they were made)
        if item.is_file():
            tracking.log_artifacts(item, "samples")
    if stage in REGISTERED_NAME and register:
        export = out / "unet"
        size = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
        if size < 512 * 2**20:  # a100-sized weights stay in DVC's cache only (an adapter has no unet/)
            data = getattr(params.train, stage).data
            meta = read_model(out)
            lineage = _base_lineage(params, meta) if meta["kind"] == "camera-lora" else {}
            version = tracking.register_folder(
                params,
                out,
                REGISTERED_NAME[stage],
                registry_aliases(params, stage),
                include=model_entries(out),
                tags={
                    "svd.stage": stage,
                    "svd.profile": params.profile,
                    "svd.train_data": data,
                    "svd.kind": meta["kind"],
                    "svd.init": meta["init"],
                    **lineage,
                },
            )
            mlflow.set_tags({"svd.registered": f"{REGISTERED_NAME[stage]}/{version}", **lineage})


def model_entries(folder: Path) -> list[str]:
    """What a model folder's model is made of (the registry's copy): every top-level entry but the training run's
    own (checkpoints, samples), so a part a task adds (interpolation's mask embedding) is never left behind."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in RUN_ENTRIES and not p.name.startswith("."))


RUN_ENTRIES = ("checkpoints", "samples")


def _base_lineage(params: Params, meta: dict[str, Any]) -> dict[str, str]:
    """An adapter's base in the registry: the version its base stage's alias points at (the pipeline's model it was
    trained on, registered by that stage), and the base's weight digest the adapter file carries."""
    import mlflow

    from svd import tracking

    base_stage = read_model(meta["base"])["stage"]
    lineage = {"svd.base_sha256": meta["base_sha256"], "svd.base_folder": meta["base"]}
    name = REGISTERED_NAME.get(base_stage)
    if name:
        tracking.configure(params)
        try:
            version = mlflow.MlflowClient().get_model_version_by_alias(name, base_stage)
            lineage["svd.base_model"] = f"{name}/{version.version}"
        except mlflow.exceptions.MlflowException:
            lineage["svd.base_model"] = f"{name} (not registered)"
    return lineage
