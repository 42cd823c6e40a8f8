"""Does a text-to-video model use the words of its captions? The denoising loss with a word swapped.

Sampling and judging (svd.evaluation.world) says whether a model follows prompts; this says why not, and long
before samples can: on training windows whose caption names one object (no "and", no camera move), the EDM denoising
loss at fixed sigmas is measured with the true caption, with its direction word swapped (left/right, up/down, as
the reversal flip does), with its colour word swapped for another of the world's colours, and with no caption. A
model that uses a word pays for the wrong one: its loss rises. A gap near zero at every sigma means the word is
ignored, whatever the text encoder makes of it.

Measured on the tiny profile (README, "Training stages"): swapping the colour word doubles Stage II's loss at
sigma 5, swapping the direction word changes it by less than 0.5%.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from svd.errors import InputError

SIGMAS = (0.5, 1.0, 2.0, 5.0, 10.0)
STEER_SIGMAS = (1.5, 3.0, 6.0)  # start sigmas of `steering` (ours: object plain / faint / buried at 8x12)
_SINGLE = re.compile(r"\b(and|camera)\b")


def swap_colour(caption: str, colours: Sequence[str]) -> str:
    """Every colour word replaced by the next colour of `colours` (cyclic), so the caption names a wrong colour."""
    nxt = {c: colours[(i + 1) % len(colours)] for i, c in enumerate(colours)}
    return re.sub(r"[A-Za-z]+", lambda m: nxt.get(m.group(0), m.group(0)), caption)


def single_object(caption: str) -> bool:
    """One object and a static camera: the caption's colour and direction words belong to the one thing on screen."""
    return bool(caption) and not _SINGLE.search(caption)


@torch.no_grad()
def word_gaps(
    model_fn: Callable,
    encode: Callable[[list[str]], torch.Tensor],
    latents: torch.Tensor,
    captions: Sequence[str],
    *,
    colours: Sequence[str],
    sigmas: Sequence[float] = SIGMAS,
    seed: int = 0,
    **cond,
) -> dict:
    """Unweighted denoising MSE per sigma for the true captions and three variants (same noise for all), and each
    variant's relative gap (loss / true loss - 1)."""
    from svd.diffusion.edm import denoise
    from svd.training.latents import flip_caption

    if len(captions) != latents.shape[0] or not len(captions):
        raise ValueError(f"need one caption per window, got {len(captions)} for {latents.shape[0]} windows")
    variants = {
        "true": list(captions),
        "direction_swapped": [flip_caption(c, "reverse") for c in captions],
        "colour_swapped": [swap_colour(c, colours) for c in captions],
        "empty": [""] * len(captions),
    }
    contexts = {name: encode(caps).float() for name, caps in variants.items()}
    generator = torch.Generator().manual_seed(seed)
    loss: dict[str, list[float]] = {name: [] for name in variants}
    for s in sigmas:
        noise = torch.randn(latents.shape, generator=generator)
        sigma = torch.full((latents.shape[0],), float(s))
        noisy = latents + float(s) * noise
        for name, context in contexts.items():
            d = denoise(model_fn, noisy, sigma, sigma_data=1.0, context=context, **cond)
            loss[name].append(float(((d.float() - latents.float()) ** 2).mean()))
    gaps = {
        name: [v / t - 1.0 for v, t in zip(values, loss["true"])] for name, values in loss.items() if name != "true"
    }
    return {"sigmas": [float(s) for s in sigmas], "loss": loss, "relative_gap": gaps}


@torch.no_grad()
def steering(
    model_fn: Callable,
    encode: Callable[[list[str]], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    captions: Sequence[str],
    *,
    fps: float,
    start_sigmas: Sequence[float] = STEER_SIGMAS,
    steps: int = 25,
    guidance: float = 7.0,
    seed: int = 0,
    **cond,
) -> dict:
    """Partial sampling from noised training windows (SDEdit): does the model keep the window's motion, and does a
    swapped direction word turn it?

    Each window (one object moving, its caption naming the direction) is noised to `start_sigma` (same noise for both
    captions) and sampled back to 0 with guidance, once with its caption and once with the direction word swapped;
    the decoded videos are judged by the world evaluator. `keeps_direction`: share whose motion is the window's own
    direction; `turned`: share that moves the swapped caption's way. A model that follows its captions keeps the
    direction with the true caption and turns with the swapped one, more the higher the start sigma; one that ignores
    the word scores the same with both. `ceiling`: the clean windows, decoded, judged the same way.
    decode: latents (N, T, C, h, w) -> pixels (N, T, 3, H, W) in [-1, 1].
    """
    from svd.diffusion.sampling import karras_sigmas, sample
    from svd.evaluation.world import judge
    from svd.training.latents import flip_caption

    if len(captions) != latents.shape[0] or not len(captions):
        raise ValueError(f"need one caption per window, got {len(captions)} for {latents.shape[0]} windows")
    swapped = [flip_caption(c, "reverse") for c in captions]
    contexts = {"true": encode(list(captions)).float(), "swapped": encode(swapped).float()}
    uncond = {"context": encode([""] * len(captions)).float(), **cond}

    def judged(z: torch.Tensor, against: Sequence[str]) -> float:
        pixels = ((decode(z).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
        return float(sum(judge(v, c, fps)["direction_correct"] for v, c in zip(pixels, against)) / len(against))

    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    result = {
        "start_sigmas": [float(s) for s in start_sigmas],
        "ceiling": judged(latents, captions),
        "keeps_direction": {"true": [], "swapped": []},
        "turned": [],
    }
    for s0 in start_sigmas:
        sigmas = karras_sigmas(steps, 0.002, float(s0), 7.0)
        start = (latents + float(s0) * noise) / (float(s0) ** 2 + 1.0) ** 0.5  # sample() scales by sqrt(s0^2 + 1)
        for name, context in contexts.items():
            z = sample(model_fn, latents.shape, sigmas, {"context": context, **cond}, uncond, guidance, noise=start)
            result["keeps_direction"][name].append(judged(z, captions))
            if name == "swapped":
                result["turned"].append(judged(z, swapped))
    return result


def caption_sensitivity(
    params,
    folder: Path | str,
    *,
    windows: int = 48,
    sigmas: Sequence[float] = SIGMAS,
    seed: int = 0,
    steer: bool = True,
) -> dict:
    """`word_gaps` of the video model in `folder` on up to `windows` single-object windows of the curated set its
    stage trains on (one window per clip, at the model's frames, fps and size), and (`steer`) `steering` on those
    whose object moves."""
    from svd.training.denoiser import is_video_unet, unet_call
    from svd.training.stages import load_model, stage_clips
    from svd.world.scene import COLOURS

    loaded = load_model(folder)
    meta, unet = loaded["meta"], loaded["unet"]
    if not is_video_unet(unet):
        raise InputError(
            f"{folder} holds a {meta.get('kind', 'image')} model; caption sensitivity needs a video "
            "model (direction is a property of motion)"
        )
    probe = single_object_windows(
        stage_clips(params, meta["stage"]),
        loaded["vae"],
        loaded["text"],
        windows=windows,
        seed=seed,
        num_frames=meta["frames"],
        fps=meta["fps"],
        size=tuple(meta["size"]),
        motion_score_at_255=params.diffusion.motion_bucket.score_at_255,
    )
    result = word_gaps(
        unet_call(unet),
        loaded["text"].encode,
        probe["latents"],
        probe["captions"],
        colours=list(COLOURS),
        sigmas=sigmas,
        seed=seed,
        added_time_ids=probe["added_time_ids"],
    )
    captions = probe["captions"]
    report = {"model": str(folder), "stage": meta["stage"], "windows": len(captions), **result}
    if steer:
        from svd.models.vae import decode

        moving = torch.tensor([i for i, c in enumerate(captions) if "still" not in c])
        if len(moving):
            report["steering"] = {
                "windows": len(moving),
                **steering(
                    unet_call(unet),
                    loaded["text"].encode,
                    lambda z: decode(loaded["vae"], z),
                    probe["latents"][moving],
                    [captions[i] for i in moving.tolist()],
                    fps=meta["fps"],
                    seed=seed,
                    added_time_ids=probe["added_time_ids"][moving],
                ),
            }
    return report


def single_object_windows(clips, vae, text, *, windows: int, seed: int, **window_args) -> dict:
    """Up to `windows` windows (one per clip, unflipped) whose caption names one object under a still camera,
    encoded: {"latents", "captions", "added_time_ids"}. window_args: read_windows' num_frames, fps, size,
    motion_score_at_255 (a stage's own, so a probe measures on what the stage trains on)."""
    from svd.tasks.text_to_video import time_ids
    from svd.training.latents import encode_windows, read_windows

    found = read_windows(clips, windows_per_clip=1, augment=(), seed=seed, **window_args)
    keep = [i for i, c in enumerate(found.captions) if single_object(c)][:windows]
    if not keep:
        raise InputError("no curated clip has a single-object, static-camera caption to measure with")
    data = encode_windows(found, vae, text)
    index = torch.tensor(keep)
    return {
        "latents": data.latents[index],
        "captions": [found.captions[i] for i in keep],
        "added_time_ids": time_ids(data.fps_id[index], data.motion_bucket[index]),
    }


class WordGapProbe:
    """`word_gaps` of a model in training, for `svd train`'s on_probe hook (training never imports evaluation):
    the relative loss gap of the swapped direction and colour words at `sigmas`, as flat metrics
    (probe.direction_gap.s2, ...). Its windows are read and encoded on the first call, with the stage's own
    frozen VAE and text encoder, and reused; the noise is seeded, so the points of one run compare."""

    def __init__(self, windows: int, sigmas: Sequence[float] = (1.0, 2.0, 5.0, 10.0), seed: int = 0):
        self.windows, self.sigmas, self.seed = windows, tuple(sigmas), seed
        self._probe: dict | None = None

    def __call__(self, model, step: int, tools: dict) -> dict[str, float]:
        from svd.training.denoiser import unet_call
        from svd.world.scene import COLOURS

        if self._probe is None:
            args = {k: v for k, v in tools["window_args"].items() if k not in ("windows_per_clip", "augment", "seed")}
            self._probe = single_object_windows(
                tools["clips"], tools["vae"], tools["context"], windows=self.windows, seed=self.seed, **args
            )
        p = self._probe
        device = next(model.parameters()).device
        gaps = word_gaps(
            unet_call(model),
            lambda caps: tools["context"].encode(caps).to(device),
            p["latents"].to(device),
            p["captions"],
            colours=list(COLOURS),
            sigmas=self.sigmas,
            seed=self.seed,
            added_time_ids=p["added_time_ids"].to(device),
        )["relative_gap"]
        out = {}
        for word, key in (("direction", "direction_swapped"), ("colour", "colour_swapped")):
            for s, g in zip(self.sigmas, gaps[key]):
                out[f"probe.{word}_gap.s{s:g}"] = float(g)
        return out


__all__ = [
    "SIGMAS",
    "STEER_SIGMAS",
    "WordGapProbe",
    "caption_sensitivity",
    "single_object",
    "single_object_windows",
    "steering",
    "swap_colour",
    "word_gaps",
]
