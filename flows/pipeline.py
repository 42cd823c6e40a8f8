"""Prefect flow "svd": the dvc.yaml stages as Prefect tasks, in DVC's own graph order.

Prefect decides where and when, DVC decides whether: every task is one `dvc repro --single-item STAGE`, so DVC's
lock file alone says whether a stage is up to date, and its outputs are versioned by DVC. MLflow records what happened:
the flow opens the pipeline's parent run and hands its id to every stage through `svd.tracking.PARENT_ENV`.

The graph comes from DVC's Python API (`Repo.index.graph`), so foreach/matrix stages and new stages are picked up
with no edit here. With no stage names the flow runs the root dvc.yaml (the pipeline); stages of other dvc.yaml
files (ablations/dvc.yaml: on demand) run when named, as `ablations/dvc.yaml:curation`.

Work pools (`work_pools=True`, as the `full-pipeline` deployment runs): each stage becomes a run of the deployment
`svd-stage/stage-cpu` or `svd-stage/stage-gpu` (stage_pool: training and evaluation need a GPU at paper scale), which
a worker of that pool picks up. The orchestrating flow stays the only writer of its dvc.lock: it hands each stage
run the lock entries of the stages it reads from and merges back the entry the stage run returns. With a DVC remote
(`dvc_remote`), a stage run first pulls what it reads (and its own outputs, so a persisted checkpoint folder
resumes) and afterwards pushes what it wrote, so workers on different machines share one cache; a worker runs the
commit its deployment's pull step checks out (prefect.yaml).

    python flows/pipeline.py [STAGE ...] [--force] [--project-dir DIR]
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script with no server configured: Prefect's temporary state stays in the project
    os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect" / "ephemeral"))

from prefect import allow_failure, flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.context import TaskRunContext  # noqa: E402
from prefect.exceptions import MissingContextError  # noqa: E402
from prefect.logging import get_logger  # noqa: E402

STAGE_RETRIES = 2
# Stages that want a GPU worker at paper scale (the rest, world/curation/registry, go to the CPU pool).
GPU_STAGE_PREFIXES = ("train_", "evaluate_")
MAX_PARALLEL = 1  # stages running at once (the flow's max_parallel); 1 = one after another, in graph order
RETRY_DELAY_S = 10.0
STDERR_TAIL_LINES = 25


class StageFailed(RuntimeError):
    """A `dvc repro` of one stage exited non-zero; the message names the stage and carries its stderr tail."""


class PipelineFailed(RuntimeError):
    """One or more stages failed (or never ran because an upstream stage failed)."""


# ---------------------------------------------------------------------------------------------------------------------
# The stage graph, from DVC


def _rel(path: str, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path


def _address(stage, root: Path) -> str:
    """The stage's name as `dvc repro` run from the project root takes it (DVC's own `addressing` is cwd-relative)."""
    dvcfile = _rel(stage.path, root)
    return stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"


def stage_plan(project_dir: str | Path = ".", stages: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The pipeline stages of the DVC project, dependencies first: {name: {cmd, outs, metrics, upstream}}.

    `stages` picks a subset: full names ("train@small") or foreach/matrix group names ("train"); the chosen stages
    keep their order and the edges among themselves. An unknown name is a ValueError listing the known ones.
    """
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(project_dir)) as repo:
        root = Path(repo.root_dir)
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        declared = {stage: i for i, stage in enumerate(repo.index.stages)}
        # .dvc files (`dvc add` data) are graph nodes too, but sources, not stages to run
        pipeline = graph.subgraph([s for s in graph.nodes if isinstance(s, PipelineStage)])
        # reversed so dependencies come first; ties broken by declaration order so runs are reproducible to read
        order = list(nx.lexicographical_topological_sort(pipeline.reverse(copy=True), key=lambda s: declared.get(s, 0)))
        plan: dict[str, dict[str, Any]] = {}
        for stage in order:
            ancestors = nx.descendants(pipeline, stage)
            direct = set(pipeline.successors(stage))
            cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
            name = _address(stage, root)
            plan[name] = {
                "name": name,
                "cmd": cmd,
                "outs": [_rel(o.fs_path, root) for o in stage.outs],
                "metrics": [_rel(o.fs_path, root) for o in stage.outs if o.metric],
                # outputs git carries, not the DVC cache (metrics with cache: false): a stage run hands them back
                "uncached": [_rel(o.fs_path, root) for o in stage.outs if not o.use_cache],
                # transitive upstream, so a subset selection still waits for every chosen ancestor
                "upstream": [_address(u, root) for u in order if u in ancestors],
                "direct": [_address(u, root) for u in order if u in direct],  # whose outputs it reads
            }

    if not stages:
        # the root dvc.yaml is the pipeline; stages of other dvc.yaml files (ablations/) run when named
        return {
            name: {**spec, "upstream": [u for u in spec["upstream"] if ":" not in u]}
            for name, spec in plan.items()
            if ":" not in name
        }
    chosen: set[str] = set()
    unknown = []
    for name in stages:
        hits = [s for s in plan if s == name or s.split("@", 1)[0] == name]
        if not hits:
            unknown.append(name)
        chosen.update(hits)
    if unknown:
        known = sorted({s for s in plan} | {s.split("@", 1)[0] for s in plan})
        raise ValueError(f"unknown stage(s) {', '.join(map(repr, unknown))}; dvc.yaml has: {', '.join(known)}")
    return {
        name: {**spec, "upstream": [u for u in spec["upstream"] if u in chosen]}  # "direct" kept: pull what it reads
        for name, spec in plan.items()
        if name in chosen
    }


# ---------------------------------------------------------------------------------------------------------------------
# One stage


def artifact_key(stage: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "stage-" + re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")


def _parent_env_name() -> str:
    try:
        from svd.tracking import PARENT_ENV
    except ImportError:  # a throwaway DVC project run from a venv without the svd package
        return "SVD_PARENT_RUN_ID"
    return PARENT_ENV


def stage_env(parent_run_id: str | None = None) -> dict[str, str]:
    """The environment of a stage subprocess: this interpreter's bin dir first, so `svd` and `dvc` resolve."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]) if env.get("PATH") else bin_dir
    env["PYTHONUNBUFFERED"] = "1"  # so stage output streams into the task log as it happens
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env_name = _parent_env_name()
    if parent_run_id:
        env[env_name] = parent_run_id
    else:
        env.pop(env_name, None)  # never nest under a stale run inherited from the caller
    return env


_RAN = "Running stage '{}'"
_SKIPPED = "Stage '{}' didn't change, skipping"
_RESTORED = "Stage '{}' is cached - skipping run, checking out outputs"


def repro_status(stage: str, output: str) -> tuple[str, str]:
    """("ran" | "skipped", detail) from what `dvc repro` printed (dvc 3.x wording,
    dvc/stage/{run,cache,__init__}.py)."""
    if _RAN.format(stage) in output:
        return "ran", "command executed"
    if _RESTORED.format(stage) in output:
        return "skipped", "restored from the DVC run cache"
    if _SKIPPED.format(stage) in output:
        return "skipped", "up to date"
    return "ran", "dvc printed no status line; assumed ran"


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, (int, float, str, bool)) or tree is None:
        return {prefix.rstrip("."): tree}
    return {}  # lists of per-item records are not scalar metrics


def read_metrics(project_dir: str | Path, files: list[str]) -> dict[str, Any]:
    """The scalar values of a stage's DVC metrics files (json/yaml/toml) that exist, flattened to dotted keys."""
    metrics: dict[str, Any] = {}
    for rel in files:
        path = Path(project_dir) / rel
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        metrics.update(_flatten(data))
    return metrics


def _pump(stream, name: str, sink: queue.Queue) -> None:
    for line in stream:
        sink.put((name, line.rstrip("\n")))
    sink.put((name, None))


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def stage_markdown(spec: dict[str, Any], command: str, result: dict[str, Any]) -> str:
    lines = [
        f"### Stage `{spec['name']}`: {result['status']} ({result['detail']})",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{_md(command)}` |",
        f"| stage cmd | `{_md(spec['cmd'])}` |",
        f"| status | {result['status']} |",
        f"| duration | {result['seconds']:.2f} s |",
        f"| outs | {', '.join(f'`{_md(o)}`' for o in spec['outs']) or '(none)'} |",
        "",
    ]
    if result["metrics"]:
        lines += ["#### Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in sorted(result["metrics"].items())]
    else:
        lines.append("No metrics." if not spec["metrics"] else f"No metrics yet in {', '.join(spec['metrics'])}.")
    return "\n".join(lines)


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:  # called as `run_stage.fn(...)` outside a run (unit tests, a quick check)
        return get_logger("svd.flows")


def pipeline_markdown(plan: dict[str, dict], results: dict[str, dict], failed: dict[str, str]) -> str:
    lines = ["### svd pipeline", "", "| stage | status | seconds | metrics |", "|---|---|---|---|"]
    for name in plan:
        if name in results:
            r = results[name]
            metrics = ", ".join(f"{k}={v}" for k, v in sorted(r["metrics"].items()))
            lines.append(f"| {_md(name)} | {r['status']} | {r['seconds']:.2f} | {_md(metrics)} |")
        else:
            lines.append(f"| {_md(name)} | failed | | {_md(failed.get(name, '')[:200])} |")
    return "\n".join(lines)


@task(
    name="dvc-stage",
    task_run_name="{spec[name]}",
    retries=STAGE_RETRIES,
    retry_delay_seconds=RETRY_DELAY_S,
    # DVC decides whether a stage is up to date; a Prefect result cache would be a second, disagreeing opinion
    cache_policy=NO_CACHE,
)
def run_stage(
    spec: dict[str, Any],
    project_dir: str = ".",
    force: bool = False,
    parent_run_id: str | None = None,
    dvc_remote: str | None = None,
) -> dict[str, Any]:
    """`dvc repro --single-item STAGE` with its output streamed into the task log; a markdown artifact per stage.
    With `dvc_remote`: `dvc pull` of what the stage reads and of its own outputs first, `dvc push` of them after."""
    logger = _logger()
    name = spec["name"]
    env = stage_env(parent_run_id)
    dvc = shutil.which("dvc", path=env["PATH"])
    if dvc is None:
        raise StageFailed(f"stage {name!r}: no `dvc` executable on PATH ({env['PATH']})")
    if dvc_remote:
        # --allow-missing: a stage's own outputs are not on the remote before its first run
        _dvc(
            dvc,
            ["pull", "--remote", dvc_remote, "--allow-missing", *spec.get("direct", []), name],
            project_dir,
            env,
            name,
            logger,
        )
    # --wait-for-lock: DVC drops its repo lock while a stage's cmd runs, so independent stages do run side by side,
    # but they queue for the short bookkeeping sections instead of failing on a busy lock
    argv = [dvc, "--wait-for-lock", "repro", "--single-item", name] + (["--force"] if force else [])
    command = " ".join(["dvc", *argv[1:]])
    logger.info("%s  (in %s)", command, project_dir)

    start = time.monotonic()
    output: list[str] = []
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    lines: queue.Queue = queue.Queue()
    proc = subprocess.Popen(
        argv,
        cwd=project_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        bufsize=1,
    )
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, "stdout", lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "stderr", lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    open_streams = len(pumps)
    # the run logger is used from this thread only: it is the one that carries the task run's context
    while open_streams:
        stream, line = lines.get()
        if line is None:
            open_streams -= 1
            continue
        output.append(line)
        if stream == "stderr":
            stderr_tail.append(line)
        logger.info("%s", line)
    rc = proc.wait()
    seconds = time.monotonic() - start

    if rc != 0:
        tail = "\n".join(stderr_tail) or "\n".join(output[-STDERR_TAIL_LINES:]) or "(no output)"
        raise StageFailed(f"stage {name!r} failed: `{command}` exited with {rc} after {seconds:.1f} s\n{tail}")

    status, detail = repro_status(name, "\n".join(output))
    if dvc_remote:
        _dvc(dvc, ["push", "--remote", dvc_remote, name], project_dir, env, name, logger)
    result = {
        "status": status,
        "seconds": round(seconds, 3),
        "metrics": read_metrics(project_dir, spec["metrics"]),
        "detail": detail,
    }
    if TaskRunContext.get() is not None:  # artifacts belong to a task run; `run_stage.fn()` has none
        create_markdown_artifact(
            key=artifact_key(name), markdown=stage_markdown(spec, command, result), description=f"DVC stage {name}"
        )
    logger.info("stage %r %s (%s) in %.2f s", name, status, detail, seconds)
    return result


def _dvc(dvc: str, args: list[str], project_dir: str, env: dict, stage: str, logger) -> None:
    """A dvc command around a stage (pull/push), its output in the task log; StageFailed when it fails."""
    command = " ".join(["dvc", *args])
    logger.info("%s  (in %s)", command, project_dir)
    done = subprocess.run([dvc, *args], cwd=project_dir, env=env, capture_output=True, text=True, errors="replace")
    for line in (done.stdout + done.stderr).splitlines():
        logger.info("%s", line)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-STDERR_TAIL_LINES:])
        raise StageFailed(f"stage {stage!r}: `{command}` exited with {done.returncode}\n{tail}")


# ---------------------------------------------------------------------------------------------------------------------
# Work pools: one stage per deployment run, dvc.lock written by the orchestrator alone


def stage_pool(name: str) -> str:
    """ "gpu" for the stages that train or evaluate models, else "cpu" (GPU_STAGE_PREFIXES)."""
    return "gpu" if name.startswith(GPU_STAGE_PREFIXES) else "cpu"


def lock_entries(project_dir: str | Path, names: list[str]) -> dict[str, Any]:
    """The dvc.lock entries of these stages (those it has), as DVC wrote them."""
    from dvc.utils.serialize import load_yaml

    path = Path(project_dir) / "dvc.lock"
    stages = (load_yaml(path) or {}).get("stages", {}) if path.is_file() else {}
    return {n: stages[n] for n in names if n in stages}


def uncached_outputs(project_dir: str | Path, spec: dict[str, Any]) -> dict[str, str]:
    """The text of a stage's outputs that git carries instead of the DVC cache (its metrics files)."""
    root = Path(project_dir)
    return {rel: (root / rel).read_text() for rel in spec.get("uncached", []) if (root / rel).is_file()}


def take_stage_result(project_dir: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    """What the orchestrator keeps of a stage run made elsewhere: its uncached outputs written into this checkout,
    its lock entry merged into this dvc.lock (the only writer); returns the result without them."""
    result = dict(result)
    root = Path(project_dir)
    for rel, text in result.pop("files", {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    merge_lock(root, result.pop("lock", {}))
    return result


def merge_lock(project_dir: str | Path, entries: dict[str, Any]) -> bool:
    """Write these stage entries into dvc.lock (the others kept); True when the file changed."""
    if not entries:
        return False
    from dvc.utils.serialize import modify_yaml

    path = Path(project_dir) / "dvc.lock"
    if not path.is_file():
        path.write_text("schema: '2.0'\nstages: {}\n")
    with modify_yaml(path) as lock:
        stages = lock.setdefault("stages", {})
        changed = any(stages.get(n) != entry for n, entry in entries.items())
        stages.update(entries)
    return changed


@flow(name="svd-stage", persist_result=True)  # the result (with its lock entry) is read back by the orchestrator
def svd_stage_flow(
    spec: dict[str, Any],
    project_dir: str = ".",
    force: bool = False,
    parent_run_id: str | None = None,
    dvc_remote: str | None = None,
    lock: dict[str, Any] | None = None,
    stage_retries: int = STAGE_RETRIES,
) -> dict[str, Any]:
    """One stage on whichever worker picked this run up: take the orchestrator's lock entries for what the stage
    reads, run it (pull, repro, push), hand back its result, its own new lock entry and the outputs git carries
    (metrics files: cache: false, so not on the DVC remote)."""
    merge_lock(project_dir, lock or {})
    result = run_stage.with_options(retries=stage_retries)(spec, project_dir, force, parent_run_id, dvc_remote)
    return {**result, "lock": lock_entries(project_dir, [spec["name"]]), "files": uncached_outputs(project_dir, spec)}


@task(name="dispatch-stage", task_run_name="{spec[name]}", cache_policy=NO_CACHE)
def dispatch_stage(
    spec: dict[str, Any],
    project_dir: str,
    force: bool,
    parent_run_id: str | None,
    dvc_remote: str | None,
    worker_project_dir: str = ".",
    deployment_prefix: str = "svd-stage/stage-",
) -> dict[str, Any]:
    """Run one stage as a run of its pool's deployment and wait for it; merge its lock entry into ours.
    `worker_project_dir`: the project on the worker ("."; the worker's checkout, where its deployment's pull step
    starts the run)."""
    from prefect.deployments import run_deployment

    name, pool = spec["name"], stage_pool(spec["name"])
    logger = _logger()
    deployment = f"{deployment_prefix}{pool}"
    logger.info("stage %r -> deployment %s", name, deployment)
    run = run_deployment(
        deployment,
        timeout=None,
        parameters={
            "spec": spec,
            "project_dir": worker_project_dir,
            "force": force,
            "parent_run_id": parent_run_id,
            "dvc_remote": dvc_remote,
            "lock": lock_entries(project_dir, spec.get("direct", [])),
        },
    )
    if not run.state.is_completed():
        raise StageFailed(
            f"stage {name!r}: run {run.name} of {deployment} ended {run.state.name}: {run.state.message or ''}"
        )
    result = take_stage_result(project_dir, run.state.result())
    return {**result, "pool": run.work_pool_name}  # the pool whose worker ran it


# ---------------------------------------------------------------------------------------------------------------------
# The flow


@contextlib.contextmanager
def mlflow_parent_run(project_dir: Path, logger) -> Iterator[str | None]:
    """The MLflow parent run of this pipeline execution, or None for a project without params.yaml."""
    params_file = project_dir / "params.yaml"
    if not params_file.is_file():
        logger.info("no params.yaml in %s: MLflow tracking skipped", project_dir)
        yield None
        return
    from svd import tracking
    from svd.config import load_params

    params = load_params(params_file)
    # the store paths are relative to the project; made absolute so they mean the same whatever our cwd is
    paths = params.paths
    absolute = {}
    if paths.mlflow_uri.startswith("sqlite:///") and not paths.mlflow_uri.startswith("sqlite:////"):
        absolute["mlflow_uri"] = "sqlite:///" + str(project_dir / paths.mlflow_uri.removeprefix("sqlite:///"))
    absolute["mlflow_artifacts"] = str(project_dir / paths.mlflow_artifacts)
    params = params.model_copy(update={"paths": paths.model_copy(update=absolute)})
    with contextlib.ExitStack() as stack:
        with contextlib.chdir(project_dir):  # git_state() tags the run with the commit of the current directory
            run_id = stack.enter_context(tracking.pipeline_run(params))
        logger.info("MLflow parent run %s (%s)", run_id, tracking.tracking_uri(params))
        yield run_id


@flow(name="svd")
def svd_flow(
    stages: list[str] | None = None,
    project_dir: str = ".",
    force: bool = False,
    stage_retries: int = STAGE_RETRIES,
    retry_delay_seconds: float = RETRY_DELAY_S,
    max_parallel: int = MAX_PARALLEL,
    work_pools: bool = False,
    dvc_remote: str | None = None,
    worker_project_dir: str = ".",
) -> dict:
    """Run the DVC stages of `project_dir` (all, or `stages`) as tasks in graph order; returns {stage: result}.
    `work_pools`: each stage as a run of `svd-stage/stage-{cpu,gpu}` on its pool's workers (module docstring);
    `dvc_remote`: pull before and push after each stage (a `dvc remote` name); `worker_project_dir`: where the
    project is on the workers (".": their checkout, where the deployments' pull step starts each run).

    At most `max_parallel` stages run at once (each also waits for the stage that many places before it in graph
    order): independent CPU stages side by side on a 2-core machine each set their own torch threads and slow each
    other far more than they gain. Raise it where stages go to their own workers (GPU pools)."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    logger = get_run_logger()
    root = Path(project_dir).resolve()
    plan = stage_plan(root, stages)
    logger.info("stages in graph order: %s", ", ".join(plan) or "(none)")
    if work_pools:  # retries happen inside each stage run, on its worker

        def runner_submit(spec, root_, force_, parent, wait_for):
            return dispatch_stage.submit(spec, root_, force_, parent, dvc_remote, worker_project_dir, wait_for=wait_for)
    else:
        local = run_stage.with_options(retries=stage_retries, retry_delay_seconds=retry_delay_seconds)

        def runner_submit(spec, root_, force_, parent, wait_for):
            return local.submit(spec, root_, force_, parent, dvc_remote, wait_for=wait_for)

    with mlflow_parent_run(root, logger) as parent_run_id:
        futures = {}
        order = list(plan)
        for i, (name, spec) in enumerate(plan.items()):
            # a stage waits for its upstream stages and for the stage max_parallel places before it (only for its
            # slot: that stage failing does not stop this one)
            window = [allow_failure(futures[order[i - max_parallel]])] if i >= max_parallel else []
            futures[name] = runner_submit(
                spec, str(root), force, parent_run_id, [futures[u] for u in spec["upstream"]] + window
            )
        results: dict[str, dict] = {}
        failed: dict[str, str] = {}
        for name, future in futures.items():
            future.wait()
            state = future.state
            if state.is_completed():
                results[name] = future.result()
            elif state.is_pending():  # NotReady: Prefect never started it because an upstream task failed
                blockers = [u for u in plan[name]["upstream"] if u in failed]
                failed[name] = f"not run: upstream stage(s) {', '.join(blockers) or '?'} failed"
            else:
                try:
                    future.result()
                    failed[name] = f"{state.name}: {state.message or ''}".strip()
                except Exception as exc:  # the task's own error, e.g. StageFailed with the stderr tail
                    failed[name] = str(exc)
        create_markdown_artifact(
            key="svd-pipeline", markdown=pipeline_markdown(plan, results, failed), description="svd pipeline run"
        )

        if parent_run_id:
            import mlflow
            from prefect.runtime import flow_run

            tags = {"svd.stages": ",".join(plan), "svd.failed": ",".join(failed), "prefect.flow_run_id": flow_run.id}
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
            mlflow.log_dict({"results": results, "failed": failed}, "pipeline.json")
        if failed:
            first = next(iter(failed))
            detail = "\n".join(f"- {name}: {why}" for name, why in failed.items())
            raise PipelineFailed(f"stage {first!r} failed ({len(failed)} of {len(plan)} stage(s) not done):\n{detail}")
    return results


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="*", help="stages to run (default: all in dvc.yaml)")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--force", action="store_true", help="re-run stages even if DVC finds them up to date")
    parser.add_argument(
        "--work-pools",
        action="store_true",
        help="run each stage on its pool's deployment (svd-stage/stage-cpu|gpu; needs `make serve`)",
    )
    parser.add_argument("--dvc-remote", default=None, help="pull before and push after each stage (a dvc remote)")
    args = parser.parse_args(argv)
    result = svd_flow(
        stages=args.stages or None,
        project_dir=args.project_dir,
        force=args.force,
        work_pools=args.work_pools,
        dvc_remote=args.dvc_remote,
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
