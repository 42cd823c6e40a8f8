"""Text-to-video (Stages II-III) and its image half, text-to-image (Stage I): the task the paper's base models learn.

Conditioning:
- context: the caption's text tokens, (B, L, D) from the frozen OpenCLIP text tower (svd.models.text), read from a
  table of distinct captions; row 0 is the empty caption. Training drops the caption (row 0) with probability
  `train.text_dropout` (paper: 15%) for classifier-free guidance; the unconditional branch uses the empty caption.
- concatenated latents: none.
- vector ids (video UNet only): [fps_id, motion_bucket] (the released image-to-video models add cond_aug).
Windows: the curated clips (Stage III: the HQ subset) at the stage's size, frames and fps, with caption-aware flips
in the tiny profile (svd.training.latents). UNet: Stage I from scratch or SD 2.1's; Stage II inflated from Stage I
(svd.models.inflate); Stage III continues Stage II. Judged by the world evaluator on the eval prompts and by the
UCF-101 zero-shot protocol (svd.evaluation.ucf101), both called from above the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from svd.diffusion.edm import DenoiserConfig, edm_loss
from svd.training.denoiser import is_video_unet, prompt_noise, sample_decoded, unet_call

KIND = "text-to-video"
IMAGE_KIND = "text-to-image"
REGISTERED_NAME = "svd-t2v"


def time_ids(fps_id: torch.Tensor, motion_bucket: torch.Tensor) -> torch.Tensor:
    return torch.stack([fps_id.float(), motion_bucket.float()], dim=1)


def make_step(
    noise: DenoiserConfig,
    text_table: torch.Tensor,
    *,
    video: bool,
    text_dropout: float = 0.15,
    static_weight: float = 1.0,
):
    """step_fn(model, batch, rng) -> mean EDM loss, for svd.training.loop.train over LatentItems batches (rng: its
    StepRandom, so each sample's draws do not depend on how many processes share the batch).
    `static_weight`: see svd.diffusion.edm.edm_loss (video only)."""
    if not 0.0 <= text_dropout < 1.0:
        raise ValueError(f"text_dropout must be in [0, 1), got {text_dropout}")

    def step(model, batch, rng):
        x0 = batch["latents"]
        if not video:
            x0 = x0[:, 0]  # image stage: windows of one frame
        b = x0.shape[0]
        sigma = rng.rows(b, lambda k, g: noise.sample_sigmas(k, g, device=x0.device))
        eps = rng.randn(x0.shape, dtype=x0.dtype)
        keep = rng.rand(b) >= text_dropout
        if "context" in batch:  # a streamed batch carries its captions' tokens; row 0 of the table is the empty one
            context = torch.where(keep[:, None, None], batch["context"], text_table[0].to(x0.device))
        else:
            index = torch.where(keep, batch["text_index"], torch.zeros_like(batch["text_index"]))
            context = text_table.to(x0.device)[index]
        cond = {"context": context}
        if video:
            cond["added_time_ids"] = time_ids(batch["fps_id"], batch["motion_bucket"]).to(x0.device)
        return edm_loss(
            unet_call(model), x0, sigma, eps, sigma_data=noise.sigma_data, static_weight=static_weight, **cond
        ).mean()

    return step


@torch.no_grad()
def generate(
    unet,
    vae,
    text_encoder,
    prompts: Sequence[str],
    *,
    latent_size: tuple[int, int],
    num_frames: int | None,
    steps: int,
    guidance: float,
    seed: int,
    fps: float = 8.0,
    motion_bucket: float = 127.0,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    rho: float = 7.0,
    method: str = "euler",
    sigma_data: float = 1.0,
    batch: int = 16,
) -> np.ndarray:
    """Videos for `prompts` as uint8 (N, T, H, W, 3) (T = 1 for an image UNet). Prompt i uses seed `seed + i`.
    guidance <= 1 samples without the unconditional branch."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts")
    video = is_video_unet(unet)
    if video and (num_frames is None or num_frames < 1):
        raise ValueError("a video UNet needs num_frames >= 1")
    channels = unet.config.out_channels
    per = (num_frames, channels, *latent_size) if video else (channels, *latent_size)
    param = next(unet.parameters())
    guided = guidance is not None and guidance > 1.0
    out = []
    for start in range(0, len(prompts), batch):
        part = prompts[start : start + batch]
        n = len(part)
        noise = prompt_noise(per, [seed + start + i for i in range(n)])
        cond = {"context": text_encoder.encode(part).to(param.device, param.dtype)}
        uncond = {"context": text_encoder.encode([""] * n).to(param.device, param.dtype)}
        if video:
            ids = time_ids(torch.full((n,), fps - 1.0), torch.full((n,), float(motion_bucket)))
            cond["added_time_ids"] = uncond["added_time_ids"] = ids.to(param.device, param.dtype)
        out.append(
            sample_decoded(
                unet,
                vae,
                noise,
                cond,
                uncond if guided else None,
                guidance if guided else None,
                steps=steps,
                sigma_min=sigma_min,
                sigma_max=sigma_max,
                rho=rho,
                method=method,
                sigma_data=sigma_data,
            )
        )
    return np.concatenate(out)


__all__ = ["IMAGE_KIND", "KIND", "REGISTERED_NAME", "generate", "make_step", "time_ids"]


# ---------------------------------------------------------------- the task, as svd.training.stages drives it
class TextToVideo:
    """Stage I (text-to-image), Stage II and Stage III (text-to-video)."""

    kind = KIND
    evaluator = "svd.evaluation.prompts:evaluate_model"  # the world evaluator on the eval prompts
    streams = True  # streaming_set: train.stream

    def model_kind(self, stage: str) -> str:
        return IMAGE_KIND if stage == "image" else KIND

    def registered_name(self, stage: str) -> str | None:
        return REGISTERED_NAME if stage != "image" else None

    def parent(self, params, stage: str) -> str | None:
        return {"image": "vae", "video": "image", "hq": "video"}[stage]

    def text_seed(self, params, stage: str) -> int:
        """The seed of the text tower `stage` trains with (the draw of a random tower; recorded for a pretrained one).

        A stage that continues another (video from image, hq from video) keeps its parent's tower, whatever `seed`
        says: the parent's cross-attention learned that draw, and `seed` is there to vary the training, not the
        frozen encoder (a Stage II run at seed 1 on a seed-0 Stage I fell from colour 0.98 to 0.73 on another random
        tower). A parent trained with another text model or weights file is a ConfigError."""
        from svd.errors import ConfigError
        from svd.training.stages import MODEL_FILE, read_model, stage_dir

        if stage == "image":
            return params.seed
        parent = stage_dir(params, self.parent(params, stage))
        if not (parent / MODEL_FILE).is_file():
            return params.seed  # no parent yet: start_unet says what to run first
        meta = read_model(parent)
        ours = (params.weights.text_model, params.weights.text_pretrained)
        if (meta["text_model"], meta["text_pretrained"]) != ours:
            raise ConfigError(
                f"{parent} was trained with text encoder {meta['text_model']} "
                f"({meta['text_pretrained'] or 'random'}), but weights.text_model / text_pretrained "
                f"say {ours[0]} ({ours[1] or 'random'}); a stage keeps its parent's text encoder"
            )
        return int(meta["text_seed"])

    def load_context(self, params, stage: str):
        from svd.errors import ConfigError
        from svd.models.text import load_text_encoder

        encoder = load_text_encoder(
            params.weights.text_model, params.weights.text_pretrained, seed=self.text_seed(params, stage)
        )
        want = params.model.unet.cross_attention_dim
        if encoder.width != want:
            raise ConfigError(
                f"model.unet.cross_attention_dim is {want} but the text encoder "
                f"{params.weights.text_model} gives {encoder.width}-wide tokens; make them equal"
            )
        return encoder

    def start_unet(self, params, stage: str):
        """The UNet a stage starts from (before its own checkpoints, which the loop resumes over it)."""

        from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

        from svd.errors import WeightsError
        from svd.models.inflate import inflate_image_unet
        from svd.models.unet import build_image_unet, image_unet_config, video_unet_config
        from svd.training.stages import require_dir, stage_dir

        unet_cfg = params.model.unet.model_dump()
        if stage == "image":
            if params.weights.unet_image:
                path = Path(params.weights.unet_image)
                if not (path / "config.json").is_file():
                    raise WeightsError(f"weights.unet_image: no diffusers UNet (config.json) at {path}")
                return UNet2DConditionModel.from_pretrained(path), f"diffusers:{path}"
            torch.manual_seed(params.seed)
            return build_image_unet(image_unet_config(unet_cfg)), "random"
        parent_stage = self.parent(params, stage)
        folder = require_dir(
            stage_dir(params, parent_stage) / "unet",
            f"the Stage {parent_stage} UNet",
            f"run `svd train --stage {parent_stage}` first",
        )
        if stage == "video":
            image = UNet2DConditionModel.from_pretrained(folder)
            return inflate_image_unet(image, video_unet_config(unet_cfg), seed=params.seed), f"inflated:{folder}"
        return UNetSpatioTemporalConditionModel.from_pretrained(folder), f"continued:{folder}"

    def new_inputs(self, unet, init: str) -> list:
        """What inflation added at zero: the micro-conditioning's last layer (add_embedding.linear_2) when Stage I had
        no vector conditioning, so fps and motion reach the UNet only as fast as it grows. (The new temporal layers
        start random, not zero: they have train.video.temporal_lr_scale.)"""
        if not init.startswith("inflated:"):
            return []
        layer = unet.add_embedding.linear_2
        return [(p, 0, 0) for p in (layer.weight, layer.bias) if not p.detach().any()]

    def training_set(self, windows, vae, context):
        from svd.training.latents import LatentItems, encode_windows

        data = encode_windows(windows, vae, context)
        return LatentItems(data), {"windows": int(data.latents.shape[0]), "captions": int(data.text.shape[0]) - 1}

    def streaming_set(self, stream, vae, context):
        """A streamed training set: each micro-batch's windows encoded when it is taken (svd.training.stream)."""
        from svd.diffusion.conditioning import motion_bucket
        from svd.models.vae import encode
        from svd.training.stream import StreamInfo, StreamItems

        def encode_batch(batch: dict) -> dict:
            with torch.no_grad():
                return {
                    "latents": encode(vae, batch["video"], chunk=64).float(),
                    "context": context.encode(list(batch["caption"])).float(),
                    "fps_id": batch["fps_id"],
                    "motion_bucket": batch["motion_bucket"],
                }

        with torch.no_grad():
            empty = context.encode([""]).float()
        buckets = torch.tensor(
            [int(motion_bucket(ref.motion_score, stream.items.motion_score_at_255)) for ref, _ in stream.items.items]
        )
        return StreamItems(stream, encode_batch, StreamInfo(empty, buckets)), {
            "windows": len(stream),
            "stream_units": len(stream.units),
            "stream_buffer": stream.buffer,
        }

    def make_step(self, params, stage: str, data, vae):
        cfg = getattr(params.train, stage)
        p_mean, p_std = params.diffusion.noise[cfg.noise]
        return make_step(
            DenoiserConfig(params.diffusion.sigma_data, p_mean, p_std),
            data.data.text,
            video=stage != "image",
            text_dropout=params.train.text_dropout,
            static_weight=cfg.static_weight,
        )

    def preview(self, params, stage: str, model: dict, data):
        """fn(unet) -> uint8 videos of the first eval prompts, and their labels (the prompts)."""
        from svd.training.stages import eval_prompts

        cfg = getattr(params.train, stage)
        prompts = eval_prompts(params, 4)
        motion = float(np.median(data.data.motion_bucket.numpy()))

        def fn(unet):
            return generate(
                unet,
                model["vae"],
                model["context"],
                prompts,
                latent_size=model["latent_size"],
                num_frames=cfg.frames if stage != "image" else None,
                steps=params.sample.steps,
                guidance=params.sample.guidance,
                seed=params.sample.seed,
                fps=cfg.fps,
                motion_bucket=motion,
                sigma_data=params.diffusion.sigma_data,
            )

        return fn, prompts

    def save_context(self, out, context, params, stage: str) -> dict:
        from svd.models.text import RANDOM_TOKEN_STD

        return {
            "text_model": context.model_name,
            "text_pretrained": context.pretrained_source,
            "text_backend": context.backend,
            "text_seed": context.seed,
            "text_token_std": None if context.pretrained else RANDOM_TOKEN_STD,
        }

    def vae_source(self, params, stage: str) -> str | None:
        """None: the VAE stage's (tiny: trained; a100: weights.vae)."""
        return None

    def save_weights(self, unet, out, params, stage: str) -> None:
        unet.save_pretrained(Path(out) / "unet", safe_serialization=True)

    def finish(self, params, stage: str, out) -> None:
        """Nothing more to write: diffusers has no text-to-video SVD pipeline to export to."""

    def load_saved_context(self, folder, meta: dict) -> dict:
        from svd.errors import InputError
        from svd.models.text import RANDOM_TOKEN_STD, load_text_encoder

        text = load_text_encoder(meta["text_model"], meta["text_pretrained"], seed=meta["text_seed"])
        # a random tower is a function of the code that draws it: a folder trained on another draw would sample with
        # text features it never saw, so refuse it (folders from before this field was recorded drew at std 0.02)
        recorded = meta.get("text_token_std", 0.02 if meta["text_pretrained"] is None else None)
        expected = None if text.pretrained else RANDOM_TOKEN_STD
        if recorded != expected:
            raise InputError(
                f"{folder} was trained with a random text tower drawn at token std {recorded}, this "
                f"code draws {expected}; retrain it (svd train --stage {meta['stage']})"
            )
        return {"text": text}


TASK = TextToVideo()
