"""The Prefect flow over DVC, on throwaway git+dvc projects: graph order, DVC's up-to-date decisions, failures,
artifacts.

One Prefect test server serves the whole module (`prefect_harness`, session-scoped in conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # flows/ is a top-level folder of the project, not part of the installed package
# importing prefect creates its home folder: keep it out of ~ (the harness then moves it to a pytest tmp dir)
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "svd-prefect-home"))

from flows.pipeline import (  # noqa: E402
    PipelineFailed,
    artifact_key,
    repro_status,
    run_stage,
    stage_plan,
    svd_flow,
)

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent

# Each step appends its name to runs.log (not a DVC out), so the log tells which stages really ran and in what order.
STEP = """\
import json, pathlib, sys, yaml
name, deps = sys.argv[1], sys.argv[2:]
with open("runs.log", "a") as log:
    log.write(name + "\\n")
value = (yaml.safe_load(open("config.yaml")) or {}).get(name, 0)
upstream = "".join(pathlib.Path(d).read_text() for d in deps)
pathlib.Path(name + ".txt").write_text(f"{name}={value};{upstream}")
pathlib.Path("metrics").mkdir(exist_ok=True)
json.dump({"value": value, "nested": {"len": len(upstream)}}, open(f"metrics/{name}.json", "w"))
"""

# b is declared before a on purpose: the order must come from the graph, not from the file.
GRAPH = """\
stages:
  b:
    cmd: python step.py b a.txt
    deps: [step.py, a.txt]
    outs: [b.txt]
    metrics:
      - metrics/b.json:
          cache: false
  a:
    cmd: python step.py a
    deps: [step.py]
    params:
      - config.yaml:
          - a
    outs: [a.txt]
    metrics:
      - metrics/a.json:
          cache: false
  c:
    cmd: python step.py c
    params:
      - config.yaml:
          - c
    outs: [c.txt]
"""

# bad fails; after depends on it; flaky fails on its first attempt only (its attempt count lives outside DVC).
TROUBLE = """\
stages:
  bad:
    cmd: python -c "import sys; print('working'); sys.exit('boom - broken input')"
    outs: [bad.txt]
  after:
    cmd: python -c "open('after.txt', 'w').write(open('bad.txt').read())"
    deps: [bad.txt]
    outs: [after.txt]
  flaky:
    cmd: python flaky.py
    outs: [flaky.txt]
"""

FLAKY = """\
import pathlib, sys
tries = pathlib.Path("attempts")
n = int(tries.read_text()) + 1 if tries.exists() else 1
tries.write_text(str(n))
if n == 1:
    sys.exit("first attempt fails")
pathlib.Path("flaky.txt").write_text("ok")
"""


def make_project(path: Path, dvc_yaml: str, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=path, check=True)
    for name, text in {"dvc.yaml": dvc_yaml, **files}.items():
        (path / name).write_text(text)
    return path


def runs(project: Path) -> list[str]:
    log = project / "runs.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(
        tmp_path_factory.mktemp("flow") / "proj", GRAPH, {"step.py": STEP, "config.yaml": "a: 1\nc: 1\n"}
    )


def statuses(result: dict) -> dict[str, str]:
    return {name: r["status"] for name, r in result.items()}


def test_plan_follows_the_dvc_graph(tmp_path):
    proj = make_project(tmp_path / "p", GRAPH, {"step.py": STEP, "config.yaml": "a: 1\nc: 1\n"})
    plan = stage_plan(proj)
    order = list(plan)
    assert set(order) == {"a", "b", "c"} and order.index("a") < order.index("b")
    assert plan["b"]["upstream"] == ["a"] and plan["a"]["upstream"] == []
    assert plan["a"]["metrics"] == ["metrics/a.json"] and plan["a"]["outs"] == ["a.txt", "metrics/a.json"]

    # a new foreach stage appears with no change to the flow; its group name selects all of its items
    (proj / "dvc.yaml").write_text(
        GRAPH + "  d:\n    foreach: [x, y]\n    do:\n      cmd: python step.py d${item} b.txt\n"
        "      deps: [b.txt]\n      outs: ['d${item}.txt']\n"
    )
    plan = stage_plan(proj)
    assert plan["d@x"]["upstream"] == ["a", "b"] and list(plan).index("d@y") > list(plan).index("b")
    assert list(stage_plan(proj, ["d", "a"])) == ["a", "d@x", "d@y"]
    assert stage_plan(proj, ["d@y"])["d@y"]["upstream"] == []  # the unselected upstream is not waited on

    with pytest.raises(ValueError, match=r"unknown stage\(s\) 'nope'.*dvc.yaml has: a, b, c, d"):
        stage_plan(proj, ["a", "nope"])

    # a stage of another dvc.yaml (ablations/: on demand) is left out of the default plan and runs when named
    (proj / "ablations").mkdir()
    (proj / "ablations" / "dvc.yaml").write_text(
        "stages:\n  e:\n    wdir: ..\n    cmd: python step.py e b.txt\n    deps: [b.txt]\n    outs: [e.txt]\n"
    )
    assert "ablations/dvc.yaml:e" not in stage_plan(proj)
    named = stage_plan(proj, ["ablations/dvc.yaml:e", "b"])
    assert list(named) == ["b", "ablations/dvc.yaml:e"] and named["ablations/dvc.yaml:e"]["upstream"] == ["b"]


def test_repro_status_wording():
    assert repro_status("a", "Running stage 'a':\n> python step.py a") == ("ran", "command executed")
    assert repro_status("a", "Stage 'a' didn't change, skipping")[0] == "skipped"
    assert repro_status("a", "Stage 'a' is cached - skipping run, checking out outputs")[0] == "skipped"
    assert artifact_key("train@A_1") == "stage-train-a-1"


def test_flow_runs_skips_and_reruns_downstream_only(prefect_harness, project):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    first = svd_flow(project_dir=str(project))
    assert statuses(first) == {"a": "ran", "b": "ran", "c": "ran"}
    log = runs(project)
    assert sorted(log) == ["a", "b", "c"] and log.index("a") < log.index("b")
    assert first["a"]["metrics"] == {"value": 1, "nested.len": 0}
    assert first["b"]["metrics"]["nested.len"] == len("a=1;")
    assert isinstance(first["c"]["seconds"], float) and first["c"]["metrics"] == {}

    assert statuses(svd_flow(project_dir=str(project))) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert runs(project) == []

    keys = ["stage-a", "stage-b", "stage-c", "svd-pipeline"]
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    markdown = {a.key: a.data for a in found}
    assert set(markdown) == set(keys)
    assert "dvc --wait-for-lock repro --single-item a" in markdown["stage-a"]
    assert "| status | skipped |" in markdown["stage-a"]
    assert "| value | 1 |" in markdown["stage-a"] and "`a.txt`" in markdown["stage-a"]
    assert "| a | skipped |" in markdown["svd-pipeline"]

    (project / "config.yaml").write_text("a: 2\nc: 1\n")  # a's param: a and its downstream b, never c
    third = svd_flow(project_dir=str(project))
    assert statuses(third) == {"a": "ran", "b": "ran", "c": "skipped"}
    assert runs(project) == ["a", "b"] and third["a"]["metrics"]["value"] == 2

    # the task's logic on its own: --force makes DVC run an up-to-date stage
    spec = stage_plan(project, ["c"])["c"]
    assert run_stage.fn(spec, str(project), force=True)["status"] == "ran"
    assert runs(project) == ["c"]


def test_failures_name_the_stage_and_retries_recover(prefect_harness, tmp_path):
    proj = make_project(tmp_path / "t", TROUBLE, {"flaky.py": FLAKY})
    with pytest.raises(PipelineFailed) as err:
        svd_flow(project_dir=str(proj), stage_retries=1, retry_delay_seconds=0)
    message = str(err.value)
    assert message.startswith("stage 'bad' failed")
    assert "boom - broken input" in message  # the stderr tail of the stage
    assert "after: not run: upstream stage(s) bad failed" in message
    assert "flaky" not in message and (proj / "flaky.txt").read_text() == "ok"
    assert (proj / "attempts").read_text() == "2"  # one Prefect retry

    with pytest.raises(ValueError, match="unknown stage.*'nope'"):
        svd_flow(project_dir=str(proj), stages=["nope"])


def test_stages_nest_under_the_mlflow_parent_run(prefect_harness, tmp_path):
    from svd.tracking import PARENT_ENV

    graph = f"""\
stages:
  env:
    cmd: python -c "import os; open('parent.txt', 'w').write(os.environ.get('{PARENT_ENV}', 'none'))"
    params: [seed]
    outs: [parent.txt]
"""
    proj = make_project(tmp_path / "m", graph, {})
    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    assert statuses(svd_flow(project_dir=str(proj))) == {"env": "ran"}

    import mlflow

    parent = (proj / "parent.txt").read_text()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj}/mlruns/mlflow.db")
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["svd.kind"] == "pipeline"
    assert run.data.tags["svd.stages"] == "env"


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=path, check=True, capture_output=True
    )


def test_two_checkouts_share_work_through_a_dvc_remote(prefect_harness, tmp_path):
    """Checkout A orchestrates (the only dvc.lock writer) and runs stage a; checkout B, another machine, runs b from
    what it pulls: a's output through the remote and a's lock entry from A. Nothing is copied by hand."""
    from flows.pipeline import lock_entries, merge_lock, svd_stage_flow, take_stage_result

    a_dir = make_project(tmp_path / "A", GRAPH, {"step.py": STEP, "config.yaml": "a: 1\nc: 1\n"})
    remote = tmp_path / "remote"
    subprocess.run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote)], cwd=a_dir, check=True)
    (a_dir / ".gitignore").write_text("runs.log\n")
    _git(a_dir, "add", "-A")
    _git(a_dir, "commit", "-qm", "project")
    b_dir = tmp_path / "B"
    _git(tmp_path, "clone", "-q", str(a_dir), str(b_dir))  # the commit a worker's pull step checks out

    plan = stage_plan(a_dir)
    assert plan["b"]["direct"] == ["a"] and plan["a"]["direct"] == []
    ran_a = svd_stage_flow(plan["a"], str(a_dir), dvc_remote="shared")
    assert ran_a["status"] == "ran" and merge_lock(a_dir, ran_a["lock"]) is False  # A ran it: its lock has it
    assert not (b_dir / "a.txt").exists()

    ran_b = svd_stage_flow(plan["b"], str(b_dir), dvc_remote="shared", lock=lock_entries(a_dir, ["a"]))
    assert ran_b["status"] == "ran" and runs(b_dir) == ["b"]  # a was pulled, not re-run
    assert (b_dir / "b.txt").read_text() == "b=0;a=1;"
    assert ran_b["files"] == {"metrics/b.json": (b_dir / "metrics" / "b.json").read_text()}  # git's, not DVC's
    lock_before = (a_dir / "dvc.lock").read_text()
    take_stage_result(a_dir, ran_b)  # the orchestrator records what B produced
    assert (a_dir / "dvc.lock").read_text() != lock_before and (a_dir / "metrics" / "b.json").is_file()

    out = subprocess.run(
        [str(BIN / "dvc"), "pull", "--remote", "shared", "b"], cwd=a_dir, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert (a_dir / "b.txt").read_text() == "b=0;a=1;"
    status = subprocess.run([str(BIN / "dvc"), "status", "a", "b"], cwd=a_dir, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout  # A's lock describes what B made, and A has it

    again = svd_stage_flow(plan["b"], str(b_dir), dvc_remote="shared", lock=lock_entries(a_dir, ["a"]))
    assert again["status"] == "skipped" and runs(b_dir) == []


def test_stages_route_to_pools_by_kind():
    from flows.pipeline import stage_pool

    assert [stage_pool(s) for s in ("world", "curate", "train_video", "evaluate_hq", "register")] == [
        "cpu",
        "cpu",
        "gpu",
        "gpu",
        "cpu",
    ]


POOLED = """\
stages:
  prep:
    cmd: python step.py prep
    deps: [step.py]
    outs: [prep.txt]
  train_m:
    cmd: python step.py train_m prep.txt
    deps: [step.py, prep.txt]
    outs: [train_m.txt]
"""


def test_work_pools_run_each_stage_as_a_run_of_its_pools_deployment(prefect_harness, tmp_path):
    """The orchestrator sends `prep` to the CPU pool and `train_m` to the GPU pool, each picked up by a process
    worker of its own (as `make serve` starts them), and merges each run's lock entry into its dvc.lock."""
    import time

    from flows.pipeline import svd_stage_flow
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH

    proj = make_project(tmp_path / "p", POOLED, {"step.py": STEP, "config.yaml": "{}\n"})
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path / "home"),
        # results are read back by the orchestrator: the workers must write them where it reads
        "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    prefect = str(BIN / "prefect")
    workers = []
    try:
        for pool in ("svd-cpu", "svd-gpu"):
            subprocess.run(
                [prefect, "work-pool", "create", pool, "--type", "process"], env=env, check=True, capture_output=True
            )
            svd_stage_flow.from_source(source=str(ROOT), entrypoint="flows/pipeline.py:svd_stage_flow").deploy(
                name=f"stage-{pool.removeprefix('svd-')}", work_pool_name=pool, print_next_steps=False
            )
            workers.append(
                subprocess.Popen(
                    [prefect, "worker", "start", "--pool", pool, "--type", "process"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        started = time.monotonic()
        result = svd_flow(project_dir=str(proj), work_pools=True, worker_project_dir=str(proj))
        assert time.monotonic() - started < 300
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    assert statuses(result) == {"prep": "ran", "train_m": "ran"}
    assert result["prep"]["pool"] == "svd-cpu" and result["train_m"]["pool"] == "svd-gpu"
    assert runs(proj) == ["prep", "train_m"]
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=proj, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
