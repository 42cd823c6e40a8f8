"""Multi-view (SVD-MV, paper §4.4): a model that turns one front view of an object into a 360-degree orbit around it.

- data: turntable orbits (`svd orbits`, paths.orbits: the world's training objects, or an Objaverse-style render
  folder read through the same reader), never the curated clips: `data_root` / `own_set` below. Each orbit is one
  training window of `world.eval.orbit_frames` views (paper: 21), view 0 the conditioning front view.
- conditioning: image-to-video's (the front view's CLIP embedding as context, its noise-augmented latent
  concatenated to every frame) plus the camera elevation in degrees as a fourth vector id. The UNet's vector
  condition is the concatenation of one sinusoidal embedding per id (diffusers' add_time_proj), so the elevation
  enters as the paper describes: sinusoidal features concatenated to the vector condition.
- fps and motion ids (our choice; SV3D drops them): kept, at fixed values (`train.mv.fps`, `train.mv.multiview.
  motion_bucket`), so the video prior's micro-conditioning weights are used as they were trained and every orbit
  sees the same ids; only the elevation varies.
- start (`train.mv.parent`, the initialisation ablation's three arms):
    an image-to-video stage (the video prior; paper: SVD-XT) -> add_embedding grows one id, its columns at zero;
    Stage I, text-to-image (the image prior; paper: SD2.1) -> inflated with new temporal layers (as Stage II),
      extended for images (as image-to-video) and grown by the elevation id;
    null (scratch) -> the same architecture at random init (seed: params.seed), grown the same way.
  The columns each start adds at zero are its `new_inputs` (train.mv.new_inputs_lr_scale).
- the image tower (frozen): weights.image_encoder when configured; else the bundled tower of
  `train.mv.multiview.encoder_from` (the pipeline's image-to-video model), the same for every arm, so the arms
  differ in the UNet's start only.
- judged by svd.evaluation.multiview_model (the GSO protocol on the world's held-out orbits, whose object kinds never
  appear in training, plus 3D-consistency checks).
- not exported to diffusers: StableVideoDiffusionPipeline builds exactly three vector ids.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from svd.errors import InputError
from svd.models.vae import encode
from svd.tasks.image_to_video import (
    KIND as IMAGE_TO_VIDEO,
)
from svd.tasks.image_to_video import (
    NUM_IDS,
    ImageItems,
    ImageToVideo,
    ImageWindows,
    extend_for_images,
    generate,
    grow_inputs,
)

KIND = "multi-view"
MV_IDS = NUM_IDS + 1  # fps_id, motion_bucket_id, cond_aug, elevation


# ---------------------------------------------------------------- data
def read_orbit_views(manifest: Path, size: tuple[int, int], views: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(orbits uint8 (N, V, H, W, 3) at `size`, elevations (N,) in degrees, object names) from an orbit manifest
    (columns object, frame, file, elevation; files relative to the manifest's folder or, as the world's eval orbits
    are, to the folder above it), frames in order."""
    import pandas as pd

    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"no orbit manifest at {manifest}: run `svd orbits` first")
    table = pd.read_parquet(manifest)
    missing = {"object", "frame", "file", "elevation"} - set(table.columns)
    if missing:
        raise InputError(f"{manifest}: not an orbit manifest (no column {', '.join(sorted(missing))})")
    h, w = size
    orbits, elevations, names = [], [], []
    for name, rows in table.sort_values(["object", "frame"]).groupby("object", sort=True):
        if len(rows) != views:
            raise InputError(f"{manifest}: orbit {name} has {len(rows)} views, training takes {views}")
        frames = []
        for rel in rows["file"]:
            path = next((b / rel for b in (manifest.parent, manifest.parent.parent) if (b / rel).is_file()), None)
            image = None if path is None else cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"orbit {name}: view {rel} missing or unreadable (next to {manifest})")
            if image.shape[:2] != (h, w):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        orbits.append(np.stack(frames))
        elevations.append(float(rows["elevation"].iloc[0]))
        names.append(str(name))
    if not orbits:
        raise InputError(f"{manifest}: no orbits")
    return np.stack(orbits), np.asarray(elevations, np.float32), names


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return x.movedim(-1, -3)


@torch.no_grad()
def encode_orbits(
    orbits: np.ndarray, elevations: np.ndarray, names: list[str], vae, image_encoder, *, fps: float, motion: float
) -> ImageWindows:
    """Each orbit one window: its latents (V views), its front view as the conditioning frame, its elevation id."""
    n = len(orbits)
    pixels = to_unit(orbits)  # (N, V, 3, H, W)
    latents = encode(vae, pixels, chunk=64).float()
    fronts = pixels[:, 0].contiguous()
    return ImageWindows(
        latents=latents,
        cond_frames=fronts,
        embeds=image_encoder.encode(fronts).float(),
        cond_index=torch.arange(n),
        fps_id=torch.full((n,), fps - 1.0),
        motion_bucket=torch.full((n,), float(motion)),
        clip_ids=list(names),
        extra_ids=torch.as_tensor(elevations, dtype=torch.float32).reshape(n, 1),
    )


@torch.no_grad()
def generate_orbits(
    model: dict,
    fronts: torch.Tensor,
    elevations,
    *,
    views: int,
    fps: float,
    motion_bucket: float,
    steps: int,
    guidance: tuple[float, float],
    cond_aug: float,
    seed: int,
    sigma_data: float = 1.0,
    batch: int = 8,
) -> np.ndarray:
    """Orbits (N, V, H, W, 3) uint8 from front views (N, 3, H, W) in [-1, 1] at their elevations (degrees)."""
    elevations = torch.as_tensor(np.asarray(elevations, np.float32)).reshape(-1, 1)
    if elevations.shape[0] != fronts.shape[0]:
        raise ValueError(f"{elevations.shape[0]} elevations for {fronts.shape[0]} front views")
    return generate(
        model["unet"],
        model["vae"],
        model["image_encoder"],
        fronts,
        num_frames=views,
        steps=steps,
        guidance=guidance,
        seed=seed,
        fps=fps,
        motion_bucket=motion_bucket,
        cond_aug=cond_aug,
        sigma_data=sigma_data,
        batch=batch,
        extra_ids=elevations,
    )


# ---------------------------------------------------------------- the UNet
def grow_elevation(unet):
    """The UNet with one more vector id (the elevation), its add_embedding columns at zero."""
    cfg = unet.config
    ids = cfg.projection_class_embeddings_input_dim // cfg.addition_time_embed_dim
    if ids != NUM_IDS:
        raise ValueError(f"the UNet takes {ids} vector ids; an image-to-video UNet takes {NUM_IDS}")
    return grow_inputs(unet, cfg.in_channels, MV_IDS)


def num_ids(unet) -> int:
    return unet.config.projection_class_embeddings_input_dim // unet.config.addition_time_embed_dim


# ---------------------------------------------------------------- the task, as svd.training.stages drives it
class MultiView(ImageToVideo):
    """Stage mv (SVD-MV) and the initialisation ablation's arms (train.mv.parent: i2v_xt, image or null)."""

    kind = KIND
    evaluator = "svd.evaluation.multiview_model:evaluate_model"
    prober = "svd.evaluation.multiview_model:OrbitProbe"  # held-out orbit metrics every train.probe_every steps

    def model_kind(self, stage: str) -> str:
        return KIND

    def registered_name(self, stage: str) -> str | None:
        return "svd-mv"

    def parent(self, params, stage: str) -> str | None:
        parent = getattr(params.train, stage).parent
        if parent == stage:
            from svd.errors import ConfigError

            raise ConfigError(f"train.{stage}.parent: a stage cannot be its own parent")
        return parent or None

    def _settings(self, params, stage: str):
        from svd.errors import ConfigError

        cfg = getattr(params.train, stage)
        if cfg.multiview is None:
            raise ConfigError(f"train.{stage}.multiview: the multi-view block (motion_bucket, encoder_from) is missing")
        views = params.world.eval.orbit_frames
        if cfg.frames != views:
            raise ConfigError(
                f"train.{stage}.frames is {cfg.frames} but orbits have world.eval.orbit_frames = {views} views; "
                f"training and evaluation share the view count: make them equal"
            )
        return cfg, cfg.multiview

    def pretrained(self, params, stage: str):
        return None  # no public SVD-MV weights exist; the public SVD-XT enters as train.mv.parent's model

    def vae_source(self, params, stage: str) -> str | None:
        return None

    def data_root(self, params, stage: str) -> Path:
        return Path(params.paths.orbits) / "orbits.parquet"

    def own_set(self, params, stage: str, vae, context):
        cfg, mv = self._settings(params, stage)
        orbits, elevations, names = read_orbit_views(self.data_root(params, stage), tuple(cfg.size), cfg.frames)
        data = encode_orbits(orbits, elevations, names, vae, context, fps=cfg.fps, motion=mv.motion_bucket)
        return ImageItems(data), {
            "orbits": len(names),
            "views": int(cfg.frames),
            "elevation_range": [float(elevations.min()), float(elevations.max())],
        }

    def load_context(self, params, stage: str):
        """weights.image_encoder when configured, else the bundled tower of train.<stage>.multiview.encoder_from
        (every arm the same), else a random tower (no image-to-video model to share one with)."""
        from svd.models.image_encoder import load_image_encoder
        from svd.training.stages import MODEL_FILE, read_model, stage_dir

        _, mv = self._settings(params, stage)
        if params.weights.image_encoder is None and mv.encoder_from:
            folder = stage_dir(params, mv.encoder_from)
            if (folder / MODEL_FILE).is_file():
                meta = read_model(folder)
                if meta["kind"] in (IMAGE_TO_VIDEO, KIND):
                    return self.load_saved_context(folder, meta)["image_encoder"]
        return load_image_encoder(
            params.weights.image_encoder, params.model.image_encoder.model_dump(), seed=params.seed
        )

    def start_unet(self, params, stage: str):
        from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

        from svd.models.inflate import inflate_image_unet
        from svd.models.unet import video_unet_config
        from svd.training.stages import MODEL_FILE, read_model, require_dir, stage_dir

        cfg, _ = self._settings(params, stage)
        parent = self.parent(params, stage)
        video_cfg = video_unet_config(params.model.unet.model_dump())
        if parent is None:  # scratch: the video prior's architecture, every weight random
            torch.manual_seed(params.seed)
            unet = UNetSpatioTemporalConditionModel(**video_cfg)
            unet, init = grow_elevation(extend_for_images(unet)), "random"
        else:
            folder = stage_dir(params, parent)
            if not (folder / MODEL_FILE).is_file():
                raise InputError(f"no {parent} model at {folder}: run `svd train --stage {parent}` first")
            kind = read_model(folder)["kind"]
            unet_dir = require_dir(folder / "unet", f"the {parent} UNet", f"run `svd train --stage {parent}` first")
            if kind == KIND:
                unet, init = UNetSpatioTemporalConditionModel.from_pretrained(unet_dir), f"continued:{unet_dir}"
            elif kind == IMAGE_TO_VIDEO:
                unet = UNetSpatioTemporalConditionModel.from_pretrained(unet_dir)
                unet, init = grow_elevation(unet), f"video-prior:{unet_dir}"
            elif kind == "text-to-image":
                image = UNet2DConditionModel.from_pretrained(unet_dir)
                unet = inflate_image_unet(image, video_cfg, seed=params.seed)
                unet, init = grow_elevation(extend_for_images(unet)), f"image-prior:{unet_dir}"
            else:
                raise InputError(
                    f"train.{stage}.parent: {folder} holds a {kind} model; multi-view starts from an image-to-video "
                    f"model (the video prior), Stage I (the image prior) or null (random)"
                )
        if num_ids(unet) != MV_IDS:
            raise InputError(f"the {parent} UNet takes {num_ids(unet)} vector ids, multi-view {MV_IDS}")
        if cfg.trainable == "temporal":
            from svd.tasks.image_to_video import freeze_spatial

            freeze_spatial(unet)
        return unet, init

    def new_inputs(self, unet, init: str) -> list:
        """The columns this start added at zero: the elevation id's (every start but a continued one), and where the
        parent was no image-to-video model, the conditioning latent's channels and the cond_aug id's too."""
        cfg = unet.config
        per_id = cfg.addition_time_embed_dim
        if init.startswith("continued:"):
            return []
        if init.startswith("video-prior:"):
            return [(unet.add_embedding.linear_1.weight, 1, NUM_IDS * per_id)]
        added = [
            (unet.conv_in.weight, 1, cfg.out_channels),
            (unet.add_embedding.linear_1.weight, 1, (NUM_IDS - 1) * per_id),
        ]
        if init.startswith("image-prior:"):  # as Stage II: inflation zeroes the vector condition's last layer
            layer = unet.add_embedding.linear_2
            added += [(p, 0, 0) for p in (layer.weight, layer.bias) if not p.detach().any()]
        return added

    def training_set(self, windows, vae, context):
        raise NotImplementedError("multi-view trains on orbits (own_set), not on curated windows")

    def preview(self, params, stage: str, model: dict, data):
        """fn(unet) -> orbits generated from 2 training front views at their elevations."""
        cfg, mv = self._settings(params, stage)
        d = data.data
        rows = np.linspace(0, d.cond_frames.shape[0] - 1, 2).round().astype(int)
        defaults = self.sampling_defaults(params, stage)

        def fn(unet):
            return generate_orbits(
                {"unet": unet, "vae": model["vae"], "image_encoder": model["context"]},
                d.cond_frames[rows], d.extra_ids[rows, 0].numpy(), views=cfg.frames, fps=cfg.fps,
                motion_bucket=mv.motion_bucket, steps=defaults["sample_steps"], guidance=tuple(defaults["guidance"]),
                cond_aug=defaults["cond_aug"], seed=params.sample.seed, sigma_data=params.diffusion.sigma_data,
            )  # fmt: skip

        return fn, [f"{d.clip_ids[r]} (elevation {float(d.extra_ids[r, 0]):.0f})" for r in rows]

    def save_context(self, out, context, params, stage: str) -> dict:
        """The image-to-video record plus what sampling an orbit needs: views, fps and motion ids, the elevation
        range its orbits span (a sample outside it is warned about)."""
        import pandas as pd

        cfg, mv = self._settings(params, stage)
        elevations = pd.read_parquet(self.data_root(params, stage), columns=["elevation"])["elevation"]
        lo, hi = float(elevations.min()), float(elevations.max())
        return {
            **super().save_context(out, context, params, stage),
            "views": int(cfg.frames),
            "fps": float(cfg.fps),
            "motion_bucket": float(mv.motion_bucket),
            "elevation_range": [float(lo), float(hi)],
        }

    def finish(self, params, stage: str, out) -> None:
        """No diffusers export: StableVideoDiffusionPipeline builds three vector ids, this UNet takes four."""


TASK = MultiView()
