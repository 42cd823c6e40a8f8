"""Bootstrap intervals over samples: a score computed on n items, resampled with replacement `rounds` times
(seeded), gives the percentile interval at `confidence`. Paired scores (sample i of two models or of a model and a
baseline made from the same input i) resample the same indices on both sides, so their difference gets a paired
interval."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap(stat: Callable[[np.ndarray], float], n: int, *, rounds: int, seed: int,
              confidence: float = 0.95) -> dict[str, float] | None:
    """{"lo", "hi"} of stat(indices) over `rounds` resamples of range(n); None when rounds is 0 or n < 2."""
    if rounds <= 0 or n < 2:
        return None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(rounds)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - confidence) / 2 * 100
    return {"lo": float(np.percentile(values, tail)), "hi": float(np.percentile(values, 100 - tail))}


def mean_interval(values, *, rounds: int, seed: int, confidence: float = 0.95) -> dict:
    """{"mean", "lo", "hi"} of per-sample values (booleans count as 0/1; lo/hi absent without a bootstrap)."""
    x = np.asarray(values, dtype=np.float64)
    interval = bootstrap(lambda i: float(x[i].mean()), len(x), rounds=rounds, seed=seed, confidence=confidence)
    return {"mean": float(x.mean()) if len(x) else float("nan"), **(interval or {})}


__all__ = ["bootstrap", "mean_interval"]
