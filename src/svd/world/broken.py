"""Broken inputs placed among the good videos, so curation has to quarantine them with a clear reason."""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np

from svd.io.video import write_video
from svd.world.render import ShotRenderer
from svd.world.scene import action_shot

STREAM_BROKEN = 5


def _empty(path: Path, seed: int) -> None:
    path.write_bytes(b"")


def _truncated(path: Path, seed: int) -> None:
    # a real clip, then only its first half kept: the mp4 index (moov) sits at the end, so it is lost
    rng = np.random.default_rng([seed, STREAM_BROKEN, 1])
    spec = action_shot(rng, 96, 24, 48, "red", "circle", "right")
    renderer = ShotRenderer(spec)
    with tempfile.TemporaryDirectory() as tmp:  # never leave the whole file where curation would find it
        full = Path(tmp) / "full.mp4"
        write_video(full, (renderer.frame(i) for i in range(spec.n_frames)), 24, gop=24)
        data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text(path: Path, seed: int) -> None:
    path.write_text("This is not a video.\nIt is a text file that someone saved with an .mp4 extension.\n")


def _zero_frames(path: Path, seed: int) -> None:
    # empty_moov keeps the track in the header even though no sample is ever written
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "empty_moov"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()


def _audio_only(path: Path, seed: int) -> None:
    rate = 44100
    t = np.arange(rate, dtype=np.float64) / rate  # one second of a 440 Hz tone, stereo
    tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        chunk = 1024
        for i in range(0, rate, chunk):
            block = np.ascontiguousarray(np.stack([tone[i : i + chunk]] * 2))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# name, kind, what a reader should say, writer
BROKEN = (
    ("broken_empty.mp4", "empty", "empty file (0 bytes)", _empty),
    ("broken_truncated.mp4", "truncated", "not a readable media container (moov atom lost)", _truncated),
    ("broken_text.mp4", "text", "not a readable media container", _text),
    ("broken_zero_frames.mp4", "zero_frames", "video stream without frames (nothing decodes)", _zero_frames),
    ("broken_audio_only.mp4", "audio_only", "no video stream (found: audio)", _audio_only),
)


def write_broken(out: Path, seed: int) -> list[dict]:
    """Write the broken files into OUT/videos/; returns broken.parquet rows (file relative to OUT)."""
    folder = out / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, kind, expected, writer in BROKEN:
        writer(folder / name, seed)
        rows.append({"file": f"videos/{name}", "kind": kind, "expected_error": expected})
    return rows
