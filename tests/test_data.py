"""Datasets over a small curated set: selection, shapes and ranges, seeded sampling, stride, captions, the uncurated
ablation reading source ranges, and one-line errors for bad inputs."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from svd.data import (
    CuratedSet,
    FrameDataset,
    VideoClipDataset,
    aesthetic_is_pretrained,
    collate,
    read_frames,
    subset_hq,
)
from svd.errors import InputError
from svd.io.video import iter_frames

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(small_curated):
    return small_curated[0].parent


@pytest.fixture(scope="module")
def curated(small_curated):
    return small_curated[1]


@pytest.fixture(scope="module")
def clips(curated):
    return pd.read_parquet(curated / "clips.parquet")


def _copy(curated: Path, dst: Path, edit=None) -> Path:
    shutil.copytree(curated, dst)
    if edit is not None:
        df = pd.read_parquet(dst / "clips.parquet")
        df = edit(df)
        df.to_parquet(dst / "clips.parquet", index=False)
    return dst


def test_selection(curated, clips, world):
    kept = CuratedSet(curated)
    assert len(kept) == int(clips["keep"].sum()) > 0
    assert all(c.keep and not c.from_source and c.path.is_file() for c in kept.clips)
    row = clips[clips["keep"]].iloc[0]
    assert kept[0].n_frames == row["file_end_frame"] - row["file_start_frame"]

    everything = CuratedSet(curated, curated=False, source_dir=world / "world" / "videos")
    assert len(everything) == len(clips)
    assert {c.clip_id for c in everything.clips} == set(clips["clip_id"])
    assert any(c.from_source for c in everything.clips)
    # keep_only does not narrow the uncurated set
    assert len(CuratedSet(curated, keep_only=True, curated=False, source_dir=world / "world" / "videos")) == len(clips)


def test_video_items(curated):
    ds = VideoClipDataset(CuratedSet(curated), num_frames=6, fps=8, size=(48, 64))
    item = ds[0]
    assert set(item) == {"video", "caption", "fps_id", "motion_bucket", "clip_id"}
    v = item["video"]
    assert v.shape == (6, 3, 48, 64) and v.dtype == torch.float32
    assert -1.0 <= float(v.min()) and float(v.max()) <= 1.0 and float(v.std()) > 0.01
    assert item["fps_id"] == 7 and 0 <= item["motion_bucket"] <= 255
    assert isinstance(item["caption"], str) and item["caption"]  # tiny profile: the source description
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 6, 3, 48, 64)
    assert batch["fps_id"].dtype == torch.int64 and batch["fps_id"].tolist() == [7, 7]
    assert isinstance(batch["caption"], list) and len(batch["clip_id"]) == 2
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate)
    assert next(iter(loader))["video"].shape == (3, 6, 3, 48, 64)


def test_motion_bucket_follows_score(curated):
    from svd.diffusion.conditioning import motion_bucket

    ds = VideoClipDataset(CuratedSet(curated), num_frames=2, fps=8, size=32, motion_score_at_255=0.25)
    ref, _ = ds.items[0]
    assert ds[0]["motion_bucket"] == motion_bucket(ref.motion_score, 0.25)


def test_seeded_per_epoch(curated):
    cs = CuratedSet(curated)
    a = VideoClipDataset(cs, num_frames=4, fps=8, size=32, seed=3)
    b = VideoClipDataset(cs, num_frames=4, fps=8, size=32, seed=3)
    assert torch.equal(a[2]["video"], b[2]["video"])
    before = [a.frame_indices(i) for i in range(len(a))]
    assert before == [b.frame_indices(i) for i in range(len(b))]
    a.set_epoch(1)
    after = [a.frame_indices(i) for i in range(len(a))]
    assert after != before
    changed = next(i for i in range(len(a)) if after[i] != before[i])
    assert not torch.equal(a[changed]["video"], b[changed]["video"])
    a.set_epoch(0)
    assert [a.frame_indices(i) for i in range(len(a))] == before
    other = VideoClipDataset(cs, num_frames=4, fps=8, size=32, seed=4)
    assert [other.frame_indices(i) for i in range(len(other))] != before


def test_stride_and_content(curated):
    cs = CuratedSet(curated)
    ds = VideoClipDataset(cs, num_frames=5, fps=8, size=(108, 192))  # native size: no resize, exact frames
    for i, (ref, stride) in enumerate(ds.items):
        assert stride == max(1, round(ref.fps / 8))
        idx = ds.frame_indices(i)
        assert np.all(np.diff(idx) == stride) and 0 <= idx[0] and idx[-1] < ref.n_frames
    strides = {round(ref.fps): s for ref, s in ds.items}
    assert strides == {24: 3, 30: 4}  # the world has 24 and 30 fps videos here
    i = 1
    full = list(iter_frames(ds.items[i][0].path))
    expect = np.stack([full[k] for k in ds.frame_indices(i)])
    got = ((ds[i]["video"] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, expect)


def test_resize_short_side_then_center_crop(curated):
    cs = CuratedSet(curated)
    full = next(iter_frames(cs[0].path, size=(96, 54)))  # 192x108 at half size
    got = cs.read(0, [0], size=(54, 54))[0]
    assert got.shape == (54, 54, 3)
    assert np.array_equal(got, full[:, 21:75])


def test_short_clips_skipped(curated, clips):
    cs = CuratedSet(curated)
    kept = clips[clips["keep"]]
    n = (kept["file_end_frame"] - kept["file_start_frame"]).astype(int)
    stride = (kept["fps"] / 8).round().clip(lower=1).astype(int)
    T = 20
    expected = int((n < T * stride).sum())
    assert 0 < expected < len(kept)
    ds = VideoClipDataset(cs, num_frames=T, fps=8, size=32)
    assert ds.skipped_short == expected and len(ds) == len(kept) - expected
    with pytest.raises(InputError, match="too short"):
        VideoClipDataset(cs, num_frames=1000, fps=8, size=32)


def test_caption_probabilities(curated, tmp_path):
    def three(df):
        for key in ("caption_coca", "caption_video", "caption_llm"):
            df[key] = key.split("_")[1]
        return df

    cs = CuratedSet(_copy(curated, tmp_path / "three", three))
    ds = VideoClipDataset(cs, num_frames=2, fps=8, size=32)
    ref = ds.items[0][0]
    draws = Counter(ds.caption_for(ref, np.random.default_rng([0, i])) for i in range(4000))
    assert abs(draws["coca"] / 4000 - 0.5) < 0.04
    assert abs(draws["video"] / 4000 - 0.25) < 0.04
    assert abs(draws["llm"] / 4000 - 0.25) < 0.04
    assert ds[0]["caption"] in {"coca", "video", "llm"}

    # only some present: renormalised among those; none: the clip caption
    partial = ref.__class__(**{**ref.__dict__, "captions": (None, "video", "llm")})
    draws = Counter(ds.caption_for(partial, np.random.default_rng([1, i])) for i in range(2000))
    assert set(draws) == {"video", "llm"} and abs(draws["video"] / 2000 - 0.5) < 0.05
    bare = ref.__class__(**{**ref.__dict__, "captions": (None, None, None)})
    assert ds.caption_for(bare, np.random.default_rng(0)) == ref.caption


def test_uncurated_reads_source_ranges(curated, clips, world):
    videos = world / "world" / "videos"
    with pytest.raises(InputError, match="source_dir"):
        CuratedSet(curated, curated=False)
    cs = CuratedSet(curated, curated=False, source_dir=videos)
    i = next(k for k, c in enumerate(cs.clips) if c.from_source and c.n_frames >= 40)
    ref = cs[i]
    row = clips[clips["clip_id"] == ref.clip_id].iloc[0]
    assert not row["keep"] and ref.offset == row["start_frame"]
    full = list(iter_frames(videos / f"{ref.video}.mp4"))
    got = cs.read(i, [0, 7, 39])
    assert np.array_equal(got, np.stack([full[ref.offset + k] for k in (0, 7, 39)]))
    # same through the sources mapping
    mapped = CuratedSet(curated, curated=False, sources={v: videos / f"{v}.mp4" for v in clips["video"].unique()})
    assert np.array_equal(mapped.read(i, [3])[0], full[ref.offset + 3])
    # the uncurated video dataset skips what is too short or never annotated, and reads the rest
    ds = VideoClipDataset(cs, num_frames=4, fps=8, size=32)
    assert len(ds) + ds.skipped_short + ds.skipped_unannotated == len(cs)
    assert len(ds) > int(clips["keep"].sum())  # dropped-but-annotated clips are in
    j = next(k for k, (r, _) in enumerate(ds.items) if r.from_source)
    assert ds[j]["video"].shape == (4, 3, 32, 32)


def test_frames(curated):
    cs = CuratedSet(curated)
    ds = FrameDataset(cs, size=(40, 56), frames_per_clip=4, seed=1)
    assert len(ds) == 4 * len(cs)
    item = ds[5]
    assert set(item) == {"image", "caption", "clip_id"}
    assert item["image"].shape == (3, 40, 56) and item["image"].dtype == torch.float32
    assert -1 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert item["caption"] == cs[1].caption and item["clip_id"] == cs[1].clip_id
    idx = [ds.frame_index(k) for k in range(4)]
    n = cs[0].n_frames
    assert all(j * n // 4 <= f < (j + 1) * n // 4 for j, f in enumerate(idx))  # spread over the clip
    again = FrameDataset(cs, size=(40, 56), frames_per_clip=4, seed=1)
    assert torch.equal(again[5]["image"], item["image"])
    before = [ds.frame_index(k) for k in range(len(ds))]
    ds.set_epoch(1)
    assert [ds.frame_index(k) for k in range(len(ds))] != before
    assert collate([ds[0], ds[1]])["image"].shape == (2, 3, 40, 56)


def test_subset_hq(curated, tmp_path):
    cs = CuratedSet(curated)
    hq = subset_hq(cs, 0.5)
    assert len(hq) == int(np.ceil(0.5 * len(cs))) and "motion_score" in hq.hq_rule.split(" (")[0]
    scores = sorted((c.motion_score for c in cs.clips), reverse=True)
    assert sorted((c.motion_score for c in hq.clips), reverse=True) == scores[: len(hq)]
    assert len(subset_hq(cs, 0.01)) == 1

    def pretrained(df):
        df["backend_clip"] = "open_clip:ViT-L-14:vit_l14.bin+aesthetic:sa_0_4.pth(linear)"
        df["aesthetic"] = np.arange(len(df), dtype=float)  # ranks opposite to row order
        return df

    real = CuratedSet(_copy(curated, tmp_path / "real", pretrained))
    top = subset_hq(real, 0.25)
    assert top.hq_rule.startswith("top 0.25 by aesthetic")
    assert [c.aesthetic for c in top.clips] == sorted((c.aesthetic for c in real.clips), reverse=True)[: len(top)]
    assert aesthetic_is_pretrained("open_clip:ViT-L-14:vit_l14.bin+aesthetic:head.pth(mlp)")
    assert not aesthetic_is_pretrained("open_clip:svd-tiny-clip:random+aesthetic:random")
    assert not aesthetic_is_pretrained("open_clip:ViT-L-14:vit_l14.bin+aesthetic:random")
    assert not aesthetic_is_pretrained("open_clip:svd-tiny-clip:random+aesthetic:head.pth(linear)")
    assert not aesthetic_is_pretrained("disabled")
    with pytest.raises(ValueError):
        subset_hq(cs, 0)


def test_errors(curated, tmp_path):
    with pytest.raises(InputError, match="not found"):
        CuratedSet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no clips.parquet"):
        CuratedSet(tmp_path / "empty")

    def none_kept(df):
        df["keep"] = False
        return df

    with pytest.raises(InputError, match="no kept clips"):
        CuratedSet(_copy(curated, tmp_path / "none", none_kept))

    broken = _copy(curated, tmp_path / "broken")
    cs = CuratedSet(broken)
    cs[0].path.write_text("this is not a video\n")
    with pytest.raises(InputError, match=f"clip {cs[0].clip_id}: cannot decode"):
        cs.read(0, [0])
    with pytest.raises(InputError, match="cannot decode"):
        VideoClipDataset(cs, num_frames=2, fps=8, size=32)[0]
    cs[1].path.unlink()
    with pytest.raises(InputError, match="clip file of .* not found"):
        CuratedSet(broken)
    with pytest.raises(InputError, match="ended before"):
        read_frames(cs[2].path, [cs[2].n_frames + 50])
    with pytest.raises(ValueError, match="out of range"):
        cs.read(2, [cs[2].n_frames])
