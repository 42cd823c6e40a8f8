"""Shared test set-up: offline, telemetry off, explicit threads, MLflow pointed at a temporary store."""

import os

for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "OMP_NUM_THREADS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(key, value)

os.environ.pop("MLFLOW_TRACKING_URI", None)  # a server in the caller's shell (make serve) must not get test runs

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


@pytest.fixture
def params_file() -> Path:
    return PARAMS


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server (SQLite) for the whole session: starting one costs seconds, so never per test."""
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with temporary_settings({PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}):
        with prefect_test_harness(server_startup_timeout=60):
            yield home


SMALL_WORLD = [
    "world.videos=2",
    "world.solo.videos=1",
    "world.sizes=[[192, 108]]",
    "world.broken_inputs=false",
    "curate.text.enabled=false",
    "curate.clip.enabled=false",
    "curate.workers=1",
]


@pytest.fixture(scope="session")
def small_curated(tmp_path_factory):
    """A two-video world, curated without CRAFT and CLIP (seconds): (world dir, curated dir)."""
    import torch

    from svd.config import load_params
    from svd.curation.pipeline import curate
    from svd.world import generate_world

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("small-world")
    params = load_params(PARAMS, overrides=SMALL_WORLD)
    generate_world(params.world, base / "world", seed=5)
    curate(params, base / "world" / "videos", base / "curated", truth=base / "world")
    return base / "world", base / "curated"


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray cluster (2 CPUs, no dashboard) for the session, started as a user starts theirs (`ray start
    --head`, token authentication on: Ray's default) and joined by address through `curate.ray.address`, which needs
    RAY_AUTH_MODE=token on the driver too; stopped at the end."""
    import socket
    import subprocess
    import sys

    ray = Path(sys.executable).with_name("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["RAY_AUTH_MODE"] = "token"
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not os.environ.get("RAY_AUTH_TOKEN") and not token_file.is_file():
        import secrets  # a fresh machine has no token (`ray start` refuses): one for this session, never written

        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    started = subprocess.run(
        [
            str(ray),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            f"--object-store-memory={256 * 2**20}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120)
