"""Camera motion from optical flow (svd.curation.camera): the global fit on exact fields, and the labels on shots the
world renders (every camera kind, with and without a moving object, over textured backgrounds)."""

import numpy as np
import pytest

from svd.config import Motion
from svd.curation.camera import classify, fit_clip, fit_pair
from svd.curation.motion import _grey, pair_flow

MOTION = Motion(enabled=True, fps=2.0, flow_short_side=16, compute_short_side=64)
THRESHOLDS = dict(min_pan=0.05, min_zoom=0.04, min_explained=0.15)


def field(h, w, tx, ty, s):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rx, ry = xs - (w - 1) / 2, ys - (h - 1) / 2
    return np.stack([tx + s * rx, ty + s * ry], axis=2)


def test_fit_recovers_translation_and_scale_and_ignores_a_moving_object():
    exact = field(16, 28, -1.5, 0.25, 0.04)
    tx, ty, s, explained = fit_pair(exact)
    assert (tx, ty, s) == pytest.approx((-1.5, 0.25, 0.04), abs=1e-9) and explained == pytest.approx(1.0)
    with_object = exact.copy()
    with_object[4:8, 5:9] += (6.0, -3.0)  # an object moving over the panning, zooming scene
    tx, ty, s, explained = fit_pair(with_object)
    assert (tx, ty, s) == pytest.approx((-1.5, 0.25, 0.04), abs=0.05) and explained < 1.0
    assert fit_pair(np.zeros((16, 28, 2)))[3] == 1.0  # nothing moves: nothing unexplained


def render(kind: str, seed: int, obj: str = "right", size=(192, 108), fps=24.0, seconds=4.0):
    from svd.world.render import ShotRenderer
    from svd.world.scene import BackgroundSpec, ShotSpec, sample_objects_and_camera

    rng = np.random.default_rng(seed)
    w, h = size
    n = int(seconds * fps)
    objects, camera = sample_objects_and_camera(rng, w, h, fps, n, 0, 0, ["red"], ["circle"], [obj], kind)
    spec = ShotSpec(
        width=w, height=h, fps=fps, n_frames=n, pre=0, post=0,
        # a 2-D texture with contrast: a pan over the world's palest soft noise is close to invisible in grey, and
        # one along stripes cannot be seen at all (the aperture problem)
        background=BackgroundSpec(("checker", "noise")[seed % 2], ("navy", "sand"), period=20.0,
                                  angle=30.0, seed=seed),
        objects=objects, camera=camera,
        static=kind == "static" and obj == "still",
    )  # fmt: skip
    renderer = ShotRenderer(spec)
    step = int(round(fps / MOTION.fps))
    return [renderer.frame(k) for k in range(0, n, step)], camera


@pytest.mark.parametrize("kind", ["static", "pan_left", "pan_right", "zoom_in", "zoom_out"])
def test_world_shots_read_as_their_camera(kind):
    """Each camera kind of the world, at the flow size curation computes (64 px, fields at 16 px), with an object
    moving across (a static camera with a moving object is still static), over three shots."""
    for seed in range(3):
        frames, camera = render(kind, seed)
        grey = [_grey(f, MOTION.compute_short_side) for f in frames]
        fields = [pair_flow(a, b, MOTION) for a, b in zip(grey[:-1], grey[1:])]
        got = classify(fit_clip(fields, MOTION.compute_short_side, MOTION.fps), **THRESHOLDS)
        assert got.label == kind, (seed, camera, got)
        assert 0.0 <= got.confidence <= 1.0


@pytest.mark.parametrize("kind", ["pan_left", "pan_right"])
def test_the_annotator_fits_pairs_closer_than_the_motion_score(kind):
    """A fast pan (0.2 frame widths a second) over a 24-px checker moves 16 px between 2-fps samples, two thirds of
    the checker's period: the flow aliases and the pan reads the wrong way round. `curate.camera.fps` (4) fits the
    camera from pairs half as far apart, through the annotator curation runs."""
    from svd.config import load_params
    from svd.curation.annotate import Annotators, ClipFrames
    from svd.world.render import ShotRenderer
    from svd.world.scene import BackgroundSpec, CameraSpec, ShotSpec

    w, h, fps, n = 320, 180, 24.0, 72
    spec = ShotSpec(
        width=w, height=h, fps=fps, n_frames=n, pre=0, post=0,
        background=BackgroundSpec("checker", ("navy", "sand"), period=24.0, angle=0.0, seed=0),
        objects=[], camera=CameraSpec(kind, 0.2 * w), static=False,
    )  # fmt: skip
    renderer = ShotRenderer(spec)
    clip = ClipFrames([renderer.frame(k) for k in range(n)], fps)
    labels = {}
    for camera_fps in (2.0, 4.0):
        off = ["curate.text.enabled=false", "curate.clip.enabled=false", "curate.captions.enabled=false"]
        params = load_params(overrides=[f"curate.camera.fps={camera_fps}", *off])
        labels[camera_fps] = Annotators(params).annotate(clip, None)["camera_motion"]
    assert labels[4.0] == kind
    assert labels[2.0] == {"pan_left": "pan_right", "pan_right": "pan_left"}[kind]  # why 2 fps is not enough
