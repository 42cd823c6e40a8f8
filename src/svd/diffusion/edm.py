"""EDM preconditioning, training noise and loss (Karras et al. 2022, as SVD uses it: paper App. D, sgm's VScaling).

The denoiser wraps the raw network F:

    D(x; s) = c_skip(s) * x + c_out(s) * F(c_in(s) * x, c_noise(s), **cond)

    c_skip = sd^2 / (s^2 + sd^2)        c_in    = 1 / sqrt(s^2 + sd^2)
    c_out  = -s * sd / sqrt(s^2 + sd^2)  c_noise = ln(s) / 4

with sd = sigma_data (SVD: 1). With sd = 1 these are the paper's c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1),
c_in = 1/sqrt(s^2+1), c_noise = 0.25 ln s.

Sign convention: c_out is NEGATIVE, as in SVD (sgm's VScaling, diffusers' EulerDiscreteScheduler with
prediction_type="v_prediction"); the EDM paper's c_out is positive. With the negative sign the ideal network output
for x = x0 + s*n is exactly the v-prediction target of Salimans & Ho (2022),

    F* = (x0 - c_skip x) / c_out = (sd * n - (s / sd) * x0) / sqrt(s^2 + sd^2)   (sd = 1: (n - s x0) / sqrt(1+s^2)),

i.e. v = alpha*n - sigma_vp*x0 for the variance-preserving view z = c_in*x = alpha*x0/sd + sigma_vp*n. We pick it so
SVD / SD 2.1-v checkpoints plug in unchanged; with the paper's sign the same network would have to predict -v.

Loss: lambda(s) * ||D(x0 + s n; s) - x0||^2 with lambda(s) = (s^2 + sd^2) / (s * sd)^2. Since
D - x0 = c_out (F - F*) and lambda * c_out^2 = 1, this is exactly the unweighted MSE between F and the v target at
every noise level: EDM's weighting is what makes v-prediction's plain MSE the right loss.

Sigma: a Python float, a 0-d tensor or one value per sample (shape (B,)); it broadcasts over the remaining dims of
x (B, ...). Coefficients are computed in at least float32 (bf16 coefficients would lose ~3 digits at s=700) and the
denoiser's output comes back in x's dtype. sigma must be > 0 (c_noise = ln s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ModelFn = Callable[..., Tensor]

# Training noise ln(sigma) ~ N(P_mean, P_std^2) per stage (REFERENCE.md, paper App. D):
#   published in the paper: image (-1.2, 1.0), hq (0.5, 1.4), i2v_base (0.7, 1.6), i2v_hq (1.0, 1.6),
#   interpolation (1.0, 1.2);
#   video (-1.2, 1.2): the paper says "standard EDM" noise for video pretraining, these are the EDM paper's /
#   sgm's defaults, not a number SVD printed. The base model's P_std (P_mean 0.0) was never published: no preset.
#   video_tiny (0.5, 1.4): ours, the tiny profile's Stage II (Stage III's shift: small latents need more noise);
#   image_tiny (0.5, 1.4): ours, the tiny profile's Stage I, on the same grounds.
STAGE_NOISE: dict[str, tuple[float, float]] = {
    "image": (-1.2, 1.0),
    "image_tiny": (0.5, 1.4),  # ours: the tiny profile's Stage I (8x12 latents; see params.yaml)
    "video": (-1.2, 1.2),
    "video_tiny": (0.5, 1.4),  # ours: the tiny profile's Stage II (8x12 latents; see params.yaml)
    "hq": (0.5, 1.4),
    "i2v_base": (0.7, 1.6),
    "i2v_hq": (1.0, 1.6),
    "interpolation": (1.0, 1.2),
}


@dataclass(frozen=True)
class DenoiserConfig:
    """sigma_data for the preconditioning, (p_mean, p_std) for the training-noise distribution."""

    sigma_data: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self) -> None:
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        if not self.p_std > 0:
            raise ValueError(f"p_std must be > 0, got {self.p_std}")

    @classmethod
    def from_stage(cls, stage: str, sigma_data: float = 1.0) -> DenoiserConfig:
        if stage not in STAGE_NOISE:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGE_NOISE)}")
        p_mean, p_std = STAGE_NOISE[stage]
        return cls(sigma_data=sigma_data, p_mean=p_mean, p_std=p_std)

    def sample_sigmas(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor:
        return sample_training_sigmas(n, self.p_mean, self.p_std, generator, **kw)


def _coef_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _as_tensor(sigma: float | Tensor) -> Tensor:
    if isinstance(sigma, Tensor):
        return sigma if sigma.is_floating_point() else sigma.to(torch.get_default_dtype())
    return torch.as_tensor(sigma, dtype=torch.get_default_dtype())


def precondition(sigma: float | Tensor, sigma_data: float = 1.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise), elementwise in sigma's shape and dtype (see the module docstring)."""
    s = _as_tensor(sigma)
    sd2 = sigma_data * sigma_data
    total = s * s + sd2
    c_skip = sd2 / total
    c_out = -s * sigma_data * torch.rsqrt(total)  # negative: the network predicts v (module docstring)
    c_in = torch.rsqrt(total)
    c_noise = 0.25 * torch.log(s)
    return c_skip, c_out, c_in, c_noise


def per_sample_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """sigma as a (B,) tensor in the coefficient dtype of x (scalar sigmas are expanded to the batch)."""
    s = torch.as_tensor(sigma, device=x.device).to(_coef_dtype(x.dtype))
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(
            f"sigma must be a scalar or have shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, "
            f"got {tuple(s.shape)}"
        )
    return s


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """(B,) -> (B, 1, ..., 1) with `ndim` dims, for broadcasting per-sample values over x."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def denoise(model_fn: ModelFn, x_noisy: Tensor, sigma: float | Tensor, *, sigma_data: float = 1.0, **cond) -> Tensor:
    """D(x; sigma) = c_skip*x + c_out*F(c_in*x, c_noise, **cond); F gets c_noise with shape (B,)."""
    s = per_sample_sigma(sigma, x_noisy)
    c_skip, c_out, c_in, c_noise = (append_dims(c, x_noisy.ndim) for c in precondition(s, sigma_data))
    f = model_fn((c_in * x_noisy).to(x_noisy.dtype), c_noise.reshape(-1), **cond)
    return (c_skip * x_noisy + c_out * f).to(x_noisy.dtype)


def sample_training_sigmas(
    n: int,
    p_mean: float,
    p_std: float,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """n training noise levels with ln(sigma) ~ N(p_mean, p_std^2)."""
    z = torch.randn(n, generator=generator, dtype=dtype, device=device)
    return torch.exp(p_mean + p_std * z)


def loss_weight(sigma: float | Tensor, sigma_data: float = 1.0) -> Tensor:
    """lambda(s) = (s^2 + sd^2) / (s*sd)^2; the paper's (1 + s^2)/s^2 at sd = 1."""
    s = _as_tensor(sigma)
    return (s * s + sigma_data**2) / (s * sigma_data) ** 2


def edm_loss(
    model_fn: ModelFn,
    x0: Tensor,
    sigma: Tensor,
    noise: Tensor,
    *,
    sigma_data: float = 1.0,
    static_weight: float = 1.0,
    **cond,
) -> Tensor:
    """Per-sample loss (B,), at least float32: lambda(s) * mean over non-batch dims of (D(x0 + s*noise; s) - x0)^2.

    `static_weight` (ours, videos (B, T, ...) only): the error splits orthogonally into its mean over frames (the
    static part: background, tone, anything that stands still) and the rest (what changes between frames), and the
    static part's squared error is scaled by this weight. 1.0 is plain EDM exactly; below 1 the loss leans towards
    motion without dropping the static part."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
    if not 0.0 <= static_weight <= 1.0:
        raise ValueError(f"static_weight must be in [0, 1], got {static_weight}")
    s = per_sample_sigma(sigma, x0)
    x_noisy = x0 + append_dims(s, x0.ndim).to(x0.dtype) * noise
    d = denoise(model_fn, x_noisy, s, sigma_data=sigma_data, **cond)
    err = d.to(s.dtype) - x0.to(s.dtype)
    if static_weight == 1.0:
        sq = err**2
    else:
        if x0.ndim != 5:
            raise ValueError(f"static_weight needs videos (B, T, C, h, w), got shape {tuple(x0.shape)}")
        static = err.mean(dim=1, keepdim=True)
        sq = (err - static) ** 2 + static_weight * static**2  # broadcast: the static part counts once per frame
    return loss_weight(s, sigma_data) * sq.reshape(x0.shape[0], -1).mean(dim=1)


def v_target(x0: Tensor, noise: Tensor, sigma: float | Tensor, sigma_data: float = 1.0) -> Tensor:
    """The ideal F for x = x0 + sigma*noise under this module's (negative) c_out: the v-prediction target."""
    s = append_dims(per_sample_sigma(sigma, x0), x0.ndim)
    v = (sigma_data * noise - (s / sigma_data) * x0) / torch.sqrt(s * s + sigma_data**2)
    return v.to(x0.dtype)


__all__ = [
    "STAGE_NOISE",
    "DenoiserConfig",
    "ModelFn",
    "append_dims",
    "denoise",
    "edm_loss",
    "loss_weight",
    "per_sample_sigma",
    "precondition",
    "sample_training_sigmas",
    "v_target",
]
