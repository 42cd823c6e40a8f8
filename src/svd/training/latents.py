"""Training sets of latents: clip windows (or frames) read once, augmented, encoded once by the frozen VAE.

The VAE and text encoder are frozen in Stages I-III, so encoding on every step would repeat the same work: each
stage reads its windows from the curated clips once (`windows_per_clip` evenly spaced T-frame windows per clip at the
stage's fps, one decode per clip), encodes them to scaled latent means, and embeds every distinct caption once. The
set then serves `LatentItems` to the training loop at the cost of an index.

Caption-aware flips (`augment`, ours; off in the a100 profile): a horizontal flip swaps the words left/right, a
vertical flip up/down, playing a window backwards swaps left/right, up/down and zooms in/out. Each flip is applied as
an extra copy of every window, so directions become balanced per colour and shape. They are only right where
captions name on-screen directions and nothing in the data has a preferred orientation (true of the shapes world,
false of real footage: gravity and text have one).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from svd.data.clips import CuratedSet, VideoClipDataset, _to_tensor
from svd.diffusion.conditioning import motion_bucket
from svd.errors import InputError
from svd.models.vae import encode

FLIPS = ("hflip", "vflip", "reverse")
_SWAPS = {
    "hflip": {"left": "right", "right": "left"},
    "vflip": {"up": "down", "down": "up"},
    "reverse": {"left": "right", "right": "left", "up": "down", "down": "up", "in": "out", "out": "in"},
}
_WORD = re.compile(r"[A-Za-z]+")


def flip_caption(caption: str, flip: str) -> str:
    """The caption of a window after `flip` (one of FLIPS): direction words swapped, everything else kept."""
    swaps = _SWAPS[flip]

    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = swaps.get(word.lower())
        if new is None:
            return word
        return new.capitalize() if word[0].isupper() else new

    return _WORD.sub(swap, caption)


def flip_video(video: torch.Tensor, flip: str) -> torch.Tensor:
    """(T, C, H, W) -> the flipped window."""
    dim = {"hflip": -1, "vflip": -2, "reverse": 0}[flip]
    return video.flip(dim)


def flip_combinations(enabled: Sequence[str]) -> list[tuple[str, ...]]:
    """Every subset of the enabled flips (the identity first): 2**len(enabled) copies of each window."""
    bad = [f for f in enabled if f not in FLIPS]
    if bad:
        raise ValueError(f"unknown flips {bad}; known: {FLIPS}")
    enabled = list(dict.fromkeys(enabled))
    return [c for r in range(len(enabled) + 1) for c in itertools.combinations(enabled, r)]


SPATIAL = ("hflip", "vflip")


@dataclass
class Windows:
    """Pixel windows before encoding, stored as a bank of distinct frames (F, 3, H, W) in [-1, 1] and one row of
    frame indices per window, `index` (N, T): windows of a clip share frames, and a reversed window is its reversed
    row, so each frame is encoded once per spatial flip. Per window: caption, fps_id, motion_bucket, clip, flips."""

    frames: torch.Tensor
    index: torch.Tensor
    captions: list[str]
    fps_id: torch.Tensor
    motion_bucket: torch.Tensor
    clip_ids: list[str]
    flips: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.index.shape[0]

    def video(self, i: int) -> torch.Tensor:
        """Window i as (T, 3, H, W)."""
        return self.frames[self.index[i]]


def window_starts(n_frames: int, num_frames: int, stride: int, windows_per_clip: int) -> np.ndarray:
    """First frames of `windows_per_clip` evenly spaced windows of `num_frames` frames `stride` apart (fewer when
    the clip is too short for that many distinct ones)."""
    span = (num_frames - 1) * stride + 1
    return np.unique(np.linspace(0, n_frames - span, windows_per_clip).round().astype(int))


def read_windows(
    curated: CuratedSet,
    *,
    num_frames: int,
    fps: float,
    size: tuple[int, int],
    windows_per_clip: int,
    augment: Sequence[str] = (),
    caption_probs=(0.5, 0.25, 0.25),
    motion_score_at_255: float = 0.5,
    seed: int = 0,
) -> Windows:
    """`windows_per_clip` evenly spaced windows of `num_frames` frames at `fps` from every usable clip (clips too
    short for one window are skipped, as `VideoClipDataset` does), then every flip combination of `augment`."""
    if windows_per_clip < 1:
        raise ValueError(f"windows_per_clip must be >= 1, got {windows_per_clip}")
    items = VideoClipDataset(
        curated, num_frames, fps, size, caption_probs=caption_probs, motion_score_at_255=motion_score_at_255, seed=seed
    )
    combos = flip_combinations(augment)
    spatial_variants = sorted({tuple(f for f in combo if f in SPATIAL) for combo in combos})
    bank: list[torch.Tensor] = []
    offset = 0
    rows, captions, fps_ids, buckets, clip_ids, flips = [], [], [], [], [], []
    for index, (ref, stride) in enumerate(items.items):
        starts = window_starts(ref.n_frames, num_frames, stride, windows_per_clip)
        used = sorted({int(s) + k * stride for s in starts for k in range(num_frames)})
        frames = _to_tensor(curated.read(ref, used, size))  # one decode per clip, only the frames windows use
        where = {f: i for i, f in enumerate(used)}
        base = {}
        for variant in spatial_variants:
            v = frames
            for f in variant:
                v = flip_video(v, f)
            bank.append(v)
            base[variant] = offset
            offset += len(used)
        rng = np.random.default_rng([seed, index])
        bucket = int(motion_bucket(ref.motion_score, motion_score_at_255))
        for start in starts:
            local = torch.tensor([where[int(start) + k * stride] for k in range(num_frames)])
            caption = items.caption_for(ref, rng)
            for combo in combos:
                row = local + base[tuple(f for f in combo if f in SPATIAL)]
                c = caption
                for f in combo:
                    c = flip_caption(c, f)
                rows.append(row.flip(0) if "reverse" in combo else row)
                captions.append(c)
                fps_ids.append(int(round(fps)) - 1)
                buckets.append(bucket)
                clip_ids.append(ref.clip_id)
                flips.append("+".join(combo) or "none")
    if not rows:
        raise InputError(f"no clip of {curated.root} gives a window of {num_frames} frames at {fps} fps")
    return Windows(
        torch.cat(bank), torch.stack(rows), captions, torch.tensor(fps_ids), torch.tensor(buckets), clip_ids, flips
    )


@dataclass
class LatentSet:
    """Encoded windows: latents (N, T, C, h, w) (scaled, T = 1 for image stages), a table of caption embeddings
    (U, L, D) with `text_index` (N,) into it (row 0: the empty caption, used for text dropout), and per-window
    fps_id / motion_bucket."""

    latents: torch.Tensor
    text: torch.Tensor
    text_index: torch.Tensor
    captions: list[str]
    fps_id: torch.Tensor
    motion_bucket: torch.Tensor
    clip_ids: list[str]


@torch.no_grad()
def caption_table(captions: Sequence[str], text_encoder) -> tuple[torch.Tensor, torch.Tensor]:
    """One embedding per distinct caption, (U, L, D) with row 0 the empty caption, and each caption's row (N,)."""
    table = [""] + sorted(set(captions) - {""})
    row = {c: i for i, c in enumerate(table)}
    text = torch.cat([text_encoder.encode(table[i : i + 256]) for i in range(0, len(table), 256)]).float()
    return text, torch.tensor([row[c] for c in captions], dtype=torch.int64)


@torch.no_grad()
def encode_windows(windows: Windows, vae, text_encoder, chunk: int = 64) -> LatentSet:
    """Latent means of every window (scaled by the VAE's factor; each distinct frame encoded once) and one embedding
    per distinct caption."""
    latents = encode(vae, windows.frames, chunk=chunk).float()[windows.index]  # (N, T, C, h, w)
    text, index = caption_table(windows.captions, text_encoder)
    return LatentSet(
        latents, text, index, list(windows.captions), windows.fps_id, windows.motion_bucket, list(windows.clip_ids)
    )


class LatentItems(Dataset):
    """Items of a LatentSet for the training loop: latents, text_index, fps_id, motion_bucket."""

    def __init__(self, data: LatentSet):
        self.data = data

    def __len__(self) -> int:
        return self.data.latents.shape[0]

    def __getitem__(self, i: int) -> dict:
        d = self.data
        return {
            "latents": d.latents[i],
            "text_index": d.text_index[i],
            "fps_id": d.fps_id[i],
            "motion_bucket": d.motion_bucket[i],
        }


__all__ = [
    "FLIPS",
    "LatentItems",
    "LatentSet",
    "Windows",
    "caption_table",
    "encode_windows",
    "flip_caption",
    "flip_combinations",
    "flip_video",
    "read_windows",
    "window_starts",
]
