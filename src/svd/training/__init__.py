"""Training core: the loop (accelerate), checkpoint/resume, EMA; generic over the model and its loss."""

from svd.training.checkpoint import (
    CheckpointMismatch,
    check_compatible,
    checkpoints,
    latest,
    load_checkpoint,
    prune,
    save_checkpoint,
)
from svd.training.ema import EMA
from svd.training.loop import ResumableBatches, derive_seed, train

__all__ = [
    "EMA",
    "CheckpointMismatch",
    "ResumableBatches",
    "check_compatible",
    "checkpoints",
    "derive_seed",
    "latest",
    "load_checkpoint",
    "prune",
    "save_checkpoint",
    "train",
]
