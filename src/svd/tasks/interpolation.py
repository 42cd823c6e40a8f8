"""Frame interpolation (paper §4.4, App. D.6; REFERENCE.md "Finetunes in detail"): 4x the frame rate.

Conditioning:
- concatenated latents: the window's latents [z_start, m, m, m, z_end], with m a learned mask embedding (one value
  per latent channel, `interp_mask` on the UNet) in the frames to fill, plus a binary channel that is 1 on the two
  known frames; concatenated to the scaled noisy input along the channels (2 x latent + 1 input channels).
- latent noise augmentation of both ends: z + s * eps with ln s ~ N(diffusion.cond_aug) in training (one s per
  window), diffusion.cond_aug.inference_sigma when sampling; s is a third vector id, as image-to-video's cond_aug.
- context: the CLIP image embeddings of the two known frames, a sequence of length 2.
- vector ids: [fps_id, motion_bucket_id, s]: fps is the output's rate (4x the known frames').
- no guidance (the paper gives none): the sampler runs the conditional branch only.
Windows: `train.interp.frames` (5) consecutive frames of the curated clips at `train.interp.fps`, so the known
frames are 4 apart. UNet: the parent text-to-video model (`train.interp.parent`; we use Stage III, the paper's "base
text-to-video model" at our training size) with the new input columns and id at zero, so it starts as its parent.

`interpolate_pairs` fills the frames between pairs of known frames; svd.interpolate runs it over whole videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from svd.diffusion.edm import DenoiserConfig, edm_loss
from svd.models.vae import encode
from svd.tasks.image_to_video import NUM_IDS, ImageToVideo, grow_inputs, time_ids
from svd.training.denoiser import prompt_noise, sample_decoded, unet_call

KIND = "interpolation"
MASK_PARAMETER = "interp_mask"
MASK_FILE = "mask_embedding.safetensors"


# ---------------------------------------------------------------- the UNet
def extend_for_interpolation(parent):
    """An interpolation UNet from a text-to-video one: conv_in takes the noisy latents, the conditioning latents and
    the mask channel (2C + 1), add_embedding a third id (the ends' augmentation); new columns at zero; plus the
    learned mask embedding m (zeros) as the parameter `interp_mask`."""
    cfg = parent.config
    if cfg["in_channels"] != cfg["out_channels"]:
        raise ValueError(f"the parent UNet takes {cfg['in_channels']} input channels: it is not a text-to-video model")
    latent = cfg["out_channels"]
    child = grow_inputs(parent, 2 * latent + 1, NUM_IDS)
    add_mask_embedding(child)
    return child


def add_mask_embedding(unet, value: torch.Tensor | None = None) -> None:
    c = unet.config["out_channels"]
    init = torch.zeros(c) if value is None else value.reshape(c).to(torch.float32)
    unet.register_parameter(MASK_PARAMETER, torch.nn.Parameter(init.to(next(unet.parameters()).device)))


def mask_embedding(unet) -> torch.Tensor:
    return getattr(getattr(unet, "module", unet), MASK_PARAMETER)


def conditioning(ends: torch.Tensor, mask: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T, C + 1, h, w): [z_start, m, ..., m, z_end] along the frames, and the binary known-frame channel.
    `ends`: (B, 2, C, h, w) latents of the known frames; `mask`: (C,)."""
    if frames < 3:
        raise ValueError(f"interpolation needs at least 3 frames (two known, one to fill), got {frames}")
    b, _, c, h, w = ends.shape
    m = mask.to(ends.dtype).view(1, 1, c, 1, 1).expand(b, frames - 2, c, h, w)
    latents = torch.cat([ends[:, :1], m, ends[:, 1:]], dim=1)
    known = torch.zeros(b, frames, 1, h, w, dtype=ends.dtype, device=ends.device)
    known[:, 0] = known[:, -1] = 1.0
    return torch.cat([latents, known], dim=2)


# ---------------------------------------------------------------- training data
@dataclass
class InterpWindows:
    """Encoded windows: latents (N, T, C, h, w) (scaled), the CLIP embeddings (F, 1, D) of the distinct known frames,
    per window the rows of its two known frames (`end_rows`, (N, 2)), fps_id and motion_bucket."""

    latents: torch.Tensor
    embeds: torch.Tensor
    end_rows: torch.Tensor
    fps_id: torch.Tensor
    motion_bucket: torch.Tensor
    clip_ids: list[str]


@torch.no_grad()
def encode_interp_windows(windows, vae, image_encoder, chunk: int = 64) -> InterpWindows:
    latents = encode(vae, windows.frames, chunk=chunk).float()[windows.index]
    ends = torch.stack([windows.index[:, 0], windows.index[:, -1]], dim=1)
    distinct, rows = torch.unique(ends.reshape(-1), return_inverse=True)
    embeds = image_encoder.encode(windows.frames[distinct].float()).float()
    return InterpWindows(
        latents, embeds, rows.view(-1, 2), windows.fps_id, windows.motion_bucket, list(windows.clip_ids)
    )


class InterpItems(Dataset):
    def __init__(self, data: InterpWindows):
        self.data = data

    def __len__(self) -> int:
        return self.data.latents.shape[0]

    def __getitem__(self, i: int) -> dict:
        d = self.data
        return {
            "latents": d.latents[i],
            "end_rows": d.end_rows[i],
            "fps_id": d.fps_id[i],
            "motion_bucket": d.motion_bucket[i],
        }


def make_step(noise: DenoiserConfig, data: InterpWindows, *, cond_aug: tuple[float, float], static_weight: float = 1.0):
    """step_fn(model, batch, rng) -> mean EDM loss over the whole window (the known frames included)."""
    mean, std = cond_aug

    def step(model, batch, rng):
        x0 = batch["latents"]
        b, t = x0.shape[:2]
        device = x0.device
        sigma = rng.rows(b, lambda k, g: noise.sample_sigmas(k, g, device=device))
        eps = rng.randn(x0.shape, dtype=x0.dtype)
        aug = torch.exp(mean + std * rng.randn((b,), dtype=x0.dtype))
        ends = x0[:, [0, -1]]
        ends = ends + aug.view(-1, 1, 1, 1, 1) * rng.randn(tuple(ends.shape), dtype=x0.dtype)
        concat = conditioning(ends, mask_embedding(model), t)
        context = data.embeds.to(device)[batch["end_rows"]].flatten(1, 2)  # (B, 2, D)
        ids = time_ids(batch["fps_id"], batch["motion_bucket"], aug).to(device)
        return edm_loss(
            unet_call(model),
            x0,
            sigma,
            eps,
            sigma_data=noise.sigma_data,
            static_weight=static_weight,
            context=context,
            added_time_ids=ids,
            concat=concat,
        ).mean()

    return step


# ---------------------------------------------------------------- sampling
@torch.no_grad()
def interpolate_pairs(
    unet,
    vae,
    image_encoder,
    starts: torch.Tensor,
    ends: torch.Tensor,
    *,
    frames: int,
    steps: int,
    seed: int,
    fps: float,
    motion_bucket: float,
    cond_aug: float = 0.02,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    rho: float = 7.0,
    method: str = "euler",
    sigma_data: float = 1.0,
    batch: int = 16,
) -> np.ndarray:
    """uint8 (N, frames, H, W, 3): the window from starts[i] to ends[i] ((N, 3, H, W) in [-1, 1], the model's size),
    known frames included as the model decodes them; pair i uses seed + i."""
    if starts.shape != ends.shape or starts.ndim != 4 or starts.shape[1] != 3:
        raise ValueError(f"starts and ends must both be (N, 3, H, W), got {tuple(starts.shape)}, {tuple(ends.shape)}")
    param = next(unet.parameters())
    mask = mask_embedding(unet).detach()
    out = []
    for lo in range(0, starts.shape[0], batch):
        a, b = starts[lo : lo + batch].float(), ends[lo : lo + batch].float()
        n = a.shape[0]
        seeds = [seed + lo + i for i in range(n)]
        z = encode(vae, torch.stack([a, b], dim=1)).float()  # (n, 2, C, h, w), scaled
        aug_noise = torch.stack(
            [torch.randn(tuple(z.shape[1:]), generator=torch.Generator().manual_seed(s + 7919)) for s in seeds]
        )
        z = z + float(cond_aug) * aug_noise
        context = image_encoder.encode(torch.cat([a, b])).float()  # (2n, 1, D)
        context = torch.stack([context[:n, 0], context[n:, 0]], dim=1)
        ids = time_ids(torch.full((n,), fps - 1.0), torch.full((n,), float(motion_bucket)), torch.full((n,), cond_aug))
        cond = {
            "context": context.to(param.device, param.dtype),
            "concat": conditioning(z, mask, frames).to(param.device, param.dtype),
            "added_time_ids": ids.to(param.device, param.dtype),
        }
        noise = prompt_noise((frames, *z.shape[2:]), seeds)
        out.append(
            sample_decoded(
                unet,
                vae,
                noise,
                cond,
                None,
                None,
                steps=steps,
                sigma_min=sigma_min,
                sigma_max=sigma_max,
                rho=rho,
                method=method,
                sigma_data=sigma_data,
            )  # fmt: skip
        )
    return np.concatenate(out)


# ---------------------------------------------------------------- the task
class Interpolation(ImageToVideo):
    """Stage interp."""

    kind = KIND
    evaluator = "svd.evaluation.interpolation:evaluate_model"

    def model_kind(self, stage: str) -> str:
        return KIND

    def registered_name(self, stage: str) -> str | None:
        return "svd-interp"

    def pretrained(self, params, stage: str):
        return None

    def start_unet(self, params, stage: str):
        from diffusers import UNetSpatioTemporalConditionModel

        from svd.errors import InputError
        from svd.training.stages import require_dir

        folder, meta = self._parent_meta(params, stage)
        parent = self.parent(params, stage)
        if meta is None:
            raise InputError(
                f"no {parent} model at {folder}: run `svd train --stage {parent}` first (train.{stage}.parent)"
            )
        if meta["kind"] != "text-to-video":
            raise InputError(
                f"train.{stage}.parent: {folder} holds a {meta['kind']} model; interpolation is finetuned from a "
                f"text-to-video model"
            )
        unet_dir = require_dir(folder / "unet", f"the {parent} UNet", f"run `svd train --stage {parent}` first")
        unet = extend_for_interpolation(UNetSpatioTemporalConditionModel.from_pretrained(unet_dir))
        return unet, f"extended:{unet_dir}"

    def new_inputs(self, unet, init: str) -> list:
        """conv_in's conditioning and mask channels, add_embedding's augmentation id, and the mask embedding."""
        cfg = unet.config
        return [
            (unet.conv_in.weight, 1, cfg.out_channels),
            (unet.add_embedding.linear_1.weight, 1, (NUM_IDS - 1) * cfg.addition_time_embed_dim),
            (mask_embedding(unet), 0, 0),
        ]

    def training_set(self, windows, vae, context):
        data = encode_interp_windows(windows, vae, context)
        return InterpItems(data), {"windows": int(data.latents.shape[0]), "known_frames": int(data.embeds.shape[0])}

    def make_step(self, params, stage: str, data, vae):
        cfg = getattr(params.train, stage)
        p_mean, p_std = params.diffusion.noise[cfg.noise]
        aug = params.diffusion.cond_aug
        return make_step(
            DenoiserConfig(params.diffusion.sigma_data, p_mean, p_std),
            data.data,
            cond_aug=(aug.log_sigma_mean, aug.log_sigma_std),
            static_weight=cfg.static_weight,
        )

    def sampling_defaults(self, params, stage: str) -> dict:
        cfg = getattr(params.train, stage)
        return {
            "guidance": [1.0, 1.0],  # none
            "sample_steps": cfg.sample_steps or params.sample.steps,
            "cond_aug": params.diffusion.cond_aug.inference_sigma,
        }

    def preview(self, params, stage: str, model: dict, data):
        """fn(unet) -> uint8 windows filled between the known frames of 4 training windows."""
        cfg = getattr(params.train, stage)
        d = data.data
        rows = np.linspace(0, d.latents.shape[0] - 1, 4).round().astype(int)
        known = torch.from_numpy(np.asarray(rows))
        from svd.models.vae import decode

        with torch.no_grad():
            pixels = decode(model["vae"], d.latents[known][:, [0, -1]]).clamp(-1, 1)  # (4, 2, 3, H, W)
        defaults = self.sampling_defaults(params, stage)
        motion = float(np.median(d.motion_bucket.numpy()))

        def fn(unet):
            return interpolate_pairs(
                unet, model["vae"], model["context"], pixels[:, 0], pixels[:, 1], frames=cfg.frames,
                steps=defaults["sample_steps"], seed=params.sample.seed, fps=cfg.fps, motion_bucket=motion,
                cond_aug=defaults["cond_aug"], sigma_data=params.diffusion.sigma_data,
            )  # fmt: skip

        return fn, [f"training window {int(r)}" for r in rows]

    def save_weights(self, unet, out, params, stage: str) -> None:
        """The UNet as diffusers saves it (the mask embedding is not one of its weights) and the mask embedding."""
        from safetensors.torch import save_file

        mask = mask_embedding(unet).detach().cpu().clone()
        delattr(unet, MASK_PARAMETER)
        try:
            unet.save_pretrained(Path(out) / "unet", safe_serialization=True)
        finally:
            add_mask_embedding(unet, mask)
        save_file({"mask_embedding": mask.contiguous()}, str(Path(out) / MASK_FILE))

    def save_context(self, out, context, params, stage: str) -> dict:
        return {**super().save_context(out, context, params, stage), "mask_embedding": MASK_FILE}

    def finish(self, params, stage: str, out) -> None:
        """Nothing to export: diffusers has no interpolation pipeline for SVD."""

    def load_saved_context(self, folder, meta: dict) -> dict:
        from safetensors.torch import load_file

        from svd.errors import InputError

        path = Path(folder) / meta.get("mask_embedding", MASK_FILE)
        try:
            mask = load_file(str(path))["mask_embedding"]
        except Exception as exc:  # noqa: BLE001 - missing or damaged: the same user-facing problem
            raise InputError(
                f"cannot read the interpolation model's mask embedding {path} ({exc.__class__.__name__})"
            ) from None
        return {**super().load_saved_context(folder, meta), "mask_embedding": mask}


TASK = Interpolation()
