"""Train the latent autoencoder on curated frames (the tiny profile has no pretrained SD VAE to load).

Loss: L1 reconstruction + a small KL to N(0, I) (LDM's weighting: 1e-6 per latent element relative to per-pixel
reconstruction, so latents stay informative and their scale is fixed afterwards by `scaling_factor`), plus an L1 on
image gradients as a cheap stand-in for LPIPS (no perceptual-network weights exist here): it pays for sharp edges,
which a plain L1 under-weights on flat-coloured shapes. No GAN loss: SD's VAE added one late for texture, which the
shapes world has none of.

The run holds out whole clips (every 8th, at least one) and reports reconstruction PSNR on their frames before and
after training; `out_dir/vae` is a diffusers folder whose config carries the measured scaling factor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from svd.data.clips import CuratedSet, collate
from svd.models.vae import build_vae, decode, encode, latent_scale, num_parameters
from svd.training.loop import lr_lambda, train

HOLDOUT_EVERY = 8  # ours: one clip in 8 is never trained on


class _Images(Dataset):
    """Frames held in memory as items {"image": (3, H, W)}: read once, one decode per clip."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def _frames(curated: CuratedSet, size, per_clip: int, seed: int) -> torch.Tensor:
    """`per_clip` frames spread evenly over every clip, (N, 3, H, W) in [-1, 1]."""
    from svd.training.latents import read_windows

    # one-frame windows; fps only sets the minimum clip length (one frame at a 1 fps stride)
    return read_windows(curated, num_frames=1, fps=1000.0, size=size, windows_per_clip=per_clip, seed=seed).frames


def _split(curated: CuratedSet) -> tuple[CuratedSet, CuratedSet | None]:
    """(train clips, held-out clips); None when there is a single clip (then frames of it are held out instead)."""
    n = len(curated)
    if n < 2:
        return curated, None
    held = [i for i in range(n) if (i + 1) % HOLDOUT_EVERY == 0] or [n - 1]
    return curated._select([i for i in range(n) if i not in held]), curated._select(held)


def _image_grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


INIT_LOGVAR = -8.0  # ours: posterior std exp(-4) = 0.02 at the start


def start_near_deterministic(vae) -> None:
    """Start the posterior nearly deterministic: the logvar half of quant_conv outputs INIT_LOGVAR.

    At diffusers' init the posterior's logvar is ~0, i.e. every latent gets noise of std ~1, larger than the signal;
    with a KL weight of 1e-6 the encoder takes thousands of steps to shrink it, and until then the decoder learns the
    blurred, desaturated average it can recover from such latents. Starting the noise small trains as a plain
    autoencoder from step one; the KL term still shapes the variance afterwards.
    """
    conv = vae.quant_conv if getattr(vae, "quant_conv", None) is not None else vae.encoder.conv_out
    c = vae.config.latent_channels
    with torch.no_grad():
        conv.weight[c:].zero_()
        conv.bias[c:].fill_(INIT_LOGVAR)


def random_patches(images: torch.Tensor, patch: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
    """(B, C, ph, pw): one random crop per image, offsets drawn from `generator` (so a resumed run draws the same)."""
    ph, pw = patch
    h, w = images.shape[-2:]
    if ph > h or pw > w:
        raise ValueError(f"VAE patch {list(patch)} is larger than its frames ({h} x {w})")
    ys = torch.randint(0, h - ph + 1, (len(images),), generator=generator).tolist()
    xs = torch.randint(0, w - pw + 1, (len(images),), generator=generator).tolist()
    return torch.stack([im[:, y : y + ph, x : x + pw] for im, y, x in zip(images, ys, xs)])


def vae_loss(
    vae,
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    kl_weight: float = 1e-6,
    grad_weight: float = 0.5,
    lowpass_weight: float = 0.0,
    lowpass: int = 4,
    recon_loss: str = "l1",
) -> torch.Tensor:
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    dist = {"l1": F.l1_loss, "mse": F.mse_loss}[recon_loss]
    loss = dist(recon, images)
    if lowpass_weight:
        # the same distance between box-filtered images: a fine texture averages out, so an object's colour and
        # place count for as much as the texture around it
        loss = loss + lowpass_weight * dist(F.avg_pool2d(recon, lowpass), F.avg_pool2d(images, lowpass))
    if grad_weight:
        (rx, ry), (ix, iy) = _image_grads(recon), _image_grads(images)
        loss = loss + grad_weight * (F.l1_loss(rx, ix) + F.l1_loss(ry, iy)) / 2
    if kl_weight:
        # diffusers' kl() sums over C, H, W; per pixel element, as the L1 is a mean
        loss = loss + kl_weight * posterior.kl().mean() * posterior.mean[0].numel() / images[0].numel()
    return loss


@torch.no_grad()
def psnr(vae, images: torch.Tensor, chunk: int = 16) -> float:
    """Mean per-image PSNR (dB, pixels in [0, 1]) of posterior-mean reconstructions."""
    was_training = vae.training
    vae.eval()
    recon = decode(vae, encode(vae, images, chunk=chunk), chunk=chunk)
    vae.train(was_training)
    mse = (((recon.float() - images.float()) / 2) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


@torch.no_grad()
def save_recon_grid(vae, images: torch.Tensor, path: Path, n: int = 8) -> Path:
    """A PNG: originals on top, reconstructions below, one column per frame."""
    from PIL import Image

    images = images[:n]
    recon = decode(vae, encode(vae, images))
    rows = [torch.cat(list(r), dim=2) for r in (images, recon)]  # (3, H, n*W) each
    grid = torch.cat(rows, dim=1)
    arr = ((grid.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    scale = max(1, 256 // images.shape[-2])  # nearest-upscale small frames so a person can see the edges
    img = Image.fromarray(np.ascontiguousarray(arr))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def train_vae(
    curated_dir: str | Path,
    out_dir: str | Path,
    *,
    cfg: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    size: int | tuple[int, int],
    seed: int,
    ckpt_every: int,
    logger: Callable[[dict, int], None] | None = None,
    resume: bool = True,
    profile: str = "tiny",
    frames_per_clip: int = 16,
    kl_weight: float = 1e-6,
    grad_weight: float = 0.5,
    warmup_steps: int = 20,
    eval_frames: int = 32,
    lowpass_weight: float = 0.0,
    lr_schedule: str = "constant",
    recon_loss: str = "l1",
    patch: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a VAE built from `cfg` (EMA off: a few hundred steps would leave the average behind the weights) on
    frames of the curated clips; write out_dir/{checkpoints,vae,recon.png}.

    `patch` (H, W): each training image is a random crop of that size (the VAE is convolutional, so it is used at
    full size afterwards). Ours, tiny: on whole 32x48 frames the held-out round-trip ceiling varied 0.53-1.0 with the
    seed, the decoder having memorised the few scenes' palettes; 16x24 crops show it each scene at many offsets, cost
    a quarter per image, and reached 1.0 (PSNR 25.5 dB on the eval clips) in 1,000 steps on a seed that gave 0.625
    on whole frames (README).

    Returns final_loss, psnr_init / psnr (held-out frames, dB), latent_std, scaling_factor, seconds, steps, ...
    Raises InputError for a missing or empty curated set and CheckpointMismatch (from the loop) when out_dir holds
    checkpoints of another profile or VAE config.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    curated = CuratedSet(curated_dir)
    train_set, held_set = _split(curated)
    size = (size, size) if isinstance(size, int) else tuple(size)
    train_data = _Images(_frames(train_set, size, frames_per_clip, seed))
    # held-out frames: other clips, or (a single clip) frames of it between the training ones
    held = _frames(held_set or curated, size, max(2, eval_frames // len(held_set or curated)), seed + 1)[:eval_frames]
    batch_size = min(batch_size, len(train_data))  # a tiny set still gives full batches

    torch.manual_seed(seed)
    vae = build_vae(cfg)
    start_near_deterministic(vae)
    psnr_init = psnr(vae, held)
    vae.train()

    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup_steps, steps, lr_schedule))

    if patch is not None and (patch[0] > size[0] or patch[1] > size[1]):
        raise ValueError(f"train.vae.patch {list(patch)} is larger than train.vae.size {list(size)}")

    def step_fn(model, batch, rng):
        generator = rng.generator  # the posterior's draw cannot be split by row: the VAE trains on one process
        images = batch["image"] if patch is None else random_patches(batch["image"], patch, generator)
        return vae_loss(
            model,
            images,
            generator,
            kl_weight=kl_weight,
            grad_weight=grad_weight,
            lowpass_weight=lowpass_weight,
            recon_loss=recon_loss,
        )

    summary = train(
        step_fn,
        vae,
        optimizer,
        train_data,
        max_steps=steps,
        ckpt_dir=out_dir / "checkpoints",
        ckpt_every=ckpt_every,
        lr_scheduler=scheduler,
        logger=logger,
        seed=seed,
        resume=resume,
        profile=profile,
        batch_size=batch_size,
        collate_fn=collate,
        progress=progress,
    )
    vae.eval()

    # scale measured on training frames (what diffusion will train on), like SD's first-batch estimate
    sample = train_data.images[:: max(1, len(train_data) // 64)][:64]
    factor = latent_scale(vae, sample)
    vae.register_to_config(scaling_factor=factor)
    final_psnr = psnr(vae, held)
    vae.save_pretrained(out_dir / "vae", safe_serialization=True)
    save_recon_grid(vae, held, out_dir / "recon.png")

    return {
        "final_loss": summary["final_loss"],
        "psnr_init": psnr_init,
        "psnr": final_psnr,
        "latent_std": 1.0 / factor,
        "scaling_factor": factor,
        "seconds": time.perf_counter() - started,
        "train_seconds": summary["seconds"],
        "steps": summary["steps"],
        "resumed_from": summary["resumed_from"],
        "history": summary["history"],
        "parameters": num_parameters(vae),
        "train_frames": len(train_data),
        "heldout_frames": int(held.shape[0]),
        "heldout": "clips" if held_set is not None else "frames",
        "vae_dir": str(out_dir / "vae"),
        "recon": str(out_dir / "recon.png"),
        "checkpoint": summary["checkpoint"],
    }


__all__ = ["psnr", "save_recon_grid", "train_vae", "vae_loss"]
