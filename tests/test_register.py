"""`svd register`: lineage tags, alias `candidate`, the champion gate, duplicates and every error, on tiny fake model
folders (svd_model.json + a few bytes) and one temporary MLflow store shared by the module (a fresh sqlite store
costs seconds of migrations); each test uses its own registered-model name."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from svd import registry, tracking
from svd.cli import app
from svd.config import ConfigError, load_params
from svd.errors import InputError, SvdError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("register")
    curated = base / "curated"
    curated.mkdir()
    (curated / "clips.parquet").write_bytes(b"not really parquet, only hashed")
    (curated / "clips").mkdir()
    (curated / "clips" / "a.mp4").write_bytes(b"clip bytes")
    return {
        "base": base,
        "sets": [
            f"paths.mlflow_uri=sqlite:///{base}/mlruns/mlflow.db",
            f"paths.mlflow_artifacts={base}/mlruns/artifacts",
            f"paths.curated={curated}",
            f"paths.models={base}/models",
            # the point-value gate; the significance gate has tests of its own below
            "register.require={}",
            "register.significance=false",
            "register.features=null",
        ],
    }


@pytest.fixture(autouse=True)
def _no_parent(monkeypatch):
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)


@pytest.fixture
def name(request):
    return "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:60]


def params_for(store, *extra, profile=None):
    return load_params(PARAMS, profile=profile, overrides=[*store["sets"], *extra])


def fake_model(path: Path, seed: int, stage="hq", profile="tiny", **meta) -> Path:
    """A folder register accepts: svd_model.json, unet/ and vae/ with a few seed-dependent bytes."""
    (path / "unet").mkdir(parents=True)
    (path / "vae").mkdir()
    (path / "unet" / "config.json").write_text(json.dumps({"seed": seed}))
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(bytes([seed % 256]) * 64)
    (path / "vae" / "config.json").write_text("{}")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "state.bin").write_bytes(b"optimizer state is not shipped")
    (path / registry.MODEL_FILE).write_text(
        json.dumps({"stage": stage, "kind": "text-to-video", "profile": profile, "vae": "vae", **meta})
    )
    return path


def write_metrics(path: Path, **values) -> Path:
    path.write_text(json.dumps(values))
    return path


def reg(store, tmp, name, seed, *extra, force=False, **values):
    """Register a fresh fake model (seed = its content) with these evaluation values."""
    folder = tmp / f"model{seed}"
    if not folder.exists():
        fake_model(folder, seed)
    metrics = write_metrics(tmp / f"metrics{seed}.json", **values)
    return registry.register_model(params_for(store, *extra), folder, name=name, metrics=metrics, force=force)


def client(store):
    tracking.configure(params_for(store))
    return mlflow.MlflowClient()


# ---------------------------------------------------------------- the gate
def test_first_is_champion_worse_stays_better_moves(store, tmp_path, name):
    first = reg(store, tmp_path, name, 1, fvd=100.0, colour_accuracy=0.5)
    assert (first["version"], first["created"], first["duplicate_of"]) == ("1", True, None)
    assert first["aliases"] == ["candidate", "champion"] and first["champion_version"] == "1"
    assert first["gate"]["moved"] and first["gate"]["reason"] == "no champion yet"

    worse = reg(store, tmp_path, name, 2, fvd=120.0, colour_accuracy=0.9)
    assert worse["version"] == "2" and worse["aliases"] == ["candidate"] and worse["champion_version"] == "1"
    g = worse["gate"]
    assert not g["moved"] and (g["candidate"], g["champion"], g["champion_version"]) == (120.0, 100.0, "1")
    assert "does not beat champion v1" in g["reason"]

    better = reg(store, tmp_path, name, 3, fvd=80.0, colour_accuracy=0.1)
    assert better["aliases"] == ["candidate", "champion"] and better["champion_version"] == "3"
    assert better["gate"]["moved"] and better["gate"]["champion"] == 100.0 and "by 20" in better["gate"]["reason"]
    c = client(store)
    assert c.get_model_version(name, "1").aliases == []  # candidate and champion both moved on
    assert c.get_model_version(name, "3").tags["svd.gate.compared_to"] == "1"
    assert c.get_model_version(name, "2").tags["svd.gate.moved"] == "false"


def test_mode_max(store, tmp_path, name):
    extra = ("register.metric=colour_accuracy", "register.mode=max")
    assert reg(store, tmp_path, name, 1, *extra, fvd=1.0, colour_accuracy=0.5)["champion_version"] == "1"
    # a lower fvd means nothing here: only colour_accuracy counts, higher is better
    assert reg(store, tmp_path, name, 2, *extra, fvd=0.5, colour_accuracy=0.4)["champion_version"] == "1"
    assert reg(store, tmp_path, name, 3, *extra, fvd=9.0, colour_accuracy=0.7)["champion_version"] == "3"


def test_min_delta(store, tmp_path, name):
    extra = ("register.min_delta=1.0",)
    reg(store, tmp_path, name, 1, *extra, fvd=10.0)
    small = reg(store, tmp_path, name, 2, *extra, fvd=9.5)
    assert small["champion_version"] == "1" and "min_delta 1" in small["gate"]["reason"]
    assert reg(store, tmp_path, name, 3, *extra, fvd=8.9)["champion_version"] == "3"


def test_floors_block_even_the_first_champion(store, tmp_path, name):
    extra = ("register.require={colour_accuracy: 0.5}",)
    low = reg(store, tmp_path, name, 1, *extra, fvd=10.0, colour_accuracy=0.3)
    assert low["aliases"] == ["candidate"] and low["champion_version"] is None
    assert "colour_accuracy 0.3 (lower bound 0.3) is below its floor 0.5" in low["gate"]["reason"]
    assert low["gate"]["floors"] == {"colour_accuracy": {"value": 0.3, "lower_bound": 0.3, "floor": 0.5, "ok": False}}
    ok = reg(store, tmp_path, name, 2, *extra, fvd=12.0, colour_accuracy=0.6)
    assert ok["champion_version"] == "2" and ok["gate"]["reason"] == "no champion yet"
    # a better fvd under the floor never wins, --force or not
    for seed, force in ((3, False), (4, True)):
        r = reg(store, tmp_path, name, seed, *extra, force=force, fvd=5.0, colour_accuracy=0.4)
        assert r["champion_version"] == "2" and not r["gate"]["moved"]


def test_champion_without_the_metric_needs_force(store, tmp_path, name):
    reg(store, tmp_path, name, 1, fvd=10.0)  # champion v1 records no direction_accuracy
    extra = ("register.metric=direction_accuracy", "register.mode=max")
    refused = reg(store, tmp_path, name, 2, *extra, fvd=5.0, direction_accuracy=0.9)
    assert refused["champion_version"] == "1" and not refused["gate"]["moved"]
    assert refused["gate"]["champion"] is None and "v1 has no recorded direction_accuracy" in refused["gate"]["reason"]
    forced = reg(store, tmp_path, name, 3, *extra, force=True, fvd=5.0, direction_accuracy=0.8)
    assert forced["champion_version"] == "3" and forced["gate"]["forced"] and "--force" in forced["gate"]["reason"]
    tags = client(store).get_model_version(name, "3").tags
    assert tags["svd.register.force"] == "true" and tags["svd.gate.forced"] == "true"
    assert client(store).get_model_version(name, "2").tags["svd.register.force"] == "false"


# ---------------------------------------------------------------- the significance gate
def _evaluation(tmp: Path, seed: int, real, fake, correct, plan="plan-a", extractor="net-a") -> tuple[Path, dict]:
    """An evaluation as `svd evaluate video` leaves it: features.npz and the metrics with their intervals."""
    import numpy as np

    from svd.evaluation.fvd import frechet_distance, fvd_interval
    from svd.evaluation.intervals import mean_interval

    features = tmp / f"features{seed}.npz"
    colour = np.asarray(correct, dtype=np.float64)
    with open(features, "wb") as f:
        np.savez(
            f,
            real=real,
            fake=fake,
            colour_accuracy=colour,
            direction_accuracy=colour,
            extractor=np.str_(extractor),
            real_n=np.int64(len(real)),
            plan=np.str_(plan),
        )
    fvd, span = frechet_distance(real, fake), fvd_interval(real, fake, rounds=200, seed=0)
    c = mean_interval(colour, rounds=200, seed=0)
    return features, {
        "fvd": fvd,
        "fvd_lo": span["lo"],
        "fvd_hi": span["hi"],
        "colour_accuracy": c["mean"],
        "colour_accuracy_lo": c["lo"],
        "colour_accuracy_hi": c["hi"],
    }


def test_significance_gate_waits_for_an_interval_and_respects_floors(store, tmp_path, name):
    """The champion moves only when the paired interval of the FVD difference clears zero: a candidate that is
    better by less than that (another draw of the same generator, better on the point value) stays a candidate, a
    clearly better one moves; one below a floor's lower bound never moves; a champion scored with another feature
    net or sample plan cannot be compared."""
    import numpy as np

    rng = np.random.default_rng(0)
    real = rng.normal(size=(64, 8))
    draws = [rng.normal(size=(64, 8)) + 0.8 for _ in range(12)]  # one generator, twelve sets of samples
    from svd.evaluation.fvd import frechet_distance

    scores = [frechet_distance(real, d) for d in draws]
    champ_i = int(np.argsort(scores)[6])  # a middling draw is the champion
    lucky_i = int(np.argsort(scores)[0])  # the luckiest draw: a better point value, the same generator
    ok = [True] * 48 + [False] * 16
    sets = ("register.significance=true", "register.require={colour_accuracy: 0.5}", "register.bootstrap=400")

    def register(seed, fake, correct=ok, **kw):
        features, values = _evaluation(tmp_path, seed, real, fake, correct, **kw)
        return reg(store, tmp_path, name, seed, *sets, f"register.features={features}", **values)

    first = register(1, draws[champ_i])
    assert first["champion_version"] == "1" and first["gate"]["reason"] == "no champion yet"
    lucky = register(2, draws[lucky_i])
    assert scores[lucky_i] < scores[champ_i]  # the point-value gate would have moved
    g = lucky["gate"]
    assert lucky["champion_version"] == "1" and not g["moved"] and "not significantly better" in g["reason"]
    assert g["paired"]["lo"] < 0 < g["paired"]["hi"]

    better = draws[champ_i] - 0.6  # the same samples, much nearer the real set
    low = register(3, better, correct=[True] * 20 + [False] * 44)  # colour 0.31, its lower bound under 0.5
    assert low["champion_version"] == "1" and "below its floor" in low["gate"]["reason"]
    clear = register(4, better)
    g = clear["gate"]
    assert clear["champion_version"] == "4" and g["moved"] and g["paired"]["hi"] < 0, g
    tags = client(store).get_model_version(name, "4").tags
    assert json.loads(tags["svd.gate.paired"])["hi"] < 0 and tags[registry.FEATURES_TAG]

    other = register(5, better - 0.1, extractor="net-b")
    assert other["champion_version"] == "4" and "another feature network" in other["gate"]["reason"]
    replan = register(6, better - 0.1, plan="plan-b")
    assert replan["champion_version"] == "4" and "another plan" in replan["gate"]["reason"]


def test_paired_comparison_of_accuracies():
    import numpy as np

    a = {
        "real": np.zeros((4, 2)),
        "fake": np.zeros((4, 2)),
        "extractor": "x",
        "plan": "p",
        "colour_accuracy": np.array([1, 1, 1, 1, 1, 1, 0, np.nan] * 8, dtype=float),
    }
    b = {**a, "colour_accuracy": np.array([0, 0, 1, 0, 1, 0, 0, 1] * 8, dtype=float)}
    paired, why = registry.paired_comparison("colour_accuracy", a, b, rounds=300, seed=0)
    assert why is None and paired["diff"] == pytest.approx(6 / 7 - 2 / 7) and paired["lo"] > 0
    assert registry.paired_comparison("direction_accuracy", a, b, rounds=10, seed=0)[1].startswith("no per-sample")


def test_gate_function_edges():
    kw = {"metric": "fvd", "mode": "min", "min_delta": 0.0}
    assert not registry.gate({"fvd": 5.0}, {"svd.eval.fvd": "5.0"}, "1", **kw)["moved"]  # a tie is not a win
    assert registry.gate({"fvd": 4.9}, {"svd.eval.fvd": "5.0"}, "1", **kw)["moved"]
    assert not registry.gate({"fvd": 1.0}, {"svd.eval.fvd": "nan"}, "1", **kw)["moved"]  # NaN = not recorded
    with pytest.raises(SvdError, match="register.mode"):
        registry.gate({"fvd": 1.0}, None, None, metric="fvd", mode="median", min_delta=0.0)


# ---------------------------------------------------------------- lineage
def test_lineage_tags(store, tmp_path, name):
    params = params_for(store)
    folder = fake_model(tmp_path / "m", 7)
    metrics = write_metrics(tmp_path / "eval.json", fvd=42.5, colour_accuracy=0.75, n=32, note="text is skipped")
    report = registry.register_model(params, folder, name=name, metrics=metrics)
    version = client(store).get_model_version(name, report["version"])
    tags = version.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags["git.commit"] == head and tags["git.dirty"] in ("true", "false")
    assert tags["svd.profile"] == "tiny" and tags["svd.stage"] == "hq"
    assert tags["svd.params.sha256"] == registry.params_hash(params)
    assert registry.params_hash(params) != registry.params_hash(params_for(store, "seed=1"))
    assert tags["svd.lineage.curated.sha256"] == tracking.hash_path(params.paths.curated)
    assert tags["svd.lineage.curated.path"] == params.paths.curated
    assert tags["svd.lineage.model.sha256"] == tracking.hash_path(folder)
    assert tags[registry.CONTENT_TAG] == registry.content_hash(folder)
    assert tags["svd.eval_file.sha256"] == tracking.hash_path(metrics)
    assert float(tags["svd.eval.fvd"]) == 42.5 and float(tags["svd.eval.n"]) == 32
    assert "svd.eval.note" not in tags
    assert tags["svd.lineage.train_run_id"] == "unknown" and tags["svd.lineage.fingerprint_match"] == "unknown"
    assert report["lineage"]["svd.lineage.curated.sha256"] == tags["svd.lineage.curated.sha256"]
    # the version's run is a register stage run holding the same lineage and the params
    run = client(store).get_run(version.run_id)
    assert run.data.tags["svd.step"] == "register" and run.data.tags["svd.registered"] == f"{name}/1"
    assert run.data.tags["input.curated.sha256"] == tags["svd.lineage.curated.sha256"]
    assert run.data.params["seed"] == "0" and run.data.metrics["eval.fvd"] == 42.5


def test_training_run_found_by_content(store, tmp_path, name):
    params = params_for(store)
    folder = fake_model(tmp_path / "m", 11)
    with tracking.stage_run(params, "train_hq") as train:  # what track_stage does after training
        tracking.register_folder(
            params,
            folder,
            name,
            ["hq", "newest"],
            include=list(registry.INCLUDE),
            tags={"svd.stage": "hq", "svd.profile": "tiny"},
        )
    report = registry.register_model(params, folder, name=name, metrics=write_metrics(tmp_path / "e.json", fvd=1.0))
    # the training version itself becomes the candidate (and champion): no byte-identical second copy
    assert (
        report["version"] == "1"
        and report["created"] is False
        and "registered by its training run" in report["message"]
    )
    assert report["lineage"]["svd.lineage.train_run_id"] == train.info.run_id
    assert report["lineage"]["svd.lineage.train_version"] == "1"
    assert len(client(store).search_model_versions(f"name='{name}'")) == 1
    only = client(store).get_model_version(name, "1")
    assert set(only.aliases) == {"hq", "newest", "candidate", "champion"}
    tags = only.tags
    assert tags[registry.CONTENT_TAG] == registry.content_hash(folder) and float(tags["svd.eval.fvd"]) == 1.0
    assert only.run_id == train.info.run_id and tags["svd.gate.moved"] == "true" and tags["svd.gate.run_id"]
    again = registry.register_model(params, folder, name=name, metrics=write_metrics(tmp_path / "e.json", fvd=1.0))
    assert again["created"] is False and again["duplicate_of"] == "1"  # the same content: nothing new
    forced = registry.register_model(
        params, folder, name=name, force=True, metrics=write_metrics(tmp_path / "e.json", fvd=1.0)
    )
    assert forced["version"] == "2" and forced["created"] is True  # --force still stores a new version
    # a folder that records its run says so itself
    other = fake_model(tmp_path / "o", 12, mlflow_run_id="abc123")
    assert registry.find_training_origin([], json.loads((other / "svd_model.json").read_text()), "x") == {
        "train_run_id": "abc123",
        "train_run_found_by": "svd_model.json",
    }


def test_fingerprint_match(store, tmp_path):
    from svd.training.stages import MODEL_FILE, fingerprint

    assert registry.MODEL_FILE == MODEL_FILE
    params = params_for(store)
    folder = fake_model(tmp_path / "m", 1)
    assert registry.fingerprint_match(params, folder, "hq") == "unknown"
    (folder / "checkpoints" / "fingerprint.txt").write_text(fingerprint(params, "hq") + "\n")
    assert registry.fingerprint_match(params, folder, "hq") == "true"
    assert registry.fingerprint_match(params_for(store, "train.hq.lr=0.1"), folder, "hq") == "false"


def test_dvc_md5(tmp_path):
    (tmp_path / "data" / "curated").mkdir(parents=True)
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  curate:\n    outs:\n    - path: data/curated\n      md5: abc.dir\n")
    assert registry.dvc_md5(tmp_path / "data" / "curated", lock) == "abc.dir"
    assert registry.dvc_md5(tmp_path / "data", lock) is None
    assert registry.dvc_md5(tmp_path / "data", tmp_path / "missing.lock") is None


# ---------------------------------------------------------------- duplicates and the registry round trip
def test_same_content_is_not_registered_twice(store, tmp_path, name):
    reg(store, tmp_path, name, 1, fvd=10.0)
    again = reg(store, tmp_path, name, 1, fvd=1.0)  # same folder, a better score: still the same model
    assert (again["created"], again["version"], again["duplicate_of"], again["gate"]) == (False, "1", "1", None)
    assert "same content" in again["message"]
    c = client(store)
    assert len(c.search_model_versions(f"name='{name}'")) == 1
    copy = tmp_path / "copy"  # another folder, same shipped files, different checkpoints: the same model
    fake_model(copy, 1)
    (copy / "checkpoints" / "state.bin").write_bytes(b"other")
    r = registry.register_model(params_for(store), copy, name=name, metrics=tmp_path / "metrics1.json")
    assert r["duplicate_of"] == "1"
    forced = reg(store, tmp_path, name, 1, force=True, fvd=1.0)
    assert forced["created"] and forced["version"] == "2" and forced["champion_version"] == "2"


def test_champion_alias_resolves_to_the_files(store, tmp_path, name):
    reg(store, tmp_path, name, 1, fvd=10.0)
    reg(store, tmp_path, name, 2, fvd=5.0)
    params = params_for(store)
    local = tracking.download_model(params, f"models:/{name}@champion")
    assert registry.content_hash(local) == registry.content_hash(tmp_path / "model2")
    assert not (local / "checkpoints").exists()  # only what sampling needs is shipped
    cand = tracking.download_model(params, f"models:/{name}@candidate")
    assert registry.content_hash(cand) == registry.content_hash(tmp_path / "model2")


def test_default_name_is_the_stage_name(store, tmp_path):
    from svd.training.stages import REGISTERED_NAME

    folder = fake_model(tmp_path / "m", 99)
    report = registry.register_model(params_for(store), folder, metrics=write_metrics(tmp_path / "e.json", fvd=3.0))
    assert report["name"] == REGISTERED_NAME["hq"]
    named = registry.register_model(
        params_for(store, "register.name=from-params"), fake_model(tmp_path / "n", 98), metrics=tmp_path / "e.json"
    )
    assert named["name"] == "from-params"


# ---------------------------------------------------------------- errors: one line, nothing written
BAD_METRICS = [
    ("missing", None, "not found"),
    ("text", "fvd: 1", "not valid JSON"),
    ("list", "[1, 2]", "must hold a JSON object"),
    ("no_metric", '{"colour_accuracy": 0.5}', "has no 'fvd'"),
    ("string", '{"fvd": "low"}', "'fvd' is 'low', not a finite number"),
    ("nan", '{"fvd": NaN}', "not a finite number"),
    ("inf", '{"fvd": Infinity}', "not a finite number"),
    ("bool", '{"fvd": true}', "not a finite number"),
    ("null", '{"fvd": null}', "not a finite number"),
]


@pytest.mark.parametrize("case,text,message", BAD_METRICS, ids=[c[0] for c in BAD_METRICS])
def test_bad_metrics(store, tmp_path, name, case, text, message):
    path = tmp_path / "eval.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        registry.register_model(params_for(store), fake_model(tmp_path / "m", 1), name=name, metrics=path)
    assert "\n" not in str(err.value)
    assert client(store).search_model_versions(f"name='{name}'") == []


def test_floor_key_missing(store, tmp_path, name):
    with pytest.raises(InputError, match="has no 'colour_accuracy' \\(needed by register.require\\)"):
        reg(store, tmp_path, name, 1, "register.require={colour_accuracy: 0.5}", fvd=1.0)


def _bad_folder(tmp_path: Path, case: str) -> Path:
    folder = tmp_path / case
    if case == "missing":
        return folder
    if case == "file":
        folder.write_text("x")
        return folder
    fake_model(folder, 1, profile="a100" if case == "profile" else "tiny", stage="image" if case == "image" else "hq")
    if case == "no_json":
        (folder / "svd_model.json").unlink()
    elif case == "bad_json":
        (folder / "svd_model.json").write_text("{not json")
    elif case == "no_profile":
        (folder / "svd_model.json").write_text('{"stage": "hq"}')
    elif case == "no_unet":
        for f in (folder / "unet").iterdir():
            f.unlink()
        (folder / "unet").rmdir()
    return folder


BAD_FOLDERS = [
    ("missing", "no such folder"),
    ("file", "no such folder"),
    ("no_json", "svd_model.json missing"),
    ("bad_json", "not valid JSON"),
    ("no_profile", "records no profile"),
    ("profile", "trained under profile 'a100' but the active profile is 'tiny'; pass --profile a100"),
    ("no_unet", "has no unet/"),
    ("image", "stage-image model.*give --name"),
]


@pytest.mark.parametrize("case,message", BAD_FOLDERS, ids=[c[0] for c in BAD_FOLDERS])
def test_bad_model_folder(store, tmp_path, case, message):
    metrics = write_metrics(tmp_path / "eval.json", fvd=1.0)
    with pytest.raises(InputError, match=message) as err:
        registry.register_model(params_for(store), _bad_folder(tmp_path, case), metrics=metrics)
    assert "\n" not in str(err.value)


def test_unknown_mode_is_a_config_error(store):
    with pytest.raises(ConfigError, match="register.mode"):
        params_for(store, "register.mode=median")


# ---------------------------------------------------------------- CLI contract
def cli_args(store, *args):
    return ["--params", str(PARAMS), *[x for s in store["sets"] for x in ("--set", s)], *args]


def test_cli_json_contract(store, tmp_path, name):
    folder = fake_model(tmp_path / "m", 5)
    metrics = write_metrics(tmp_path / "eval.json", fvd=3.0, colour_accuracy=0.5)
    result = CliRunner().invoke(
        app, cli_args(store, "register", "--model", str(folder), "--name", name, "--metrics", str(metrics))
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {
        "name",
        "version",
        "created",
        "duplicate_of",
        "run_id",
        "aliases",
        "champion_version",
        "gate",
        "lineage",
        "message",
    }
    assert set(out["gate"]) == {
        "metric",
        "mode",
        "min_delta",
        "candidate",
        "champion",
        "champion_version",
        "floors",
        "moved",
        "forced",
        "reason",
        "significance",
        "paired",
    }
    assert (out["name"], out["version"], out["aliases"]) == (name, "1", ["candidate", "champion"])
    assert out["gate"]["metric"] == "fvd" and out["gate"]["candidate"] == 3.0 and out["gate"]["moved"] is True


def test_cli_error_is_one_line_exit_2(store, tmp_path, monkeypatch, capsys):
    """What `svd` (svd.cli.main, the console script) does with a bad --model: one line on stderr, exit 2."""
    from svd.cli import main

    monkeypatch.setattr(sys, "argv", ["svd", *cli_args(store, "register", "--model", str(tmp_path / "nope"))])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.strip().count("\n") == 0 and err.startswith("error: --model") and "no such folder" in err


def test_params_without_a_register_block_still_load(tmp_path):
    import yaml

    raw = yaml.safe_load(PARAMS.read_text())
    raw.pop("register")
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_params(tmp_path / "old.yaml").register
    assert (cfg.metric, cfg.mode, cfg.min_delta, cfg.require) == ("fvd", "min", 0.0, {})


def test_a_broken_features_file_is_refused_before_anything_is_written(store, tmp_path, name):
    bad = tmp_path / "features.npz"
    bad.write_bytes(b"not an npz archive")
    with pytest.raises(InputError, match="not an evaluation features file"):
        reg(store, tmp_path, name, 1, "register.significance=true", f"register.features={bad}", fvd=1.0)
    assert client(store).search_registered_models(filter_string=f"name = '{name}'") == []
