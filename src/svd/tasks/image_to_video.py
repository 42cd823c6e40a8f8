"""Image-to-video, the model SVD released (svd and svd_xt): a video that starts from a given frame.

Conditioning (REFERENCE.md, "Finetunes in detail"; diffusers' StableVideoDiffusionPipeline):
- context: one token, the CLIP image embedding of the clean conditioning frame (svd.models.image_encoder), instead of
  the text tokens.
- concatenated latents: the conditioning frame with noise augmentation in pixel space (ln sigma ~ N(-3.0, 0.5^2) in
  training, `diffusion.cond_aug`; a fixed 0.02 at inference), encoded to the VAE encoder's mean, unscaled (scale
  factor 1.0, as diffusers' `latent_dist.mode()`), repeated over the frames and concatenated to the scaled noisy
  input along the channels. The UNet therefore takes 2x the latent channels (diffusers reads the latent width as
  in_channels // 2).
- vector ids: [fps_id, motion_bucket_id, cond_aug], the last being the augmentation's sigma, drawn per sample.
- dropout for guidance (ours, the rates are unpublished; InstructPix2Pix-style as SVD_Xtend): per sample, the image
  embedding alone, the concatenated latent alone, or both are zeroed with `train.<stage>.cond_dropout` probabilities;
  the unconditional branch of the sampler zeroes both, as sgm's and diffusers' samplers do.
- guidance: one weight per frame, rising linearly (1.0 -> 2.5 for the 14-frame model, 1.5 -> 3.0 for 25 frames;
  `diffusion.guidance`).
Windows: the curated clips at the stage's size, frames and fps; the conditioning frame is each window's first.
UNet: the parent text-to-video UNet (`train.<stage>.parent`) with its input channels doubled and a third id added,
both new weights zero, so that the conditioning latent and cond_aug alone leave the parent's prediction unchanged
(`extend_for_images`); a longer model (i2v_xt) continues the shorter one. Judged by svd.evaluation.image_to_video on
the world's held-aside clips, called from above the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from svd.diffusion.conditioning import noise_augment
from svd.diffusion.edm import DenoiserConfig, edm_loss
from svd.diffusion.sampling import linear_frame_guidance
from svd.models.vae import encode
from svd.training.denoiser import prompt_noise, sample_decoded, unet_call

KIND = "image-to-video"
NUM_IDS = 3  # fps_id, motion_bucket_id, cond_aug


# ---------------------------------------------------------------- the UNet
def extend_for_images(parent):
    """An image-to-video UNet from a text-to-video `UNetSpatioTemporalConditionModel`: conv_in takes the latent
    channels twice (noisy latents, then the conditioning latent) and add_embedding takes a third id (cond_aug); every
    parent weight is copied and the new input columns of both layers start at zero, so with the same context the new
    UNet predicts exactly what the parent did, whatever the conditioning latent and cond_aug."""
    cfg = dict(parent.config)
    latent = cfg["in_channels"]
    if latent != cfg["out_channels"]:
        raise ValueError(
            f"the parent UNet already takes {latent} input channels for {cfg['out_channels']} outputs: "
            f"it is not a text-to-video model"
        )
    per_id = cfg["addition_time_embed_dim"]
    ids = cfg["projection_class_embeddings_input_dim"] // per_id
    if ids != NUM_IDS - 1:
        raise ValueError(
            f"the parent UNet takes {ids} micro-conditioning ids, a text-to-video model takes "
            f"{NUM_IDS - 1} (fps, motion)"
        )
    return grow_inputs(parent, 2 * latent, NUM_IDS)


def grow_inputs(parent, in_channels: int, num_ids: int):
    """A copy of `parent` (a `UNetSpatioTemporalConditionModel`) whose conv_in takes `in_channels` and whose
    add_embedding takes `num_ids` micro-conditioning ids; the new input columns of both layers start at zero, so the
    copy predicts what the parent did whatever the new inputs hold (image-to-video's and interpolation's start)."""
    from diffusers import UNetSpatioTemporalConditionModel

    cfg = dict(parent.config)
    per_id = cfg["addition_time_embed_dim"]
    if in_channels < cfg["in_channels"] or num_ids * per_id < cfg["projection_class_embeddings_input_dim"]:
        raise ValueError("grow_inputs only adds inputs")
    cfg.update(in_channels=in_channels, projection_class_embeddings_input_dim=num_ids * per_id)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    param = next(parent.parameters())
    with torch.device("meta"):
        child = UNetSpatioTemporalConditionModel(**cfg)
    state = parent.state_dict()
    grown = {}
    for name, extra_dim in (("conv_in.weight", 1), ("add_embedding.linear_1.weight", 1)):
        old = state[name]
        shape = list(old.shape)
        shape[extra_dim] = child.get_parameter(name).shape[extra_dim] - old.shape[extra_dim]
        grown[name] = torch.cat([old, old.new_zeros(shape)], dim=extra_dim)
    state.update(grown)
    child.load_state_dict(state, strict=True, assign=True)
    return child.to(param.device)


def freeze_spatial(unet) -> int:
    """Train the temporal layers only (`train.<stage>.trainable: temporal`, SVD_Xtend's default for the public
    checkpoint); returns the number of trainable parameters."""
    from svd.models.unet import is_temporal

    for name, p in unet.named_parameters():
        p.requires_grad_(is_temporal(name))
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


# ---------------------------------------------------------------- training data
@dataclass
class ImageWindows:
    """Encoded windows of the image-to-video task: latents (N, T, C, h, w) (scaled), the distinct conditioning frames
    (F, 3, H, W) in [-1, 1] with their clean CLIP embeddings (F, 1, D), and per window the row of its conditioning
    frame (`cond_index`, N), fps_id and motion_bucket; a task with more vector ids (multi-view: the elevation) gives
    them per window in `extra_ids` (N, k), appended after cond_aug."""

    latents: torch.Tensor
    cond_frames: torch.Tensor
    embeds: torch.Tensor
    cond_index: torch.Tensor
    fps_id: torch.Tensor
    motion_bucket: torch.Tensor
    clip_ids: list[str]
    extra_ids: torch.Tensor | None = None


@torch.no_grad()
def encode_image_windows(windows, vae, image_encoder, chunk: int = 64) -> ImageWindows:
    """Latents of every window (each distinct frame encoded once) and the CLIP embedding of every distinct first
    frame; captions are not used."""
    latents = encode(vae, windows.frames, chunk=chunk).float()[windows.index]
    firsts, cond_index = torch.unique(windows.index[:, 0], return_inverse=True)
    cond_frames = windows.frames[firsts].float()
    embeds = image_encoder.encode(cond_frames).float()
    return ImageWindows(
        latents, cond_frames, embeds, cond_index, windows.fps_id, windows.motion_bucket, list(windows.clip_ids)
    )


class ImageItems(Dataset):
    """Items of ImageWindows for the training loop: latents, cond_index, fps_id, motion_bucket (and extra_ids)."""

    def __init__(self, data: ImageWindows):
        self.data = data

    def __len__(self) -> int:
        return self.data.latents.shape[0]

    def __getitem__(self, i: int) -> dict:
        d = self.data
        item = {
            "latents": d.latents[i],
            "cond_index": d.cond_index[i],
            "fps_id": d.fps_id[i],
            "motion_bucket": d.motion_bucket[i],
        }
        if d.extra_ids is not None:
            item["extra_ids"] = d.extra_ids[i]
        return item


def time_ids(fps_id: torch.Tensor, motion_bucket: torch.Tensor, cond_aug: torch.Tensor) -> torch.Tensor:
    return torch.stack([fps_id.float(), motion_bucket.float(), cond_aug.float()], dim=1)


@torch.no_grad()
def condition_latent(vae, augmented: torch.Tensor) -> torch.Tensor:
    """The concatenated conditioning: the VAE encoder's mean, unscaled, of the noise-augmented conditioning frames
    (B, 3, H, W) -> (B, C, h, w), as diffusers' pipeline computes `image_latents`."""
    return encode(vae, augmented, scale=False).float()


def dropout_masks(u: torch.Tensor, rates: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_embedding, drop_latent) bool (B,) from one uniform draw u per sample: u in [0, image) -> embedding only,
    [image, image + both) -> both, then [.., + latent) -> latent only."""
    image, both, latent = rates["image"], rates["both"], rates["latent"]
    drop_embedding = u < image + both
    drop_latent = (u >= image) & (u < image + both + latent)
    return drop_embedding, drop_latent


def make_step(
    noise: DenoiserConfig,
    data: ImageWindows,
    vae,
    *,
    cond_aug: tuple[float, float],
    dropout: dict[str, float],
    static_weight: float = 1.0,
):
    """step_fn(model, batch, rng) -> mean EDM loss over ImageItems batches (see the module docstring; rng: the
    loop's StepRandom)."""
    if (
        set(dropout) != {"image", "latent", "both"}
        or any(not 0 <= v < 1 for v in dropout.values())
        or sum(dropout.values()) >= 1
    ):
        raise ValueError(f"cond_dropout needs image, latent and both in [0, 1) summing below 1, got {dropout}")
    mean, std = cond_aug

    def step(model, batch, rng):
        x0 = batch["latents"]
        b, t = x0.shape[:2]
        device = x0.device
        sigma = rng.rows(b, lambda k, g: noise.sample_sigmas(k, g, device=device))
        eps = rng.randn(x0.shape, dtype=x0.dtype)
        frames = data.cond_frames.to(device)[batch["cond_index"]]
        aug_sigma = torch.exp(mean + std * rng.randn((b,), dtype=frames.dtype))  # one sigma per sample
        augmented, aug_sigma = noise_augment(frames, sigma=aug_sigma, noise=rng.randn(frames.shape, dtype=frames.dtype))
        z = condition_latent(vae, augmented)
        drop_embedding, drop_latent = dropout_masks(rng.rand(b), dropout)
        context = data.embeds.to(device)[batch["cond_index"]] * (~drop_embedding).view(-1, 1, 1)
        concat = (z * (~drop_latent).view(-1, 1, 1, 1))[:, None].expand(-1, t, -1, -1, -1)
        ids = time_ids(batch["fps_id"], batch["motion_bucket"], aug_sigma).to(device)
        if "extra_ids" in batch:
            ids = torch.cat([ids, batch["extra_ids"].to(device, ids.dtype)], dim=1)
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
def cond_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """The conditioning frame's augmentation noise, one generator per sample, a stream apart from the start noise."""
    from svd.training.loop import derive_seed

    return torch.stack(
        [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(derive_seed(int(s), 1))) for s in seeds]
    )


@torch.no_grad()
def generate(
    unet,
    vae,
    image_encoder,
    images: torch.Tensor,
    *,
    num_frames: int,
    steps: int,
    guidance: tuple[float, float],
    seed: int,
    fps: float,
    motion_bucket: float | Sequence[float],
    cond_aug: float = 0.02,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    rho: float = 7.0,
    method: str = "euler",
    sigma_data: float = 1.0,
    batch: int = 16,
    noise: torch.Tensor | None = None,
    aug_noise: torch.Tensor | None = None,
    extra_ids: torch.Tensor | None = None,
) -> np.ndarray:
    """Videos (N, T, H, W, 3) uint8 from conditioning frames `images` (N, 3, H, W) in [-1, 1] at the model's size.

    Sample i uses seed + i for its start noise and its augmentation noise (or the given `noise` (N, T, C, h, w) and
    `aug_noise` (N, 3, H, W), to match another sampler draw for draw). `motion_bucket` is one value or one per image;
    `extra_ids` (N, k), the vector ids of a task that takes more (multi-view: the elevation), follow cond_aug.
    Guidance rises linearly over the frames from guidance[0] to guidance[1]; a maximum <= 1 samples without the
    unconditional branch (as diffusers' pipeline)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    n_all = images.shape[0]
    if n_all == 0:
        raise ValueError("no images")
    buckets = (
        torch.as_tensor(motion_bucket, dtype=torch.float32).reshape(-1).expand(n_all)
        if np.ndim(motion_bucket) == 0
        else torch.as_tensor(motion_bucket, dtype=torch.float32)
    )
    if buckets.shape != (n_all,):
        raise ValueError(f"{buckets.shape[0]} motion buckets for {n_all} images")
    if extra_ids is not None and (extra_ids.ndim != 2 or extra_ids.shape[0] != n_all):
        raise ValueError(f"extra_ids must be (N, k) for {n_all} images, got shape {tuple(extra_ids.shape)}")
    param = next(unet.parameters())
    channels = unet.config.out_channels
    h, w = (
        images.shape[2] // 2 ** (len(vae.config.block_out_channels) - 1),
        images.shape[3] // 2 ** (len(vae.config.block_out_channels) - 1),
    )
    guided = guidance[1] > 1.0
    weights = linear_frame_guidance(num_frames, *guidance) if guided else None
    out = []
    for start in range(0, n_all, batch):
        part = images[start : start + batch].float()
        n = part.shape[0]
        seeds = [seed + start + i for i in range(n)]
        start_noise = prompt_noise((num_frames, channels, h, w), seeds) if noise is None else noise[start : start + n]
        a_noise = cond_noise(tuple(part.shape[1:]), seeds) if aug_noise is None else aug_noise[start : start + n]
        sigma = torch.full((n,), float(cond_aug))
        z = condition_latent(vae, part + float(cond_aug) * a_noise.to(part.dtype))
        z = z[:, None].expand(-1, num_frames, -1, -1, -1)
        embeds = image_encoder.encode(part)
        ids = time_ids(torch.full((n,), fps - 1.0), buckets[start : start + n], sigma)
        if extra_ids is not None:
            ids = torch.cat([ids, extra_ids[start : start + n].float()], dim=1)
        ids = ids.to(param.device, param.dtype)
        cond = {
            "context": embeds.to(param.device, param.dtype),
            "concat": z.to(param.device, param.dtype),
            "added_time_ids": ids,
        }
        uncond = {
            "context": torch.zeros_like(cond["context"]),
            "concat": torch.zeros_like(cond["concat"]),
            "added_time_ids": ids,
        }
        out.append(
            sample_decoded(
                unet,
                vae,
                start_noise,
                cond,
                uncond if guided else None,
                weights,
                steps=steps,
                sigma_min=sigma_min,
                sigma_max=sigma_max,
                rho=rho,
                method=method,
                sigma_data=sigma_data,
            )
        )
    return np.concatenate(out)


__all__ = [
    "ImageItems",
    "ImageWindows",
    "KIND",
    "NUM_IDS",
    "cond_noise",
    "condition_latent",
    "dropout_masks",
    "encode_image_windows",
    "extend_for_images",
    "freeze_spatial",
    "generate",
    "grow_inputs",
    "make_step",
    "time_ids",
]


# ---------------------------------------------------------------- the task, as svd.training.stages drives it
def pipeline_folder(source: str, key: str):
    """A local StableVideoDiffusionPipeline folder (model_index.json, unet/, vae/, image_encoder/) for a path or a
    hub id already in the local cache; nothing is downloaded."""
    from svd.errors import WeightsError
    from svd.models.sources import local_or_cached

    path = local_or_cached(source, key, ("model_index.json",))
    missing = [n for n in ("model_index.json", "unet", "vae", "image_encoder") if not (path / n).exists()]
    if missing:
        raise WeightsError(f"{key}: {path} is not a StableVideoDiffusionPipeline folder (missing {', '.join(missing)})")
    return path


REGISTERED_NAMES = {"i2v": "svd-i2v", "i2v_xt": "svd-i2v-xt"}
BUNDLE_ENCODER_MAX_BYTES = 64 * 2**20
EXPORT_MAX_BYTES = 512 * 2**20


class ImageToVideo:
    """Stages i2v (SVD) and i2v_xt (SVD-XT)."""

    kind = KIND
    evaluator = "svd.evaluation.image_to_video:evaluate_model"
    streams = False  # its windows (and conditioning frames) are cached; train.stream does not apply yet

    def model_kind(self, stage: str) -> str:
        return KIND

    def registered_name(self, stage: str) -> str | None:
        return REGISTERED_NAMES.get(stage, f"svd-{stage}")

    def parent(self, params, stage: str) -> str:
        from svd.errors import ConfigError

        parent = getattr(params.train, stage).parent
        if not parent:
            raise ConfigError(
                f"train.{stage}.parent: name the stage whose model image-to-video is finetuned from "
                f"(hq, video, or i2v for a longer model)"
            )
        if parent == stage:
            raise ConfigError(f"train.{stage}.parent: a stage cannot be its own parent")
        return parent

    def pretrained(self, params, stage: str):
        """The public pipeline folder this stage finetunes (weights.<stage>_pipeline), or None: ours."""
        source = getattr(params.weights, f"{stage}_pipeline", None)
        return pipeline_folder(source, f"weights.{stage}_pipeline") if source else None

    def vae_source(self, params, stage: str) -> str | None:
        """A public pipeline brings its own VAE (SVD's temporal decoder); else the VAE stage's."""
        folder = self.pretrained(params, stage)
        return str(folder / "vae") if folder is not None else None

    def _parent_meta(self, params, stage: str) -> tuple[object, dict | None]:
        from svd.training.stages import MODEL_FILE, read_model, stage_dir

        folder = stage_dir(params, self.parent(params, stage))
        return folder, (read_model(folder) if (folder / MODEL_FILE).is_file() else None)

    def load_context(self, params, stage: str):
        """The frozen CLIP image tower: the public pipeline's when one is finetuned (weights.<stage>_pipeline), the
        parent's when continuing an image-to-video parent, else weights.image_encoder (or a random one)."""
        from svd.errors import ConfigError
        from svd.models.image_encoder import load_image_encoder

        folder, meta = self._parent_meta(params, stage)
        public = self.pretrained(params, stage)
        if public is not None:  # a finetune of the public model keeps the tower it was trained with
            encoder = load_image_encoder(str(public))
        elif meta is not None and meta["kind"] == KIND and public is None:
            encoder = self.load_saved_context(folder, meta)["image_encoder"]
        else:
            encoder = load_image_encoder(
                params.weights.image_encoder, params.model.image_encoder.model_dump(), seed=params.seed
            )
        want = params.model.unet.cross_attention_dim
        if encoder.width != want:
            raise ConfigError(
                f"model.unet.cross_attention_dim is {want} but the image encoder gives {encoder.width}-"
                f"wide embeddings (model.image_encoder.projection_dim / weights.image_encoder); make "
                f"them equal"
            )
        return encoder

    def start_unet(self, params, stage: str):
        from diffusers import UNetSpatioTemporalConditionModel

        from svd.errors import InputError
        from svd.training.stages import require_dir

        public = self.pretrained(params, stage)
        if public is not None:
            try:
                unet = UNetSpatioTemporalConditionModel.from_pretrained(public, subfolder="unet")
            except Exception as exc:  # corrupt or missing weights
                raise InputError(
                    f"weights.{stage}_pipeline: cannot load the UNet of {public} "
                    f"({str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__})"
                ) from None
            if unet.config.in_channels != 2 * unet.config.out_channels:
                raise InputError(
                    f"weights.{stage}_pipeline: {public}/unet takes {unet.config.in_channels} input "
                    f"channels for {unet.config.out_channels} outputs: not an image-to-video UNet"
                )
            if getattr(params.train, stage).trainable == "temporal":
                freeze_spatial(unet)
            return unet, f"pretrained:{public}"
        folder, meta = self._parent_meta(params, stage)
        parent = self.parent(params, stage)
        if meta is None:
            raise InputError(
                f"no {parent} model at {folder}: run `svd train --stage {parent}` first (train.{stage}.parent)"
            )
        unet_dir = require_dir(folder / "unet", f"the {parent} UNet", f"run `svd train --stage {parent}` first")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(unet_dir)
        if meta["kind"] == KIND:
            init = f"continued:{unet_dir}"
        elif meta["kind"] == "text-to-video":
            unet, init = extend_for_images(unet), f"extended:{unet_dir}"
        else:
            raise InputError(
                f"train.{stage}.parent: {folder} holds a {meta['kind']} model; image-to-video starts "
                f"from a text-to-video or image-to-video model"
            )
        if getattr(params.train, stage).trainable == "temporal":
            freeze_spatial(unet)
        return unet, init

    def new_inputs(self, unet, init: str) -> list:
        """The columns extend_for_images added at zero, when this run added them (not when continuing an image-to-video
        model or finetuning the public one): conv_in's conditioning-latent channels and add_embedding's cond_aug id."""
        if not init.startswith("extended:"):
            return []
        cfg = unet.config
        return [
            (unet.conv_in.weight, 1, cfg.out_channels),
            (unet.add_embedding.linear_1.weight, 1, (NUM_IDS - 1) * cfg.addition_time_embed_dim),
        ]

    def training_set(self, windows, vae, context):
        data = encode_image_windows(windows, vae, context)
        return ImageItems(data), {
            "windows": int(data.latents.shape[0]),
            "conditioning_frames": int(data.cond_frames.shape[0]),
        }

    def make_step(self, params, stage: str, data, vae):
        cfg = getattr(params.train, stage)
        p_mean, p_std = params.diffusion.noise[cfg.noise]
        aug = params.diffusion.cond_aug
        dropout = cfg.cond_dropout or {"image": 0.0, "latent": 0.0, "both": 0.0}
        return make_step(
            DenoiserConfig(params.diffusion.sigma_data, p_mean, p_std),
            data.data,
            vae,
            cond_aug=(aug.log_sigma_mean, aug.log_sigma_std),
            dropout=dropout,
            static_weight=cfg.static_weight,
        )

    def sampling_defaults(self, params, stage: str) -> dict:
        """What svd_model.json records for `svd sample --image`: per-frame guidance, steps, cond_aug."""
        from svd.errors import ConfigError

        cfg = getattr(params.train, stage)
        if cfg.guidance not in params.diffusion.guidance:
            raise ConfigError(
                f"train.{stage}.guidance: {cfg.guidance!r} is not a preset of diffusion.guidance "
                f"({', '.join(params.diffusion.guidance)})"
            )
        return {
            "guidance": list(params.diffusion.guidance[cfg.guidance]),
            "sample_steps": cfg.sample_steps or params.sample.steps,
            "cond_aug": params.diffusion.cond_aug.inference_sigma,
        }

    def preview(self, params, stage: str, model: dict, data):
        """fn(unet) -> uint8 videos from 4 training conditioning frames spread over the set, and their labels."""
        cfg = getattr(params.train, stage)
        d = data.data
        rows = np.linspace(0, d.cond_frames.shape[0] - 1, 4).round().astype(int)
        images = d.cond_frames[rows]
        motion = float(np.median(d.motion_bucket.numpy()))
        defaults = self.sampling_defaults(params, stage)

        def fn(unet):
            return generate(
                unet,
                model["vae"],
                model["context"],
                images,
                num_frames=cfg.frames,
                steps=defaults["sample_steps"],
                guidance=tuple(defaults["guidance"]),
                seed=params.sample.seed,
                fps=cfg.fps,
                motion_bucket=motion,
                cond_aug=defaults["cond_aug"],
                sigma_data=params.diffusion.sigma_data,
            )

        return fn, [f"training frame {int(r)}" for r in rows]

    def save_context(self, out, context, params, stage: str) -> dict:
        """Bundle a small image tower into the folder (image_encoder/ + feature_extractor/, the public layout)."""

        from svd.models.image_encoder import SUBFOLDER, save_image_encoder

        size = sum(p.numel() * p.element_size() for p in context.parameters())
        if size <= BUNDLE_ENCODER_MAX_BYTES or not context.pretrained:
            save_image_encoder(context, Path(out))
            where = SUBFOLDER
        else:
            where = context.backend.split(":", 2)[2]
        return {
            "image_encoder": where,
            "image_encoder_backend": context.backend,
            "image_encoder_pretrained": context.pretrained,
            "image_encoder_seed": context.seed,
            **self.sampling_defaults(params, stage),
        }

    def save_weights(self, unet, out, params, stage: str) -> None:
        unet.save_pretrained(Path(out) / "unet", safe_serialization=True)

    def finish(self, params, stage: str, out) -> None:
        """A small model also carries its diffusers export (out/diffusers, StableVideoDiffusionPipeline), so the
        registered version loads in diffusers as it is; a paper-size one is exported on demand (`svd export`)."""

        from svd.export import export_model

        unet = Path(out) / "unet"
        if sum(f.stat().st_size for f in unet.rglob("*") if f.is_file()) < EXPORT_MAX_BYTES:
            export_model(params, out, Path(out) / "diffusers")

    def load_saved_context(self, folder, meta: dict) -> dict:

        from svd.models.image_encoder import SUBFOLDER, load_image_encoder

        where = meta["image_encoder"]
        source = str(Path(folder) / SUBFOLDER) if where == SUBFOLDER else where
        encoder = load_image_encoder(source)
        if not meta.get("image_encoder_pretrained", True):  # a bundled random tower is still a random one
            encoder.pretrained, encoder.seed = False, meta.get("image_encoder_seed")
            encoder.backend = meta["image_encoder_backend"]
        return {"image_encoder": encoder}


TASK = ImageToVideo()
