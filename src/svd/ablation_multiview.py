"""The multi-view initialisation ablation (paper §4.4, Fig. 10a): does a video prior make a better multi-view model
than an image prior, and an image prior than none?

The multi-view stage (train.mv) is trained once per arm and training seed (`ablation.multiview`): from the pipeline's
image-to-video model (the video prior, SVD-MV's start), from its Stage I (the image prior, SD2.1-MV's: temporal
layers new) and from random weights (Scratch-MV), on the same orbits for the same steps. Every arm is probed on
held-out orbits every `probe_every` steps (MLflow probe.* under one parent run: the convergence curves side by side)
and judged at the end by the stage's evaluator on every held-out object (svd.evaluation.multiview_model). Two arms of
one seed generate from the same front views with the same sampling seeds, so each seed gets a paired interval per
comparison (per held-out object); across seeds the effect is set against the seed spread, which a claim about the
recipe has to beat.

Every step is the CLI a user would type (`python -m svd ... train --stage mv`), as the curation ablation runs
(svd.ablation): models go to `out`/seed-S-<arm>/ (beside links to the pipeline's models), the arms never register,
and a killed run resumes from each arm's checkpoints. Outputs: `metrics` (flat numbers, git + `dvc metrics`), the
same stem as .csv (the probe curves: one row per arm, seed and step; the DVC plot) and `out`/report.md.
"""

from __future__ import annotations

import csv
import json
import os
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from svd.ablation import Log, _nothing, _svd, link_parents, write_files
from svd.config import Params
from svd.errors import InputError

CHECKS = ("psnr", "lpips", "clip_s", "opposite_psnr", "silhouette_iou", "width_corr")
LOWER_IS_BETTER = ("lpips",)
PAPER = {"video": "SVD-MV", "image": "SD2.1-MV", "random": "Scratch-MV"}  # Fig. 10a's rows for our arms
REFERENCES = {
    "copy": "copy the front view",
    "roundtrip": "the VAE's round trip of every view (a latent model's ceiling)",
    "copy_roundtrip": "copy the front view's round trip (a latent model's copy)",
}


def arm_dir(params: Params, seed: int, arm: str) -> Path:
    return Path(params.ablation.multiview.out) / f"seed-{seed}-{arm}"


def arm_parents(params: Params, arm: str) -> tuple[str, ...]:
    """The pipeline's models an arm reads: the VAE, the stage sharing its image tower, and its parent."""
    parent = params.ablation.multiview.arms[arm]
    names = ["vae", params.train.mv.multiview.encoder_from if params.train.mv.multiview else None, parent]
    return tuple(dict.fromkeys(n for n in names if n))


def arm_command(params: Params, global_args: list[str], seed: int, arm: str) -> list[str]:
    cfg = params.ablation.multiview
    folder = arm_dir(params, seed, arm)
    parent = cfg.arms[arm]
    return [
        *global_args,
        "--set", f"seed={seed}",
        "--set", f"train.mv.parent={parent if parent else 'null'}",
        "--set", f"train.mv.steps={cfg.steps}",
        "--set", f"train.probe_every={cfg.probe_every}",
        "--set", f"paths.models={folder}",
        "--set", f"paths.metrics={folder / 'metrics'}",
        "train", "--stage", "mv", "--no-progress", "--no-register",
    ]  # fmt: skip


def read_arm(params: Params, seed: int, arm: str) -> dict[str, Any]:
    """One arm's final numbers (its train_mv.json), per-object checks (mv/eval/objects.json) and probe curve."""
    folder = arm_dir(params, seed, arm)
    metrics = folder / "metrics" / "train_mv.json"
    objects = folder / "mv" / "eval" / "objects.json"
    for path in (metrics, objects):
        if not path.is_file():
            raise InputError(f"{path} is missing: the {arm} arm at seed {seed} did not finish")
    with (folder / "metrics" / "train_mv.probe.csv").open() as fh:
        curve = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    return {
        "scores": json.loads(metrics.read_text()),
        "objects": json.loads(objects.read_text()),
        "curve": curve,
    }


def summarise(params: Params, arms: dict[tuple[int, str], dict], seeds: list[int]) -> dict[str, Any]:
    """Per check: each arm's mean over seeds and its seed spread; per pair of arms, per seed the paired difference
    over held-out objects with its interval, the effect (difference of the seed means) and whether it exceeds the
    larger seed spread of the two arms and every seed's interval agrees."""
    from svd.evaluation.intervals import paired_mean_difference

    names = list(params.ablation.multiview.arms)
    rounds = params.ablation.multiview.bootstrap
    out: dict[str, Any] = {"seeds": len(seeds), "steps": params.ablation.multiview.steps}
    verdicts: dict[str, dict[str, Any]] = {}
    for check in CHECKS:
        values = {a: [float(arms[(s, a)]["scores"][f"eval.model.{check}.mean"]) for s in seeds] for a in names}
        for a in names:
            finite = [v for v in values[a] if np.isfinite(v)]
            out[f"{check}.{a}.mean"] = float(np.mean(finite)) if finite else float("nan")
            out[f"{check}.{a}.seed_spread"] = float(np.ptp(values[a])) if len(seeds) > 1 else float("nan")
            for s, v in zip(seeds, values[a]):
                out[f"{check}.{a}.seed{s}"] = v
        for a, b in combinations(names, 2):
            key = f"{check}.{a}_minus_{b}"
            diffs = []
            for s in seeds:
                objs = sorted(arms[(s, a)]["objects"])
                pair = paired_mean_difference(
                    [arms[(s, a)]["objects"][o]["model"][check] for o in objs],
                    [arms[(s, b)]["objects"][o]["model"][check] for o in objs],
                    rounds=rounds,
                    seed=s,
                )
                diffs.append(pair)
                out.update({f"{key}.seed{s}.{k}": v for k, v in pair.items()})
            effect = out[f"{check}.{a}.mean"] - out[f"{check}.{b}.mean"]
            spread = max(out[f"{check}.{a}.seed_spread"], out[f"{check}.{b}.seed_spread"])
            sides = {1 if d["lo"] > 0 else -1 if d["hi"] < 0 else 0 for d in diffs if "lo" in d}
            consistent = len(sides) == 1 and 0 not in sides and len(diffs) == len(seeds)
            exceeds = bool(np.isfinite(spread) and abs(effect) > spread)
            better = (a if effect > 0 else b) if check not in LOWER_IS_BETTER else (a if effect < 0 else b)
            better = better if np.isfinite(effect) else "neither"
            out.update({f"{key}.effect": effect, f"{key}.exceeds_spread": int(exceeds)})
            out[f"{key}.every_seed_significant"] = int(consistent)
            verdicts[key] = {
                "better": better if effect else "neither",
                "effect": effect,
                "spread": spread,
                "exceeds": exceeds,
                "consistent": consistent,
            }
    out["verdicts"] = verdicts
    # the references (copying the front view; the VAE's round trip of the truth, a latent model's ceiling; copying
    # the front view's round trip) depend on the VAE and the truth alone: the same for every arm and seed
    first = arms[(seeds[0], names[0])]["scores"]
    for side in REFERENCES:
        for check in CHECKS:
            key = f"eval.{side}.{check}.mean"
            if key in first:
                out[f"reference.{side}.{check}"] = float(first[key])
    return out


def write_outputs(params: Params, arms: dict, seeds: list[int], summary: dict[str, Any]) -> dict[str, Path]:
    cfg = params.ablation.multiview
    rows = [
        [arm, s, int(row["step"]), *(f"{row.get(c, float('nan')):.6g}" for c in CHECKS)]
        for (s, arm), data in sorted(arms.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        for row in data["curve"]
    ]
    report = markdown(params, arms, seeds, summary)
    return write_files(Path(cfg.metrics), Path(cfg.out), summary, ["arm", "seed", "step", *CHECKS], rows, report)


def markdown(params: Params, arms: dict, seeds: list[int], summary: dict[str, Any]) -> str:
    from svd.evaluation.multiview import PAPER as PAPER_ROWS

    names = list(params.ablation.multiview.arms)
    first = arms[(seeds[0], names[0])]["scores"]
    lines = [
        "# Multi-view initialisation ablation: the same finetune from a video prior, an image prior and scratch",
        "",
        f"{summary['steps']} steps per arm, seeds {', '.join(map(str, seeds))}; "
        f"{int(first['eval.objects'])} held-out orbits (object kinds never trained on).",
        "",
        "| arm (parent) | PSNR | LPIPS | CLIP-S | opposite-view PSNR | silhouette IoU | width corr. | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in names:
        cells = [
            f"{summary[f'{c}.{a}.mean']:.3f}"
            + (f" ± {summary[f'{c}.{a}.seed_spread'] / 2:.3f}" if len(seeds) > 1 else "")
            for c in CHECKS
        ]
        paper = PAPER_ROWS.get(PAPER.get(a, ""), None)
        ref = f"{PAPER[a]} {paper['psnr']} / {paper['lpips']} / {paper['clip_s']}" if paper else ""
        parent = params.ablation.multiview.arms[a] or "random init"
        lines.append(f"| {a} ({parent}) | " + " | ".join(cells) + f" | {ref} |")
    for side, label in REFERENCES.items():
        if f"reference.{side}.psnr" in summary:
            cells = [f"{summary.get(f'reference.{side}.{c}', float('nan')):.3f}" for c in CHECKS]
            lines.append(f"| {label} | " + " | ".join(cells) + " | |")
    lines += [
        "",
        "Mean over seeds ± half the seed range (one seed: its value); paper: Fig. 10a's PSNR / LPIPS / CLIP-S. "
        "Not comparable with the paper: the world's orbits, 32 px, random LPIPS and CLIP backbones in tiny (not "
        "the paper's metrics).",
        "",
        "| comparison | check | effect | seed spread | per-seed paired difference [95%] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, v in summary["verdicts"].items():
        check, pair = key.split(".", 1)
        per_seed = "; ".join(
            f"{summary[f'{key}.seed{s}.diff']:+.3f} [{summary.get(f'{key}.seed{s}.lo', float('nan')):+.3f}, "
            f"{summary.get(f'{key}.seed{s}.hi', float('nan')):+.3f}]"
            for s in seeds
        )
        verdict = verdict_text(v)
        lines.append(
            f"| {pair.replace('_minus_', ' - ')} | {check} | {v['effect']:+.3f} | {v['spread']:.3f} | {per_seed} | "
            f"{verdict} |"
        )
    return "\n".join(lines) + "\n"


def verdict_text(v: dict[str, Any]) -> str:
    if not np.isfinite(v["effect"]):
        return "not measured (no finite values)"
    if v["better"] == "neither":
        return "no difference"
    agree = "every seed's interval agrees" if v["consistent"] else "the seeds' intervals disagree or reach 0"
    if not np.isfinite(v["spread"]):
        return f"{v['better']} better; one seed: no seed spread to beat (not a recipe claim); {agree}"
    word = "exceeds" if v["exceeds"] else "does not exceed"
    return f"{v['better']} better; {word} the seed spread; {agree}"


def run_multiview_ablation(params: Params, global_args: list[str], log: Log, track: bool = True) -> dict[str, Any]:
    """Train and evaluate every arm and seed (resuming what exists), then summarise. `global_args`: the `svd`
    options to hand on (--params, --profile, --set ...)."""
    from svd import tracking

    cfg = params.ablation.multiview
    if params.train.mv.multiview is None:
        raise InputError("train.mv.multiview is missing: the ablation trains the multi-view stage")
    seeds = list(cfg.seeds)
    for s in seeds:
        for arm in cfg.arms:
            link_parents(params, arm_dir(params, s, arm), arm_parents(params, arm))
    env = dict(os.environ)
    parent = tracking.pipeline_run(params, "ablation_multiview", kind="ablation") if track else _nothing()
    with parent as parent_id:
        if parent_id:
            env[tracking.PARENT_ENV] = parent_id
        for s in seeds:
            for arm in cfg.arms:
                done = arm_dir(params, s, arm) / "metrics" / "train_mv.json"
                if done.is_file() and json.loads(done.read_text()).get("steps") == cfg.steps:
                    log(f"{arm} seed {s}: done ({done})")
                    continue
                _svd(arm_command(params, global_args, s, arm) + ([] if track else ["--no-track"]), env, log)
                if parent_id:
                    tag_newest_run(params, parent_id, arm, s)
        arms = {(s, arm): read_arm(params, s, arm) for s in seeds for arm in cfg.arms}
        summary = summarise(params, arms, seeds)
        files = write_outputs(params, arms, seeds, summary)
        if parent_id:
            tracking.log_metrics({k: v for k, v in summary.items() if k != "verdicts"})
            tracking.log_artifacts(files["report"])
            tracking.log_artifacts(files["plot"])
    return {**summary, **{k: str(v) for k, v in files.items()}}


def tag_newest_run(params: Params, parent_id: str, arm: str, seed: int) -> None:
    """The arm just trained is the parent's newest train_mv child: tag it with its arm, for MLflow's compare view."""
    from svd import tracking

    mlflow = tracking._mlflow()
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [tracking.configure(params)],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`svd.step` = 'train_mv'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        client.set_tag(runs[0].info.run_id, "svd.ablation", "multiview")
        client.set_tag(runs[0].info.run_id, "svd.ablation.arm", arm)
        client.set_tag(runs[0].info.run_id, "svd.ablation.seed", str(seed))


__all__ = ["CHECKS", "arm_command", "read_arm", "run_multiview_ablation", "summarise"]
