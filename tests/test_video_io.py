import numpy as np
import pytest

from svd.io.video import (
    VideoReadError,
    iter_frames,
    keyframe_indices,
    probe,
    reencode_clip,
    remux_clip,
    scaled_size,
    write_gif,
    write_video,
)


@pytest.fixture
def video(tmp_path):
    frames = [np.full((64, 96, 3), (i * 5) % 250, np.uint8) for i in range(50)]
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=25, gop=10)
    return path


def test_roundtrip_probe_and_scaled_decode(video):
    info = probe(video)
    assert (info.fps, info.n_frames, info.width, info.height) == (25.0, 50, 96, 64)
    frames = list(iter_frames(video, short_side=32))
    assert len(frames) == 50 and frames[0].shape == (32, 48, 3)
    assert abs(float(frames[20].mean()) - 100) < 4  # lossy, but the right frame


def test_keyframes_follow_the_gop(video):
    assert keyframe_indices(video) == [0, 10, 20, 30, 40]


def test_remux_snaps_forward_to_a_keyframe(video, tmp_path):
    start, end = remux_clip(video, tmp_path / "c.mp4", 13, 37)
    assert (start, end) == (20, 37)
    frames = list(iter_frames(tmp_path / "c.mp4"))
    assert len(frames) == 17 and abs(float(frames[0].mean()) - 100) < 4


def test_reencode_is_frame_exact(video, tmp_path):
    assert reencode_clip(video, tmp_path / "c.mp4", 13, 37) == (13, 37)
    frames = list(iter_frames(tmp_path / "c.mp4"))
    assert len(frames) == 24 and abs(float(frames[0].mean()) - 65) < 4


def test_scaled_size_keeps_aspect_and_never_upscales():
    assert scaled_size(1920, 1080, 360) == (640, 360)
    assert scaled_size(320, 180, 360) == (320, 180)
    assert scaled_size(1080, 1920, 360) == (360, 640)


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"hello, not a video", "not a readable media")])
def test_broken_files_raise_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoReadError, match=reason) as exc:
        probe(path)
    assert "\n" not in str(exc.value)
    with pytest.raises(VideoReadError):
        list(iter_frames(path))


def test_missing_and_truncated(tmp_path, video):
    with pytest.raises(VideoReadError, match="file not found"):
        probe(tmp_path / "nope.mp4")
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError):
        probe(cut)


def test_writer_rejects_wrong_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", [np.zeros((8, 8, 3), np.float32)], fps=10)
    write_gif(tmp_path / "x.gif", [np.zeros((8, 8, 3), np.uint8)] * 3, fps=5)
    assert (tmp_path / "x.gif").stat().st_size > 0


def test_decoded_frames_convert_lazily_to_the_same_pixels(video):
    from svd.io.video import iter_decoded

    decoded = list(iter_decoded(video, short_side=32))
    arrays = list(iter_frames(video, short_side=32))
    assert len(decoded) == len(arrays) == 50
    assert decoded[0].shape == (32, 48, 3)
    rgb = decoded[20].rgb()
    assert rgb.shape == arrays[20].shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - arrays[20].astype(int)).mean() < 3  # YUV->RGB once vs scaled in one step
    assert decoded[20].bgr(24, 16).shape == (16, 24, 3)


def test_same_frames_encode_to_the_same_bytes(tmp_path):
    # DVC hashes the world's videos and the samples: an encode must not depend on x264's internal state. With
    # macroblock-tree rate control these frames gave 3 distinct files in 8 encodes.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(8, 32, 48, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:32, :48]
    for t in range(8):
        blob = np.exp(-((xx - 10 - 3 * t) ** 2 + (yy - 16) ** 2) / 30.0)[..., None]
        frames[t] = (frames[t] * 0.3 + blob * np.array([230, 25, 25]) * 0.7).astype(np.uint8)
    frames = frames.repeat(4, axis=1).repeat(4, axis=2)
    digests = set()
    for i in range(12):
        path = tmp_path / f"{i}.mp4"
        write_video(path, frames, 4.0)
        digests.add(path.read_bytes())
    assert len(digests) == 1
