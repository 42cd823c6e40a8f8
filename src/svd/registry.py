"""`svd register`: a model folder becomes a new registry version with its lineage, alias `candidate`, and alias
`champion` only when its evaluation beats the current champion's.

Lineage lives on the version as tags (DESIGN rule 6): the git commit (and whether the tree was dirty), the params
hash and profile, content hashes of the curated data and of the model folder (plus their dvc.lock md5 when DVC
tracks them), the training run the model came from when it can be found, and the evaluation file's hash and values.
The gate reads the champion's values back from its version tags, so a decision never depends on files that may
have changed since the champion was registered. With `register.significance` it moves `champion` only when the
paired bootstrap interval of (candidate - champion) lies wholly beyond `min_delta`: each version logs its
evaluation's features.npz (both feature sets and the per-sample verdicts), and sample i of two evaluations shares
its prompt and seed, so the two are resampled together. Floors (`register.require`) apply to the lower bounds.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from svd import tracking
from svd.config import Params, flatten
from svd.errors import InputError, SvdError

CANDIDATE = "candidate"
CHAMPION = "champion"
MODEL_FILE = "svd_model.json"  # = svd.training.stages.MODEL_FILE, repeated so validation needs no torch import
INCLUDE = ("unet", "vae", MODEL_FILE)  # what a version ships: the files `svd sample` loads (as track_stage logs)
EVAL_TAG = "svd.eval."
CONTENT_TAG = "svd.lineage.model.content_sha256"
MODES = ("min", "max")


# ---------------------------------------------------------------- inputs
def read_model_folder(folder: Path | str, params: Params) -> dict[str, Any]:
    """svd_model.json of a folder that can be registered under the active profile (InputError otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--model {folder}: no such folder (register takes a model folder such as models/hq)")
    path = folder / MODEL_FILE
    if not path.is_file():
        raise InputError(f"--model {folder} is not an svd model folder ({MODEL_FILE} missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--model {folder}: {MODEL_FILE} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise InputError(f"--model {folder}: {MODEL_FILE} must hold a JSON object")
    profile = meta.get("profile")
    if not profile:
        raise InputError(f"--model {folder}: {MODEL_FILE} records no profile, so its lineage cannot be checked")
    if profile != params.profile:
        raise InputError(
            f"--model {folder} was trained under profile {profile!r} but the active profile is "
            f"{params.profile!r}; pass --profile {profile}"
        )
    if not (folder / "unet").is_dir():
        raise InputError(f"--model {folder} has no unet/: the folder is incomplete; re-run its training stage")
    return meta


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_metrics(path: Path | str, metric: str, require: dict[str, float] | None = None) -> dict[str, float]:
    """The numeric values of a flat evaluation JSON (nested objects are flattened to dotted keys). The gate metric
    and every floored key must be present and finite; other non-numeric entries are left out."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--metrics {path}: not found; run `svd evaluate video` first or pass --metrics")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--metrics {path}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"--metrics {path}: must hold a JSON object of metric: number")
    flat = flatten(raw)
    for key in [metric, *(require or {})]:
        if key not in flat:
            needed = "register.metric" if key == metric else "register.require"
            raise InputError(
                f"--metrics {path} has no {key!r} (needed by {needed}); keys: {', '.join(sorted(flat))[:200] or 'none'}"
            )
        if _finite(flat[key]) is None:
            raise InputError(f"--metrics {path}: {key!r} is {flat[key]!r}, not a finite number")
    return {k: v for k, v in ((k, _finite(v)) for k, v in flat.items()) if v is not None}


# ---------------------------------------------------------------- hashes
def content_hash(folder: Path | str, include: tuple[str, ...] = INCLUDE) -> str:
    """Hash of what a version ships (the `include` entries present), so the same model is recognised whatever else
    its folder holds (checkpoints, samples that `svd evaluate` rewrites) and whether it is local or in the store."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for item in include:
        if (folder / item).exists():
            digest.update(f"{item}:{tracking.hash_path(folder / item)}\n".encode())
    return digest.hexdigest()[:16]


def params_hash(params: Params) -> str:
    """Hash of the resolved params (profile merged, overrides applied): what the run logs as params, in one value."""
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dvc_md5(path: Path | str, lock: Path | str = "dvc.lock") -> str | None:
    """The md5 dvc.lock records for an output at `path` (as of the last `dvc repro`/`dvc commit`), or None."""
    import yaml

    lock = Path(lock)
    if not lock.is_file():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return None
    target = Path(path).resolve()
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if (lock.parent / out.get("path", "")).resolve() == target and out.get("md5"):
                return str(out["md5"])
    return None


def fingerprint_match(params: Params, folder: Path, stage: str | None) -> str:
    """'true' when the active params and inputs give the fingerprint the folder's checkpoints were trained under
    (so the params hash and curated hash recorded here are the training's), 'false' when not, else 'unknown'."""
    marker = folder / "checkpoints" / "fingerprint.txt"
    if stage is None or not marker.is_file():
        return "unknown"
    from svd.training.stages import fingerprint

    try:
        current = fingerprint(params, stage)
    except (AttributeError, ValueError, SvdError):
        return "unknown"
    return str(marker.read_text().strip() == current).lower()


# ---------------------------------------------------------------- registry lookups
def _local_source(source: str) -> Path | None:
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and Path(source).is_dir():
        return Path(source)
    return None  # a remote store: not downloaded just to compare


def _versions(client, name: str) -> list:
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)


def find_training_origin(versions: list, meta: dict, content: str, limit: int = 20) -> dict[str, str]:
    """The training run (and the version training registered) this content came from: svd_model.json's own record
    when it has one, else a training-registered version whose stored files hash the same."""
    for key in ("mlflow_run_id", "run_id"):
        if meta.get(key):
            return {"train_run_id": str(meta[key]), "train_run_found_by": MODEL_FILE}
    for version in versions[:limit]:
        if CONTENT_TAG in version.tags or "svd.stage" not in version.tags:
            continue  # only versions `svd train` registered (ours carry the lineage themselves)
        local = _local_source(version.source)
        if local is not None and local.is_dir() and content_hash(local) == content:
            return {
                "train_run_id": version.run_id or "unknown",
                "train_version": str(version.version),
                "train_run_found_by": "registry content hash",
            }
    return {"train_run_id": "unknown", "train_run_found_by": "none"}


def _champion(client, name: str):
    import mlflow

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


# ---------------------------------------------------------------- the gate
def gate(
    candidate: dict[str, float],
    champion_tags: dict[str, str] | None,
    champion_version: str | None,
    *,
    metric: str,
    mode: str,
    min_delta: float,
    require: dict[str, float] | None = None,
    force: bool = False,
    significance: bool = False,
    paired: dict | None = None,
    unpaired_reason: str | None = None,
) -> dict[str, Any]:
    """Whether `champion` moves to the candidate. Floors first, on each floored score's lower bound (`<key>_lo`)
    where the evaluation gave one (never overridden); then no champion -> move; a champion without the metric ->
    stay unless forced. Then, with `significance`, the paired interval of (candidate - champion) (`paired`: diff, lo,
    hi from svd.evaluation) must lie wholly beyond min_delta in the better direction; without a paired comparison
    (`unpaired_reason` says why) the champion stays unless forced. Without `significance`, the point values decide."""
    if mode not in MODES:
        raise SvdError(f"register.mode must be one of {', '.join(MODES)}, got {mode!r}")
    value = candidate[metric]
    floors = {}
    for k, v in (require or {}).items():
        bound = candidate.get(f"{k}_lo", candidate[k])
        floors[k] = {"value": candidate[k], "lower_bound": bound, "floor": float(v), "ok": bound >= v}
    champ_value = None
    if champion_tags is not None:
        champ_value = _finite(_float_or_none(champion_tags.get(EVAL_TAG + metric)))
    out = {
        "metric": metric,
        "mode": mode,
        "min_delta": min_delta,
        "candidate": value,
        "champion": champ_value,
        "champion_version": champion_version,
        "floors": floors,
        "forced": False,
        "significance": significance,
        "paired": paired,
    }
    failed = [k for k, f in floors.items() if not f["ok"]]
    if failed:
        why = "; ".join(
            f"{k} {floors[k]['value']:g} (lower bound {floors[k]['lower_bound']:g}) is below its floor "
            f"{floors[k]['floor']:g}"
            for k in failed
        )
        return {**out, "moved": False, "reason": f"{why} (register.require)"}
    if champion_version is None:
        return {**out, "moved": True, "reason": "no champion yet"}
    if champ_value is None:
        why = f"champion v{champion_version} has no recorded {metric} (tag {EVAL_TAG}{metric})"
        if force:
            return {**out, "moved": True, "forced": True, "reason": f"{why}; moved by --force"}
        return {**out, "moved": False, "reason": f"{why}, so the gate cannot compare; --force moves it anyway"}
    better = "lower" if mode == "min" else "higher"
    versus = f"champion v{champion_version}'s {champ_value:g}"
    if significance:
        if paired is None or "lo" not in paired:
            why = f"no paired comparison with champion v{champion_version} ({unpaired_reason or 'no interval'})"
            if force:
                return {**out, "moved": True, "forced": True, "reason": f"{why}; moved by --force"}
            return {
                **out,
                "moved": False,
                "reason": f"{why}, so the gate cannot judge significance; --force moves it anyway",
            }
        # the gain's interval: champion - candidate for min, candidate - champion for max
        lo, hi = (-paired["hi"], -paired["lo"]) if mode == "min" else (paired["lo"], paired["hi"])
        gain = -paired["diff"] if mode == "min" else paired["diff"]
        span = f"gain {gain:g}, 95% paired interval [{lo:g}, {hi:g}]"
        if lo > min_delta:
            return {
                **out,
                "moved": True,
                "reason": f"{metric} {value:g} beats {versus} ({better} is better; {span} "
                f"lies above min_delta {min_delta:g})",
            }
        return {
            **out,
            "moved": False,
            "reason": f"{metric} {value:g} vs {versus}: not significantly better ({span} "
            f"reaches min_delta {min_delta:g}; {better} is better)",
        }
    gain = (champ_value - value) if mode == "min" else (value - champ_value)
    if gain > min_delta:
        return {
            **out,
            "moved": True,
            "reason": f"{metric} {value:g} beats {versus} by {gain:g} ({better} is better; min_delta {min_delta:g})",
        }
    return {
        **out,
        "moved": False,
        "reason": f"{metric} {value:g} does not beat {versus} by more than min_delta "
        f"{min_delta:g} ({better} is better)",
    }


FEATURES_ARTIFACT = "evaluation/features.npz"
FEATURES_TAG = "svd.gate.features_run_id"  # the run holding a version's FEATURES_ARTIFACT


def read_features(path: Path | str) -> dict[str, Any]:
    """An evaluation's features.npz (svd.evaluation.ucf101.save_features) as arrays and strings."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not an evaluation features file ({' '.join(str(exc).split())[:120]})") from None
    missing = {"real", "fake", "extractor", "plan"} - set(data)
    if missing:
        raise InputError(f"{path}: lacks {sorted(missing)} (written by an older `svd evaluate video`?)")
    return {**data, "extractor": str(data["extractor"]), "plan": str(data["plan"])}


def paired_comparison(
    metric: str, candidate: dict, champion: dict, *, rounds: int, seed: int
) -> tuple[dict | None, str | None]:
    """(candidate - champion) on `metric` with its paired interval, or (None, why they cannot be paired)."""
    import numpy as np

    from svd.evaluation.fvd import paired_fvd_difference
    from svd.evaluation.intervals import paired_mean_difference

    if candidate["extractor"] != champion["extractor"]:
        return None, "the champion was scored with another feature network"
    if candidate["real"].shape != champion["real"].shape or not np.array_equal(candidate["real"], champion["real"]):
        return None, "the champion was scored against another real set"
    if candidate["plan"] != champion["plan"]:
        return None, "the champion's samples follow another plan (prompts, seeds or count)"
    if metric == "fvd":
        return paired_fvd_difference(
            candidate["real"], candidate["fake"], champion["fake"], rounds=rounds, seed=seed
        ), None
    if metric in candidate and metric in champion:
        return paired_mean_difference(candidate[metric], champion[metric], rounds=rounds, seed=seed), None
    return None, f"no per-sample values of {metric} to pair"


def _pair_with(champion, features: dict | None, cfg) -> tuple[dict | None, str | None]:
    """The paired comparison of the candidate's features with the champion's (downloaded from its version's run),
    or (None, why not)."""
    import tempfile

    import mlflow

    if features is None:
        return None, f"the candidate has no features file (register.features: {cfg.features})"
    run_id = champion.tags.get(FEATURES_TAG)
    if not run_id:
        return None, f"champion v{champion.version} was registered without its evaluation's features"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=FEATURES_ARTIFACT, dst_path=tmp)
        except Exception as exc:  # a deleted run or artifact store: say so, decide without pairing
            return None, f"champion v{champion.version}'s features are unavailable ({type(exc).__name__})"
        theirs = read_features(path)
    return paired_comparison(cfg.metric, features, theirs, rounds=cfg.bootstrap, seed=0)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------- register
def _default_name(meta: dict, folder: Path) -> str:
    from svd.training.stages import REGISTERED_NAME

    stage = meta.get("stage")
    if stage not in REGISTERED_NAME:
        raise InputError(
            f"--model {folder} is a stage-{stage} model; only the video stages "
            f"({', '.join(sorted(REGISTERED_NAME))}) have a registered name; give --name to register it"
        )
    return REGISTERED_NAME[stage]


def register_model(
    params: Params,
    model: Path | str,
    *,
    name: str | None = None,
    metrics: Path | str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Register `model` as a new version of `name` with lineage tags and alias `candidate`; move `champion` when the
    gate says so. The same content registered before returns that version unchanged (unless `force`). Returns the
    report `svd register` prints: name, version, aliases, the gate decision with both values, the lineage."""
    import mlflow

    cfg = params.register
    folder = Path(model)
    # every input is checked before anything is written to MLflow, so a bad call leaves no trace
    meta = read_model_folder(folder, params)
    name = name or cfg.name or _default_name(meta, folder)
    metrics_path = Path(metrics or cfg.metrics)
    values = read_metrics(metrics_path, cfg.metric, cfg.require)
    features_path = Path(cfg.features) if cfg.features else None
    features = read_features(features_path) if features_path is not None and features_path.is_file() else None
    if cfg.mode not in MODES:
        raise SvdError(f"register.mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")

    tracking.configure(params)
    client = mlflow.MlflowClient()
    content = content_hash(folder)
    versions = _versions(client, name)
    same = [v for v in versions if v.tags.get(CONTENT_TAG) == content]
    if same and not force:
        existing = same[0]
        return _report(
            client,
            name,
            str(existing.version),
            created=False,
            duplicate_of=str(existing.version),
            run_id=existing.run_id,
            gate_result=None,
            lineage={CONTENT_TAG: content},
            message=f"{folder} holds the same content ({content}) as {name} v{existing.version}; nothing "
            f"registered and no alias moved (--force registers it again)",
        )

    curated = Path(params.paths.curated)
    stage = meta.get("stage")
    lineage = {
        **tracking.git_state(),
        "svd.profile": params.profile,
        "svd.stage": str(stage),
        "svd.params.sha256": params_hash(params),
        "svd.lineage.curated.path": str(curated),
        "svd.lineage.curated.sha256": tracking.hash_path(curated),
        "svd.lineage.model.path": str(folder),
        "svd.lineage.model.sha256": tracking.hash_path(folder),
        CONTENT_TAG: content,
        "svd.lineage.fingerprint_match": fingerprint_match(params, folder, stage),
        "svd.eval_file.path": str(metrics_path),
        "svd.eval_file.sha256": tracking.hash_path(metrics_path),
        "svd.register.force": str(force).lower(),
    }
    for key, path in (("curated", curated), ("model", folder)):
        md5 = dvc_md5(path)
        if md5:
            lineage[f"svd.lineage.{key}.dvc_md5"] = md5
    lineage.update({f"svd.lineage.{k}": v for k, v in find_training_origin(versions, meta, content).items()})
    eval_tags = {f"{EVAL_TAG}{k}": repr(v) for k, v in values.items()}

    with tracking.stage_run(params, "register") as run:
        # the run carries the same lineage, in the input.* form the other stage runs use
        mlflow.set_tags(
            {
                **lineage,
                "input.curated.path": str(curated),
                "input.curated.sha256": lineage["svd.lineage.curated.sha256"],
                "input.model.path": str(folder),
                "input.model.sha256": lineage["svd.lineage.model.sha256"],
                "input.metrics.path": str(metrics_path),
                "input.metrics.sha256": lineage["svd.eval_file.sha256"],
            }
        )
        tracking.log_metrics({f"eval.{k}": v for k, v in values.items()})
        tracking.log_artifacts(metrics_path, "evaluation")
        if features is not None:  # what a later candidate pairs its samples with, under one name whatever the file's
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                shutil.copyfile(features_path, Path(tmp) / Path(FEATURES_ARTIFACT).name)
                tracking.log_artifacts(Path(tmp) / Path(FEATURES_ARTIFACT).name, str(Path(FEATURES_ARTIFACT).parent))
            eval_tags[FEATURES_TAG] = run.info.run_id
        adopted = lineage.get("svd.lineage.train_version") if not force else None
        if adopted:
            # `svd train` already registered these very files: the gate gives that version its lineage and verdict
            # instead of storing a byte-identical second copy (--force still registers a new one)
            version = adopted
            for key, value in {**lineage, **eval_tags, "svd.gate.run_id": run.info.run_id}.items():
                client.set_model_version_tag(name, version, key, str(value)[:5000])
            client.set_registered_model_alias(name, CANDIDATE, version)
        else:
            version = tracking.register_folder(
                params, folder, name, [CANDIDATE], include=list(INCLUDE), tags={**lineage, **eval_tags}
            )
        champ = _champion(client, name)
        champ_version = str(champ.version) if champ is not None and str(champ.version) != version else None
        paired, unpaired = None, None
        if cfg.significance and champ_version:
            paired, unpaired = _pair_with(champ, features, cfg)
        decision = gate(
            values,
            champ.tags if champ_version else None,
            champ_version,
            metric=cfg.metric,
            mode=cfg.mode,
            min_delta=cfg.min_delta,
            require=cfg.require,
            force=force,
            significance=cfg.significance,
            paired=paired,
            unpaired_reason=unpaired,
        )
        if decision["moved"]:
            client.set_registered_model_alias(name, CHAMPION, version)
        for key, value in {
            "svd.gate.moved": str(decision["moved"]).lower(),
            "svd.gate.reason": decision["reason"],
            "svd.gate.metric": cfg.metric,
            "svd.gate.mode": cfg.mode,
            "svd.gate.compared_to": decision["champion_version"] or "none",
            "svd.gate.forced": str(decision["forced"]).lower(),
            "svd.gate.paired": json.dumps(decision["paired"]) if decision["paired"] else "none",
        }.items():
            client.set_model_version_tag(name, version, key, value[:5000])
        mlflow.set_tags({"svd.registered": f"{name}/{version}", "svd.gate.moved": str(decision["moved"]).lower()})
        run_id = run.info.run_id
    verdict = f"champion moved to v{version}" if decision["moved"] else "champion stays"
    how = (
        f"gave {name} v{version} (registered by its training run) its lineage"
        if adopted
        else f"registered {name} v{version}"
    )
    return _report(
        client,
        name,
        version,
        created=not adopted,
        duplicate_of=None,
        run_id=run_id,
        gate_result=decision,
        lineage=lineage,
        message=f"{how} as {CANDIDATE}; {verdict}: {decision['reason']}",
    )


def _report(
    client,
    name: str,
    version: str,
    *,
    created: bool,
    duplicate_of: str | None,
    run_id: str | None,
    gate_result: dict | None,
    lineage: dict,
    message: str,
) -> dict[str, Any]:
    current = client.get_model_version(name, version)
    champ = _champion(client, name)
    return {
        "name": name,
        "version": version,
        "created": created,
        "duplicate_of": duplicate_of,
        "run_id": run_id,
        "aliases": sorted(current.aliases),
        "champion_version": str(champ.version) if champ else None,
        "gate": gate_result,
        "lineage": lineage,
        "message": message,
    }
