"""The task-agnostic half of the diffusion side: how a UNet is called, seeded start noise, and one batch of EDM
sampling plus decoding. What a model conditions on (text tokens, an image embedding, concatenated latents, vector
ids) is its task's business (svd.tasks); the tasks build their conditioning dicts and hand them here.

One UNet call convention for every denoiser (`unet_call`): the image UNet (Stage I) takes (B, C, h, w) and the
context; the video UNet takes (B, T, C, h, w), the context and `added_time_ids` (SVD's micro-conditioning), plus
`concat`, latents concatenated to the noisy input along the channels (image-to-video's conditioning frame) after the
EDM input scaling, as diffusers' SVD pipeline concatenates them to the scaled model input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from svd.diffusion.sampling import Guidance, karras_sigmas, sample
from svd.models.vae import decode


def is_video_unet(unet) -> bool:
    """A diffusers video UNet, bare, wrapped for several processes (DDP keeps it as .module) or sharded in place
    (FSDP2's FSDP<Class> subclass)."""
    from diffusers import UNetSpatioTemporalConditionModel

    return isinstance(getattr(unet, "module", unet), UNetSpatioTemporalConditionModel)


def unet_call(unet):
    """model_fn(x, c_noise, context=..., added_time_ids=None, concat=None) for svd.diffusion.edm / sampling."""
    video = is_video_unet(unet)

    def fn(x, c_noise, *, context, added_time_ids=None, concat=None):
        if concat is not None:
            x = torch.cat([x, concat.to(x.dtype)], dim=2)
        if video:
            return unet(x, c_noise, context, added_time_ids=added_time_ids, return_dict=False)[0]
        return unet(x, c_noise, context, return_dict=False)[0]

    return fn


def prompt_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """Start noise, one generator per prompt: a prompt's sample does not depend on what else is in the batch."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, T, 3, H, W) in [-1, 1] -> (N, T, H, W, 3) uint8 on the CPU."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).cpu()


@torch.no_grad()
def sample_decoded(
    unet,
    vae,
    noise: torch.Tensor,
    cond: Mapping[str, Any],
    uncond: Mapping[str, Any] | None,
    guidance: Guidance,
    *,
    steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    rho: float = 7.0,
    method: str = "euler",
    sigma_data: float = 1.0,
) -> np.ndarray:
    """Sample one batch from standard-normal `noise` ((n, T, C, h, w) for a video UNet, (n, C, h, w) for an image
    UNet) with classifier-free guidance (`uncond` None: none; `guidance` a scalar or one weight per frame), decode,
    and return uint8 (n, T, H, W, 3)."""
    video = is_video_unet(unet)
    param = next(unet.parameters())
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    z = sample(
        unet_call(unet),
        noise.shape,
        sigmas,
        cond,
        uncond,
        guidance if uncond is not None else None,
        method=method,
        noise=noise.to(param.device, param.dtype),
        sigma_data=sigma_data,
        dtype=param.dtype,
        device=param.device,
        frames_dim=1 if video else None,
    )
    return to_uint8(decode(vae, z if video else z[:, None])).numpy()


__all__ = ["is_video_unet", "prompt_noise", "sample_decoded", "to_uint8", "unet_call"]
