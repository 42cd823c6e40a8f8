"""The curated clips as WebDataset tar shards: what training streams from at scale.

A shard is a plain tar of samples in a fixed order; a sample is the files sharing one key (the clip id):
``KEY.mp4`` (the clip file, as curate wrote it), ``KEY.txt`` (its caption) and ``KEY.json`` (its metadata: frames,
fps, scores, the three captions). Every archive member has mtime 0, owner 0/0 with empty names and mode 0644, and
samples are sorted by clip id, so an unchanged curated set gives the same bytes and keeps its DVC hash. ``index.json``
beside the shards names each shard with its sample count, size and sha256, and maps every key to its shard: a
reader can select clips (the HQ subset, a shard per process) without opening a tar.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from svd.data.clips import ClipRef, CuratedSet
from svd.errors import InputError

INDEX = "index.json"
FORMAT = "svd-webdataset-1"
EXTENSIONS = ("mp4", "txt", "json")


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def clip_meta(ref: ClipRef) -> dict:
    """A clip's `KEY.json`: what a training reader needs besides the frames."""
    return {"clip_id": ref.clip_id, "video": ref.video, "n_frames": ref.n_frames, "fps": ref.fps,
            "motion_score": _number(ref.motion_score), "aesthetic": _number(ref.aesthetic),
            "clip_score": _number(ref.clip_score), "caption": ref.caption,
            "captions": dict(zip(("coca", "video", "llm"), ref.captions))}


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def _check_key(key: str) -> str:
    # WebDataset splits a member name at the first dot of its basename: the key must not hold one
    if not key or "." in key or "/" in key:
        raise InputError(f"clip id {key!r} cannot be a WebDataset key (no '.' or '/' allowed)")
    return key


def write_shards(curated_root: Path | str, out: Path | str, *, samples_per_shard: int) -> dict:
    """Write the kept clips of the curated folder as `out/shard-NNNNNN.tar` + `out/index.json` (out is replaced).
    Returns the index's summary (shards, samples, bytes)."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    clips = CuratedSet(curated_root)  # kept clips with a file; InputError for a missing or broken folder
    refs = sorted(clips.clips, key=lambda r: r.clip_id)
    for ref in refs:
        _check_key(ref.clip_id)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shards, keys = [], {}
    for first in range(0, len(refs), samples_per_shard):
        name = f"shard-{len(shards):06d}.tar"
        part = refs[first:first + samples_per_shard]
        with tarfile.open(tmp / name, "w", format=tarfile.PAX_FORMAT) as tar:
            for ref in part:
                meta = json.dumps(clip_meta(ref), sort_keys=True, indent=None).encode()
                for ext, data in (("mp4", ref.path.read_bytes()), ("txt", (ref.caption or "").encode()),
                                  ("json", meta)):
                    tar.addfile(*_member(f"{ref.clip_id}.{ext}", data))
                keys[ref.clip_id] = len(shards)
        data = (tmp / name).read_bytes()
        shards.append({"name": name, "samples": len(part), "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})
    index = {"format": FORMAT, "samples": len(refs), "shards": shards, "keys": keys}
    (tmp / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"shards": len(shards), "samples": len(refs), "bytes": sum(s["bytes"] for s in shards), "out": str(out)}


@dataclass(frozen=True)
class Sample:
    key: str
    mp4: bytes
    caption: str
    meta: dict


class ShardSet:
    """The shards of a folder written by `write_shards`, read through its index."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        path = self.root / INDEX
        if not path.is_file():
            raise InputError(f"no {INDEX} in {self.root} (write the shards with `svd shard`)")
        try:
            index = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {path} ({exc.__class__.__name__}: {str(exc)[:120]})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise InputError(f"{path} is not a {FORMAT} index (format: "
                             f"{index.get('format') if isinstance(index, dict) else type(index).__name__})")
        self.shards: list[dict] = index["shards"]
        self.keys: dict[str, int] = index["keys"]

    def __len__(self) -> int:
        return len(self.keys)

    def shard_of(self, key: str) -> int:
        if key not in self.keys:
            raise InputError(f"clip {key} is not in the shards at {self.root} (written from another curated set? "
                             f"re-run `svd shard`)")
        return self.keys[key]

    def read(self, shard: int, keys: set[str] | None = None) -> Iterator[Sample]:
        """The samples of one shard in their stored order, streamed (one sample in memory at a time); `keys`: only
        those. A damaged shard is an InputError naming it."""
        path = self.root / self.shards[shard]["name"]
        if not path.is_file():
            raise InputError(f"shard not found: {path}")
        current: dict[str, bytes] = {}
        key = None
        try:
            with tarfile.open(path, "r|") as tar:  # "r|": a stream, as from object storage
                for member in tar:
                    if not member.isfile():
                        continue
                    k, _, ext = member.name.partition(".")
                    if k != key:
                        if key is not None and (keys is None or key in keys):
                            yield self._sample(path, key, current)
                        key, current = k, {}
                    if keys is None or k in keys:
                        current[ext] = tar.extractfile(member).read()
                if key is not None and (keys is None or key in keys):
                    yield self._sample(path, key, current)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"cannot read shard {path} ({exc.__class__.__name__}: {str(exc)[:120]})") from None

    @staticmethod
    def _sample(path: Path, key: str, files: dict[str, bytes]) -> Sample:
        missing = [e for e in EXTENSIONS if e not in files]
        if missing:
            raise InputError(f"shard {path}: sample {key} lacks {', '.join('.' + e for e in missing)}")
        try:
            meta = json.loads(files["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"shard {path}: {key}.json is not JSON") from None
        return Sample(key, files["mp4"], files["txt"].decode("utf-8", "replace"), meta)


__all__ = ["FORMAT", "INDEX", "Sample", "ShardSet", "clip_meta", "write_shards"]
