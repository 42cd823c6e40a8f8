"""The curation ablation (paper Sec. 3.3, Fig. 4): does training on the curated clips beat training on all of them?

Stage II is trained from the pipeline's own Stage I (and VAE) on the curated clips and on every clip, once per
training seed in `ablation.curation.seeds`; each arm is then scored by `svd evaluate video` (the UCF-101 protocol; the
world's held-aside clips in tiny). Both arms of a seed sample the same prompts with the same seeds, so each seed gets
a paired interval of (curated - uncurated); across seeds the effect is compared with the seed spread, which is what
a claim about the recipe has to beat.

Every step is the CLI a user would type, run as a child process (`python -m svd ...`), with the MLflow parent run's
id in `SVD_PARENT_RUN_ID`: the training and evaluation runs are siblings under one `ablation_curation` run, and each
arm's evaluation numbers are logged to its training run too, so MLflow's compare view shows the arms side by side.
Nothing here touches the pipeline's models, metrics or registry aliases: models go to `out`/seed-S/ (beside links to
the pipeline's VAE and Stage I, with the arms' training metrics and curves in `out`/seed-S/metrics/), the arms'
evaluation metrics to `out`/metrics/, and the arms are trained without registering. A killed run resumes: training
resumes from its checkpoints (a finished arm only re-exports), an evaluation skips the samples it wrote.

Outputs: `metrics` (flat numbers, git + `dvc metrics`), the same stem as .csv (one row per arm and seed, the DVC
plot), and `out`/report.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from svd.config import Params
from svd.errors import InputError, SvdError

ARMS = ("curated", "uncurated")
SCORES = ("fvd", "colour_accuracy", "direction_accuracy")
PARENTS = ("vae", "image")  # what Stage II reads from the pipeline (linked, never copied or written)
Log = Callable[[str], None]


def arm_model(root: Path, seed: int, arm: str) -> Path:
    return root / f"seed-{seed}" / ("video" if arm == "curated" else "video-uncurated")


def arm_name(seed: int, arm: str) -> str:
    return f"curation-{arm}-seed{seed}"


def link_parents(params: Params, seed_dir: Path, names: tuple[str, ...] = PARENTS) -> None:
    """seed_dir/{vae,image} (or `names`) -> the pipeline's models (relative links), so `paths.models=seed_dir` trains
    a stage from them while its output stays in seed_dir."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = Path(params.paths.models) / name
        if not (target / ("vae" if name == "vae" else "unet")).is_dir():
            raise InputError(
                f"the ablation trains from the pipeline's {target}, which is missing: run `dvc repro "
                f"train_{name}` (or `svd pipeline train_{name}`) first"
            )
        link = seed_dir / name
        rel = os.path.relpath(target.resolve(), seed_dir.resolve())
        if link.is_symlink() and os.readlink(link) == rel:
            continue
        if link.exists() or link.is_symlink():
            if not link.is_symlink():
                raise SvdError(f"{link} is a real folder, not a link to {target}: remove it and re-run")
            link.unlink()
        link.symlink_to(rel, target_is_directory=True)


def _svd(args: list[str], env: dict[str, str], log: Log) -> None:
    log("$ svd " + " ".join(args))
    done = subprocess.run(
        [sys.executable, "-m", "svd", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SvdError(f"`svd {' '.join(args)}` failed (exit {done.returncode}):\n{tail}")


def arm_commands(params: Params, global_args: list[str], seed: int, arm: str) -> tuple[list[str], list[str]]:
    """The `svd` arguments that train one arm and that evaluate it."""
    cfg = params.ablation.curation
    root = Path(cfg.out)
    train = [
        *global_args,
        "--set", f"seed={seed}",
        "--set", f"train.video.data={arm}",
        "--set", f"paths.models={root / f'seed-{seed}'}",
        "--set", f"paths.metrics={root / f'seed-{seed}' / 'metrics'}",  # each seed's training numbers and curves
        "train", "--stage", "video", "--no-progress", "--no-eval", "--no-register",
    ]  # fmt: skip
    evaluate = [
        *global_args,
        "--set", f"paths.metrics={root / 'metrics'}",
        "evaluate", "video", "--model", str(arm_model(root, seed, arm)),
        "--name", arm_name(seed, arm), "--out-dir", str(Path(cfg.eval_out) / f"{arm}-seed{seed}"),
    ]  # fmt: skip
    return train, evaluate


def read_arm(params: Params, seed: int, arm: str) -> dict[str, Any]:
    """One arm's scores (its metrics file) and features (features.npz) as `svd evaluate video` wrote them."""
    from svd.registry import read_features

    cfg = params.ablation.curation
    path = Path(cfg.out) / "metrics" / f"evaluate_{arm_name(seed, arm)}.json"
    if not path.is_file():
        raise InputError(f"{path} is missing: the evaluation of {arm} at seed {seed} did not finish")
    scores = json.loads(path.read_text())
    features = read_features(Path(cfg.eval_out) / f"{arm}-seed{seed}" / "features.npz")
    return {"scores": scores, "features": features}


def summarise(arms: dict[tuple[int, str], dict[str, Any]], seeds: list[int], rounds: int) -> dict[str, Any]:
    """The ablation's numbers from each arm's scores and features: per seed the paired (curated - uncurated)
    difference with its interval; per score the arms' means over seeds, the effect (difference of the means), the
    seed spread (the larger range over seeds within an arm) and whether the effect exceeds it."""
    from svd.registry import paired_comparison

    out: dict[str, Any] = {"seeds": len(seeds)}
    verdicts: dict[str, dict[str, Any]] = {}
    for score in SCORES:
        values = {arm: [float(arms[(s, arm)]["scores"][score]) for s in seeds] for arm in ARMS}
        diffs = []
        for s in seeds:
            pair, why = paired_comparison(
                score, arms[(s, "curated")]["features"], arms[(s, "uncurated")]["features"], rounds=rounds, seed=s
            )
            if pair is None:
                raise InputError(f"seed {s}: the arms cannot be paired on {score}: {why}")
            diffs.append(pair)
            out[f"{score}.seed{s}.diff"] = pair["diff"]
            out[f"{score}.seed{s}.diff_lo"] = pair.get("lo", float("nan"))
            out[f"{score}.seed{s}.diff_hi"] = pair.get("hi", float("nan"))
            for arm in ARMS:
                out[f"{score}.seed{s}.{arm}"] = float(arms[(s, arm)]["scores"][score])
        means = {arm: float(np.mean(v)) for arm, v in values.items()}
        spread = max(float(np.ptp(v)) for v in values.values()) if len(seeds) > 1 else float("nan")
        effect = means["curated"] - means["uncurated"]
        # every seed's paired interval on the same side of 0
        signs = {int(np.sign(d["lo"])) if d["lo"] > 0 else (-1 if d["hi"] < 0 else 0) for d in diffs if "lo" in d}
        consistent = len(signs) == 1 and 0 not in signs and len(diffs) == len(seeds)
        exceeds = bool(np.isfinite(spread) and abs(effect) > spread)
        better = "curated" if (effect < 0) == (score == "fvd") else "uncurated"
        out.update(
            {
                f"{score}.curated_mean": means["curated"],
                f"{score}.uncurated_mean": means["uncurated"],
                f"{score}.effect": effect,
                f"{score}.seed_spread": spread,
                f"{score}.effect_exceeds_spread": int(exceeds),
                f"{score}.every_seed_significant": int(consistent),
            }
        )
        verdicts[score] = {
            "better": better if effect else "neither",
            "exceeds": exceeds,
            "consistent": consistent,
            "effect": effect,
            "spread": spread,
        }
    out["verdicts"] = verdicts
    return out


def write_outputs(params: Params, arms: dict, seeds: list[int], summary: dict[str, Any]) -> dict[str, Path]:
    cfg = params.ablation.curation
    header = ["arm", "seed"] + [f"{s}{x}" for s in SCORES for x in ("", "_lo", "_hi")]
    rows = [
        [arm, s] + [_fmt(arms[(s, arm)]["scores"].get(f"{k}{x}")) for k in SCORES for x in ("", "_lo", "_hi")]
        for arm in ARMS
        for s in seeds
    ]
    return write_files(Path(cfg.metrics), Path(cfg.out), summary, header, rows, markdown(arms, seeds, summary))


def write_files(
    metrics: Path, out: Path, summary: dict[str, Any], header: list[str], rows: list[list], report: str
) -> dict[str, Path]:
    """An ablation's outputs: the summary's numbers as `metrics` (JSON, its verdicts left out), the plot table beside
    it (.csv) and the report (`out`/report.md)."""
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(
        json.dumps({k: v for k, v in summary.items() if k != "verdicts"}, indent=2, sort_keys=True) + "\n"
    )
    table = metrics.with_suffix(".csv")
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    page = out / "report.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(report)
    return {"metrics": metrics, "plot": table, "report": page}


def _fmt(v) -> str:
    return "" if v is None else f"{float(v):.6g}"


def markdown(arms: dict, seeds: list[int], summary: dict[str, Any]) -> str:
    lines = [
        "# Curation ablation: Stage II on curated vs all clips, same Stage I",
        "",
        "| score | seed | curated [95%] | uncurated [95%] | curated - uncurated, paired [95%] |",
        "|---|---|---|---|---|",
    ]
    for score in SCORES:
        for s in seeds:
            cells = []
            for arm in ARMS:
                sc = arms[(s, arm)]["scores"]
                lo, hi = sc.get(f"{score}_lo"), sc.get(f"{score}_hi")
                cells.append(f"{sc[score]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""))
            d = summary
            cells.append(
                f"{d[f'{score}.seed{s}.diff']:+.3f} [{d[f'{score}.seed{s}.diff_lo']:+.3f}, "
                f"{d[f'{score}.seed{s}.diff_hi']:+.3f}]"
            )
            lines.append(f"| {score} | {s} | " + " | ".join(cells) + " |")
    lines += ["", "| score | curated mean | uncurated mean | effect | seed spread | verdict |"]
    lines += ["|---|---|---|---|---|---|"]
    for score in SCORES:
        v = summary["verdicts"][score]
        lines.append(
            f"| {score} | {summary[f'{score}.curated_mean']:.3f} | {summary[f'{score}.uncurated_mean']:.3f} | "
            f"{v['effect']:+.3f} | {v['spread']:.3f} | {verdict_text(score, v)} |"
        )
    lines += [
        "",
        "Effect: mean over seeds of curated minus mean of uncurated (FVD: lower is better). Seed spread: the larger "
        "range (max - min over seeds) of the two arms. Paired intervals: both arms sample the same prompts with the "
        "same seeds, so each seed's difference is resampled on shared indices (FVD: the real set too).",
        "",
    ]
    return "\n".join(lines)


def verdict_text(score: str, v: dict[str, Any]) -> str:
    if v["better"] == "neither":
        return "no difference"
    word = "exceeds" if v["exceeds"] else "does not exceed"
    tail = "; every seed's paired interval agrees" if v["consistent"] else ""
    return f"{v['better']} better; the effect {word} the seed spread{tail}"


def run_curation_ablation(params: Params, global_args: list[str], log: Log, track: bool = True) -> dict[str, Any]:
    """Train and evaluate every arm and seed (resuming what exists), then summarise. `global_args`: the `svd`
    options to hand on (--params, --profile, --set ...)."""
    from svd import tracking

    cfg = params.ablation.curation
    root = Path(cfg.out)
    seeds = list(cfg.seeds)
    for s in seeds:
        link_parents(params, root / f"seed-{s}")
    env = dict(os.environ)
    parent = tracking.pipeline_run(params, "ablation_curation", kind="ablation") if track else _nothing()
    with parent as parent_id:
        if parent_id:
            env[tracking.PARENT_ENV] = parent_id
        for s in seeds:
            for arm in ARMS:
                for args in arm_commands(params, global_args, s, arm):
                    _svd(args + ([] if track else ["--no-track"]), env, log)
        arms = {(s, arm): read_arm(params, s, arm) for s in seeds for arm in ARMS}
        summary = summarise(arms, seeds, cfg.bootstrap)
        files = write_outputs(params, arms, seeds, summary)
        if parent_id:
            link_arm_runs(params, parent_id, arms, seeds)
            tracking.log_metrics({k: v for k, v in summary.items() if k != "verdicts"})
            tracking.log_artifacts(files["report"])
            tracking.log_artifacts(files["plot"])
    return {**summary, **{k: str(v) for k, v in files.items()}}


def link_arm_runs(params: Params, parent_id: str, arms: dict, seeds: list[int]) -> None:
    """Each arm's evaluation numbers (eval_video.*) and tags on its training run, the sibling the compare view shows
    with the arm's params (seed, train.video.data)."""
    from svd import tracking
    from svd.evaluation.ucf101 import log_to_model_run

    mlflow = tracking._mlflow()
    tracking.configure(params)
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [tracking.configure(params)], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000
    )
    for s in seeds:
        for arm in ARMS:
            step = "train_video" if arm == "curated" else "train_video-uncurated"
            hits = [r for r in runs if r.data.tags.get("svd.step") == step and r.data.params.get("seed") == str(s)]
            if not hits:
                continue
            run_id = hits[0].info.run_id
            client.set_tag(run_id, "svd.ablation", "curation")
            client.set_tag(run_id, "svd.ablation.arm", arm)
            log_to_model_run(params, run_id, arm_name(s, arm), arms[(s, arm)]["scores"], [])


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


__all__ = ["ARMS", "SCORES", "arm_commands", "run_curation_ablation", "summarise"]
