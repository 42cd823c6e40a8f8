"""Motion score: Farneback flow at 2 fps, in short sides per second."""

import cv2
import numpy as np
import pytest

from conftest import PARAMS
from svd.config import Motion, load_params
from svd.curation.motion import motion_score


@pytest.fixture(scope="module")
def cfg() -> Motion:
    return load_params(PARAMS).curate.motion


def texture(h: int, w: int, seed: int = 0, unit: int | None = None) -> np.ndarray:
    """Smooth random texture with detail at 5-20% of `unit` px (default: the short side): structure everywhere, no
    flat regions, so every flow vector is measurable."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for frac in (0.05, 0.1, 0.2):
        cell = max(2, int(frac * (unit or min(h, w))))
        gh, gw = h // cell + 2, w // cell + 2
        grid = rng.random((gh, gw, 3)).astype(np.float32)
        out += cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]
    out = (out - out.min()) / (out.max() - out.min()) * 255
    return out.astype(np.uint8)


def pan(h, w, speed, n=5, fps=2.0, vertical=False, seed=1):
    """Camera pan: a window sliding over a bigger texture at `speed` short sides per second."""
    big = texture(3 * h, 3 * w, seed, unit=min(h, w))
    frames = []
    for i in range(n):
        d = int(round(speed * min(h, w) * i / fps))
        frames.append(big[d : d + h, w : 2 * w].copy() if vertical else big[h : 2 * h, d : d + w].copy())
    return frames


def test_needs_two_frames(cfg):
    with pytest.raises(ValueError, match="at least 2 frames"):
        motion_score([texture(64, 64)], cfg)


def test_static_frames_score_zero(cfg):
    f = texture(144, 256)
    assert motion_score([f] * 4, cfg) < 1e-3


@pytest.mark.parametrize("speed", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("vertical", [False, True])
def test_pan_matches_analytic_speed(cfg, speed, vertical):
    # a pan of `speed` short sides per second scores `speed`
    score = motion_score(pan(144, 256, speed, vertical=vertical), cfg)
    assert score == pytest.approx(speed, rel=0.1)


def test_score_scales_with_sample_rate(cfg):
    frames = pan(144, 256, 0.1)  # 0.05 short sides between samples
    at4 = cfg.model_copy(update={"fps": 4.0})
    assert motion_score(frames, at4) == pytest.approx(2 * motion_score(frames, cfg), rel=1e-6)


def test_resolution_independent(cfg):
    big = pan(288, 512, 0.1)
    small = [cv2.resize(f, (256, 144), interpolation=cv2.INTER_AREA) for f in big]
    portrait = pan(256, 144, 0.1)
    a, b = motion_score(big, cfg), motion_score(small, cfg)
    assert a == pytest.approx(b, rel=0.05)
    assert motion_score(portrait, cfg) == pytest.approx(0.1, rel=0.1)


def test_noise_and_compression_read_as_still(cfg):
    rng = np.random.default_rng(0)
    f = texture(144, 256, seed=3)
    noisy = [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for _ in range(5)]
    jpeg = [
        cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
        for q in (25, 40, 55, 70, 30)
    ]
    slow = motion_score(pan(144, 256, 0.05), cfg)
    for frames in (noisy, jpeg):
        s = motion_score(frames, cfg)
        assert s < 0.005
        assert s < slow / 10


def test_object_motion_counts(cfg):
    # static background, one 48 px object crossing at 0.2 short sides/s: ideally area share x speed (Farneback's
    # window spreads it over the static surround and reads ~0.6x that), and far above a still frame
    bg = texture(144, 256, seed=5)
    obj = texture(48, 48, seed=6)
    frames = []
    for i in range(5):
        f = bg.copy()
        x = 20 + int(round(0.2 * 144 * i / 2.0))
        f[48:96, x : x + 48] = obj
        frames.append(f)
    s = motion_score(frames, cfg)
    ideal = 48 * 48 / (144 * 256) * 0.2
    assert 0.4 * ideal < s < 1.5 * ideal
    assert s > 10 * motion_score([bg] * 5, cfg)
