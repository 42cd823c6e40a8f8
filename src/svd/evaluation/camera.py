"""Does a camera-motion LoRA move the camera? (issue 22; run after each LoRA stage, called from above training.)

Held-aside first frames: `evaluate.camera_lora.frames` scenes the world's own code renders (one or two still shapes
over a checker or value-noise texture with contrast, as the world films moving cameras over; a plain background
shows no camera motion), from a seeded stream that no training video draws, at the model's size.

Each frame is sampled twice with the same start noise: with the base image-to-video model alone and with the adapter
at scale 1 (the adapter is switched off and on, the base is loaded once), both at the adapter's sampling defaults
(motion bucket: the median of its training clips). Curation's camera annotator (svd.curation.camera.label_video,
curate.camera) labels every sample. Reported, with bootstrap intervals over the frames:
- `adapter_share`: the share of the adapter's samples whose label is one of its classes (the goal: >= `goal`);
- `base_share`: the same share for the base alone, and the paired difference;
- the label distribution of both arms.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from svd.config import Params
from svd.errors import InputError

FRAME_STREAM = 1022  # the held-aside frames' seed stream: apart from the world's video streams (0-3)
RENDER_HEIGHT = 200  # frames are rendered at RENDER_HEIGHT x the model's aspect, then downsized


def held_aside_frames(n: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, list[str]]:
    """(n, H, W, 3) uint8 first frames at `size` (H, W), and a description of each."""
    import cv2

    from svd.world.render import ShotRenderer
    from svd.world.scene import COLOURS, SHAPES, ShotSpec, sample_background, sample_objects_and_camera

    h, w = size
    rh, rw = RENDER_HEIGHT, int(round(RENDER_HEIGHT * w / h))
    rng = np.random.default_rng([seed, FRAME_STREAM])
    frames, labels = [], []
    for _ in range(n):
        n_obj = 1 + int(rng.random() < 0.5)
        colours = [str(c) for c in rng.choice(list(COLOURS), size=n_obj, replace=False)]
        shapes = [str(SHAPES[rng.integers(len(SHAPES))]) for _ in range(n_obj)]
        background = sample_background(rng, colours, textured=True)
        objects, camera = sample_objects_and_camera(
            rng, rw, rh, 8.0, 2, 0, 0, colours, shapes, ["still"] * n_obj, "static"
        )
        spec = ShotSpec(
            width=rw, height=rh, fps=8.0, n_frames=2, pre=0, post=0, background=background,
            objects=objects, camera=camera, static=True, seed=int(rng.integers(2**31)),
        )  # fmt: skip
        frame = ShotRenderer(spec).frame(0)
        frames.append(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA))
        what = " and ".join(f"a {o.colour} {o.shape}" for o in objects)
        labels.append(f"{what} over a {background.kind} of {' and '.join(background.colours)}")
    return np.stack(frames), labels


def label_samples(params: Params, videos: np.ndarray, fps: float) -> list[str]:
    from svd.curation.camera import label_video

    return [label_video(list(v), fps, params.curate.motion, params.curate.camera).label for v in videos]


def evaluate_adapter(params: Params, folder: Path, *, model: dict | None = None) -> dict[str, Any]:
    """The module docstring's check of the camera LoRA in `folder`; samples (both arms) go to folder/samples/."""
    from svd.evaluation.image_to_video import to_unit
    from svd.evaluation.intervals import mean_interval, paired_mean_difference
    from svd.models.lora import set_scales
    from svd.tasks.image_to_video import generate
    from svd.training.stages import load_model, write_samples

    started = time.perf_counter()
    folder = Path(folder)
    model = model or load_model(folder)
    meta = model["meta"]
    if meta["kind"] != "camera-lora":
        raise InputError(f"{folder} holds a {meta['kind']} model; this evaluation is for camera LoRAs")
    ecfg = params.evaluate.camera_lora
    sampler = params.diffusion.sampler
    images, descriptions = held_aside_frames(ecfg.frames, tuple(meta["size"]), ecfg.seed)
    name, classes = meta["adapter_name"], list(meta["camera"])

    def sample(scales: dict[str, float]) -> np.ndarray:
        set_scales(model["unet"], scales)
        return generate(
            model["unet"],
            model["vae"],
            model["image_encoder"],
            to_unit(images),
            num_frames=int(meta["frames"]),
            steps=int(meta["sample_steps"]),
            guidance=tuple(meta["guidance"]),
            seed=ecfg.seed,
            fps=float(meta["fps"]),
            motion_bucket=float(meta["motion_bucket"]),
            cond_aug=float(meta["cond_aug"]),
            sigma_min=sampler.sigma_min,
            sigma_max=sampler.sigma_max,
            rho=sampler.rho,
            method=sampler.method,
            sigma_data=params.diffusion.sigma_data,
        )

    arms = {"adapter": sample({name: 1.0}), "base": sample({})}
    set_scales(model["unet"], {name: 1.0})
    labels = {arm: label_samples(params, videos, float(meta["fps"])) for arm, videos in arms.items()}
    hits = {arm: np.array([lab in classes for lab in labels[arm]], dtype=np.float64) for arm in arms}
    rounds, conf = ecfg.bootstrap, ecfg.confidence
    adapter_share = mean_interval(hits["adapter"], rounds=rounds, seed=ecfg.seed, confidence=conf)
    out: dict[str, Any] = {
        "adapter": name,
        "classes": classes,
        "frames": len(images),
        "motion_bucket": float(meta["motion_bucket"]),
        "adapter_share": adapter_share,
        "base_share": mean_interval(hits["base"], rounds=rounds, seed=ecfg.seed, confidence=conf),
        "difference": paired_mean_difference(hits["adapter"], hits["base"], rounds=rounds, seed=ecfg.seed),
        "adapter_labels": dict(Counter(labels["adapter"])),
        "base_labels": dict(Counter(labels["base"])),
        "goal": ecfg.goal,
        "met": float(adapter_share["mean"] >= ecfg.goal),
    }
    samples = folder / "samples"
    for arm, videos in arms.items():
        tags = [f"{arm} {lab} - {d}" for lab, d in zip(labels[arm], descriptions)]
        write_samples(samples / arm, videos[:8], tags[:8], float(meta["fps"]))
    out["seconds"] = time.perf_counter() - started
    return out


__all__ = ["evaluate_adapter", "held_aside_frames", "label_samples"]
