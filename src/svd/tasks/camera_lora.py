"""Camera-motion LoRAs (paper §4.3; REFERENCE.md "Finetunes in detail"): one adapter per camera motion, on a frozen
image-to-video model.

Stages lora_horizontal, lora_zoom and lora_static each train one peft LoRA (svd.models.lora: q, k, v and out of
both attentions of every temporal transformer block; rank and alpha in `train.<stage>.lora`) on the curated clips
whose annotated `camera_motion` is of its class (svd.data.clips.subset_camera), with the image-to-video task's
conditioning, loss and sampler unchanged: the base (`train.<stage>.parent`, an image-to-video model of the same size,
frames and fps) never moves.

The stage's folder holds the adapter alone (adapter.safetensors, with the base's sha256 in its metadata) and an
svd_model.json naming its base folder; `load_model` on it loads the base and puts the adapter on at scale 1, and
`svd sample --lora NAME[:SCALE]` puts several on one base. Judged by svd.evaluation.camera (the camera annotator on
samples from held-aside textured first frames, with and without the adapter).
"""

from __future__ import annotations

from pathlib import Path

from svd.tasks.image_to_video import KIND as IMAGE_TO_VIDEO
from svd.tasks.image_to_video import ImageToVideo

KIND = "camera-lora"
ADAPTER_FILE = "adapter.safetensors"
ADAPTER_NAMES = {"lora_horizontal": "horizontal", "lora_zoom": "zoom", "lora_static": "static"}


def adapter_name(stage: str) -> str:
    return ADAPTER_NAMES.get(stage, stage.removeprefix("lora_"))


class CameraLora(ImageToVideo):
    """Stages lora_horizontal, lora_zoom, lora_static."""

    kind = KIND
    evaluator = "svd.evaluation.camera:evaluate_adapter"

    def model_kind(self, stage: str) -> str:
        return KIND

    def registered_name(self, stage: str) -> str | None:
        return f"svd-lora-{adapter_name(stage)}"

    def pretrained(self, params, stage: str):
        return None  # an adapter trains on the pipeline's own image-to-video model (its parent)

    def _base(self, params, stage: str) -> tuple[Path, dict]:
        """The parent folder and its svd_model.json, checked: an image-to-video model of this stage's size, frames
        and fps."""
        from svd.errors import ConfigError, InputError

        folder, meta = self._parent_meta(params, stage)
        parent = self.parent(params, stage)
        if meta is None:
            raise InputError(
                f"no {parent} model at {folder}: run `svd train --stage {parent}` first (train.{stage}.parent)"
            )
        if meta["kind"] != IMAGE_TO_VIDEO:
            raise InputError(
                f"train.{stage}.parent: {folder} holds a {meta['kind']} model; a camera LoRA trains on an "
                f"image-to-video model"
            )
        cfg = getattr(params.train, stage)
        ours = {"size": list(cfg.size), "frames": cfg.frames, "fps": cfg.fps}
        theirs = {k: meta[k] for k in ours}
        if ours != theirs:
            raise ConfigError(
                f"train.{stage}: size / frames / fps {ours} differ from its base's {theirs} ({folder}); an adapter "
                f"trains at its base's"
            )
        return Path(folder), meta

    def vae_source(self, params, stage: str) -> str | None:
        folder, meta = self._base(params, stage)
        return str(folder / meta["vae"]) if meta["vae"] == "vae" else meta["vae"]

    def load_context(self, params, stage: str):
        """The base's own image tower (bundled in its folder or named by it)."""
        folder, meta = self._base(params, stage)
        return super().load_saved_context(folder, meta)["image_encoder"]

    def start_unet(self, params, stage: str):
        from diffusers import UNetSpatioTemporalConditionModel

        from svd.errors import ConfigError
        from svd.models.lora import adapter_parameters, add_adapter
        from svd.training.stages import require_dir

        cfg = getattr(params.train, stage)
        if cfg.lora is None:
            raise ConfigError(f"train.{stage}.lora: a camera LoRA stage needs its rank, alpha and camera classes")
        folder, _ = self._base(params, stage)
        unet_dir = require_dir(folder / "unet", "the base UNet", f"run `svd train --stage {cfg.parent}` first")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(unet_dir)
        add_adapter(unet, adapter_name(stage), cfg.lora.rank, cfg.lora.alpha)
        adapter_parameters(unet, adapter_name(stage))  # the adapter trains; the base is frozen
        return unet, f"lora:{unet_dir}"

    def new_inputs(self, unet, init: str) -> list:
        return []

    def save_weights(self, unet, out, params, stage: str) -> None:
        from svd.models.lora import base_digest, save_adapter

        cfg = getattr(params.train, stage)
        folder, meta = self._base(params, stage)
        save_adapter(
            Path(out) / ADAPTER_FILE,
            unet,
            adapter_name(stage),
            base_digest(unet),
            extra={"stage": stage, "camera": list(cfg.lora.camera), "base": str(folder), "base_stage": meta["stage"]},
        )

    def save_context(self, out, context, params, stage: str) -> dict:
        """The base's folder and digest (its VAE and image tower are the base's: nothing is copied), the adapter's
        file, name, rank and classes, and the base's sampling defaults."""
        from svd.models.lora import read_adapter

        cfg = getattr(params.train, stage)
        folder, meta = self._base(params, stage)
        _, adapter_meta = read_adapter(Path(out) / ADAPTER_FILE)
        return {
            "vae": meta["vae"] if meta["vae"] != "vae" else str(folder / "vae"),
            "base": str(folder),
            "base_sha256": adapter_meta["base_sha256"],
            "adapter": ADAPTER_FILE,
            "adapter_name": adapter_name(stage),
            "rank": cfg.lora.rank,
            "alpha": cfg.lora.alpha,
            "camera": list(cfg.lora.camera),
            **{k: meta[k] for k in ("guidance", "sample_steps", "cond_aug")},
        }

    def finish(self, params, stage: str, out) -> None:
        """Nothing to export: the base's diffusers export takes the adapter through peft (svd.export)."""

    def load_saved_context(self, folder, meta: dict) -> dict:
        from svd.training.stages import read_model

        base = Path(meta["base"])
        return super().load_saved_context(base, read_model(base))


TASK = CameraLora()
