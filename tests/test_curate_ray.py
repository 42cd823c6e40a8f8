"""`curate.engine: ray`: the same per-video work on Ray actors, byte-identical outputs, workers that die mid-video."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from svd.config import load_params
from svd.curation.engines import ray_init_kwargs
from svd.curation.pipeline import curate

pytestmark = pytest.mark.slow  # a 16-video world curated three times (about a minute and a half)

ROOT = Path(__file__).resolve().parents[1]
WORLD16 = [
    "world.videos=16",
    "world.solo.videos=0",
    "world.sizes=[[192, 108]]",
    "world.shots_per_video=[2, 3]",
    "world.broken_inputs=false",
    "curate.text.short_side=128",
]


def _params(*extra: str):
    return load_params(ROOT / "params.yaml", overrides=[*WORLD16, *extra])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from svd.world import generate_world

    out = tmp_path_factory.mktemp("world16") / "world"
    generate_world(_params().world, out, seed=3)
    return out


@pytest.fixture(scope="module")
def local_curated(world):
    """The local engine's output, moved aside: every run writes to the same path (summary.json names its GX report
    by path), so the bytes compare as they would in the pipeline's data/curated."""
    out = _out(world)
    summary = curate(_params("curate.engine=local"), world / "videos", out, truth=world)
    assert summary["engine"]["engine"] == "local" and summary["engine"]["workers"] == 2
    return out.rename(out.with_name("local"))


def _out(world: Path) -> Path:
    out = world.parent / "curated"
    for folder in (out, out.with_name("curated-gx")):
        shutil.rmtree(folder, ignore_errors=True)
    return out


def test_ray_engine_writes_the_local_engines_bytes(world, local_curated, ray_address):
    out = _out(world)
    summary = curate(
        _params("curate.engine=ray", f"curate.ray.address={ray_address}"), world / "videos", out, truth=world
    )
    assert summary["engine"]["engine"] == "ray" and summary["engine"]["workers"] == 2
    assert summary["engine"]["retried"] == 0
    assert summary["videos"] == 16 and summary["clips"] > 16
    local, ray = _files(local_curated), _files(out)
    assert sorted(ray) == sorted(local)
    assert [name for name in local if local[name] != ray[name]] == []


def test_a_worker_killed_mid_video_neither_loses_nor_duplicates_clips(world, local_curated, ray_address):
    import os

    import ray

    killed: list[str] = []

    def kill_the_workers(done: int, total: int) -> None:
        # on the first finished video the queue still holds 15, so the other actor is curating one right now
        if killed:
            return
        for i in range(2):
            name = f"svd-curate-{os.getpid()}-{i}"
            ray.kill(ray.get_actor(name), no_restart=False)  # the process dies; Ray starts a new one
            killed.append(name)

    out = _out(world)
    summary = curate(
        _params("curate.engine=ray", f"curate.ray.address={ray_address}"),
        world / "videos",
        out,
        truth=world,
        progress=kill_the_workers,
    )
    assert len(killed) == 2
    assert summary["engine"]["retried"] >= 1  # at least one video was cut off and curated again
    assert summary["quarantined"] == 0, pd.read_parquet(out / "quarantine.parquet")["reason"].tolist()
    clips = pd.read_parquet(out / "clips.parquet")
    assert clips["clip_id"].is_unique
    pd.testing.assert_frame_equal(clips, pd.read_parquet(local_curated / "clips.parquet"))
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(
        p.name for p in (local_curated / "clips").iterdir()
    )
    assert (out / "summary.json").read_bytes() == (local_curated / "summary.json").read_bytes()


def test_ray_without_an_address_starts_a_private_cluster():
    kwargs = ray_init_kwargs(_params("curate.engine=ray", "curate.workers=3", "curate.ray.cpus_per_worker=2"))
    assert "address" not in kwargs and kwargs["include_dashboard"] is False
    assert kwargs["num_cpus"] >= 6  # room for every requested actor
    joined = ray_init_kwargs(_params("curate.engine=ray", "curate.ray.address=10.0.0.5:6379"))
    assert joined["address"] == "10.0.0.5:6379" and "num_cpus" not in joined


def test_engine_and_ray_settings_are_validated(tmp_path):
    from svd.errors import ConfigError

    with pytest.raises(ConfigError, match="engine"):
        _params("curate.engine=spark")
    with pytest.raises(ConfigError, match="gpus_per_worker"):
        _params("curate.ray.gpus_per_worker=-1")


def test_a_video_past_its_timeout_has_its_worker_killed_and_counts_as_a_death(world, ray_address):
    """curate.ray.video_timeout_s: a video still running when it expires (a hung decoder, a stalled mount) has its
    actor killed and restarted, and is retried like any worker death, then failed with that reason. No real video
    finishes in a millisecond, so every attempt here expires: deterministic, where a hang is not."""
    from svd.curation.engines import map_ray

    videos = sorted((world / "videos").iterdir())[:2]
    jobs = [(str(v), v.stem) for v in videos]
    params = _params(
        "curate.engine=ray",
        f"curate.ray.address={ray_address}",
        "curate.ray.max_attempts=2",
        "curate.ray.video_timeout_s=0.001",
    )
    with pytest.raises(
        RuntimeError,
        match=r"every curation worker died on every video \(2 videos, 2 attempts each; "
        r"2 of them ran past curate.ray.video_timeout_s=0.001 s\)",
    ):
        map_ray(params, jobs, str(world))
