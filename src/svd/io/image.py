"""Conditioning images for image-to-video: any common image file to 8-bit RGB at the model's size, saying what was
changed on the way (a list of notes the CLI prints as warnings), never silently.

- 16-bit images are scaled to 8 bits (x / 257); greyscale is repeated over R, G and B; an alpha channel is
  composited over white (diffusers' `load_image` would drop it and keep whatever colour transparent pixels hold).
- The frame is resized to the model's (H, W) with bilinear antialiasing and no crop, as diffusers' pipeline resizes a
  conditioning image to (height, width); an aspect ratio that differs by more than 1% is reported.
A file that is not an image (or is truncated) is an InputError naming it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from svd.errors import InputError


def read_image(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """uint8 RGB (H, W, 3) and the notes of every conversion made."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--image {path}: no such file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise InputError(f"--image {path}: not a readable image (corrupt, truncated or not an image format)")
    notes = []
    if raw.dtype == np.uint16:
        raw = np.round(raw.astype(np.float64) / 257.0).astype(np.uint8)
        notes.append("16-bit image scaled to 8 bits")
    elif raw.dtype != np.uint8:
        raise InputError(f"--image {path}: {raw.dtype} pixels are not supported (8- or 16-bit images only)")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        rgb = np.repeat(raw.reshape(*raw.shape[:2], 1), 3, axis=2)
        notes.append("greyscale image repeated over R, G and B")
    elif raw.ndim == 3 and raw.shape[2] == 4:
        alpha = raw[..., 3:].astype(np.float64) / 255.0
        bgr = raw[..., :3].astype(np.float64) * alpha + 255.0 * (1 - alpha)
        rgb = cv2.cvtColor(np.round(bgr).astype(np.uint8), cv2.COLOR_BGR2RGB)
        if (alpha < 1).any():
            notes.append("alpha channel composited over white")
    elif raw.ndim == 3 and raw.shape[2] == 3:
        rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    else:
        raise InputError(f"--image {path}: {raw.shape} is not a greyscale, RGB or RGBA image")
    return rgb, notes


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """uint8 (H, W, 3) -> (h, w, 3) bilinear with antialiasing, no crop; a note when the aspect ratio changes."""
    h, w = frame.shape[:2]
    th, tw = size
    notes = []
    if abs((w / h) / (tw / th) - 1) > 0.01:
        notes.append(
            f"resized {w}x{h} to {tw}x{th}: the aspect ratio changes from {w / h:.2f} to {tw / th:.2f} (as "
            f"diffusers' pipeline resizes a conditioning image; crop it first to avoid stretching)"
        )
    if (h, w) == (th, tw):
        return frame, notes
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    return x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy(), notes


__all__ = ["read_image", "resize_frame"]
