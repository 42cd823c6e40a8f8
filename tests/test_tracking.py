"""What MLflow records about where a run came from: the commit, whether the code differed from it (not counting the
files the pipeline itself rewrites), and the DVC stage only when DVC ran the command."""

import subprocess

from svd import tracking


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_state_does_not_count_the_pipeline_outputs_as_dirty(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "src").mkdir()
    for name in ("dvc.lock", "metrics/train.json", "src/code.py"):
        (tmp_path / name).write_text("a\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    clean = tracking.git_state(tmp_path)
    assert len(clean["git.commit"]) == 40 and clean["git.dirty"] == "false" and clean["git.outputs_dirty"] == "false"

    (tmp_path / "dvc.lock").write_text("b\n")  # what every pipeline run does mid-run
    (tmp_path / "metrics" / "train.json").write_text("b\n")
    state = tracking.git_state(tmp_path / "src")  # from a subfolder too
    assert state["git.dirty"] == "false" and state["git.outputs_dirty"] == "true"

    (tmp_path / "src" / "code.py").write_text("b\n")
    assert tracking.git_state(tmp_path)["git.dirty"] == "true"


def test_outside_a_git_checkout_nothing_is_claimed(tmp_path):
    state = tracking.git_state(tmp_path)
    assert state["git.commit"] == "unknown" and state["git.dirty"] == "false"


def test_the_dvc_stage_tag_comes_from_dvc_alone(tmp_path, monkeypatch):
    import mlflow

    from svd.config import load_params

    params = load_params(
        "params.yaml",
        overrides=[f"paths.mlflow_uri=sqlite:///{tmp_path}/mlflow.db", f"paths.mlflow_artifacts={tmp_path}/artifacts"],
    )
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    with tracking.stage_run(params, "curate") as bare:
        pass
    monkeypatch.setenv("DVC_STAGE", "curate")  # what `dvc repro` sets for a stage's command
    with tracking.stage_run(params, "curate") as by_dvc:
        pass
    tags = [mlflow.get_run(r.info.run_id).data.tags for r in (bare, by_dvc)]
    assert tags[0]["svd.step"] == tags[1]["svd.step"] == "curate"
    assert "dvc.stage" not in tags[0] and tags[1]["dvc.stage"] == "curate"


def test_a_tracking_server_in_the_environment_wins_but_a_local_store_there_does_not(monkeypatch):
    from pathlib import Path

    from svd import tracking
    from svd.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(params) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")  # what set_tracking_uri exports
    assert tracking.tracking_uri(params) == params.paths.mlflow_uri
