"""EDM sampling: Karras noise schedule, Euler / Heun probability-flow ODE solvers (Karras et al. 2022, Alg. 1 and 2
without churn), classifier-free guidance with one weight per frame (SVD's linearly rising image-to-video guidance).

`model_fn` is the raw network F(c_in*x, c_noise, **cond); the preconditioning of `svd.diffusion.edm` turns it into
the denoiser D. The ODE is dx/dsigma = (x - D(x; sigma)) / sigma, integrated from sigmas[0] down to sigmas[-1].

The start is x = noise * sqrt(sigmas[0]^2 + sigma_data^2): the marginal std at sigmas[0] of data with std
sigma_data, as sgm's EDM sampler and diffusers' EulerDiscreteScheduler (init_noise_sigma) start SVD; Karras' Alg. 1
uses sigmas[0] alone, which differs by a factor 1 + 1/(2*700^2) at SVD's sigma_max.

The only randomness is the start noise, so a seeded torch.Generator makes a sample bit-reproducible (same device,
same threads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from svd.diffusion.edm import ModelFn, denoise

Guidance = float | Sequence[float] | Tensor | None


def karras_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """n noise levels spaced evenly in sigma^(1/rho) from sigma_max to sigma_min, then a final 0 (n+1 values)."""
    if n < 1:
        raise ValueError(f"karras_sigmas needs n >= 1 steps, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def linear_frame_guidance(num_frames: int, min_scale: float, max_scale: float) -> Tensor:
    """Guidance weights rising linearly from min_scale (first frame) to max_scale (last); SVD: 1.0->2.5 (14 frames),
    1.5->3.0 (25 frames)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return torch.linspace(min_scale, max_scale, num_frames, dtype=torch.float64)


def _guidance_weight(guidance: Guidance, x: Tensor, frames_dim: int | None) -> Tensor | float:
    if isinstance(guidance, (int, float)):
        return float(guidance)
    w = torch.as_tensor(guidance, dtype=x.dtype, device=x.device)
    if w.ndim == 0:
        return w
    if w.ndim != 1:
        raise ValueError(f"guidance must be a scalar or one weight per frame (1-D), got shape {tuple(w.shape)}")
    if frames_dim is None:
        raise ValueError("per-frame guidance needs frames_dim (the frame axis of the sample, e.g. 1 for (B,T,C,H,W))")
    dim = frames_dim % x.ndim
    if dim == 0 or x.shape[dim] != w.shape[0]:
        raise ValueError(
            f"{w.shape[0]} guidance weights for frames_dim={frames_dim} of a sample shaped {tuple(x.shape)}"
        )
    shape = [1] * x.ndim
    shape[dim] = -1
    return w.reshape(shape)


def guided_denoise(
    model_fn: ModelFn,
    x: Tensor,
    sigma: float | Tensor,
    cond: Mapping[str, Any] | None = None,
    uncond: Mapping[str, Any] | None = None,
    guidance: Guidance = None,
    frames_dim: int | None = None,
    *,
    sigma_data: float = 1.0,
) -> Tensor:
    """D_u + w * (D_c - D_u) (classifier-free guidance), or D_c when no uncond is given.

    w is a scalar or one weight per frame broadcast along `frames_dim`. The two branches run as two calls (not one
    doubled batch): conditioning dicts may hold non-batched entries that could not be concatenated safely.
    """
    if (uncond is None) != (guidance is None):
        raise ValueError("classifier-free guidance needs both uncond and guidance (or neither)")
    d_c = denoise(model_fn, x, sigma, sigma_data=sigma_data, **dict(cond or {}))
    if uncond is None:
        return d_c
    w = _guidance_weight(guidance, x, frames_dim)
    d_u = denoise(model_fn, x, sigma, sigma_data=sigma_data, **dict(uncond))
    return d_u + w * (d_c - d_u)


def _check_sigmas(sigmas: Tensor) -> None:
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 values, got shape {tuple(sigmas.shape)}")
    if not bool((sigmas[:-1] > 0).all()) or not bool((sigmas[-1] >= 0).all()):
        raise ValueError("sigmas must be > 0 (only the last may be 0)")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing")


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    sigmas: Tensor,
    cond: Mapping[str, Any] | None = None,
    uncond: Mapping[str, Any] | None = None,
    guidance: Guidance = None,
    method: str = "euler",
    generator: torch.Generator | None = None,
    frames_dim: int | None = None,
    *,
    sigma_data: float = 1.0,
    noise: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """Solve the probability-flow ODE from sigmas[0] to sigmas[-1] with `method` "euler" or "heun".

    noise: standard-normal start noise of `shape` (drawn with `generator` if None). callback(i, x, denoised) is
    called after every step. Heun's correction is skipped on a step that ends at sigma = 0 (Karras Alg. 1).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    sigmas = torch.as_tensor(sigmas)
    _check_sigmas(sigmas)
    shape = tuple(shape)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != shape {shape}")
    x = noise.to(dtype=dtype, device=device)
    sigmas = sigmas.to(dtype=torch.promote_types(dtype, torch.float32), device=x.device)
    x = x * torch.sqrt(sigmas[0] ** 2 + sigma_data**2).to(x.dtype)

    def d_of(x_: Tensor, s: Tensor) -> Tensor:
        return guided_denoise(model_fn, x_, s, cond, uncond, guidance, frames_dim, sigma_data=sigma_data)

    for i in range(sigmas.shape[0] - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = d_of(x, s)
        d = (x - denoised) / s
        x_next = x + (s_next - s) * d
        if method == "heun" and s_next > 0:
            d_next = (x_next - d_of(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next.to(dtype)
        if callback is not None:
            callback(i, x, denoised)
    return x


__all__ = ["Guidance", "guided_denoise", "karras_sigmas", "linear_frame_guidance", "sample"]
