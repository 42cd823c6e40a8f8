"""Videos made by ffmpeg's own test sources (not by this project), with cuts and transitions at known frames.

An outside check for cut detection: the renderer, the codecs and the transitions (xfade) are ffmpeg's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

# (lavfi source, seconds); the sources differ in colour and layout so each join is a true shot change
SOURCES = [
    ("testsrc2=size={w}x{h}:rate={fps}", 3.0),
    ("mandelbrot=size={w}x{h}:rate={fps}", 3.0),
    ("smptebars=size={w}x{h}:rate={fps}", 2.0),
    ("gradients=size={w}x{h}:rate={fps}:speed=0.05:seed=1", 3.0),  # its colours are random unless seeded
    ("rgbtestsrc=size={w}x{h}:rate={fps}", 2.0),
    ("testsrc=size={w}x{h}:rate={fps}", 3.0),
]
# joins between consecutive sources: None = hard cut, else (xfade transition, seconds)
JOINS = [None, ("fade", 0.6), None, ("fadeblack", 0.8), ("dissolve", 0.6)]


def make_video(path: Path, fps: int = 25, size: tuple[int, int] = (320, 180)) -> list[tuple[int, int, str]]:
    """Write the video and return its true boundaries as (span_start, frame, kind) in frame indices."""
    w, h = size
    inputs: list[str] = []
    for src, seconds in SOURCES:
        inputs += ["-f", "lavfi", "-t", f"{seconds}", "-i", src.format(w=w, h=h, fps=fps)]
    # chain: each join either concatenates or xfades the running result with the next source
    # one time base and pixel format for every stream, or xfade refuses to join them
    filters = [f"[{i}:v]format=yuv420p,settb=1/{fps},setpts=N/({fps}*TB)[s{i}]" for i in range(len(SOURCES))]
    label, length = "[s0]", SOURCES[0][1]
    truth: list[tuple[int, int, str]] = []
    for i, join in enumerate(JOINS, start=1):
        nxt, out = f"[s{i}]", f"[v{i}]"
        if join is None:
            filters.append(f"{label}{nxt}concat=n=2:v=1:a=0,settb=1/{fps}{out}")
            frame = round(length * fps)
            truth.append((frame, frame, "cut"))
            length += SOURCES[i][1]
        else:
            kind, d = join
            offset = length - d
            filters.append(f"{label}{nxt}xfade=transition={kind}:duration={d}:offset={offset}{out}")
            truth.append((round(offset * fps), round((offset + d) * fps), "fade"))
            length += SOURCES[i][1] - d
        label = out
    cmd = [
        FFMPEG,
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        *inputs,
        "-filter_complex",
        ";".join(filters),
        "-map",
        label,
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(fps),
        "-g",
        str(fps),
        str(path),
    ]
    subprocess.run(cmd, check=True, timeout=120)
    return truth
