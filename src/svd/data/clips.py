"""Torch datasets over a curated clip set (the output folder of `svd curate`).

`CuratedSet` is the selection: which clips, and where their frames live. The curated set (paper: LVD-F) is the kept
clips, each read from its own mp4 under OUT/clips/ (a keyframe-snapped range of its source video:
[file_start_frame, file_end_frame)). The uncurated ablation (paper: LVD-10M vs LVD-10M-F) is every clip the cut
detector found, whatever the filters said; only kept clips have a file, so the others are read as the range
[start_frame, end_frame) of their source video (`sources` mapping or `source_dir`).

`VideoClipDataset` samples T frames at a target fps from a clip (Stage II/III video training), `FrameDataset` single
frames (VAE and Stage I image training). Sampling is seeded by (seed, epoch, index): the same epoch gives the same
items in any order and in any worker, `set_epoch` moves to new ones. Frames are decoded in one streaming pass that
seeks to the keyframe before the first needed frame and stops after the last one, scaled inside the decoder.

`subset_hq` ranks clips for Stage III (high-quality fine-tuning); its rule is in its docstring.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from svd.diffusion.conditioning import fps_id as _fps_id
from svd.diffusion.conditioning import motion_bucket as _motion_bucket
from svd.errors import InputError

CAPTION_KEYS = ("caption_coca", "caption_video", "caption_llm")  # paper's sampling order: 0.5 / 0.25 / 0.25


def _text(value) -> str | None:
    """A caption cell as text, or None for null/empty."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    value = str(value).strip()
    return value or None


def _float(value) -> float:
    if value is None or value is pd.NA:
        return float("nan")
    return float(value)


@dataclass(frozen=True)
class ClipRef:
    """One clip and where its frames are: frames [offset, offset + n_frames) of `path` (frame 0 = the file's first)."""

    clip_id: str
    video: str
    path: Path
    offset: int
    n_frames: int
    fps: float
    from_source: bool  # True: read from the source video's range (no clip file of its own)
    motion_score: float
    aesthetic: float
    clip_score: float
    caption: str | None
    captions: tuple[str | None, str | None, str | None]  # coca, video, llm
    keep: bool


class CuratedSet:
    """The clips of a curated folder (`root`, holding clips.parquet and clips/).

    keep_only=True, curated=True (default): the kept clips, each from its own file (the curated set).
    keep_only=False, curated=True: every clip that has its own file.
    curated=False: every clip, kept or dropped (keep_only has no effect): the uncurated ablation; clips without a
        file are read from their source video, found in `sources` (video name -> path) or as
        `<source_dir>/<video>.<ext>` (the world's videos folder).
    """

    def __init__(
        self,
        root: Path | str,
        keep_only: bool = True,
        curated: bool = True,
        sources: Mapping[str, Path | str] | None = None,
        source_dir: Path | str | None = None,
    ):
        self.root = Path(root)
        if not self.root.exists():
            raise InputError(f"curated folder not found: {self.root} (run `svd curate` first)")
        if not self.root.is_dir():
            raise InputError(f"curated root must be a folder (the output of `svd curate`), got a file: {self.root}")
        manifest = self.root / "clips.parquet"
        if not manifest.is_file():
            raise InputError(f"no clips.parquet in {self.root} (is it the output folder of `svd curate`?)")
        try:
            df = pd.read_parquet(manifest)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise InputError(f"cannot read {manifest} ({exc.__class__.__name__}: {str(exc)[:160]})") from None
        missing = {"video", "clip_id", "start_frame", "end_frame", "fps", "keep"} - set(df.columns)
        if missing:
            raise InputError(f"{manifest} lacks columns {sorted(missing)} (written by an older `svd curate`?)")
        self.keep_only = keep_only
        self.curated = curated
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.sources = {k: Path(v) for k, v in (sources or {}).items()}

        has_file = df["file"].notna() if "file" in df else pd.Series(False, index=df.index)
        if curated:
            rows = df[has_file & (df["keep"].astype(bool) if keep_only else True)]
        else:
            rows = df
        if len(rows) == 0:
            what = "kept clips with a clip file" if curated else "clips"
            raise InputError(f"no {what} in {manifest} ({len(df)} rows before selection)")
        self.frame = rows.reset_index(drop=True)
        self.clips: list[ClipRef] = [self._ref(row) for row in self.frame.to_dict("records")]

    def _source_path(self, video: str) -> Path:
        if video in self.sources:
            path = self.sources[video]
        elif self.source_dir is not None:
            path = self.source_dir / f"{video}.mp4"
            if not path.exists():
                # curate names a video by its path under the input folder, "/" as "__", suffix dropped
                stem = self.source_dir / video.replace("__", "/")
                found = sorted(stem.parent.glob(f"{stem.name}.*")) if stem.parent.is_dir() else []
                path = found[0] if found else path
        else:
            raise InputError(
                f"clip of video {video!r} has no clip file: pass source_dir= (the videos folder curate read) "
                "or sources= for the uncurated set"
            )
        if not Path(path).is_file():
            raise InputError(f"source video of {video!r} not found: {path}")
        return Path(path)

    def _ref(self, row: dict) -> ClipRef:
        file = _text(row.get("file"))
        if file is not None:
            path = self.root / file
            if not path.is_file():
                raise InputError(f"clip file of {row['clip_id']} not found: {path}")
            start, end = row.get("file_start_frame"), row.get("file_end_frame")
            n = int(end) - int(start) if not (pd.isna(start) or pd.isna(end)) else int(row["end_frame"]) - int(
                row["start_frame"])
            offset, from_source = 0, False
        else:
            path = self._source_path(str(row["video"]))
            offset, n = int(row["start_frame"]), int(row["end_frame"]) - int(row["start_frame"])
            from_source = True
        return ClipRef(
            clip_id=str(row["clip_id"]),
            video=str(row["video"]),
            path=path,
            offset=offset,
            n_frames=max(0, n),
            fps=float(row["fps"]),
            from_source=from_source,
            motion_score=_float(row.get("motion_score")),
            aesthetic=_float(row.get("aesthetic")),
            clip_score=_float(row.get("clip_score")),
            caption=_text(row.get("caption")) or _text(row.get("source_description")),
            captions=tuple(_text(row.get(k)) for k in CAPTION_KEYS),
            keep=bool(row["keep"]),
        )

    def _select(self, positions: Sequence[int]) -> "CuratedSet":
        """A view of this set with the given rows (same root and sources)."""
        other = object.__new__(CuratedSet)
        other.__dict__.update(self.__dict__)
        positions = list(positions)
        other.frame = self.frame.iloc[positions].reset_index(drop=True)
        other.clips = [self.clips[i] for i in positions]
        return other

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> ClipRef:
        return self.clips[i]

    def read(self, clip: ClipRef | int, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """Frames `indices` (0 = the clip's first frame) as uint8 (len, H, W, 3), resized to cover `size` (H, W) and
        center-cropped to it (None: as stored). One streaming pass over [min, max] of the indices."""
        ref = self.clips[clip] if isinstance(clip, int) else clip
        if len(indices) == 0:
            raise ValueError("no frame indices to read")
        bad = [i for i in indices if not 0 <= i < ref.n_frames]
        if bad:
            raise ValueError(f"clip {ref.clip_id} has {ref.n_frames} frames; indices out of range: {bad[:5]}")
        absolute = [ref.offset + int(i) for i in indices]
        try:
            frames = read_frames(ref.path, absolute, size)
        except InputError as exc:
            raise InputError(f"clip {ref.clip_id}: {exc}") from None
        return frames


def _cover_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """(w, h) scaled so both sides cover size=(H, W) with the aspect kept (the short side, relative to the crop)."""
    h_t, w_t = size
    scale = max(h_t / height, w_t / width)
    return max(w_t, int(math.ceil(width * scale - 1e-6))), max(h_t, int(math.ceil(height * scale - 1e-6)))


def _center_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h_t, w_t = size
    y = (frame.shape[0] - h_t) // 2
    x = (frame.shape[1] - w_t) // 2
    return frame[y:y + h_t, x:x + w_t]


def read_frames(path: Path | str | bytes, indices: Sequence[int], size: tuple[int, int] | None = None,
                name: str | None = None) -> np.ndarray:
    """Frames at `indices` (0 = the file's first frame) of a video (a file, or its bytes: a shard's member, called
    `name` in errors) as uint8 (len, H, W, 3).

    Seeks to the keyframe before min(indices) and decodes forward until max(indices), so a clip deep inside a long
    source costs one GOP of extra decoding, not the whole prefix. Frames are placed by their timestamps; a stream
    without timestamps is read from the start, counting. Errors are InputError with a one-line reason.
    """
    import av  # here, not at the top: code that trains on cached latents (a GPU box without PyAV) imports this module

    wanted = sorted(set(int(i) for i in indices))
    if isinstance(path, bytes):
        path = _InMemory(path, name or "<video bytes>")
    else:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"video file not found: {path}")
    try:
        got = _decode_wanted(path, wanted, size, seek=wanted[0] > 0)
        if got is None or (wanted[0] > 0 and len(got) < len(wanted)):
            # no timestamps, or a seek that overshot: positions only known by counting from the start
            got = _decode_wanted(path, wanted, size, seek=False)
    except (av.FFmpegError, UnicodeDecodeError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"cannot decode {path} ({reason})") from None
    missing = [i for i in wanted if i not in got]
    if missing:
        raise InputError(f"{path} ended before frame {missing[0]} (decoded up to {max(got, default=-1)})")
    return np.stack([got[int(i)] for i in indices])


@dataclass(frozen=True)
class _InMemory:
    data: bytes
    name: str

    def __str__(self) -> str:
        return self.name


def _decode_wanted(path: Path, wanted: list[int], size, seek: bool) -> dict[int, np.ndarray] | None:
    import av

    first, last = wanted[0], wanted[-1]
    want = set(wanted)
    out: dict[int, np.ndarray] = {}
    source = io.BytesIO(path.data) if isinstance(path, _InMemory) else str(path)
    with av.open(source, metadata_errors="ignore") as container:
        if not container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0 or stream.time_base is None:
            if seek:
                return None
            rate = None
        fps = float(rate) if rate else 0.0
        origin = stream.start_time or 0
        tb = stream.time_base
        if seek:
            container.seek(origin + int(first / fps / tb), stream=stream, backward=True, any_frame=False)
        target = None
        count = 0
        for frame in container.decode(stream):
            if seek or (rate and frame.pts is not None):
                if frame.pts is None:
                    return None
                idx = int(round(float((frame.pts - origin) * tb) * fps))
            else:
                idx = count
            count += 1
            if idx > last:
                break  # streaming: nothing after the last needed frame is decoded
            if idx not in want or idx in out:
                continue
            if size is None:
                out[idx] = frame.to_ndarray(format="rgb24")
            else:
                if target is None:
                    target = _cover_size(frame.width, frame.height, size)
                # swscale scales while converting; AREA is right for the usual downscale
                arr = frame.to_ndarray(format="rgb24", width=target[0], height=target[1], interpolation="AREA")
                out[idx] = np.ascontiguousarray(_center_crop(arr, size))
    return out


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float()
    return t.div_(127.5).sub_(1.0)


def _size(size) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) of positive ints, got {size}")
    return size


class _Epoched(Dataset):
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """New random choices for a new epoch; the same epoch always gives the same items."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])


class VideoClipDataset(_Epoched):
    """Clips of `num_frames` frames at `fps` (Stage II/III video training).

    Item: video (T, 3, H, W) float32 in [-1, 1], caption str, fps_id int (= fps - 1, SVD's convention), motion_bucket
    int (from the clip's motion score, `svd.diffusion.conditioning.motion_bucket`), clip_id str.
    stride = max(1, round(clip_fps / fps)); clips with fewer than num_frames * stride frames are skipped
    (`skipped_short`), as are clips without a motion score (`skipped_unannotated`, only the uncurated set has them).
    Caption: one of coca / video / llm drawn with `caption_probs` (paper: 0.5 / 0.25 / 0.25) among those present
    (probabilities renormalised), else the clip's `caption` (tiny profile: the world's source description), else "".
    """

    def __init__(
        self,
        curated_set: CuratedSet,
        num_frames: int,
        fps: float,
        size: tuple[int, int] | int,
        caption_probs: Sequence[float] = (0.5, 0.25, 0.25),
        motion_score_at_255: float = 0.5,
        seed: int = 0,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        probs = np.asarray(caption_probs, dtype=np.float64)
        if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"caption_probs must be 3 non-negative numbers (coca, video, llm), got {caption_probs}")
        self.set = curated_set
        self.num_frames = int(num_frames)
        self.fps = fps
        self.size = _size(size)
        self.caption_probs = probs
        self.motion_score_at_255 = motion_score_at_255
        self.seed = int(seed)
        self.epoch = 0
        self.items: list[tuple[ClipRef, int]] = []  # (clip, stride)
        self.skipped_short = 0
        self.skipped_unannotated = 0
        for ref in curated_set.clips:
            stride = max(1, int(round(ref.fps / fps)))
            if ref.n_frames < self.num_frames * stride:
                self.skipped_short += 1
            elif math.isnan(ref.motion_score):
                self.skipped_unannotated += 1
            else:
                self.items.append((ref, stride))
        if not self.items:
            raise InputError(
                f"no clip holds {num_frames} frames at {fps} fps ({self.skipped_short} too short, "
                f"{self.skipped_unannotated} without a motion score, of {len(curated_set)})"
            )

    def __len__(self) -> int:
        return len(self.items)

    def caption_for(self, ref: ClipRef, rng: np.random.Generator) -> str:
        present = [i for i, c in enumerate(ref.captions) if c is not None and self.caption_probs[i] > 0]
        if present:
            p = self.caption_probs[present]
            return ref.captions[present[int(rng.choice(len(present), p=p / p.sum()))]]
        return ref.caption or ""

    def _indices(self, index: int, rng: np.random.Generator) -> list[int]:
        ref, stride = self.items[index]
        span = (self.num_frames - 1) * stride + 1
        start = int(rng.integers(0, ref.n_frames - span + 1))
        return [start + k * stride for k in range(self.num_frames)]

    def frame_indices(self, index: int) -> list[int]:
        """The clip-relative frames item `index` reads this epoch."""
        return self._indices(index, self._rng(index))

    def __getitem__(self, index: int) -> dict:
        ref, _ = self.items[index]
        rng = self._rng(index)  # one stream per (seed, epoch, index): frames first, then the caption
        frames = self.set.read(ref, self._indices(index, rng), self.size)
        return {
            "video": _to_tensor(frames),
            "caption": self.caption_for(ref, rng),
            "fps_id": int(_fps_id(int(round(self.fps)))),
            "motion_bucket": int(_motion_bucket(ref.motion_score, self.motion_score_at_255)),
            "clip_id": ref.clip_id,
        }


class FrameDataset(_Epoched):
    """Single frames for the VAE and Stage I (image) training: `frames_per_clip` items per clip, item j drawn from
    the j-th equal part of the clip (spread over the clip, a new frame each epoch).

    Item: image (3, H, W) float32 in [-1, 1], caption str (the clip's caption, else ""), clip_id str.
    """

    def __init__(self, curated_set: CuratedSet, size: tuple[int, int] | int, frames_per_clip: int = 4, seed: int = 0):
        if frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
        self.set = curated_set
        self.size = _size(size)
        self.frames_per_clip = int(frames_per_clip)
        self.seed = int(seed)
        self.epoch = 0
        self.clips = [ref for ref in curated_set.clips if ref.n_frames > 0]
        self.skipped_empty = len(curated_set.clips) - len(self.clips)
        if not self.clips:
            raise InputError(f"no clip with frames in {curated_set.root}")

    def __len__(self) -> int:
        return len(self.clips) * self.frames_per_clip

    def frame_index(self, index: int) -> int:
        ref = self.clips[index // self.frames_per_clip]
        part = index % self.frames_per_clip
        lo = part * ref.n_frames // self.frames_per_clip
        hi = max(lo + 1, (part + 1) * ref.n_frames // self.frames_per_clip)
        return int(self._rng(index).integers(lo, min(hi, ref.n_frames)))

    def __getitem__(self, index: int) -> dict:
        ref = self.clips[index // self.frames_per_clip]
        frame = self.set.read(ref, [self.frame_index(index)], self.size)[0]
        return {"image": _to_tensor(frame), "caption": ref.caption or "", "clip_id": ref.clip_id}


def collate(items: Sequence[dict]) -> dict:
    """Stack tensors, turn ints/floats into tensors, keep strings (and anything else) as lists."""
    if not items:
        raise ValueError("collate got an empty batch")
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, float):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = list(values)
    return out


def aesthetic_is_pretrained(backend_clip: str | None) -> bool:
    """True when curate's `backend_clip` names a pretrained CLIP and a loaded aesthetic head.

    The string is `open_clip:<arch>:<source>+aesthetic:<head>`; `<source>` "random" is a random-init CLIP and
    `aesthetic:random` a random head; "disabled" means no CLIP scores at all.
    """
    if not backend_clip or "+" not in str(backend_clip):
        return False
    clip_part, head_part = str(backend_clip).split("+", 1)
    return not clip_part.endswith(":random") and head_part.startswith("aesthetic:") and head_part != "aesthetic:random"


def subset_hq(curated_set: CuratedSet, fraction: float) -> CuratedSet:
    """The best-scoring `fraction` of the set (at least one clip), for Stage III high-quality fine-tuning.

    Rule (ours; the paper only says "high-quality"): rank by the aesthetic score when curate computed it with
    pretrained weights (`backend_clip`, see `aesthetic_is_pretrained`), otherwise by motion score (higher first: the
    Stage III set should move); ties and missing scores (last) are broken by the other score, then by clip_id, so the
    subset is deterministic. The rule used is in `.hq_rule` of the returned set.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    frame = curated_set.frame
    backends = frame["backend_clip"].dropna().unique() if "backend_clip" in frame else []
    real_aesthetic = len(backends) > 0 and all(aesthetic_is_pretrained(b) for b in backends)
    keys = ["aesthetic", "motion_score"] if real_aesthetic else ["motion_score", "aesthetic"]
    refs = curated_set.clips

    def key(i: int):
        vals = []
        for k in keys:
            v = getattr(refs[i], k)
            vals += [math.isnan(v), -v if not math.isnan(v) else 0.0]
        return (*vals, refs[i].clip_id)

    order = sorted(range(len(refs)), key=key)
    n = max(1, int(math.ceil(fraction * len(refs))))
    subset = curated_set._select(order[:n])
    subset.hq_rule = f"top {fraction:g} by {keys[0]} (then {keys[1]}, clip_id)"
    return subset


def subset_camera(curated_set: CuratedSet, labels: Sequence[str], min_confidence: float = 0.0) -> CuratedSet:
    """The clips whose annotated camera motion (`camera_motion`, svd.curation.camera) is one of `labels`, with
    `camera_confidence` >= min_confidence: the training set of a camera-motion LoRA."""
    frame = curated_set.frame
    if "camera_motion" not in frame:
        raise InputError(
            f"{curated_set.root}/clips.parquet has no camera_motion column: re-run `svd curate` with "
            f"curate.camera.enabled (written since issue 22)"
        )
    confidence = frame["camera_confidence"].fillna(0.0) if "camera_confidence" in frame else 1.0
    keep = frame["camera_motion"].isin(list(labels)) & (confidence >= min_confidence)
    return curated_set._select(np.flatnonzero(keep.to_numpy()).tolist())


__all__ = [
    "CAPTION_KEYS",
    "ClipRef",
    "CuratedSet",
    "FrameDataset",
    "VideoClipDataset",
    "aesthetic_is_pretrained",
    "collate",
    "read_frames",
    "subset_camera",
    "subset_hq",
]
