"""WebDataset shards (byte-deterministic, readable as a stream, clear errors) and the streamed training windows: the
same windows as the cached path, a buffer that does not grow with the data, a split over processes, a resume that
replays to the same batches."""

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from svd.data.clips import CuratedSet
from svd.data.shards import INDEX, ShardSet, write_shards
from svd.errors import ConfigError, InputError
from svd.training.latents import read_windows
from svd.training.stream import StreamBatches, WindowStream, to_unit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from stream_memory import replicate_curated  # noqa: E402  (the benchmark's bigger data set, tested here)

ARGS = dict(num_frames=4, fps=6.0, size=(16, 24), windows_per_clip=2, augment=["hflip", "reverse"], seed=3)


def _digest(video: torch.Tensor) -> str:
    return hashlib.sha1(video.contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shards(small_curated, tmp_path_factory):
    _, curated = small_curated
    out = tmp_path_factory.mktemp("shards") / "shards"
    summary = write_shards(curated, out, samples_per_shard=2)
    return curated, out, summary


def test_shards_are_byte_deterministic_webdataset_tars(shards, tmp_path):
    curated, out, summary = shards
    clips = CuratedSet(curated)
    assert summary["samples"] == len(clips) and summary["shards"] == -(-len(clips) // 2)
    # a re-curation that rewrote the clip files (new mtimes) gives the same bytes
    copy = tmp_path / "curated"
    shutil.copytree(curated, copy)
    for f in (copy / "clips").iterdir():
        os.utime(f, (1_900_000_000, 1_900_000_000))
    again = write_shards(copy, tmp_path / "again", samples_per_shard=2)
    assert again["bytes"] == summary["bytes"]
    for f in sorted(out.iterdir()):
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name

    index = json.loads((out / INDEX).read_text())
    names, keys = [], []
    for shard in index["shards"]:
        data = (out / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
                names.append(m.name)
    keys = [n.split(".")[0] for n in names]
    assert keys == sorted(keys) and names[:3] == [f"{keys[0]}.mp4", f"{keys[0]}.txt", f"{keys[0]}.json"]
    by_id = {r.clip_id: r for r in clips.clips}
    assert set(keys) == set(by_id)
    sample = next(ShardSet(out).read(0))
    ref = by_id[sample.key]
    assert sample.mp4 == ref.path.read_bytes() and sample.caption == (ref.caption or "")
    assert sample.meta["n_frames"] == ref.n_frames and sample.meta["fps"] == ref.fps
    assert sample.meta["captions"]["coca"] == ref.captions[0]


def test_shard_errors_name_the_file(shards, tmp_path):
    curated, out, _ = shards
    with pytest.raises(InputError, match="curated folder not found"):
        write_shards(tmp_path / "nothing", tmp_path / "x", samples_per_shard=2)
    with pytest.raises(ValueError, match="samples_per_shard"):
        write_shards(curated, tmp_path / "x", samples_per_shard=0)
    with pytest.raises(InputError, match="no index.json"):
        ShardSet(tmp_path)
    (tmp_path / INDEX).write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        ShardSet(tmp_path)
    (tmp_path / INDEX).write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not a svd-webdataset-1 index"):
        ShardSet(tmp_path)

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    tar = broken / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[:700])  # cut inside the first mp4
    with pytest.raises(InputError, match="shard-000000.tar"):
        list(ShardSet(broken).read(0))
    (broken / "shard-000001.tar").unlink()
    with pytest.raises(InputError, match="shard not found"):
        list(ShardSet(broken).read(1))
    with pytest.raises(InputError, match="not in the shards"):
        ShardSet(broken).shard_of("v9999_0000")
    # a lost clip file is an error at write time, not a silently shorter shard set
    copy = tmp_path / "curated"
    shutil.copytree(curated, copy)
    next((copy / "clips").iterdir()).unlink()
    with pytest.raises(InputError, match="clip file of .* not found"):
        write_shards(copy, tmp_path / "y", samples_per_shard=2)


@pytest.mark.parametrize("source", ["shards", "clips"])
def test_stream_gives_the_cached_windows(shards, source):
    """Every window (and flip) the cached path reads, each once, from either source."""
    curated, out, _ = shards
    clips = CuratedSet(curated)
    cached = read_windows(clips, **ARGS)
    stream = WindowStream(
        clips, buffer=5, shards=ShardSet(out) if source == "shards" else None, clips_per_unit=2, **ARGS
    )
    got = list(stream.iterate(0))
    assert len(stream) == len(cached) == len(got)
    assert got[0]["video"].dtype == torch.uint8  # the buffer holds bytes, 4x less than float
    assert sorted(_digest(to_unit(w["video"])) for w in got) == sorted(
        _digest(cached.video(i)) for i in range(len(cached))
    )
    by_clip = {}
    for w in got:
        by_clip.setdefault(w["clip_id"], set()).add((w["fps_id"], w["motion_bucket"]))
    for i, clip in enumerate(cached.clip_ids):
        assert (int(cached.fps_id[i]), int(cached.motion_bucket[i])) in by_clip[clip]
    assert [_digest(to_unit(w["video"])) for w in got] != [_digest(cached.video(i)) for i in range(len(cached))]
    assert [w["clip_id"] for w in stream.iterate(1)] != [w["clip_id"] for w in got]  # a new order each epoch


def test_stream_memory_is_the_buffer_not_the_data(shards, tmp_path):
    curated, _, _ = shards
    held = {}
    for times in (1, 4):
        root = replicate_curated(curated, tmp_path / f"x{times}", times)
        write_shards(root, tmp_path / f"s{times}", samples_per_shard=2)
        stream = WindowStream(CuratedSet(root), buffer=6, shards=ShardSet(tmp_path / f"s{times}"), **ARGS)
        n = sum(1 for _ in stream.iterate(0))
        assert n == len(stream)
        held[times] = stream.max_held
        per_clip = max(len(stream._starts(r, s)) for r, s in stream.items.items) * len(stream.combos)
        assert stream.max_held <= 6 + per_clip
    assert held[1] == held[4]


def test_processes_read_disjoint_units_and_take_the_same_steps(shards):
    curated, out, _ = shards
    stream = WindowStream(CuratedSet(curated), buffer=4, shards=ShardSet(out), **ARGS)
    units = [stream.unit_order(0, r, 2) for r in range(2)]
    assert not set(units[0]) & set(units[1]) and sorted(units[0] + units[1]) == list(range(len(stream.units)))
    clips = [{w["clip_id"] for w in stream.iterate(0, r, 2)} for r in range(2)]
    assert not clips[0] & clips[1]
    steps = [StreamBatches(stream, lambda b: b, 2, rank=r, world=2).per_epoch for r in range(2)]
    assert steps[0] == steps[1] == min(stream.windows_for(0, r, 2) for r in range(2)) // 2
    with pytest.raises(ConfigError, match="processes but the stream has"):
        StreamBatches(stream, lambda b: b, 1, world=len(stream.units) + 1)
    with pytest.raises(ValueError, match="less than one step"):
        StreamBatches(stream, lambda b: b, 10_000)


def test_a_resumed_stream_replays_to_the_same_batches(shards):
    curated, out, _ = shards
    stream = WindowStream(CuratedSet(curated), buffer=4, shards=ShardSet(out), **ARGS)
    straight = StreamBatches(stream, lambda b: b, 3, accumulation=2)
    per = straight.per_epoch
    steps = [straight.next_step() for _ in range(per + 2)]  # into the second epoch
    assert straight.epoch == 1 and straight.consumed == 2
    for at in (1, per - 1, per):
        epoch, consumed = (0, at) if at < per else (1, 0)
        resumed = StreamBatches(stream, lambda b: b, 3, accumulation=2, epoch=epoch, consumed=consumed)
        for want in steps[at : at + 2]:
            got = resumed.next_step()
            assert [m["clip_id"] for m in got] == [m["clip_id"] for m in want]
            assert all(torch.equal(g["video"], w["video"]) for g, w in zip(got, want))
            assert [m["caption"] for m in got] == [m["caption"] for m in want]


def test_the_uncurated_set_does_not_stream_from_shards(shards, small_curated):
    world, curated = small_curated
    _, out, _ = shards
    uncurated = CuratedSet(curated, curated=False, source_dir=world / "videos")
    if all(not r.from_source for r in uncurated.clips):
        pytest.skip("every clip of this world was kept")
    with pytest.raises(InputError, match="no clip file, so no shard holds it"):
        WindowStream(uncurated, shards=ShardSet(out), **ARGS)
