"""`svd sample`: text -> video, or image -> video, files with a trained model folder or a registered model.

A model reference is a folder written by `svd train` (holding svd_model.json), or `models:/NAME@ALIAS` /
`models:/NAME/VERSION` from the MLflow registry (downloaded to a local cache under mlruns/, then read as a folder).
Without one, the newest folder the pipeline trained of the kind the inputs ask for: text-to-video (models/hq or
models/video) for --prompt, image-to-video (models/i2v_xt or models/i2v) for --image; with --lora, the base the
first adapter was trained on.

`--lora NAME[:SCALE]` (repeatable) puts camera-motion adapters (svd.tasks.camera_lora) on an image-to-video model,
each at its scale (default 1): NAME is a LoRA stage's short name (horizontal -> models/lora_horizontal), a LoRA model
folder or an adapter .safetensors file. An adapter trained on another base is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from svd.config import Params
from svd.errors import InputError
from svd.models.lora import parse_lora_spec
from svd.training.stages import MODEL_FILE, load_model, read_model, stage_dir, write_samples

VIDEO_STAGES = ("hq", "video")
IMAGE_TO_VIDEO_STAGES = ("i2v_xt", "i2v")


def newest_video_model(params: Params, stages: tuple[str, ...] = VIDEO_STAGES) -> Path:
    found = [stage_dir(params, s) for s in stages if (stage_dir(params, s) / MODEL_FILE).is_file()]
    if not found:
        kind = "image-to-video" if stages == IMAGE_TO_VIDEO_STAGES else "text-to-video"
        raise InputError(
            f"no trained {kind} model under {params.paths.models}/ ({' or '.join(stages)}): run "
            f"`svd train --stage {stages[-1]}` (or `make run`), or pass --model"
        )
    return max(found, key=lambda p: (p / MODEL_FILE).stat().st_mtime)


def resolve_model(params: Params, ref: str | None, stages: tuple[str, ...] = VIDEO_STAGES) -> Path:
    """A local model folder for `ref` (see module docstring); None: the newest of `stages`."""
    if ref is None:
        return newest_video_model(params, stages)
    if ref.startswith("models:/"):
        from svd import tracking

        return tracking.download_model(params, ref)
    folder = Path(ref)
    if not folder.exists():
        raise InputError(f"--model {ref}: no such folder (or use models:/NAME@ALIAS)")
    read_model(folder)  # InputError when it is not one of ours
    return folder


def _write(out: Path, videos, labels: list[str], fps: float, scale: int) -> list[dict[str, str]]:
    """OUT.mp4 + OUT.gif (several videos: OUT_0, OUT_1, ...)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = []
    tmp = out.parent / f".{out.stem}.samples"
    written = write_samples(tmp, videos, labels, fps, scale=scale)
    for i, path in enumerate(written):
        stem = out.stem if len(labels) == 1 else f"{out.stem}_{i}"
        mp4, gif = out.with_name(stem + ".mp4"), out.with_name(stem + ".gif")
        path.replace(mp4)
        path.with_suffix(".gif").replace(gif)
        files.append({"mp4": str(mp4), "gif": str(gif)})
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()
    return files


def sample_to_files(
    params: Params,
    *,
    prompts: list[str] | None = None,
    images: list[str] | None = None,
    out: Path,
    model: str | None = None,
    frames: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    scale: int = 4,
    motion_bucket: float | None = None,
    fps: float | None = None,
    cond_aug: float | None = None,
    loras: list[str] | None = None,
    interpolate: bool = False,
    interpolation_model: str | None = None,
) -> dict[str, Any]:
    """Videos from prompts with a text-to-video model or from images with an image-to-video model, written as mp4 +
    GIF; the result lists the files and `warnings` (every conversion of an input, settings outside training's)."""
    prompts, images = list(prompts or []), list(images or [])
    if not prompts and not images:
        raise InputError("give --prompt TEXT (text-to-video) or --image FILE (image-to-video)")
    if prompts and images:
        raise InputError(
            "give --prompt (text-to-video) or --image (image-to-video), not both: image-to-video is "
            "conditioned on the image alone"
        )
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputError("--prompt must be non-empty text")
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out {out}: the output must be an .mp4 file")
    adapters = [(*parse_lora_spec(spec), spec) for spec in loras or []]
    if adapters and prompts:
        raise InputError("--lora puts camera-motion adapters on an image-to-video model: give --image, not --prompt")
    adapters = [(adapter_file(params, name, spec), scale) for name, scale, spec in adapters]
    if adapters and model is None:  # the base the first adapter was trained on
        from svd.models.lora import read_adapter

        model = json.loads(read_adapter(adapters[0][0])[1].get("svd.base", "null"))
    folder = resolve_model(params, model, IMAGE_TO_VIDEO_STAGES if images else VIDEO_STAGES)
    meta = read_model(folder)
    if meta["profile"] != params.profile:
        raise InputError(
            f"{folder} was trained with profile {meta['profile']}, this run uses profile "
            f"{params.profile}: pass --profile {meta['profile']}"
        )
    i2v = meta["kind"] in ("image-to-video", "camera-lora")
    if images and not i2v:
        raise InputError(
            f"{folder} is a {meta['kind']} model: it takes --prompt, not --image (pass an "
            f"image-to-video model, e.g. --model models/i2v)"
        )
    if prompts and i2v:
        raise InputError(f"{folder} is an image-to-video model: it takes --image FILE, not --prompt")
    seed = params.sample.seed if seed is None else seed
    if i2v:
        return _image_to_video(
            params,
            folder,
            meta,
            images,
            out,
            frames=frames,
            seed=seed,
            steps=steps,
            guidance=guidance,
            scale=scale,
            motion_bucket=motion_bucket,
            fps=fps,
            cond_aug=cond_aug,
            adapters=adapters,
            interpolate=(interpolate, interpolation_model),
        )
    if motion_bucket is not None or cond_aug is not None:
        raise InputError("--motion-bucket and --cond-aug are image-to-video settings")
    from svd.tasks.text_to_video import generate

    loaded = load_model(folder)
    video = meta["kind"] == "text-to-video"
    sampler = params.diffusion.sampler
    steps = steps or params.sample.steps
    guidance = params.sample.guidance if guidance is None else guidance
    fps = float(meta["fps"]) if fps is None else float(fps)
    videos = generate(
        loaded["unet"],
        loaded["vae"],
        loaded["text"],
        prompts,
        latent_size=tuple(meta["latent_size"]),
        num_frames=(frames or meta["frames"]) if video else None,
        steps=steps,
        guidance=guidance,
        seed=seed,
        fps=fps,
        motion_bucket=meta["motion_bucket"],
        sigma_min=sampler.sigma_min,
        sigma_max=sampler.sigma_max,
        rho=sampler.rho,
        method=sampler.method,
        sigma_data=params.diffusion.sigma_data,
    )
    warnings: list[str] = []
    videos, fps = _interpolated(params, videos, fps, seed, (interpolate, interpolation_model), warnings)
    files = _write(out, videos, prompts, fps, scale)
    return {
        "model": str(folder),
        "stage": meta["stage"],
        "frames": int(videos.shape[1]),
        "size": list(videos.shape[2:4]),
        "steps": steps,
        "guidance": guidance,
        "fps": fps,
        "warnings": warnings,
        "videos": [{"prompt": p, **f, "seed": seed + i} for i, (p, f) in enumerate(zip(prompts, files))],
    }


def _image_to_video(
    params: Params,
    folder: Path,
    meta: dict,
    images: list[str],
    out: Path,
    *,
    frames,
    seed,
    steps,
    guidance,
    scale,
    motion_bucket,
    fps,
    cond_aug,
    adapters: list[tuple[Path, float]],
    interpolate: tuple[bool, str | None],
) -> dict[str, Any]:
    import numpy as np
    import torch

    from svd.diffusion.conditioning import MOTION_BUCKET_MAX
    from svd.io.image import read_image, resize_frame
    from svd.tasks.image_to_video import generate

    warnings, frames_in = [], []
    size = tuple(meta["size"])
    for path in images:
        rgb, notes = read_image(path)
        rgb, more = resize_frame(rgb, size)
        warnings += [f"{path}: {n}" for n in notes + more]
        frames_in.append(rgb)
    motion_bucket = float(meta["motion_bucket"]) if motion_bucket is None else float(motion_bucket)
    lo, hi = meta.get("motion_range", [0.0, MOTION_BUCKET_MAX])
    if not 0 <= motion_bucket <= MOTION_BUCKET_MAX:
        warnings.append(
            f"--motion-bucket {motion_bucket:g} is outside 0-{MOTION_BUCKET_MAX} (SVD's range); "
            f"expect motion the model never trained on"
        )
    elif not lo <= motion_bucket <= hi:
        warnings.append(f"--motion-bucket {motion_bucket:g} is outside the buckets training saw ({lo:g}-{hi:g})")
    fps = float(meta["fps"]) if fps is None else float(fps)
    if fps != float(meta["fps"]):
        warnings.append(
            f"--fps {fps:g}: the model trained at {meta['fps']:g} fps only (fps_id {meta['fps'] - 1:g}); "
            f"other rates are extrapolation"
        )
    if fps - 1 < 0:
        raise InputError(f"--fps must be >= 1 (SVD conditions on fps - 1), got {fps:g}")
    cond_aug = float(meta["cond_aug"]) if cond_aug is None else float(cond_aug)
    if cond_aug < 0:
        raise InputError(f"--cond-aug must be >= 0, got {cond_aug:g}")
    guide = tuple(meta["guidance"]) if guidance is None else (float(meta["guidance"][0]), float(guidance))
    steps = steps or int(meta["sample_steps"])
    n_frames = frames or int(meta["frames"])
    loaded = load_model(folder)
    scales = put_adapters(loaded, adapters)
    sampler = params.diffusion.sampler
    x = torch.from_numpy(np.stack(frames_in)).permute(0, 3, 1, 2).float() / 127.5 - 1
    videos = generate(
        loaded["unet"],
        loaded["vae"],
        loaded["image_encoder"],
        x,
        num_frames=n_frames,
        steps=steps,
        guidance=guide,
        seed=seed,
        fps=fps,
        motion_bucket=motion_bucket,
        cond_aug=cond_aug,
        sigma_min=sampler.sigma_min,
        sigma_max=sampler.sigma_max,
        rho=sampler.rho,
        method=sampler.method,
        sigma_data=params.diffusion.sigma_data,
    )
    videos, fps = _interpolated(params, videos, fps, seed, interpolate, warnings)
    files = _write(out, videos, [Path(p).stem for p in images], fps, scale)
    return {
        "model": str(folder),
        "stage": meta["stage"],
        "frames": int(videos.shape[1]),
        "size": list(videos.shape[2:4]),
        "steps": steps,
        "guidance": list(guide),
        "motion_bucket": motion_bucket,
        "fps": fps,
        "cond_aug": cond_aug,
        "adapters": scales,
        "warnings": warnings,
        "videos": [{"image": p, **f, "seed": seed + i} for i, (p, f) in enumerate(zip(images, files))],
    }


def _interpolated(params: Params, videos, fps: float, seed: int, request: tuple[bool, str | None], warnings: list[str]):
    """(videos, fps), 4x the frame rate through the interpolation model when `request` = (True, model or None)."""
    wanted, ref = request
    if not wanted:
        if ref is not None:
            raise InputError("--interpolation-model without --interpolate")
        return videos, fps
    import numpy as np

    from svd.interpolate import RATE, check_rate, interpolate_frames, resolve_interpolator
    from svd.io.image import resize_frame

    loaded = load_model(resolve_interpolator(params, ref))
    check_rate(loaded["meta"], fps, warnings)
    size = tuple(loaded["meta"]["size"])
    if tuple(videos.shape[2:4]) != size:
        warnings.append(
            f"samples of {videos.shape[3]}x{videos.shape[2]} resized to the interpolator's {size[1]}x{size[0]}"
        )
        videos = np.stack([np.stack([resize_frame(f, size)[0] for f in v]) for v in videos])
    out = [interpolate_frames(loaded, v, fps, params=params, seed=seed + i) for i, v in enumerate(videos)]
    return np.stack(out), fps * RATE


def adapter_file(params: Params, name: str, spec: str) -> Path:
    """The adapter file of a --lora NAME (see the module docstring)."""
    from svd.tasks.camera_lora import ADAPTER_FILE

    path = Path(name)
    if path.is_file():
        return path
    folder = path if path.is_dir() else Path(params.paths.models) / f"lora_{name}"
    if (folder / ADAPTER_FILE).is_file():
        return folder / ADAPTER_FILE
    known = sorted(p.name.removeprefix("lora_") for p in Path(params.paths.models).glob("lora_*") if p.is_dir())
    raise InputError(
        f"--lora {spec}: no adapter file, LoRA folder or trained LoRA stage named {name!r} (trained here: "
        f"{', '.join(known) or 'none'}; `svd train --stage lora_horizontal` trains one)"
    )


def put_adapters(loaded: dict, adapters: list[tuple[Path, float]]) -> dict[str, float]:
    """Load each adapter file onto the loaded model's UNet (one already on, from a LoRA --model, is not loaded twice)
    and activate them all at their scales; returns name -> scale."""
    from svd.models.lora import base_digest, load_adapter, read_adapter, set_scales

    scales = dict(loaded.get("adapters", {}))
    if not adapters:
        return scales
    digest = base_digest(loaded["unet"])
    for path, scale in adapters:
        name = read_adapter(path)[1].get("adapter") or path.stem
        if name not in scales:
            load_adapter(loaded["unet"], path, name=name, digest=digest)
        scales[name] = scale
    set_scales(loaded["unet"], scales)
    return scales


__all__ = ["adapter_file", "newest_video_model", "put_adapters", "resolve_model", "sample_to_files"]
