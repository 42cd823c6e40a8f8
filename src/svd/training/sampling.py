"""`svd sample`: text -> video files with a trained model folder or a registered model.

A model reference is a folder written by `svd train` (holding svd_model.json), or `models:/NAME@ALIAS` /
`models:/NAME/VERSION` from the MLflow registry (downloaded to a local cache under mlruns/, then read as a folder).
Without one, the newest text-to-video folder the pipeline trained (models/hq, else models/video) is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from svd.config import Params
from svd.errors import InputError
from svd.training.stages import MODEL_FILE, load_model, read_model, stage_dir, write_samples

VIDEO_STAGES = ("hq", "video")


def newest_video_model(params: Params) -> Path:
    found = [stage_dir(params, s) for s in VIDEO_STAGES if (stage_dir(params, s) / MODEL_FILE).is_file()]
    if not found:
        raise InputError(f"no trained text-to-video model under {params.paths.models}/ (hq or video): run "
                         f"`svd train --stage video` (or `make run`), or pass --model")
    return max(found, key=lambda p: (p / MODEL_FILE).stat().st_mtime)


def resolve_model(params: Params, ref: str | None) -> Path:
    """A local model folder for `ref` (see module docstring)."""
    if ref is None:
        return newest_video_model(params)
    if ref.startswith("models:/"):
        from svd import tracking

        return tracking.download_model(params, ref)
    folder = Path(ref)
    if not folder.exists():
        raise InputError(f"--model {ref}: no such folder (or use models:/NAME@ALIAS)")
    read_model(folder)  # InputError when it is not one of ours
    return folder


def sample_to_files(params: Params, *, prompts: list[str], out: Path, model: str | None = None,
                    frames: int | None = None, seed: int | None = None, steps: int | None = None,
                    guidance: float | None = None, scale: int = 4) -> dict[str, Any]:
    from svd.training.denoiser import generate

    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputError("--prompt must be non-empty text")
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out {out}: the output must be an .mp4 file")
    folder = resolve_model(params, model)
    meta = read_model(folder)
    if meta["profile"] != params.profile:
        raise InputError(f"{folder} was trained with profile {meta['profile']}, this run uses profile "
                         f"{params.profile}: pass --profile {meta['profile']}")
    loaded = load_model(folder)
    video = meta["kind"] == "text-to-video"
    sampler = params.diffusion.sampler
    seed = params.sample.seed if seed is None else seed
    steps = steps or params.sample.steps
    guidance = params.sample.guidance if guidance is None else guidance
    videos = generate(loaded["unet"], loaded["vae"], loaded["text"], prompts, latent_size=tuple(meta["latent_size"]),
                      num_frames=(frames or meta["frames"]) if video else None, steps=steps, guidance=guidance,
                      seed=seed, fps=meta["fps"], motion_bucket=meta["motion_bucket"], sigma_min=sampler.sigma_min,
                      sigma_max=sampler.sigma_max, rho=sampler.rho, method=sampler.method,
                      sigma_data=params.diffusion.sigma_data)
    # write_samples names files by index and prompt; here the user named the output
    out.parent.mkdir(parents=True, exist_ok=True)
    files = []
    tmp = out.parent / f".{out.stem}.samples"
    written = write_samples(tmp, videos, prompts, meta["fps"], scale=scale)
    for i, path in enumerate(written):
        stem = out.stem if len(prompts) == 1 else f"{out.stem}_{i}"
        mp4, gif = out.with_name(stem + ".mp4"), out.with_name(stem + ".gif")
        path.replace(mp4)
        path.with_suffix(".gif").replace(gif)
        files.append({"prompt": prompts[i], "mp4": str(mp4), "gif": str(gif), "seed": seed + i})
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()
    return {"model": str(folder), "stage": meta["stage"], "frames": int(videos.shape[1]),
            "size": list(videos.shape[2:4]), "steps": steps, "guidance": guidance, "videos": files}


__all__ = ["newest_video_model", "resolve_model", "sample_to_files"]
