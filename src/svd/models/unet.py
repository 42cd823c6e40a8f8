"""The two denoisers of the recipe, built from plain dicts: Stage I image UNet and Stage II spatio-temporal UNet.

params.yaml holds one `model.unet` block shared by both (`UNET_PARAMS_KEYS` lists its keys); `image_unet_config` and
`video_unet_config` turn it into diffusers constructor kwargs, so the two UNets are compatible by construction and
the video UNet can be inflated from the image UNet (svd.models.inflate). Both configs are plain JSON-able dicts and
round-trip through diffusers' `save_pretrained`/`from_pretrained`.

Diffusers' `UNetSpatioTemporalConditionModel` hard-codes some spatial settings (GroupNorm of 32 groups, eps 1e-5 in
resnets, linear proj_in/proj_out in transformers, flip_sin_to_cos time embedding with shift 0, no attention upcast);
`image_unet_config` pins the image UNet to the same values, which is what makes every spatial weight transferable.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from svd.errors import ConfigError

# The `model.unet` keys of params.yaml (all required; unknown keys are errors, as everywhere in params).
UNET_PARAMS_KEYS = {
    "in_channels": "latent channels of the noisy input (both UNets)",
    "concat_channels": "extra channels concatenated to the video UNet input (image-to-video: 4 conditioning latents)",
    "out_channels": "predicted channels",
    "block_out_channels": "channels per resolution level (multiples of 32: GroupNorm(32) is hard-coded)",
    "cross_attention": "per level: a transformer (spatial + temporal) after each resnet, with cross-attention",
    "layers_per_block": "resnets per down level (up levels get one more)",
    "attention_head_dim": "channels per attention head (heads per level = channels / head dim)",
    "transformer_layers_per_block": "transformer blocks per attention",
    "cross_attention_dim": "width of the text (or CLIP image) context",
    "addition_time_embed_dim": "sinusoidal width of each micro-conditioning id (fps, motion, cond_aug)",
    "num_added_ids": "micro-conditioning ids of the video UNet (text-to-video: fps, motion; image-to-video: +cond_aug)",
    "image_class_embedding": "Stage I image UNet also takes the micro-conditioning (as a projection class embedding)",
    "num_frames": "frames the video UNet is trained on (recorded in its config; the forward takes any count)",
    "sample_size": "latent height/width the model is trained at (recorded in its config only)",
}

# The paper's model (sgm configs/inference/svd.yaml), exactly diffusers' stabilityai/stable-video-diffusion-img2vid
# unet/config.json: 1,524.6M parameters (paper: 1521M).
A100_VIDEO_UNET: dict[str, Any] = {
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": [
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ],
    "up_block_types": [
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 14,
}

# `model.unet` values per profile (what params.yaml carries): the text-to-video UNet; `image_to_video_config` of the
# a100 values reproduces A100_VIDEO_UNET (tested) and `image_unet_config` an
# SD 2.1-shaped image UNet (865.9M); tiny (text-to-video: 8 latent channels of the tiny VAE, ids fps + motion) runs
# a training step of 16 x 8 frames x 8 x 8 x 12 latents in about 0.8 s on 2 cores.
A100_UNET_PARAMS: dict[str, Any] = {
    "in_channels": 4,
    "concat_channels": 0,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention": [True, True, True, False],
    "layers_per_block": 2,
    "attention_head_dim": 64,
    "transformer_layers_per_block": 1,
    "cross_attention_dim": 1024,
    "addition_time_embed_dim": 256,
    "num_added_ids": 2,
    "image_class_embedding": False,
    "num_frames": 14,
    "sample_size": 96,
}
TINY_UNET_PARAMS: dict[str, Any] = {
    "in_channels": 8,
    "concat_channels": 0,
    "out_channels": 8,
    "block_out_channels": [32, 64],
    # attention at both levels (SD 2.1 has it at its finest): it costs ~1.9x per Stage II step on 8x12 latents, and
    # lifted Stage II's colour accuracy from 0.78 to 1.0 (1,000 steps, README "Training stages")
    "cross_attention": [True, True],
    "layers_per_block": 1,
    "attention_head_dim": 16,
    "transformer_layers_per_block": 1,
    "cross_attention_dim": 64,
    "addition_time_embed_dim": 32,
    "num_added_ids": 2,
    "image_class_embedding": False,
    "num_frames": 8,
    "sample_size": 8,
}
PROFILE_UNET_PARAMS = {"tiny": TINY_UNET_PARAMS, "a100": A100_UNET_PARAMS}


def unet_params(profile_cfg: dict) -> dict[str, Any]:
    """The `model.unet` block out of a params dict (whole params, its `model` section, or the block itself), checked."""
    node = profile_cfg
    where = "model.unet"
    if "model" in node:
        node = node["model"]
    if "unet" in node:
        node = node["unet"]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(node).__name__}")
    unknown = sorted(set(node) - set(UNET_PARAMS_KEYS))
    missing = sorted(set(UNET_PARAMS_KEYS) - set(node))
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    p = copy.deepcopy(node)
    channels = list(p["block_out_channels"])
    levels = len(channels)
    if levels < 1 or len(p["cross_attention"]) != levels:
        raise ConfigError(f"{where}.cross_attention: needs one entry per block_out_channels level ({levels})")
    for c in channels:
        if c % 32:
            raise ConfigError(f"{where}.block_out_channels: {c} is not a multiple of 32 (GroupNorm has 32 groups)")
        if c % p["attention_head_dim"]:
            raise ConfigError(f"{where}.attention_head_dim: {p['attention_head_dim']} does not divide {c}")
    for key in ("in_channels", "out_channels", "layers_per_block", "attention_head_dim", "cross_attention_dim",
                "addition_time_embed_dim", "num_added_ids", "num_frames", "transformer_layers_per_block"):
        if not isinstance(p[key], int) or p[key] < 1:
            raise ConfigError(f"{where}.{key}: must be a positive integer, got {p[key]!r}")
    if not isinstance(p["concat_channels"], int) or p["concat_channels"] < 0:
        raise ConfigError(f"{where}.concat_channels: must be a non-negative integer")
    return p


def _heads(p: dict) -> list[int]:
    return [c // p["attention_head_dim"] for c in p["block_out_channels"]]


def _sample_size(p: dict) -> int | list[int]:
    s = p["sample_size"]
    return list(s) if isinstance(s, (list, tuple)) else s


def video_unet_config(profile_cfg: dict) -> dict[str, Any]:
    """diffusers `UNetSpatioTemporalConditionModel` kwargs from the `model.unet` params."""
    p = unet_params(profile_cfg)
    attn = list(p["cross_attention"])
    return {
        "sample_size": _sample_size(p),
        "in_channels": p["in_channels"] + p["concat_channels"],
        "out_channels": p["out_channels"],
        "down_block_types": [
            "CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal" for a in attn
        ],
        "up_block_types": [
            "CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal" for a in reversed(attn)
        ],
        "block_out_channels": list(p["block_out_channels"]),
        "addition_time_embed_dim": p["addition_time_embed_dim"],
        "projection_class_embeddings_input_dim": p["addition_time_embed_dim"] * p["num_added_ids"],
        "layers_per_block": p["layers_per_block"],
        "cross_attention_dim": p["cross_attention_dim"],
        "transformer_layers_per_block": p["transformer_layers_per_block"],
        "num_attention_heads": _heads(p),
        "num_frames": p["num_frames"],
    }


def image_to_video_config(profile_cfg: dict) -> dict[str, Any]:
    """The image-to-video UNet of the same `model.unet` params (svd.tasks.image_to_video): the conditioning frame's
    latent concatenated to the input (in_channels doubled) and cond_aug as a third micro-conditioning id."""
    p = unet_params(profile_cfg)
    return video_unet_config({**p, "concat_channels": p["in_channels"] + p["concat_channels"],
                              "num_added_ids": p["num_added_ids"] + 1})


def image_unet_config(profile_cfg: dict) -> dict[str, Any]:
    """diffusers `UNet2DConditionModel` kwargs from the same `model.unet` params (Stage I, text-to-image).

    The fixed values below are the ones the video UNet hard-codes; changing any of them breaks inflation.
    """
    p = unet_params(profile_cfg)
    attn = list(p["cross_attention"])
    cfg: dict[str, Any] = {
        "sample_size": _sample_size(p),
        "in_channels": p["in_channels"],
        "out_channels": p["out_channels"],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "block_out_channels": list(p["block_out_channels"]),
        "layers_per_block": p["layers_per_block"],
        # diffusers' legacy name: for UNet2DConditionModel `attention_head_dim` is the number of heads
        "attention_head_dim": _heads(p),
        "cross_attention_dim": p["cross_attention_dim"],
        "transformer_layers_per_block": p["transformer_layers_per_block"],
        "use_linear_projection": True,
        "upcast_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "resnet_time_scale_shift": "default",
        "class_embed_type": None,
        "addition_embed_type": None,
    }
    if p["image_class_embedding"]:
        # Stage I sees the same micro-conditioning vector (sinusoids of the ids, see `added_time_embedding`);
        # inflation then copies class_embedding into the video UNet's add_embedding.
        cfg["class_embed_type"] = "projection"
        cfg["projection_class_embeddings_input_dim"] = p["addition_time_embed_dim"] * p["num_added_ids"]
    return cfg


A100_IMAGE_UNET = image_unet_config(A100_UNET_PARAMS)
TINY_IMAGE_UNET = image_unet_config(TINY_UNET_PARAMS)
TINY_VIDEO_UNET = video_unet_config(TINY_UNET_PARAMS)


def _build(cls, cfg: dict, device: str | torch.device):
    if str(device) == "meta":
        # no memory, no init: shapes and parameter counts only (the a100 model on a laptop)
        with torch.device("meta"):
            return cls(**copy.deepcopy(cfg))
    model = cls(**copy.deepcopy(cfg))
    return model.to(device)


def build_video_unet(cfg: dict, device: Literal["cpu", "meta"] | str | torch.device = "cpu"):
    """A randomly initialised `UNetSpatioTemporalConditionModel` from `video_unet_config` kwargs."""
    from diffusers import UNetSpatioTemporalConditionModel

    return _build(UNetSpatioTemporalConditionModel, cfg, device)


def build_image_unet(cfg: dict, device: Literal["cpu", "meta"] | str | torch.device = "cpu"):
    """A randomly initialised `UNet2DConditionModel` from `image_unet_config` kwargs."""
    from diffusers import UNet2DConditionModel

    return _build(UNet2DConditionModel, cfg, device)


def added_time_embedding(added_time_ids: torch.Tensor, addition_time_embed_dim: int) -> torch.Tensor:
    """(B, n_ids) -> (B, n_ids * dim): the sinusoids the video UNet computes from `added_time_ids` before its
    add_embedding; feed them as `class_labels` to an image UNet built with `image_class_embedding: true`."""
    from diffusers.models.embeddings import get_timestep_embedding

    batch = added_time_ids.shape[0]
    # same as the video UNet's Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    emb = get_timestep_embedding(added_time_ids.flatten(), addition_time_embed_dim, True, 0)
    return emb.reshape(batch, -1)


# Parameter-name fragments of the modules Stage II adds (absent from the image UNet).
TEMPORAL_MARKERS = ("temporal_res_block", "temporal_transformer_blocks", "time_pos_embed", "time_mixer")


def is_temporal(name: str) -> bool:
    """Whether a video-UNet parameter belongs to a temporal layer (see TEMPORAL_MARKERS)."""
    return any(m in name.split(".") for m in TEMPORAL_MARKERS)


def parameter_split(model: torch.nn.Module) -> dict[str, int]:
    """Counts of a video UNet's parameters: temporal (TEMPORAL_MARKERS), the micro-conditioning add_embedding, and the
    spatial rest (everything an image UNet of the same config also has)."""
    out = {"total": 0, "temporal": 0, "conditioning": 0, "spatial": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        out["total"] += n
        if is_temporal(name):
            out["temporal"] += n
        elif name.startswith("add_embedding."):
            out["conditioning"] += n
        else:
            out["spatial"] += n
    return out
