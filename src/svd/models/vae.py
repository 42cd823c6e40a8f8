"""The latent autoencoder: SD 2.1's AutoencoderKL (the paper's), or a tiny one trained here for the CPU profile.

Latents are the encoder's posterior mean times `scaling_factor` (SD 2.1: 0.18215), so diffusion sees roughly unit
variance; image-to-video conditions on the *unscaled* mean (`encode(..., scale=False)`). SVD decodes with
`AutoencoderKLTemporalDecoder` (same encoder, a decoder with temporal layers); `load_vae` accepts either class.

Every VAE comes from a local diffusers folder / a hub id already in the local cache (`weights.vae`), or from a
config with random init; nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from svd.errors import WeightsError
from svd.models.sources import local_or_cached

# stabilityai/stable-diffusion-2-1 vae/config.json (the SVD VAE has the same encoder): 83,653,863 parameters.
SD21_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}

# Ours (tiny): 3 levels = x4 downsampling: 32 x 48 frames (train.*.size) -> 8 x 12 latents, where a world object
# (3-10% of the frame) covers 2-3 cells. 8 latent channels (SD 2.1: 4; later VAEs use 16) compress 6x: with 4, a
# 4 x 4 patch holding part of an object and part of a textured background has too few numbers for both. GroupNorm of
# 8 groups of 4+ channels: with one channel per group every channel is normalised on its own per image, which throws
# away the absolute colour levels the decoder has to reproduce. Widths 32/64/128: at 16/32/64 the VAE turned held-out
# red objects green and only 20 of the 32 world eval clips kept their colour through a round trip (evaluator ceiling
# 0.625 after 1,400 steps); at 32/64/128 and lr 2e-3 one run kept all 32 from 750 steps on and others kept 17-23
# (seed alone differs); lr 1e-3 (train.vae.lr) kept 28 on a seed that kept 20 at 2e-3 (README). scaling_factor is a
# placeholder: `train_vae` measures it.
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 128],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 8,
    "norm_num_groups": 8,
    "sample_size": 32,
    "scaling_factor": 1.0,
}

VAE_CLASSES = ("AutoencoderKL", "AutoencoderKLTemporalDecoder")
PARAMS_KEY = "weights.vae"


def _vae_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def build_vae(cfg: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised VAE from constructor kwargs; `_class_name` (default AutoencoderKL) picks the class."""
    cfg = dict(cfg)
    name = cfg.pop("_class_name", "AutoencoderKL")
    if name not in VAE_CLASSES:
        raise ValueError(f"VAE config names class {name!r}; expected one of {VAE_CLASSES}")
    return _vae_class(name)(**cfg)


def _config_file(folder: Path) -> tuple[Path, str | None]:
    """The config.json to load and the subfolder it lives in (None: the folder itself)."""
    if (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("_class_name") in VAE_CLASSES or not (folder / "vae" / "config.json").is_file():
            return folder / "config.json", None
    if (folder / "vae" / "config.json").is_file():
        return folder / "vae" / "config.json", "vae"
    raise WeightsError(f"{PARAMS_KEY}: {folder} holds no config.json nor vae/config.json (expected a diffusers "
                       "save_pretrained folder of a VAE or a pipeline)")


def load_vae(source: str | Path | None, cfg: dict[str, Any] | None = None) -> tuple[torch.nn.Module, str]:
    """(vae in eval mode, backend string). `source`: a local diffusers folder (a VAE, or a pipeline with vae/), or a
    hub id found in the local cache; None builds from `cfg` with random init.

    backend: "diffusers:<Class>:<source>" or "diffusers:<Class>:random".
    """
    if source is None or str(source).strip() == "":
        if cfg is None:
            raise WeightsError(f"{PARAMS_KEY} is null and no model.vae config was given: nothing to build a VAE from")
        vae = build_vae(cfg)
        return vae.eval(), f"diffusers:{type(vae).__name__}:random"

    text = str(source)
    folder = local_or_cached(text, PARAMS_KEY, ("config.json", "vae/config.json"))

    config_path, subfolder = _config_file(folder)
    try:
        name = json.loads(config_path.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{PARAMS_KEY}: cannot read {config_path} ({exc.__class__.__name__})") from None
    if name not in VAE_CLASSES:
        raise WeightsError(f"{PARAMS_KEY}: {config_path} describes a {name or 'model without _class_name'}, not a "
                           f"VAE ({' or '.join(VAE_CLASSES)}); point it at the VAE's folder")
    try:
        vae = _vae_class(name).from_pretrained(folder, subfolder=subfolder, local_files_only=True)
    except Exception as exc:  # missing/corrupt weights, shape mismatches: one line naming the key
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise WeightsError(f"{PARAMS_KEY}: cannot load {name} from {config_path.parent} ({reason})") from None
    return vae.eval(), f"diffusers:{name}:{text}"


def scaling_factor(vae) -> float:
    return float(vae.config.scaling_factor)


def _frames(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """(N, C, H, W) frames and the (B, T) lead dims to restore, for 4-D or 5-D (B, T, C, H, W) input."""
    if x.dim() == 5:
        return x.reshape(-1, *x.shape[2:]), tuple(x.shape[:2])
    if x.dim() == 4:
        return x, None
    raise ValueError(f"expected (N, C, H, W) or (B, T, C, H, W), got shape {tuple(x.shape)}")


def encode(vae, images: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
           scale: bool = True, chunk: int = 16) -> torch.Tensor:
    """Latents of images in [-1, 1], (N, 3, H, W) or (B, T, 3, H, W), encoded `chunk` frames at a time.

    The posterior mean by default (deterministic; what the scaling factor is measured on), a sample with
    `sample=True`; times `scaling_factor` unless `scale=False` (image-to-video conditioning uses the unscaled mean).
    """
    x, lead = _frames(images)
    param = next(vae.parameters())
    out = []
    for part in x.split(chunk):
        dist = vae.encode(part.to(param.device, param.dtype)).latent_dist
        out.append(dist.sample(generator) if sample else dist.mode())
    z = torch.cat(out)
    if scale:
        z = z * scaling_factor(vae)
    return z.reshape(*lead, *z.shape[1:]) if lead else z


def decode(vae, latents: torch.Tensor, *, chunk: int = 16) -> torch.Tensor:
    """Images in [-1, 1] from scaled latents, (N, 4, h, w) or (B, T, 4, h, w), decoded `chunk` frames at a time.

    A temporal decoder sees each chunk as one clip (as diffusers' SVD pipeline does with decode_chunk_size), so 5-D
    input is chunked within each video, never across two.
    """
    z, lead = _frames(latents)
    param = next(vae.parameters())
    z = z.to(param.device, param.dtype) / scaling_factor(vae)
    temporal = type(vae).__name__ == "AutoencoderKLTemporalDecoder"
    per_video = lead[1] if (lead and temporal) else z.shape[0]
    out = []
    for video in z.split(per_video):
        for part in video.split(chunk):
            kwargs = {"num_frames": part.shape[0]} if temporal else {}
            out.append(vae.decode(part, **kwargs).sample)
    x = torch.cat(out).clamp(-1, 1)
    return x.reshape(*lead, *x.shape[1:]) if lead else x


@torch.no_grad()
def latent_scale(vae, frames: torch.Tensor, *, chunk: int = 16) -> float:
    """1 / std of the unscaled latents (posterior means) of `frames`, as SD measured 0.18215 for its VAE."""
    z = encode(vae, frames, scale=False, chunk=chunk).float()
    std = z.flatten().std().item()
    if not std > 0:
        raise ValueError("latents have zero spread; cannot measure a scaling factor")
    return 1.0 / std


def num_parameters(vae) -> int:
    return sum(p.numel() for p in vae.parameters())


__all__ = ["SD21_VAE", "TINY_VAE", "VAE_CLASSES", "build_vae", "decode", "encode", "latent_scale", "load_vae",
           "num_parameters", "scaling_factor"]
