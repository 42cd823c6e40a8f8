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


def write_vfr(path, frames, pts_ms, gop=10, audio=False):
    """An H.264 mp4 whose frame i (RGB uint8) is shown at pts_ms[i] milliseconds: a variable frame rate where the
    gaps are (like PySceneDetect's goldeneye-vfr-drop3, frames dropped from a constant-rate source); with `audio`, a
    second of 440 Hz stereo beside it."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "10", "bf": "0"}
        sound = out.add_stream("aac", rate=8000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for image, t in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            tone = (0.2 * np.sin(2 * np.pi * 440.0 * np.arange(8000) / 8000)).astype(np.float32)
            for i in range(0, 8000, 1024):
                block = np.ascontiguousarray(np.stack([tone[i : i + 1024]] * 2))
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 8000, i
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def test_variable_frame_rate_times_and_cuts_follow_the_frames_own_timestamps(tmp_path):
    """Frames 10-12 of a 25 fps source dropped: every later frame is shown 3 frames later than index / average fps
    says. FrameClock reads the decoded times; remux and keyframes index frames in display order, as decoding does."""
    from svd.io.video import FrameClock, iter_decoded

    pts = [40 * k for k in range(60) if not 10 <= k < 13]  # 57 frames over 2.36 s
    values = [(4 * i) % 250 for i in range(len(pts))]
    path = write_vfr(tmp_path / "vfr.mp4", [np.full((64, 96, 3), v, np.uint8) for v in values], pts)
    decoded = list(iter_decoded(path))
    assert len(decoded) == 57 and [round(f.time * 1000) for f in decoded] == pts
    clock = FrameClock([f.time for f in decoded], probe(path).fps)
    assert clock.variable and clock.at(30) == pytest.approx(1.32)  # frame 30 is shown at 33 x 40 ms
    assert abs(30 / probe(path).fps - 1.32) > 0.04  # index / average fps: more than a frame off
    assert clock.span(20, 30) == pytest.approx(0.4) and clock.at(57) == pytest.approx(2.36 + 1 / probe(path).fps)

    assert keyframe_indices(path) == [0, 10, 20, 30, 40, 50]  # display indices, not rounded times
    start, end = remux_clip(path, tmp_path / "c.mp4", 30, 45)
    frames = list(iter_frames(tmp_path / "c.mp4"))
    assert (start, end) == (30, 45) and len(frames) == 15
    assert abs(float(frames[0].mean()) - values[30]) < 3  # the right frame, not three frames off

    # a constant-rate file reads index / fps exactly (the numbers curation recorded before)
    const = tmp_path / "cfr.mp4"
    write_video(const, [np.full((64, 96, 3), i, np.uint8) for i in range(30)], fps=24)
    cfr = FrameClock([f.time for f in iter_decoded(const)], 24.0)
    assert not cfr.variable and all(cfr.at(k) == k / 24.0 for k in range(31)) and cfr.span(3, 9) == 6 / 24.0
