"""Where pretrained weights come from: a local folder, or a hub id already in the local Hugging Face cache. Nothing
is ever downloaded (the machines that run the embedded default have no internet); every loader (VAE, CLIP image
tower, public SVD pipeline) tells the two apart the same way here."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from svd.errors import WeightsError


def looks_like_path(source: str) -> bool:
    """Hub ids are "name" or "org/name"; anything rooted, relative-marked, or with more separators is a path."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def cached_snapshot(source: str, files: Sequence[str]) -> Path | None:
    """The snapshot folder of hub id `source` in the local cache that holds the first of `files` (paths inside the
    repository) found there; None when none is cached or the id is not valid."""
    from huggingface_hub import hf_hub_download

    for name in files:
        try:
            path = Path(hf_hub_download(source, name, local_files_only=True))
        except Exception:  # LocalEntryNotFoundError, EntryNotFoundError, HFValidationError for odd names
            continue
        return path.parents[len(Path(name).parts) - 1]
    return None


def local_or_cached(source: str, key: str, files: Sequence[str]) -> Path:
    """`source` as a local folder, else as a cached hub snapshot holding one of `files`; a WeightsError naming the
    params `key` otherwise."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{key}: {path} is a file; expected a folder holding {' or '.join(files)}")
        return path
    if looks_like_path(source):
        raise WeightsError(f"{key}: folder not found: {path}")
    snapshot = cached_snapshot(source, files)
    if snapshot is None:
        raise WeightsError(f"{key}: {source!r} is neither a local folder nor a hub id in the local cache (nothing is "
                           f"downloaded; point it at a folder holding {' or '.join(files)})")
    return snapshot


__all__ = ["cached_snapshot", "local_or_cached", "looks_like_path"]
