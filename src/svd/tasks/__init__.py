"""One module per kind of model: what it conditions on, what it trains on, how its UNet is made and how it is judged.

Text-to-video, image-to-video, camera-motion LoRAs, interpolation and multi-view share one UNet family, one EDM
(svd.diffusion), one sampler (svd.training.denoiser.sample_decoded) and one training loop (svd.training.loop). A task
module says, in one place:
- its context (text tokens; a CLIP image embedding), concatenated latents and vector ids, in its `make_step` (the
  loop's step function) and `generate` (its sampler front end);
- which windows of the curated data it trains on (`training_set`, from the windows svd.training.latents reads, or
  `streaming_set`, encoding each batch of a svd.training.stream as it is taken);
- how its UNet is made from its parent (`start_unet`) and which frozen encoder gives its context (`load_context`,
  saved into and loaded from a model folder by `save_context` / `load_saved_context`);
- which evaluator judges it (`evaluator`, a "module:function" name the CLI calls after training: training never
  imports evaluation).
`svd.training.stages` drives any task through the `Task` interface below; a new task is a new module plus its
params and its stage names in `STAGE_TASKS`. A task whose data is not the curated clips (multi-view: turntable orbits)
also has `data_root(params, stage) -> Path` (the manifest its lineage hashes) and `own_set(params, stage, vae,
context) -> (items, info)` in place of `training_set`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from svd.config import Params


class Task(Protocol):
    kind: str  # svd_model.json "kind"; also how a folder finds its task again
    evaluator: str  # "module:function(params, folder) -> dict", called from above training
    streams: bool  # has `streaming_set` (train.stream.enabled)

    def model_kind(self, stage: str) -> str: ...

    def registered_name(self, stage: str) -> str | None: ...

    def parent(self, params: Params, stage: str) -> str | None: ...

    def vae_source(self, params: Params, stage: str) -> str | None: ...

    def load_context(self, params: Params, stage: str) -> Any: ...

    def start_unet(self, params: Params, stage: str) -> tuple[Any, str]: ...

    def new_inputs(self, unet, init: str) -> list[tuple[Any, int, int]]: ...  # (parameter, dim, start) added at zero

    def training_set(self, windows, vae, context) -> tuple[Any, dict[str, Any]]: ...

    def streaming_set(self, stream, vae, context) -> tuple[Any, dict[str, Any]]: ...  # where streams

    def make_step(self, params: Params, stage: str, data, vae) -> Callable: ...

    def preview(self, params: Params, stage: str, model: dict[str, Any], data) -> tuple[Any, list[str]]: ...

    def save_context(self, out, context, params: Params, stage: str) -> dict[str, Any]: ...

    def save_weights(self, unet, out, params: Params, stage: str) -> None: ...  # out/unet, or an adapter file

    def finish(self, params: Params, stage: str, out) -> None: ...

    def load_saved_context(self, folder, meta: dict[str, Any]) -> dict[str, Any]: ...


# stage name -> task module (the pipeline's stages; the VAE is not a diffusion task)
STAGE_TASKS = {
    "image": "text_to_video",
    "video": "text_to_video",
    "hq": "text_to_video",
    "i2v": "image_to_video",
    "i2v_xt": "image_to_video",
    "lora_horizontal": "camera_lora",
    "lora_zoom": "camera_lora",
    "lora_static": "camera_lora",
    "interp": "interpolation",
    "mv": "multiview",
}
KIND_TASKS = {
    "text-to-image": "text_to_video",
    "text-to-video": "text_to_video",
    "image-to-video": "image_to_video",
    "camera-lora": "camera_lora",
    "interpolation": "interpolation",
    "multi-view": "multiview",
}


def _task(module: str) -> Task:
    import importlib

    return importlib.import_module(f"svd.tasks.{module}").TASK


def for_stage(stage: str) -> Task:
    if stage not in STAGE_TASKS:
        raise ValueError(f"no task trains stage {stage!r}; known: {', '.join(STAGE_TASKS)}")
    return _task(STAGE_TASKS[stage])


def for_kind(kind: str) -> Task:
    if kind not in KIND_TASKS:
        raise ValueError(f"no task for model kind {kind!r}; known: {', '.join(KIND_TASKS)}")
    return _task(KIND_TASKS[kind])


__all__ = ["KIND_TASKS", "STAGE_TASKS", "Task", "for_kind", "for_stage"]
