"""The context of image-to-video: the CLIP image embedding of the conditioning frame (SVD's, as released).

SVD replaces the text tokens by one token, the projected image embedding of OpenCLIP ViT-H/14
(laion2b_s32b_b79k), held in the public checkpoints as transformers' `CLIPVisionModelWithProjection` in
`image_encoder/` (projection_dim 1024 = the UNet's cross_attention_dim), with a `CLIPImageProcessor` in
`feature_extractor/`. `ImageEncoder.encode` feeds it exactly as diffusers' `StableVideoDiffusionPipeline._encode_image`
does: the frame in [-1, 1] resized to 224x224 with antialiasing (diffusers' own `_resize_with_antialiasing`,
whatever the frame's aspect), mapped to [0, 1], normalised with CLIP's mean and std; out comes (B, 1, D).

Sources (`weights.image_encoder`): a folder holding `config.json` of a CLIPVisionModelWithProjection, a diffusers
pipeline folder holding `image_encoder/`, or a hub id already in the local cache (nothing is downloaded). None builds
the profile's `model.image_encoder` config with a seeded random init (the tiny profile): a frozen random function of
the image that the UNet's cross-attention learns to read, as with the random text tower; runs say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svd.errors import WeightsError

PARAMS_KEY = "weights.image_encoder"
CLIP_SIZE = 224  # diffusers' pipeline resizes every conditioning frame to this, whatever the encoder's config says
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SUBFOLDER = "image_encoder"


def vision_config(cfg: dict[str, Any]):
    """transformers CLIPVisionConfig from the `model.image_encoder` params (hidden, layers, heads, patch,
    projection_dim)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=cfg["hidden_size"], intermediate_size=4 * cfg["hidden_size"],
                            num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                            patch_size=cfg["patch_size"], image_size=CLIP_SIZE, projection_dim=cfg["projection_dim"])


class ImageEncoder(nn.Module):
    """Frozen CLIP image tower -> (B, 1, projection_dim) image embeddings of frames in [-1, 1]."""

    def __init__(self, model, backend: str, pretrained: bool, seed: int | None = None):
        super().__init__()
        self.model = model
        self.backend = backend
        self.pretrained = pretrained
        self.seed = seed
        self.requires_grad_(False)
        self.eval()

    @property
    def width(self) -> int:
        return int(self.model.config.projection_dim)

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        return super().train(False)

    @torch.no_grad()
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> CLIP pixel values (B, 3, 224, 224), as diffusers' pipeline prepares them."""
        from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
            _resize_with_antialiasing,
        )

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB frames, got shape {tuple(images.shape)}")
        x = _resize_with_antialiasing(images.float(), (CLIP_SIZE, CLIP_SIZE))
        x = (x + 1.0) / 2.0
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode(self, images: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        param = next(self.model.parameters())
        out = [self.model(self.preprocess(part).to(param.device, param.dtype)).image_embeds
               for part in images.split(chunk)]
        return torch.cat(out)[:, None]


def _model_folder(source: str) -> Path:
    from svd.models.sources import local_or_cached

    path = local_or_cached(source, PARAMS_KEY, (f"{SUBFOLDER}/config.json", "config.json"))
    if (path / "config.json").is_file() and "vision" in json.loads((path / "config.json").read_text()).get(
            "model_type", ""):
        return path
    if (path / SUBFOLDER / "config.json").is_file():
        return path / SUBFOLDER
    raise WeightsError(f"{PARAMS_KEY}: {path} holds no CLIP vision config.json nor {SUBFOLDER}/config.json")


def load_image_encoder(source: str | None, cfg: dict[str, Any] | None = None, seed: int = 0) -> ImageEncoder:
    """The frozen image tower from `source` (see the module docstring), or random from `cfg` drawn with `seed`."""
    from transformers import CLIPVisionModelWithProjection

    if source is None or not str(source).strip():
        if cfg is None:
            raise WeightsError(f"{PARAMS_KEY} is null and no model.image_encoder config was given")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPVisionModelWithProjection(vision_config(cfg))
        return ImageEncoder(model.eval(), "transformers:CLIPVisionModelWithProjection:random", False, seed)
    folder = _model_folder(str(source))
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # corrupt or missing weights, another architecture
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise WeightsError(f"{PARAMS_KEY}: cannot load a CLIPVisionModelWithProjection from {folder} ({reason})") \
            from None
    return ImageEncoder(model.eval(), f"transformers:CLIPVisionModelWithProjection:{source}", True)


def save_image_encoder(encoder: ImageEncoder, out: Path) -> None:
    """`out/image_encoder/` and `out/feature_extractor/` in the layout of SVD's public checkpoints."""
    from transformers import CLIPImageProcessor

    encoder.model.save_pretrained(out / SUBFOLDER, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE},
                       image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(out / "feature_extractor")


__all__ = ["CLIP_SIZE", "ImageEncoder", "load_image_encoder", "save_image_encoder", "vision_config"]
