"""Video decode/encode with PyAV: streaming, one pass, scaled inside the decoder (swscale), never the whole video in
RAM.

Every failure to read becomes a `VideoReadError` with a one-line reason that curation writes to its quarantine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter


class VideoReadError(Exception):
    """The file cannot be used as a video; str(exc) is a one-line reason."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    n_frames: int  # from the container; 0 when unknown
    width: int
    height: int
    duration_s: float
    codec: str

    def to_dict(self) -> dict:
        return asdict(self)


def _open(path: Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"file not found: {path}")
    if path.is_dir():
        raise VideoReadError(f"is a directory, not a video: {path}")
    if path.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoReadError(f"not a readable media container ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:200]


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoReadError(f"no video stream (found: {', '.join(kinds)})")
    return container.streams.video[0]


def probe(path: Path | str) -> VideoInfo:
    """Container-level facts without decoding; raises VideoReadError for anything that is not a usable video."""
    with _open(Path(path)) as container:
        stream = _video_stream(container)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise VideoReadError("video stream has no frame rate")
        fps = float(rate)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        n_frames = int(stream.frames or 0) or int(round(duration * fps))
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoReadError("video stream has no frame size")
        return VideoInfo(str(path), fps, n_frames, width, height, duration, stream.codec_context.name)


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Size with the short side at `short_side` (never upscaled), both even, aspect kept."""
    if short_side is None or min(width, height) <= short_side:
        return width - width % 2, height - height % 2
    scale = short_side / min(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def _decode(path: Path | str) -> Iterator[av.VideoFrame]:
    """Decoded frames in display order. Raises VideoReadError when the file cannot be opened or decoding breaks
    before any frame came out; a stream that breaks later (a truncated file) ends early."""
    container = _open(Path(path))
    try:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        got = 0
        try:
            for frame in container.decode(stream):
                yield frame
                got += 1
        except (av.FFmpegError, EOFError) as exc:
            if got == 0:
                raise VideoReadError(f"cannot decode video ({_short(exc)})") from None
    finally:
        container.close()


def iter_frames(
    path: Path | str, short_side: int | None = None, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3), scaled by the decoder; one streaming pass."""
    target = size
    # one reformatter for the stream: a frame's own reformat builds a new swscale context per call (ms each)
    scaler = VideoReformatter()
    for frame in _decode(path):
        if target is None:
            target = scaled_size(frame.width, frame.height, short_side)
        # swscale's area filter: right for downscaling and faster than its default bicubic
        yield scaler.reformat(
            frame, width=target[0], height=target[1], format="rgb24", interpolation="AREA"
        ).to_ndarray()


class YuvFrame:
    """A decoded frame kept as YUV 4:2:0 at the decode size: half the bytes of RGB, and the RGB conversion is paid
    only for the frames an annotator actually reads (a few per clip), not for every frame of the stream."""

    __slots__ = ("frame", "_scalers", "time")

    def __init__(self, frame: av.VideoFrame, scalers: _Scalers, time: float | None = None):
        self.frame = frame
        self._scalers = scalers
        self.time = time  # its presentation time in seconds (pts x time base); None when the stream has none

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.frame.height, self.frame.width, 3

    def rgb(self) -> np.ndarray:
        return self._scalers.rgb.reformat(self.frame, format="rgb24").to_ndarray()

    def bgr(self, width: int, height: int) -> np.ndarray:
        return self._scalers.small.reformat(
            self.frame, width=width, height=height, format="bgr24", interpolation="FAST_BILINEAR"
        ).to_ndarray()


class _Scalers:
    """One swscale context per conversion of a stream (each reformatter caches exactly one)."""

    def __init__(self) -> None:
        self.decode, self.small, self.rgb = VideoReformatter(), VideoReformatter(), VideoReformatter()


class ArrayFrame:
    """The YuvFrame interface over an RGB array (frames that did not come from a decoder, e.g. in tests)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def rgb(self) -> np.ndarray:
        return self.array

    def bgr(self, width: int, height: int) -> np.ndarray:
        import cv2

        return cv2.cvtColor(cv2.resize(self.array, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2BGR)


def iter_decoded(path: Path | str, short_side: int | None = None) -> Iterator[YuvFrame]:
    """Like iter_frames, but frames stay YUV at the decode size until someone asks for RGB."""
    target = None
    scalers = _Scalers()
    for frame in _decode(path):
        if target is None:
            target = scaled_size(frame.width, frame.height, short_side)
        time = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        if (frame.width, frame.height) != target or frame.format.name != "yuv420p":
            frame = scalers.decode.reformat(
                frame, width=target[0], height=target[1], format="yuv420p", interpolation="AREA"
            )
        yield YuvFrame(frame, scalers, time)


def _display_indices(path: Path) -> dict[int, int]:
    """Packet pts -> the frame's index in display order (the rank of its pts), which is what a decoder's frame count
    gives. Rounding time x average fps would be the same for a constant-rate stream and wrong for a variable-rate
    one (a dropped frame shifts every later index). One demux pass, no decode."""
    with _open(path) as container:
        stream = _video_stream(container)
        pts = sorted({p.pts for p in container.demux(stream) if p.pts is not None and p.size})
    return {v: i for i, v in enumerate(pts)}


def keyframe_indices(path: Path | str) -> list[int]:
    """Frame indices (display order) of the keyframes, from packet flags alone (no decode)."""
    out: list[int] = []
    index = _display_indices(Path(path))
    with _open(Path(path)) as container:
        stream = _video_stream(container)
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            if packet.is_keyframe:
                out.append(index[packet.pts])
    return sorted(out)


class VideoWriter:
    """H.264 (yuv420p) mp4 writer; frames are RGB uint8 (H, W, 3) of one even size."""

    def __init__(self, path: Path | str, fps: float, gop: int | None = None, crf: int = 20, codec: str = "libx264"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.gop = gop
        self.crf = crf
        self.codec = codec
        self._container = av.open(str(self.path), mode="w")
        self._stream = None
        self._scaler = VideoReformatter()  # one swscale context for the stream, not one per frame
        self.frames = 0

    def _start(self, width: int, height: int) -> None:
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # no macroblock-tree rate control: with it, the same frames encode to different bytes from run to run (4
        # distinct files in 30 encodes of one 8-frame clip, 1 in 60 without; one x264 thread alone does not fix it),
        # which DVC sees as changed data and tests as changed samples
        options = (
            {"crf": str(self.crf), "preset": "veryfast", "x264-params": "mbtree=0"} if self.codec == "libx264" else {}
        )
        if self.gop:
            stream.codec_context.gop_size = int(self.gop)
            if self.codec == "libx264":
                # fixed GOP so keyframes sit where the params say (scene-cut keyframes would move them)
                options.update({"sc_threshold": "0", "bf": "0", "keyint_min": str(int(self.gop))})
        stream.options = options
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._stream is None:
            self._start(frame.shape[1], frame.shape[0])
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf = self._scaler.reformat(vf, format="yuv420p")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(
    path: Path | str, frames: Iterable[np.ndarray], fps: float, gop: int | None = None, crf: int = 20
) -> int:
    with VideoWriter(path, fps, gop=gop, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.frames


def write_gif(path: Path | str, frames: Iterable[np.ndarray], fps: float) -> None:
    """A GIF preview (Pillow), for eyes and MLflow artifacts."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)


def remux_clip(src: Path | str, dst: Path | str, start_frame: int, end_frame: int) -> tuple[int, int]:
    """Copy the packets of [start, end) without re-encoding, starting at the first keyframe >= start_frame.

    Returns the frame range the new file holds (start snapped forward to a keyframe, so no frame of an earlier
    shot leaks in). Raises ValueError when no keyframe lies inside the range.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    first = None
    last = None
    index = _display_indices(Path(src))
    with _open(Path(src)) as container:
        stream = _video_stream(container)
        packets = []
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            idx = index[packet.pts]
            if idx >= end_frame:
                continue  # packets are in decode order; keep scanning in case of reordering
            if first is None:
                if idx < start_frame or not packet.is_keyframe:
                    continue
                first = idx
            if idx >= first:
                packets.append((idx, packet))
                last = idx if last is None else max(last, idx)
        if first is None:
            raise ValueError(f"no keyframe in frames [{start_frame}, {end_frame}) of {src}")
        with av.open(str(dst), mode="w") as out:
            ostream = out.add_stream_from_template(stream)
            for _, packet in packets:
                packet.stream = ostream
                out.mux(packet)
    return first, last + 1


def reencode_clip(
    src: Path | str, dst: Path | str, start_frame: int, end_frame: int, crf: int = 18, gop: int | None = None
) -> tuple[int, int]:
    """Frame-exact clip: decode [start, end) and encode it anew (a second decode of the kept range only)."""
    info = probe(src)
    count = 0
    with VideoWriter(dst, info.fps, gop=gop, crf=crf) as writer:
        for idx, frame in enumerate(iter_frames(src)):
            if idx >= end_frame:
                break
            if idx >= start_frame:
                writer.write(frame)
                count += 1
    if count == 0:
        raise ValueError(f"no frames in [{start_frame}, {end_frame}) of {src}")
    return start_frame, start_frame + count


def read_timed(path: Path | str) -> tuple[list[np.ndarray], list[float | None], bool]:
    """Every frame (RGB uint8), its presentation time in seconds (None where the stream gives none), and whether
    the file also holds an audio stream. VideoReadError as _decode raises it."""
    with _open(Path(path)) as container:
        has_audio = bool(container.streams.audio)
    frames, times = [], []
    for frame in _decode(path):
        frames.append(frame.to_ndarray(format="rgb24"))
        times.append(float(frame.time) if frame.time is not None else None)
    return frames, times, has_audio


class FrameClock:
    """Seconds of frame indices from the decoded frames' own presentation times (relative to the first frame), so a
    variable-frame-rate video's clip times are where its frames are shown, not index / average fps. A stream whose
    times are exactly index / fps (any constant-rate file) reads index / fps, the same numbers as before. Past the
    last frame: its time plus one average frame."""

    def __init__(self, times: list[float | None], fps: float):
        self.fps = float(fps)
        known = [t for t in times if t is not None]
        self.times = [t - known[0] for t in times] if known and len(known) == len(times) else None
        if self.times is not None and all(t == k / self.fps for k, t in enumerate(self.times)):
            self.times = None  # constant rate: index / fps

    @property
    def variable(self) -> bool:
        return self.times is not None

    def at(self, index: int) -> float:
        if self.times is None:
            return index / self.fps
        if index < len(self.times):
            return self.times[index]
        return self.times[-1] + (index - len(self.times) + 1) / self.fps

    def span(self, start: int, end: int) -> float:
        return (end - start) / self.fps if self.times is None else self.at(end) - self.at(start)


def seconds_to_frames(seconds: float, fps: float) -> int:
    return int(math.floor(seconds * fps + 1e-6))
