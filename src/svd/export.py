"""`svd export`: an image-to-video model folder as a diffusers StableVideoDiffusionPipeline folder.

The folder holds unet/, vae/, image_encoder/, feature_extractor/, scheduler/ and model_index.json, so that
`StableVideoDiffusionPipeline.from_pretrained(DIR)` loads and runs it with no code of ours. The scheduler is
diffusers' EulerDiscreteScheduler as the public SVD checkpoints configure it (v-prediction, Karras sigmas between
`diffusion.sampler.sigma_min` and `sigma_max`, continuous timesteps c_noise = ln(sigma) / 4): the same preconditioning
and Euler steps as svd.diffusion, so from the same start noise and augmentation noise the pipeline gives `svd sample`'s
frames up to float rounding (the sigmas are computed in float32 there, float64 here; tested). What differs by design:
the pipeline resizes its input image itself (PIL in, `height`/`width`), and defaults to 576x1024, 25 frames, fps 7,
guidance 1.0 -> 3.0: pass the model's values (svd_model.json, also written to the folder as svd_model.json).
The tiny profile's VAE is an AutoencoderKL (no temporal decoder); the pipeline decodes it frame by frame.

Camera-motion adapters (svd.tasks.camera_lora) travel as adapters/<name>.safetensors: peft's own key format, with
rank, alpha, target modules and the base's sha256 in the metadata. diffusers cannot load them itself (its SVD UNet has
no adapter API), but peft can, on the exported pipeline's UNet, with no code of ours:

    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors import safe_open
    with safe_open("DIR/adapters/horizontal.safetensors", "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = LoraConfig(r=int(meta["rank"]), lora_alpha=float(meta["alpha"]), target_modules=meta["target_modules"])
    inject_adapter_in_model(config, pipe.unet, adapter_name="horizontal")
    set_peft_model_state_dict(pipe.unet, tensors, adapter_name="horizontal")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from svd.config import Params
from svd.errors import InputError

SVD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "v_prediction",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}


def scheduler(params: Params):
    """diffusers' EulerDiscreteScheduler configured as SVD's public checkpoints (sigma range from our params)."""
    from diffusers import EulerDiscreteScheduler

    sampler = params.diffusion.sampler
    if sampler.method != "euler":
        raise InputError(
            f"diffusion.sampler.method is {sampler.method!r}; the exported pipeline's scheduler is "
            f"Euler, so `svd sample` and the pipeline would differ"
        )
    return EulerDiscreteScheduler(**SVD_SCHEDULER, sigma_min=sampler.sigma_min, sigma_max=sampler.sigma_max)


def pipeline_of(params: Params, folder: Path):
    """A StableVideoDiffusionPipeline over the model in `folder` (an image-to-video folder of ours)."""
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    from svd.models.image_encoder import CLIP_MEAN, CLIP_SIZE
    from svd.training.stages import load_model

    model = load_model(folder)
    meta = model["meta"]
    if meta["kind"] != "image-to-video":
        raise InputError(
            f"{folder} holds a {meta['kind']} model; diffusers' StableVideoDiffusionPipeline runs "
            f"image-to-video models only (train one with `svd train --stage i2v`)"
        )
    extractor_dir = Path(folder) / "feature_extractor"
    extractor = (
        CLIPImageProcessor.from_pretrained(extractor_dir)
        if extractor_dir.is_dir()
        else CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, image_mean=list(CLIP_MEAN))
    )
    return StableVideoDiffusionPipeline(
        vae=model["vae"],
        image_encoder=model["image_encoder"].model,
        unet=model["unet"],
        scheduler=scheduler(params),
        feature_extractor=extractor,
    ), meta


def export_model(
    params: Params, folder: str | Path, out: str | Path, adapters: list[Path] | None = None
) -> dict[str, Any]:
    """Write the diffusers folder (see the module docstring) to `out` (written beside, then moved into place), with
    the adapter files `adapters` (each checked against the base) under adapters/. A camera-LoRA folder exports its
    base with its adapter."""
    from svd.models.lora import base_digest, read_adapter

    folder, out = Path(folder), Path(out)
    adapters = list(adapters or [])
    lora_meta = json.loads((folder / "svd_model.json").read_text()) if (folder / "svd_model.json").is_file() else {}
    if lora_meta.get("kind") == "camera-lora":
        adapters.insert(0, folder / lora_meta["adapter"])
        folder = Path(lora_meta["base"])
    pipe, meta = pipeline_of(params, folder)
    named = {}
    if adapters:
        digest = base_digest(pipe.unet)
        for path in adapters:
            _, info = read_adapter(path)
            if info["base_sha256"] != digest:
                raise InputError(f"{path} was trained on another base UNet than {folder}'s: it cannot travel with it")
            named[info.get("adapter") or Path(path).stem] = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / "svd_model.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name, path in named.items():
        (tmp / "adapters").mkdir(exist_ok=True)
        shutil.copyfile(path, tmp / "adapters" / f"{name}.safetensors")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    h, w = meta["size"]
    return {
        "model": str(folder),
        "out": str(out),
        "stage": meta["stage"],
        "adapters": sorted(named),
        "call": {
            "height": h,
            "width": w,
            "num_frames": meta["frames"],
            "fps": meta["fps"],
            "motion_bucket_id": meta["motion_bucket"],
            "noise_aug_strength": meta["cond_aug"],
            "min_guidance_scale": meta["guidance"][0],
            "max_guidance_scale": meta["guidance"][1],
            "num_inference_steps": meta["sample_steps"],
        },
    }


__all__ = ["export_model", "pipeline_of", "scheduler"]
