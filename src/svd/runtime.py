"""Process-wide settings every entry point applies first: explicit thread counts (contended cores make the defaults
up to 100x slower) and offline-friendly library defaults."""

from __future__ import annotations

import os


def set_threads(n: int) -> None:
    n = max(1, int(n))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[key] = str(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # can only be set once per process, before parallel work starts


def distributed():
    """accelerate's process state, joined to the process group when launched by `torchrun` or `accelerate launch`:
    gloo on a machine without CUDA, NCCL with it (accelerate alone picks gloo only under its MPI launcher)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
