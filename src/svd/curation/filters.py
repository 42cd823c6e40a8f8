"""The paper's filters, as fractions and thresholds from params; every dropped clip keeps its reason.

Rank-based: "drop the 25% least moving" drops exactly that share of the eligible clips (ties broken by clip id), so
the result does not depend on how many scores happen to tie at a quantile. A filter whose scorer has no pretrained
weights is computed and reported but not applied: random numbers never decide what a model trains on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from svd.config import Filters

# order = priority of the reason recorded when several filters would drop a clip
REASONS = ("too_short", "keyframe_snap", "motion", "text_area", "text", "aesthetic", "clip_score")


def _bottom(df: pd.DataFrame, column: str, fraction: float) -> pd.Index:
    scores = df[column].dropna()
    n = int(math.floor(fraction * len(scores)))
    if n == 0:
        return pd.Index([])
    order = df.loc[scores.index].sort_values([column, "clip_id"], kind="mergesort")
    return order.index[:n]


def _top(df: pd.DataFrame, column: str, fraction: float, positive_only: bool) -> pd.Index:
    scores = df[column].dropna()
    if positive_only:
        scores = scores[scores > 0]
    n = int(math.floor(fraction * len(df[column].dropna())))
    n = min(n, len(scores))
    if n == 0:
        return pd.Index([])
    order = df.loc[scores.index].assign(_neg=-scores).sort_values(["_neg", "clip_id"], kind="mergesort")
    return order.index[:n]


def apply_filters(clips: pd.DataFrame, cfg: Filters, applicable: dict[str, bool]) -> tuple[pd.DataFrame, dict]:
    """Set `keep`, `drop_reason` (the first reason by priority) and `drop_reasons` (all of them, comma-joined).

    `clips` must already carry `drop_reason` for length/snap drops ('' otherwise). `applicable[name]` says whether
    the scorer behind filter `name` is real (pretrained or algorithmic) in this run.
    """
    df = clips.copy()
    reasons: dict[int, list[str]] = {i: ([r] if r else []) for i, r in df["drop_reason"].items()}
    eligible = df[df["drop_reason"] == ""]
    candidates = {
        "motion": _bottom(eligible, "motion_score", cfg.motion_bottom),
        "text_area": eligible.index[eligible["text_area"].fillna(0) > cfg.text_area_max],
        "text": _top(eligible, "text_area", cfg.text_top, positive_only=True),
        "aesthetic": _bottom(eligible, "aesthetic", cfg.aesthetic_bottom),
        "clip_score": _bottom(eligible, "clip_score", cfg.clip_score_bottom),
    }
    report = {}
    for name, index in candidates.items():
        column = {"motion": "motion_score", "text_area": "text_area", "text": "text_area"}.get(name, name)
        has_scores = eligible[column].notna().any() if len(eligible) else False
        applied = bool(applicable.get(name, False)) and has_scores
        report[name] = {"would_drop": int(len(index)), "applied": bool(applied)}
        if applied:
            for i in index:
                reasons[i].append(name)
    df["drop_reasons"] = [",".join(sorted(set(reasons[i]), key=REASONS.index)) for i in df.index]
    df["drop_reason"] = [r.split(",")[0] if r else "" for r in df["drop_reasons"]]
    df["keep"] = df["drop_reason"] == ""
    for name in candidates:
        report[name]["dropped_first"] = int((df["drop_reason"] == name).sum())
    return df, report


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half): how well a score
    separates two groups, e.g. motion_score for moving vs static shots."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
