"""Bootstrap intervals over samples: a score computed on n items, resampled with replacement `rounds` times
(seeded), gives the percentile interval at `confidence`. Paired scores (sample i of two models or of a model and a
baseline made from the same input i) resample the same indices on both sides, so their difference gets a paired
interval."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def percentile_interval(values, confidence: float = 0.95) -> dict[str, float] | None:
    """{"lo", "hi"}: the central `confidence` share of bootstrap values (non-finite ones dropped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    tail = (1 - confidence) / 2 * 100
    return {"lo": float(np.percentile(v, tail)), "hi": float(np.percentile(v, 100 - tail))}


def bootstrap(
    stat: Callable[[np.ndarray], float], n: int, *, rounds: int, seed: int, confidence: float = 0.95
) -> dict[str, float] | None:
    """{"lo", "hi"} of stat(indices) over `rounds` resamples of range(n); None when rounds is 0 or n < 2."""
    if rounds <= 0 or n < 2:
        return None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    return percentile_interval([stat(rng.integers(0, n, n)) for _ in range(rounds)], confidence)


def mean_interval(values, *, rounds: int, seed: int, confidence: float = 0.95) -> dict:
    """{"mean", "lo", "hi"} of per-sample values (booleans count as 0/1; lo/hi absent without a bootstrap)."""
    x = np.asarray(values, dtype=np.float64)
    interval = bootstrap(lambda i: float(x[i].mean()), len(x), rounds=rounds, seed=seed, confidence=confidence)
    return {"mean": float(x.mean()) if len(x) else float("nan"), **(interval or {})}


def paired_mean_difference(a, b, *, rounds: int, seed: int, confidence: float = 0.95) -> dict:
    """mean(a) - mean(b) of per-sample values paired by index (NaN: not judged, dropped pairwise), with a paired
    bootstrap interval. {"diff", "lo", "hi"}."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    interval = bootstrap(lambda i: float(d[i].mean()), len(d), rounds=rounds, seed=seed, confidence=confidence)
    return {"diff": float(d.mean()) if len(d) else float("nan"), **(interval or {})}


__all__ = ["bootstrap", "mean_interval", "paired_mean_difference", "percentile_interval"]
