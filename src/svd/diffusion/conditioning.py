"""SVD micro-conditioning: fps_id, motion_bucket_id and cond_aug as sinusoidal embeddings, and the noise
augmentation of the image-to-video conditioning frame.

Embedding (SVD's `add_time_proj` = diffusers `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)`, the
same as sgm's `timestep_embedding`): for half = dim // 2 and k = 0..half-1,

    freq_k = exp(-ln(max_period) * k / (half - downscale_freq_shift)),   e = [cos(v*freq), sin(v*freq)]

(cos first: flip_sin_to_cos=True; False gives [sin, cos]); an odd dim gets one zero column at the end. The three
values of `added_time_ids` are embedded one by one and concatenated per sample (3 x 256 = 768), in SVD's order
[fps_id, motion_bucket_id, cond_aug].

Motion bucket (OURS: SVD never published how motion_bucket_id was computed from data). Our motion score
(`svd.curation.motion`) is in short sides per second (Farneback at 2 fps). We map it linearly,

    motion_bucket_id = clip(round(255 * score / score_at_255), 0, 255),   score_at_255 = 0.5 by default,

so SVD's default bucket 127 sits at ~0.25 short sides/s, a pan crossing the short side in 4 s, which is also the
fastest motion Farneback measures within ~5% at 2 fps (faster motion reads low, so buckets above ~130 come from
saturated measurements). Rounding is half-to-even (numpy and torch agree).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from svd.diffusion.edm import append_dims

MOTION_BUCKET_MAX = 255


def timestep_embedding(
    values: Tensor,
    dim: int = 256,
    max_period: float = 10000.0,
    *,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
) -> Tensor:
    """Sinusoidal embedding (N,) -> (N, dim); float values keep their dtype, integers become float32."""
    values = torch.as_tensor(values)
    if values.ndim != 1:
        raise ValueError(f"timestep_embedding expects a 1-D tensor of values, got shape {tuple(values.shape)}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    dtype = values.dtype if values.is_floating_point() else torch.float32
    half = dim // 2
    k = torch.arange(half, dtype=dtype, device=values.device)
    freqs = torch.exp(-math.log(max_period) * k / (half - downscale_freq_shift))
    args = values.to(dtype)[:, None] * freqs[None, :]
    parts = (torch.cos(args), torch.sin(args)) if flip_sin_to_cos else (torch.sin(args), torch.cos(args))
    emb = torch.cat(parts, dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def fps_id(fps: float | Tensor) -> float | Tensor:
    """SVD conditions on fps - 1 (diffusers' pipeline subtracts 1 from the requested fps)."""
    return fps - 1


def motion_bucket(score, score_at_255: float = 0.5):
    """Motion score (short sides per second) -> motion_bucket_id in 0..255 (see module docstring; ours).

    Accepts a float (-> int), a numpy array (-> int64 array) or a tensor (-> int64 tensor); NaN is an error.
    """
    if not score_at_255 > 0:
        raise ValueError(f"score_at_255 must be > 0, got {score_at_255}")
    if isinstance(score, Tensor):
        if bool(torch.isnan(score).any()):
            raise ValueError("motion_bucket got a NaN motion score (motion not annotated?)")
        scaled = torch.round(score.double() * (MOTION_BUCKET_MAX / score_at_255))
        return scaled.clamp(0, MOTION_BUCKET_MAX).to(torch.int64)
    arr = np.asarray(score, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("motion_bucket got a NaN motion score (motion not annotated?)")
    out = np.clip(np.round(arr * (MOTION_BUCKET_MAX / score_at_255)), 0, MOTION_BUCKET_MAX).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def added_time_ids(
    fps: float | Tensor,
    motion_bucket_id: float | Tensor,
    cond_aug: float | Tensor,
    batch_size: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, 3) rows [fps_id, motion_bucket_id, cond_aug] (SVD's order); each input a scalar or (B,)."""
    cols = [
        torch.as_tensor(v, dtype=dtype, device=device).reshape(-1) for v in (fps_id(fps), motion_bucket_id, cond_aug)
    ]
    sizes = {c.shape[0] for c in cols if c.shape[0] != 1}
    if batch_size is not None:
        sizes.add(batch_size)
    if len(sizes) > 1:
        raise ValueError(f"added_time_ids: inconsistent batch sizes {sorted(sizes)}")
    b = sizes.pop() if sizes else 1
    return torch.stack([c.expand(b) for c in cols], dim=1)


def micro_condition_embedding(time_ids: Tensor, dim: int = 256) -> Tensor:
    """(B, K) time ids -> (B, K*dim): each id embedded (flip_sin_to_cos, shift 0) and concatenated per sample, as
    diffusers' UNetSpatioTemporalConditionModel does before its add_embedding MLP."""
    if time_ids.ndim != 2:
        raise ValueError(f"time_ids must be (B, K), got shape {tuple(time_ids.shape)}")
    b = time_ids.shape[0]
    return timestep_embedding(time_ids.reshape(-1), dim).reshape(b, -1)


def noise_augment(
    image: Tensor,
    log_sigma_mean: float = -3.0,
    log_sigma_std: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    sigma: float | Tensor | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """image + sigma * n for the conditioning frame (B, ...), ln(sigma) ~ N(mean, std^2) per sample (training), or
    the given `sigma` (inference: diffusers' noise_aug_strength, 0.02 by default). Returns (augmented, sigma (B,)).
    The same sigma is what `added_time_ids` receives as cond_aug. `noise`: the unit noise, when the caller draws it
    (training draws it per sample from the global batch, svd.training.loop.StepRandom)."""
    b = image.shape[0]
    if sigma is None:
        z = torch.randn(b, generator=generator, dtype=image.dtype, device=image.device)
        s = torch.exp(log_sigma_mean + log_sigma_std * z)
    else:
        s = torch.as_tensor(sigma, dtype=image.dtype, device=image.device)
        s = s.expand(b) if s.ndim == 0 else s
        if s.shape != (b,):
            raise ValueError(f"sigma must be a scalar or ({b},), got {tuple(s.shape)}")
    if noise is None:
        noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    elif noise.shape != image.shape:
        raise ValueError(f"noise must have the image's shape {tuple(image.shape)}, got {tuple(noise.shape)}")
    return image + append_dims(s, image.ndim) * noise, s


__all__ = [
    "MOTION_BUCKET_MAX",
    "added_time_ids",
    "fps_id",
    "micro_condition_embedding",
    "motion_bucket",
    "noise_augment",
    "timestep_embedding",
]
