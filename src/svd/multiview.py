"""`svd sample --multiview`: a front view -> a 360-degree orbit around the object, with a multi-view model.

The model is a folder written by `svd train --stage mv`, a registered `models:/svd-mv@mv`, or by default the
pipeline's models/mv. Each --image is one object's front view, with its camera elevation (--elevation, degrees;
one value for all, or one per image). Written: OUT.mp4 + OUT.gif (the orbit as a turntable video) and the views as
OUT_views/000.png ... (several images: OUT_0, OUT_1, ...).

Bad input: a front view of another size is resized (a note); of another aspect ratio it is refused (a stretched
object would carry its wrong shape to every view: crop it first); an elevation outside the range training saw is
a warning (the sinusoidal id still takes it; the model never learnt it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from svd.config import Params
from svd.errors import InputError

ASPECT_TOL = 0.01


def sample_orbits(
    params: Params,
    *,
    images: list[str],
    elevations: list[float],
    out: Path,
    model: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    scale: int = 4,
) -> dict[str, Any]:
    import torch

    from svd.io.image import read_image, resize_frame
    from svd.tasks.multiview import KIND, generate_orbits, to_unit
    from svd.training.sampling import _write, resolve_model
    from svd.training.stages import load_model, read_model

    if not images:
        raise InputError("--multiview needs --image FRONT.png (repeat for several objects)")
    if len(elevations) not in (1, len(images)):
        raise InputError(f"{len(elevations)} --elevation values for {len(images)} images: give one, or one per image")
    folder = resolve_model(params, model, ("mv",))
    meta = read_model(folder)
    if meta["kind"] != KIND:
        raise InputError(f"--multiview needs a multi-view model; {folder} holds a {meta['kind']} model")
    h, w = meta["size"]
    warnings, fronts = [], []
    for path in images:
        rgb, notes = read_image(path)
        ih, iw = rgb.shape[:2]
        if abs((iw / ih) / (w / h) - 1) > ASPECT_TOL:
            raise InputError(
                f"--image {path}: {iw}x{ih} is not the model's aspect ratio ({w}x{h}); a stretched front view "
                f"gives every view the wrong shape: crop it to {w / h:.2f}:1 around the object first"
            )
        rgb, more = resize_frame(rgb, (h, w))
        warnings += [f"{path}: {n}" for n in notes + more]
        if (ih, iw) != (h, w):
            warnings.append(f"{path}: resized {iw}x{ih} to the model's {w}x{h}")
        fronts.append(rgb)
    elevation = [float(e) for e in (elevations * len(images) if len(elevations) == 1 else elevations)]
    lo, hi = meta.get("elevation_range", [min(elevation), max(elevation)])
    for e in elevation:
        if not np.isfinite(e) or not -90 <= e <= 90:
            raise InputError(f"--elevation {e:g}: not an elevation in degrees (-90 to 90)")
        if not lo <= e <= hi:
            warnings.append(f"--elevation {e:g} is outside the elevations training saw ({lo:g} to {hi:g})")
    loaded = load_model(folder)
    guide = tuple(meta["guidance"]) if guidance is None else (float(meta["guidance"][0]), float(guidance))
    with torch.no_grad():
        orbits = generate_orbits(
            loaded, to_unit(np.stack(fronts)), elevation, views=int(meta["views"]), fps=float(meta["fps"]),
            motion_bucket=float(meta["motion_bucket"]), steps=steps or int(meta["sample_steps"]), guidance=guide,
            cond_aug=float(meta["cond_aug"]), seed=params.sample.seed if seed is None else seed,
            sigma_data=params.diffusion.sigma_data,
        )  # fmt: skip
    labels = [f"{Path(p).stem} elevation {e:g}" for p, e in zip(images, elevation)]
    files = _write(out, orbits, labels, float(meta["fps"]), scale)
    for entry, orbit in zip(files, orbits):
        views = Path(entry["mp4"]).with_suffix("")
        views = views.with_name(views.name + "_views")
        views.mkdir(parents=True, exist_ok=True)
        for i, view in enumerate(orbit):
            cv2.imwrite(str(views / f"{i:03d}.png"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
        entry["views"] = str(views)
    return {
        "model": str(folder),
        "kind": KIND,
        "views": int(meta["views"]),
        "elevations": elevation,
        "files": files,
        "warnings": warnings,
    }


__all__ = ["sample_orbits"]
