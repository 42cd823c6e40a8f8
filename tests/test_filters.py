import numpy as np
import pandas as pd
import pytest

from svd.config import load_params
from svd.curation.filters import apply_filters, auroc


def _clips(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "clip_id": [f"v_{i:03d}" for i in range(n)],
            "motion_score": rng.uniform(0, 1, n),
            "text_area": np.where(np.arange(n) < 4, rng.uniform(0.01, 0.2, n), 0.0),
            "aesthetic": rng.normal(5, 1, n),
            "clip_score": rng.uniform(0.1, 0.3, n),
            "drop_reason": [""] * n,
        }
    )


def test_fractions_drop_exactly_their_share(params_file):
    cfg = load_params(params_file).curate.filters
    df, report = apply_filters(
        _clips(), cfg, {"motion": True, "text": True, "text_area": True, "aesthetic": True, "clip_score": True}
    )
    assert report["motion"]["would_drop"] == 5  # 25% of 20
    assert report["clip_score"]["would_drop"] == 10
    # the least moving 5 are dropped for motion (at least), whatever else applies
    lowest = df.nsmallest(5, "motion_score")
    assert all("motion" in r for r in lowest["drop_reasons"])
    assert (df["keep"] == (df["drop_reason"] == "")).all()


def test_text_filters_never_drop_text_free_clips(params_file):
    cfg = load_params(params_file).curate.filters
    df, report = apply_filters(_clips(), cfg, {"text": True, "text_area": True})
    assert report["text"]["would_drop"] == 4  # only four clips have any text, top 25% would be 5
    assert df.loc[df["text_area"] == 0, "drop_reason"].eq("").all()
    above = df["text_area"] > cfg.text_area_max
    assert df.loc[above, "drop_reasons"].str.contains("text_area").all()


def test_filters_without_real_scorers_report_but_do_not_drop(params_file):
    cfg = load_params(params_file).curate.filters
    df, report = apply_filters(_clips(), cfg, {"motion": True, "aesthetic": False, "clip_score": False})
    assert report["aesthetic"]["applied"] is False and report["aesthetic"]["would_drop"] == 5
    assert not df["drop_reasons"].str.contains("aesthetic|clip_score").any()
    assert (~df["keep"]).sum() == 5


def test_earlier_drops_keep_their_reason(params_file):
    cfg = load_params(params_file).curate.filters
    clips = _clips()
    clips.loc[0, "drop_reason"] = "too_short"
    df, _ = apply_filters(clips, cfg, {"motion": True})
    assert df.loc[0, "drop_reason"] == "too_short" and not df.loc[0, "keep"]


def test_auroc_matches_definition():
    assert auroc(np.array([3, 4, 1, 2]), np.array([1, 1, 0, 0])) == 1.0
    assert auroc(np.array([1, 2, 3, 4]), np.array([1, 1, 0, 0])) == 0.0
    assert auroc(np.array([1, 1]), np.array([1, 0])) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200), rng.integers(0, 2, 200).astype(bool)
    from itertools import product

    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in product(s[y], s[~y])])
    assert auroc(s, y) == pytest.approx(brute)
