"""The world evaluator applied to what a training stage wrote, called from above the training code (the CLI) after a
stage finishes: text-to-image / text-to-video models on the eval prompts (`evaluate_model`, the text-to-video task's
evaluator) and the VAE's round-trip ceiling (`vae_roundtrip`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd.config import Params


def evaluate_model(
    params: Params,
    folder: Path,
    *,
    vae=None,
    text=None,
    unet=None,
    prompts: list[str] | None = None,
    guidance: float | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Generate the prompt set with a model folder and score it with the world evaluator (colour and direction; an
    image model: colour only); samples of the first prompts are written to folder/samples (mp4 + GIF)."""
    from svd.evaluation.world import evaluate_videos
    from svd.tasks.text_to_video import generate
    from svd.training.stages import eval_prompts, load_model, read_model, write_samples

    folder = Path(folder)
    meta = read_model(folder)
    model = load_model(folder) if unet is None else {"unet": unet, "vae": vae, "text": text, "meta": meta}
    prompts = prompts or eval_prompts(params)
    guidance = params.sample.guidance if guidance is None else guidance
    steps = steps or params.sample.steps
    sampler = params.diffusion.sampler
    started = time.perf_counter()
    video = meta["kind"] == "text-to-video"
    videos = generate(
        model["unet"],
        model["vae"],
        model["text"],
        prompts,
        latent_size=tuple(meta["latent_size"]),
        num_frames=meta["frames"] if video else None,
        steps=steps,
        guidance=guidance,
        seed=params.sample.seed,
        fps=meta["fps"],
        motion_bucket=meta["motion_bucket"],
        sigma_min=sampler.sigma_min,
        sigma_max=sampler.sigma_max,
        rho=sampler.rho,
        method=sampler.method,
        sigma_data=params.diffusion.sigma_data,
    )
    seconds = time.perf_counter() - started
    scores = evaluate_videos(list(videos), prompts, meta["fps"])
    write_samples(folder / "samples", videos[:8], prompts[:8], meta["fps"])
    (folder / "samples" / "eval.json").write_text(json.dumps(scores, indent=2) + "\n")
    result = {
        "colour_accuracy": scores["colour_accuracy"],
        "n": scores["n"],
        "guidance": guidance,
        "steps": steps,
        "sample_seconds": seconds,
    }
    if video:
        result["direction_accuracy"] = scores["direction_accuracy"]
    return result


def vae_roundtrip(params: Params, vae) -> dict[str, float] | None:
    """The world evaluator on the world's eval clips after an encode/decode round trip at Stage II's size, frames and
    fps: the ceiling any sample decoded by this VAE can reach (the clips themselves score 1.0). None without a world
    eval set. Held-out red objects coming back green showed up here first, not in the PSNR."""
    import pandas as pd

    from svd.evaluation.world import evaluate_videos
    from svd.io.video import iter_frames
    from svd.models.vae import decode, encode

    world = Path(params.paths.world)
    table = world / "eval" / "actions.parquet"
    if not table.is_file():
        return None
    cfg = params.train.video
    h, w = cfg.size
    clips, prompts = [], []
    for row in pd.read_parquet(table).itertuples():
        frames = list(iter_frames(world / row.file, size=(w, h)))[:: max(1, round(row.fps / cfg.fps))][: cfg.frames]
        if len(frames) == cfg.frames:
            clips.append(np.stack(frames))
            prompts.append(row.class_name)
    if not clips:
        return None
    x = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        y = decode(vae, encode(vae, x))
    videos = ((y.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    scores = evaluate_videos(list(videos), prompts, cfg.fps)
    return {
        "colour_accuracy": scores["colour_accuracy"],
        "direction_accuracy": scores["direction_accuracy"],
        "n": scores["n"],
    }


def after_training(params: Params, stage: str, folder: Path) -> dict[str, Any] | None:
    """What the CLI adds to a stage's summary: the VAE's round trip, or the stage's task evaluator on its folder."""
    import importlib

    from svd import tasks

    if stage == "vae":
        from svd.training.stages import load_frozen_vae, vae_source

        vae, _ = load_frozen_vae(vae_source(params))
        return vae_roundtrip(params, vae) if params.train.vae.train else None
    module, name = tasks.for_stage(stage).evaluator.split(":")
    return getattr(importlib.import_module(module), name)(params, folder)


def score_preview(folder: Path, fps: float, video: bool = True) -> dict[str, float]:
    """The world evaluator on a preview folder a training stage wrote (samples/step-NNNNNN: mp4s and prompts.json),
    saved as its eval.json; called from above the training code (the CLI's on_samples callback). An image model's
    previews are single frames: colour only."""
    from svd.evaluation.world import evaluate_folder

    scores = evaluate_folder(folder, fps=fps)
    keys = ("colour_accuracy", "direction_accuracy", "n") if video else ("colour_accuracy", "n")
    keep = {k: scores[k] for k in keys if k in scores}
    (Path(folder) / "eval.json").write_text(json.dumps(keep, indent=2) + "\n")
    return keep


def preview_curve(folder: Path, summary: dict[str, Any], final: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows (step, colour_accuracy, direction_accuracy, prompts) from the scored previews of a stage folder
    (samples/step-*/eval.json) and its final evaluation at the last step: the stage's curve at every evaluation."""
    rows = []
    for step_dir in sorted(Path(folder, "samples").glob("step-*")):
        scored = step_dir / "eval.json"
        if scored.is_file():
            s = json.loads(scored.read_text())
            rows.append({"step": int(step_dir.name.split("-")[1]), **_curve_point(s)})
    if final and "colour_accuracy" in final:
        rows = [r for r in rows if r["step"] != summary.get("steps")]
        rows.append({"step": summary.get("steps"), **_curve_point(final)})
    return rows


def _curve_point(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "colour_accuracy": s.get("colour_accuracy"),
        "direction_accuracy": s.get("direction_accuracy", ""),
        "prompts": s.get("n"),
    }


__all__ = ["after_training", "evaluate_model", "preview_curve", "score_preview", "vae_roundtrip"]
