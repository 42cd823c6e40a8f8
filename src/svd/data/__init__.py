"""Datasets over curated clips: the clip selection (curated or not), video clips at a target fps, single frames."""

from svd.data.clips import (
    CAPTION_KEYS,
    ClipRef,
    CuratedSet,
    FrameDataset,
    VideoClipDataset,
    aesthetic_is_pretrained,
    collate,
    read_frames,
    subset_hq,
)

__all__ = [
    "CAPTION_KEYS",
    "ClipRef",
    "CuratedSet",
    "FrameDataset",
    "VideoClipDataset",
    "aesthetic_is_pretrained",
    "collate",
    "read_frames",
    "subset_hq",
]
