"""The diffusion side of Stages I-III: the EDM training step on cached latents and the text-to-video sampler.

One UNet call convention for both denoisers (`unet_call`): the image UNet (Stage I) takes (B, C, h, w) and the text
context; the video UNet (Stages II-III) takes (B, T, C, h, w), the text context and `added_time_ids` = [fps_id,
motion_bucket] (SVD's micro-conditioning, text-to-video: no cond_aug). Text is dropped (replaced by the empty
caption's embedding, row 0 of the table) with probability `text_dropout` (paper: 15%) for classifier-free guidance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from svd.diffusion.edm import DenoiserConfig, edm_loss
from svd.diffusion.sampling import karras_sigmas, sample
from svd.models.vae import decode


def is_video_unet(unet) -> bool:
    return type(unet).__name__ == "UNetSpatioTemporalConditionModel"


def unet_call(unet):
    """model_fn(x, c_noise, context=..., added_time_ids=None) for svd.diffusion.edm / sampling."""
    video = is_video_unet(unet)

    def fn(x, c_noise, *, context, added_time_ids=None):
        if video:
            return unet(x, c_noise, context, added_time_ids=added_time_ids, return_dict=False)[0]
        return unet(x, c_noise, context, return_dict=False)[0]

    return fn


def time_ids(fps_id: torch.Tensor, motion_bucket: torch.Tensor) -> torch.Tensor:
    return torch.stack([fps_id.float(), motion_bucket.float()], dim=1)


def make_step(noise: DenoiserConfig, text_table: torch.Tensor, *, video: bool, text_dropout: float = 0.15,
              static_weight: float = 1.0):
    """step_fn(model, batch, generator) -> mean EDM loss, for svd.training.loop.train over LatentItems batches.
    `static_weight`: see svd.diffusion.edm.edm_loss (video only)."""
    if not 0.0 <= text_dropout < 1.0:
        raise ValueError(f"text_dropout must be in [0, 1), got {text_dropout}")

    def step(model, batch, generator):
        x0 = batch["latents"]
        if not video:
            x0 = x0[:, 0]  # image stage: windows of one frame
        b = x0.shape[0]
        sigma = noise.sample_sigmas(b, generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        keep = torch.rand(b, generator=generator, device=x0.device) >= text_dropout
        index = torch.where(keep, batch["text_index"], torch.zeros_like(batch["text_index"]))
        cond = {"context": text_table.to(x0.device)[index]}
        if video:
            cond["added_time_ids"] = time_ids(batch["fps_id"], batch["motion_bucket"]).to(x0.device)
        return edm_loss(unet_call(model), x0, sigma, eps, sigma_data=noise.sigma_data, static_weight=static_weight,
                        **cond).mean()

    return step


def prompt_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """Start noise, one generator per prompt: a prompt's sample does not depend on what else is in the batch."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def generate(unet, vae, text_encoder, prompts: Sequence[str], *, latent_size: tuple[int, int], num_frames: int | None,
             steps: int, guidance: float, seed: int, fps: float = 8.0, motion_bucket: float = 127.0,
             sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0, method: str = "euler",
             sigma_data: float = 1.0, batch: int = 16) -> np.ndarray:
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
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    fn = unet_call(unet)
    param = next(unet.parameters())
    out = []
    for start in range(0, len(prompts), batch):
        part = prompts[start:start + batch]
        n = len(part)
        noise = prompt_noise(per, [seed + start + i for i in range(n)]).to(param.device, param.dtype)
        cond = {"context": text_encoder.encode(part).to(param.device, param.dtype)}
        uncond = {"context": text_encoder.encode([""] * n).to(param.device, param.dtype)}
        if video:
            ids = time_ids(torch.full((n,), fps - 1.0), torch.full((n,), float(motion_bucket)))
            cond["added_time_ids"] = uncond["added_time_ids"] = ids.to(param.device, param.dtype)
        guided = guidance is not None and guidance > 1.0
        z = sample(fn, noise.shape, sigmas, cond, uncond if guided else None, guidance if guided else None,
                   method=method, noise=noise, sigma_data=sigma_data, dtype=param.dtype, device=param.device)
        x = decode(vae, z if video else z[:, None])  # (n, T, 3, H, W) in [-1, 1]
        out.append(((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).cpu())
    return torch.cat(out).numpy()


__all__ = ["generate", "is_video_unet", "make_step", "prompt_noise", "time_ids", "unet_call"]
