"""Judging multi-view models (svd.evaluation.multiview_model) and the initialisation ablation's summary
(svd.ablation_multiview), on hand-made orbits with known answers."""

import numpy as np
import pytest

from svd.evaluation.multiview_model import (
    border_colours,
    check_orbit,
    opposite_view,
    silhouette_iou,
    silhouettes,
    width_correlation,
    widths,
)

BG = (235, 235, 235)


def _orbit(half_widths, size=32, colour=(200, 40, 40), background=BG):
    """One view per half-width: a centred rectangle of that half-width, 10 rows tall, on the renders' grey."""
    views = np.full((len(half_widths), size, size, 3), background, np.uint8)
    for i, hw in enumerate(half_widths):
        views[i, 11:21, size // 2 - hw : size // 2 + hw] = colour
    return views


def test_opposite_view_is_the_one_nearest_180_degrees():
    assert opposite_view(21) == 10  # 171.4 and 188.6 degrees tie; the first
    assert opposite_view(20) == 10 and opposite_view(4) == 2 and opposite_view(3) == 1


def test_silhouettes_iou_and_widths_by_hand():
    real = _orbit([4, 8])
    fake = _orbit([8, 8])
    a, b = silhouettes(real), silhouettes(fake)
    assert a[0].sum() == 10 * 8 and b[0].sum() == 10 * 16
    np.testing.assert_allclose(silhouette_iou(a, b), [80 / 160, 1.0])
    np.testing.assert_array_equal(widths(a), [8, 16])
    empty = np.zeros((1, 4, 4), bool)
    assert silhouette_iou(empty, empty)[0] == 1.0  # nothing on either side agrees
    # a grey the threshold keeps out: anti-aliasing and VAE noise near the background are not the object
    faint = np.full((1, 8, 8, 3), BG, np.uint8)
    faint[0, 2, 2] = (220, 235, 235)
    assert not silhouettes(faint).any()


def test_width_correlation_follows_a_turning_object_and_not_a_still_one():
    turning = [4, 6, 8, 10, 8, 6, 4]
    real = silhouettes(_orbit(turning))
    assert width_correlation(real, silhouettes(_orbit([w + 1 for w in turning]))) == pytest.approx(1.0)
    anti = [14 - w for w in turning]  # wide where the truth is narrow: turning a quarter-turn out of phase
    assert width_correlation(real, silhouettes(_orbit(anti))) == pytest.approx(-1.0)
    assert np.isnan(width_correlation(real, silhouettes(_orbit([6] * 7))))  # a copy never turns


def test_check_orbit_against_an_independent_psnr():
    real = _orbit([4, 6, 8, 6])
    fake = real.copy()
    fake[2] = _orbit([6])[0]
    got = check_orbit(real, fake)
    mse = [np.mean((real[i] / 255.0 - fake[i] / 255.0) ** 2) for i in range(4)]
    per_view = [100.0 if m == 0 else 10 * np.log10(1 / m) for m in mse]
    assert got["psnr"] == pytest.approx(np.mean(per_view))
    assert got["opposite_psnr"] == pytest.approx(per_view[2])  # view 2 of 4 is at 180 degrees
    assert got["silhouette_iou"] == pytest.approx((3 + 12 / 16) / 4)
    np.testing.assert_array_equal(border_colours(real), np.full((4, 3), 235.0))


def test_silhouettes_against_each_views_own_background():
    """A generated orbit's background is rarely the renders' grey: a darker, noisy one (the tiny models' usual) must
    still give the object's silhouette, and its width over the orbit, not the whole frame."""
    turning = [4, 6, 8, 10, 8, 6, 4]
    rng = np.random.default_rng(0)
    fake = _orbit(turning, background=(150, 150, 150)).astype(np.int16)
    fake[:, :, :] += rng.integers(-8, 9, size=fake.shape[:3])[..., None]  # sensor-like noise, the same in each channel
    fake[3, 0, :10] = (200, 40, 40)  # a stray object pixel on the border does not move the view's median
    fake = fake.clip(0, 255).astype(np.uint8)
    masks = silhouettes(fake)
    assert masks[3, 0, :10].all()  # the stray pixels are object, the rest of the border is not
    masks[3, 0] = False
    np.testing.assert_array_equal(widths(masks), [2 * w for w in turning])
    assert width_correlation(silhouettes(_orbit(turning)), masks) == pytest.approx(1.0)
    np.testing.assert_allclose(border_colours(fake)[0], 150, atol=2)


def _arm(psnrs, seed):
    objs = {f"o{i}": {"model": {c: float(v) for c in ("psnr", "lpips", "clip_s", "opposite_psnr",
                                                       "silhouette_iou", "width_corr")}}
            for i, v in enumerate(psnrs)}  # fmt: skip
    mean = float(np.mean(psnrs))
    checks = ("psnr", "lpips", "clip_s", "opposite_psnr", "silhouette_iou", "width_corr")
    references = {f"eval.{side}.{c}.mean": value for side, value in REFS.items() for c in checks}
    scores = {f"eval.model.{c}.mean": mean for c in checks} | {"eval.objects": len(psnrs)} | references
    return {"scores": scores, "objects": objs}


REFS = {"copy": 18.4, "roundtrip": 16.8, "copy_roundtrip": 15.9}


def test_ablation_summary_orders_arms_by_effect_against_the_seed_spread():
    from svd.ablation_multiview import summarise
    from svd.config import load_params

    params = load_params(__import__("pathlib").Path(__file__).resolve().parents[1] / "params.yaml")
    seeds = [0, 1, 2]
    rng = np.random.default_rng(0)
    base = {"video": 18.0, "image": 16.0, "random": 15.8}
    jitter = {"video": 0.05, "image": 0.05, "random": 0.5}  # scratch varies most from seed to seed
    arms = {
        (s, a): _arm(base[a] + jitter[a] * s + rng.normal(0, 0.2, 20), s)
        for s in seeds
        for a in ("video", "image", "random")
    }
    out = summarise(params, arms, seeds)
    v = out["verdicts"]
    assert v["psnr.video_minus_image"]["better"] == "video" and v["psnr.video_minus_image"]["exceeds"]
    assert v["psnr.video_minus_image"]["consistent"]  # every seed's paired interval above 0
    # scratch's seeds spread over 1 dB: a 0.2 dB edge either way does not exceed it
    assert v["psnr.image_minus_random"]["spread"] > 0.9 and not v["psnr.image_minus_random"]["exceeds"]
    assert v["lpips.video_minus_image"]["better"] == "image"  # lower LPIPS is better: the same numbers flip
    assert out["psnr.video.mean"] == pytest.approx(np.mean([arms[(s, "video")]["scores"]["eval.model.psnr.mean"]
                                                            for s in seeds]))  # fmt: skip
    assert "psnr.video_minus_random.seed2.lo" in out and out["seeds"] == 3
    assert out["reference.roundtrip.psnr"] == 16.8 and out["reference.copy_roundtrip.psnr"] == 15.9
    from svd.ablation_multiview import markdown

    report = markdown(params, arms, seeds, out)
    assert "| the VAE's round trip of every view (a latent model's ceiling) | 16.800 |" in report
