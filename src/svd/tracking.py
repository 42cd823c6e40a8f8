"""MLflow: one run per stage execution, nested under the pipeline run, with the lineage tags that make a result
traceable.

Store: `sqlite:///mlruns/mlflow.db` with artifacts under `mlruns/artifacts` (MLflow 3 refuses the plain file store).
The Prefect flow opens the pipeline run and hands its id to the stages through SVD_PARENT_RUN_ID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from svd.config import Params, flatten

PARENT_ENV = "SVD_PARENT_RUN_ID"
_HASH_CHUNK = 1 << 20


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def tracking_uri(params: Params) -> str:
    """A tracking server named by MLFLOW_TRACKING_URI (`make serve` starts one, production has its own), else the
    project's store, paths.mlflow_uri. A local store in that variable is not followed: MLflow exports whatever
    set_tracking_uri was last given, so it would carry one project's (or test's) store into another's runs."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    return env if env.startswith(("http://", "https://", "databricks")) else params.paths.mlflow_uri


def configure(params: Params) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists; returns the experiment id."""
    mlflow = _mlflow()
    uri = tracking_uri(params)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(params.paths.experiment)
    if experiment is None and uri.startswith(("http://", "https://")):
        return mlflow.create_experiment(params.paths.experiment)  # the server decides where artifacts go
    artifacts = Path(params.paths.mlflow_artifacts).resolve()
    if experiment is None:
        artifacts.mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(params.paths.experiment, artifact_location=artifacts.as_uri())
    return experiment.experiment_id


def git_state(cwd: Path | str = ".") -> dict[str, str]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD") or "unknown"
    # the pipeline writes dvc.lock and metrics/ itself while it runs, so they cannot make its code "dirty"; whether
    # they differ from the commit is recorded apart
    outputs = [f":(top){p}" for p in PIPELINE_OUTPUTS]
    dirty = bool(
        run(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":/",
            *[f":(exclude,top){p}" for p in PIPELINE_OUTPUTS],
        )
    )
    outputs_dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", *outputs))
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), "git.outputs_dirty": str(outputs_dirty).lower()}


PIPELINE_OUTPUTS = ("dvc.lock", "metrics")  # git-tracked files the pipeline itself rewrites


def hash_path(path: Path | str) -> str:
    """Content hash of a file or a folder (relative names + bytes, sorted), so lineage names the exact inputs."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
        root = path.parent
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        root = path
    else:
        return "missing"
    for file in files:
        digest.update(str(file.relative_to(root)).encode())
        with open(file, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def pipeline_run(params: Params, name: str = "pipeline", kind: str = "pipeline") -> Iterator[str]:
    """The parent run of a pipeline execution (or an ablation); yields its id (export it as SVD_PARENT_RUN_ID to the
    stages)."""
    mlflow = _mlflow()
    experiment_id = configure(params)
    tags = {**git_state(), "svd.kind": kind, "svd.profile": params.profile}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        yield run.info.run_id


@contextlib.contextmanager
def stage_run(params: Params, stage: str, inputs: dict[str, Path | str] | None = None) -> Iterator[Any]:
    """One run per stage execution: params, lineage tags (commit, DVC stage, input hashes), nested if a parent is
    set."""
    mlflow = _mlflow()
    experiment_id = configure(params)
    tags = {**git_state(), "svd.kind": "stage", "svd.step": stage, "svd.profile": params.profile}
    if os.environ.get("DVC_STAGE"):  # set by `dvc repro` for the stage's command; a bare `svd ...` run has none
        tags["dvc.stage"] = os.environ["DVC_STAGE"]
    for key, value in (inputs or {}).items():
        tags[f"input.{key}.path"] = str(value)
        tags[f"input.{key}.sha256"] = hash_path(value)
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags) as run:
        flat = {
            k: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v
            for k, v in flatten(params.model_dump()).items()
        }
        mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
        yield run


def log_metrics(metrics: dict[str, float]) -> None:
    mlflow = _mlflow()
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if clean:
        mlflow.log_metrics(clean)


# Numbers that describe a run rather than measure it (sizes, counts, settings the summary echoes): MLflow params
# under "result.", so the metrics view holds the scores and the training curves.
DESCRIPTIVE = frozenset(
    {
        "clips",
        "captions",
        "conditioning_frames",
        "parameters",
        "trainable_parameters",
        "windows",
        "steps",
        "frames",
        "fps",
        "motion_bucket",
        "guidance",
        "n",
        "samples",
        "processes",
    }
)


def log_summary(numbers: dict[str, float]) -> None:
    """Flat numbers of a stage's summary: descriptive ones (DESCRIPTIVE, by last key part) as params, the rest as
    metrics."""
    mlflow = _mlflow()
    described = {f"result.{k}": v for k, v in numbers.items() if k.rsplit(".", 1)[-1] in DESCRIPTIVE}
    if described:
        mlflow.log_params(described)
    log_metrics({k: v for k, v in numbers.items() if k.rsplit(".", 1)[-1] not in DESCRIPTIVE})


def log_artifacts(path: Path | str, artifact_path: str | None = None) -> None:
    mlflow = _mlflow()
    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    elif path.is_file():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def step_logger(prefix: str = ""):
    """A `logger(metrics, step)` for the training loop that writes to the active MLflow run."""
    mlflow = _mlflow()

    def log(metrics: dict[str, float], step: int) -> None:
        clean = {
            f"{prefix}{k}": float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if clean:
            mlflow.log_metrics(clean, step=step)

    return log


MODEL_ARTIFACT = "model"


def register_folder(
    params: Params,
    folder: Path | str,
    name: str,
    aliases: list[str],
    include: list[str],
    tags: dict[str, str] | None = None,
) -> str:
    """Log the `include` entries of a model folder as the active run's `model` artifact and register them as a new
    version of `name` with `aliases`; returns the version. The version's source is the run's artifact, so
    `models:/NAME@ALIAS` resolves to the files as they were trained."""
    mlflow = _mlflow()
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_folder needs an active MLflow run")
    for item in include:
        path = Path(folder) / item
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"{MODEL_ARTIFACT}/{item}")
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=MODEL_ARTIFACT)
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
    version = client.create_model_version(name, source, run_id=run.info.run_id, tags=tags or {})
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def model_version(params: Params, ref: str):
    """(registered name, ModelVersion) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`; InputError if absent."""
    from svd.errors import InputError

    mlflow = _mlflow()
    configure(params)
    body = ref.removeprefix("models:/")
    client = mlflow.MlflowClient()
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return name, client.get_model_version_by_alias(name, alias)
        name, number = body.rsplit("/", 1)
        return name, client.get_model_version(name, number)
    except (ValueError, mlflow.exceptions.MlflowException) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise InputError(f"--model {ref}: not in the MLflow registry at {tracking_uri(params)} ({reason})") from None


def download_model(params: Params, ref: str) -> Path:
    """A local folder for `models:/NAME@ALIAS` or `models:/NAME/VERSION` (cached under mlruns/registry/)."""
    mlflow = _mlflow()
    name, version = model_version(params, ref)
    dest = Path(params.paths.mlflow_artifacts).parent / "registry" / name / str(version.version)
    if not (dest / "svd_model.json").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dest))
        nested = dest / MODEL_ARTIFACT
        if nested.is_dir() and not (dest / "svd_model.json").exists():
            for item in nested.iterdir():
                item.rename(dest / item.name)
            nested.rmdir()
    return dest
