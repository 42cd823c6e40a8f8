"""CLI contract: every command has --help; doctor reports weights; the world command's summary."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svd.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["world", "orbits", "curate", "train", "sample", "doctor", "pipeline", "model-info"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if command is None:
        assert all(c in result.output for c in COMMANDS)


def test_doctor_reports_weights_and_threads():
    result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), "doctor"])
    assert result.exit_code == 0, result.output
    assert "weights.craft" in result.output and "found" in result.output
    assert "weights.clip_pretrained" in result.output and "not configured" in result.output
    assert "threads" in result.output
    from svd.config import load_params
    from svd.doctor import weights_status

    status = {key: text for key, _, text in weights_status(load_params(ROOT / "params.yaml"))}
    assert status["weights.vae"] == "not configured: trained by the pipeline (train.vae)"  # not "annotator off"
    assert status["weights.text_model"].startswith("architecture")  # an open_clip config name, not a hub id
    assert "captions off" in status["weights.coca_pretrained"]


def test_doctor_flags_missing_configured_weights(tmp_path):
    result = CliRunner().invoke(
        app, ["--params", str(ROOT / "params.yaml"), "--set", f"weights.aesthetic_head={tmp_path}/head.pth", "doctor"]
    )
    assert result.exit_code == 1
    assert "MISSING" in result.output


def test_model_info_prints_the_paper_size_for_a100():
    result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), "--profile", "a100", "model-info"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("video_unet"))
    total = int(line.split()[5].replace(",", ""))
    assert abs(total - 1521e6) / 1521e6 < 0.02  # the paper's 1521M


def test_pipeline_gives_the_temporary_prefect_server_time_to_build_its_database(tmp_path, monkeypatch):
    """A fresh clone's first `svd pipeline` migrates a new SQLite database; Prefect's default 20 s wait timed out on
    2 busy cores. The command sets a longer wait (and a user's own setting wins) before the flow starts a server."""
    import sys
    import types

    seen = {}

    def fake_flow(stages=None, force=False):
        import os

        seen["timeout"] = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
        seen["home"] = os.environ.get("PREFECT_HOME")
        return {"stages": stages}

    package, module = types.ModuleType("flows"), types.ModuleType("flows.pipeline")
    module.svd_flow = fake_flow
    package.pipeline = module
    monkeypatch.setitem(sys.modules, "flows", package)
    monkeypatch.setitem(sys.modules, "flows.pipeline", module)
    monkeypatch.chdir(tmp_path)
    for key in ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_HOME"):
        monkeypatch.setenv(key, "")  # recorded, so what the command sets is undone after the test
        monkeypatch.delenv(key)
    result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), "pipeline", "world"])
    assert result.exit_code == 0, result.output
    assert int(seen["timeout"]) >= 120
    assert seen["home"] == str(tmp_path / ".prefect")

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
    result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), "pipeline", "world"])
    assert result.exit_code == 0, result.output
    assert seen["timeout"] == "45"


def test_only_the_pipelines_own_outputs_write_its_metrics_files(tmp_path, monkeypatch):
    """metrics/<stage>.json is what dvc.lock records for the pipeline's output; a scratch run into another folder
    (--out or --set paths.*) must not overwrite it: its numbers go to OUT-metrics.json, or to a paths.metrics set
    on the command line."""
    import json

    import svd.world

    calls = iter(range(1, 10))
    monkeypatch.setattr(svd.world, "generate_world", lambda cfg, out, seed, videos: {"videos": next(calls)})
    monkeypatch.chdir(tmp_path)

    def world(*args):
        result = CliRunner().invoke(app, ["--params", str(ROOT / "params.yaml"), *args, "--no-track"])
        assert result.exit_code == 0, result.output
        return result

    def read(path):
        return json.loads(Path(path).read_text())["videos"]

    world("world")  # the pipeline's own output, data/world
    assert read("metrics/world.json") == 1
    assert "metrics go to scratch-metrics.json" in world("world", "--out", "scratch").output
    assert read("scratch-metrics.json") == 2
    world("--set", "paths.world=elsewhere", "world")
    assert read("elsewhere-metrics.json") == 3
    world("--set", "paths.metrics=m2", "world", "--out", "scratch2")
    assert read("m2/world.json") == 4 and not Path("scratch2-metrics.json").exists()
    assert read("metrics/world.json") == 1


def test_global_options_are_accepted_after_the_command():
    from svd.cli import hoist_global_options as hoist

    assert hoist(["model-info", "--profile", "a100"]) == ["--profile", "a100", "model-info"]
    assert hoist(["--params", "p.yaml", "evaluate", "stage", "i2v", "--set=seed=1", "--set", "threads=1"]) == [
        "--params",
        "p.yaml",
        "--set=seed=1",
        "--set",
        "threads=1",
        "evaluate",
        "stage",
        "i2v",
    ]
    assert hoist(["sample", "--prompt", "a red circle", "--out", "x.mp4"]) == [
        "sample",
        "--prompt",
        "a red circle",
        "--out",
        "x.mp4",
    ]
    assert hoist(["--help"]) == ["--help"] and hoist([]) == []


def test_model_info_takes_the_profile_where_users_type_it():
    import subprocess
    import sys

    svd = Path(sys.executable).with_name("svd")
    r = subprocess.run(
        [str(svd), "model-info", "--profile", "a100"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("video_unet"))
    assert abs(int(line.split()[5].replace(",", "")) - 1521e6) / 1521e6 < 0.02  # the a100 profile's UNet
