"""Parameter counts of a profile's models, built on the meta device (no memory, no weights): `svd model-info`.

The UNets come from the profile's `model.unet` params (svd.models.unet). The a100 profile also lists the frozen
parts of the paper's system whose sizes follow from public configs alone: the SD 2.1 VAE, SVD's VAE with the temporal
decoder, and the OpenCLIP ViT-H/14 text tower (SD 2.1's text encoder, used by the text-to-video model). The tiny
profile lists the VAE it trains (svd.models.vae.TINY_VAE) and its random frozen text tower (svd-tiny-text).
"""

from __future__ import annotations

from typing import Any

import torch

from svd.models.unet import (
    PROFILE_UNET_PARAMS,
    build_image_unet,
    build_video_unet,
    image_to_video_config,
    image_unet_config,
    is_temporal,
    parameter_split,
    video_unet_config,
)

from svd.models.vae import SD21_VAE, TINY_VAE  # noqa: E402  (one definition of each VAE)

# stabilityai/stable-video-diffusion-img2vid vae/config.json (AutoencoderKLTemporalDecoder)
SVD_TEMPORAL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
OPENCLIP_TEXT = "ViT-H-14"

# Frozen models listed per profile (values, not code paths: the same function reports every profile).
PROFILE_FROZEN_MODELS: dict[str, list[str]] = {"tiny": ["vae_tiny", "text_encoder"],
                                               "a100": ["vae", "vae_temporal", "text_encoder"]}
PROFILE_TEXT_MODEL = {"tiny": "svd-tiny-text", "a100": OPENCLIP_TEXT}


def _count(model: torch.nn.Module, temporal=lambda name: False) -> tuple[int, int, int]:
    total = trainable = temporal_n = 0
    for name, p in model.named_parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        temporal_n += p.numel() if temporal(name) else 0
    return total, trainable, temporal_n


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _row(name: str, model: torch.nn.Module, note: str, temporal=lambda n: False) -> dict[str, Any]:
    total, trainable, temporal_n = _count(model, temporal)
    return {
        "name": name,
        "class": type(model).__name__,
        "total": total,
        "trainable": trainable,
        "temporal": temporal_n,
        "note": note,
    }


def _m(n: int) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n / 1e3:,.1f}K"


def _vae_row(kind: str) -> dict[str, Any]:
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

    with torch.device("meta"):
        if kind == "vae":
            return _row("vae", _frozen(AutoencoderKL(**SD21_VAE)), "SD 2.1 VAE, frozen")
        if kind == "vae_tiny":
            return _row("vae", _frozen(AutoencoderKL(**TINY_VAE)), "trained by `svd train --stage vae`, then frozen")
        model = _frozen(AutoencoderKLTemporalDecoder(**SVD_TEMPORAL_VAE))
    return _row(
        "vae_temporal",
        model,
        "SVD VAE: SD 2.1 encoder + temporal decoder, frozen",
        temporal=lambda n: is_temporal(n) or n.startswith("decoder.time_conv_out"),
    )


def _text_row(arch: str = OPENCLIP_TEXT) -> dict[str, Any]:
    try:
        import logging

        import open_clip

        from svd.models.clip import register_configs

        register_configs()

        # open_clip warns that no weights were loaded: on the meta device that is the point
        previous = logging.root.level
        logging.root.setLevel(logging.ERROR)
        try:
            with torch.device("meta"):
                model = open_clip.create_model(arch, pretrained=None, device="meta")
        finally:
            logging.root.setLevel(previous)
    except Exception as exc:  # a missing or changed open_clip must not break the rest of the report
        return {
            "name": "text_encoder",
            "class": "open_clip",
            "total": None,
            "trainable": None,
            "temporal": None,
            "note": f"skipped: open_clip {arch} not buildable ({exc.__class__.__name__})",
        }
    text = [
        p
        for n, p in model.named_parameters()
        if not n.startswith("visual.") and n not in ("logit_scale", "logit_bias")
    ]
    last = sum(p.numel() for p in model.transformer.resblocks[-1].parameters())
    total = sum(p.numel() for p in text)
    return {
        "name": "text_encoder",
        "class": f"open_clip {arch} text tower",
        "total": total,
        "trainable": 0,
        "temporal": 0,
        "note": f"frozen; penultimate layer + ln_final used (SD 2.x), so the last block ({_m(last)}) and the "
                f"projection go unused",
    }


def _image_encoder_row(cfg: dict) -> dict[str, Any] | None:
    """The CLIP image tower of image-to-video, when the params carry `model.image_encoder` (its shape)."""
    node = cfg.get("model", cfg).get("image_encoder") if isinstance(cfg, dict) else None
    if not node:
        return None
    from transformers import CLIPVisionModelWithProjection

    from svd.models.image_encoder import vision_config

    with torch.device("meta"):
        model = _frozen(CLIPVisionModelWithProjection(vision_config(node)))
    return _row("image_encoder", model, "CLIP image tower of image-to-video (a100: ViT-H/14 as SVD's image_encoder/), "
                                        "frozen")


def parameter_report(profile: str, cfg: dict | None = None) -> list[dict[str, Any]]:
    """One row per model of `profile`: name, class, total, trainable, temporal parameters and a note.

    `cfg`: the profile's params (whole dict, its `model` section or `model.unet`); None = the built-in values for
    `profile` (svd.models.unet.PROFILE_UNET_PARAMS). Everything is built on the meta device.
    """
    if cfg is None:
        if profile not in PROFILE_UNET_PARAMS:
            raise ValueError(f"unknown profile {profile!r} and no params given (known: {sorted(PROFILE_UNET_PARAMS)})")
        cfg = PROFILE_UNET_PARAMS[profile]
    video = build_video_unet(video_unet_config(cfg), device="meta")
    split = parameter_split(video)
    rows = [
        _row(
            "video_unet",
            video,
            f"Stage II: spatial {_m(split['spatial'])} + micro-conditioning {_m(split['conditioning'])} "
            f"+ temporal {_m(split['temporal'])}",
            temporal=is_temporal,
        ),
        _row("image_unet", build_image_unet(image_unet_config(cfg), device="meta"), "Stage I (text-to-image)"),
    ]
    i2v = build_video_unet(image_to_video_config(cfg), device="meta")
    rows.insert(1, _row("i2v_unet", i2v, "image-to-video (SVD, SVD-XT): the video UNet with the conditioning latent "
                                         "concatenated and cond_aug as a third id", temporal=is_temporal))
    encoder = _image_encoder_row(cfg)
    if encoder is not None:
        rows.append(encoder)
    for kind in PROFILE_FROZEN_MODELS.get(profile, []):
        rows.append(_text_row(PROFILE_TEXT_MODEL[profile]) if kind == "text_encoder" else _vae_row(kind))
    return rows


def format_report(rows: list[dict[str, Any]]) -> str:
    """A plain fixed-width table of `parameter_report` rows (rounded counts, exact totals alongside)."""

    def cell(v) -> str:
        return "-" if v is None else _m(v)

    header = ["model", "class", "total", "trainable", "temporal", "exact total", "note"]
    body = [
        [
            r["name"],
            r["class"],
            cell(r["total"]),
            cell(r["trainable"]),
            cell(r["temporal"]),
            "-" if r["total"] is None else f"{r['total']:,}",
            r["note"],
        ]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header) - 1)]
    right = {2, 3, 4, 5}

    def fmt(line: list[str]) -> str:
        cells = [
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]) for i, c in enumerate(line[:-1])
        ]
        return "  ".join(cells + [line[-1]]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  " + "-" * 4
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])
