"""Great Expectations suite over the clip metadata: a failing suite stops curation with a readable report.

Two places. The verdict, `report.txt` (how many expectations ran, each failure), is deterministic and goes into the
curated dataset (OUT/expectations/). The Great Expectations project itself (the suite, validation results, rendered
data docs; a file data context) carries run timestamps and random store ids, so it goes to a folder of its own (the
pipeline's: data/curated-gx, a DVC output beside data/curated; MLflow logs both). Inside OUT it would give every
re-curation of identical clips a new dataset hash, and DVC would retrain every model downstream.

GX's rendered data docs load their CSS, scripts and icons from CDNs, so offline (as here) their index is blank. The
same folder therefore holds `report.html`: every expectation, its settings, its verdict and what it observed, in one
self-contained page with no external asset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from svd.config import Curate
from svd.curation.camera import LABELS as CAMERA_LABELS
from svd.errors import SvdError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


class ExpectationsFailed(SvdError):
    """The clip metadata broke the suite; the message lists each failed expectation."""


# column -> pandas dtype the suite requires
COLUMN_TYPES = {
    "video": "object",
    "clip_id": "object",
    "start_frame": "int64",
    "end_frame": "int64",
    "start_s": "float64",
    "end_s": "float64",
    "fps": "float64",
    "width": "int64",
    "height": "int64",
    "motion_score": "float64",
    "text_area": "float64",
    "keep": "bool",
}


def build_suite(gx, cfg: Curate):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="clip_metadata")
    for column, dtype in COLUMN_TYPES.items():
        suite.add_expectation(E.ExpectColumnToExist(column=column))
        suite.add_expectation(
            E.ExpectColumnValuesToBeOfType(column=column, type_=dtype if dtype != "object" else "str")
        )
    for column in ("video", "clip_id", "start_frame", "end_frame", "fps", "width", "height", "keep"):
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(E.ExpectColumnValuesToBeUnique(column="clip_id"))
    suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=["video", "start_frame"]))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="start_frame", min_value=0))
    suite.add_expectation(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_frame", column_B="start_frame"))
    suite.add_expectation(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_s", column_B="start_s"))
    suite.add_expectation(
        E.ExpectColumnValuesToBeBetween(
            column="fps", min_value=cfg.expectations.min_fps, max_value=cfg.expectations.max_fps
        )
    )
    suite.add_expectation(
        E.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, max_value=cfg.expectations.max_clip_s)
    )
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="width", min_value=2))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="height", min_value=2))
    # annotations may be null when their annotator is switched off, never out of range
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="motion_score", min_value=0, mostly=1.0))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="text_area", min_value=0, max_value=1))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="camera_motion", value_set=list(CAMERA_LABELS)))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="camera_confidence", min_value=0, max_value=1))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="clip_score", min_value=-1, max_value=1))
    suite.add_expectation(
        E.ExpectColumnValuesToBeInSet(
            column="drop_reason",
            value_set=["", "too_short", "keyframe_snap", "motion", "aesthetic", "clip_score", "text", "text_area"],
        )
    )
    return suite


def validate_clips(clips: pd.DataFrame, cfg: Curate, out_dir: Path, gx_dir: Path) -> dict:
    """Run the suite in a fresh GX project at gx_dir (data docs included); write report.txt into out_dir; raise
    ExpectationsFailed with a readable report on failure."""
    return run_suite(
        lambda gx: build_suite(gx, cfg),
        clips,
        names=("curation", "clips", "all_clips", "clips"),
        title="Clip metadata",
        unit="clips",
        module="svd.curation.expectations",
        out_dir=out_dir,
        gx_dir=gx_dir,
    )


def run_suite(
    build,
    table: pd.DataFrame,
    *,
    names: tuple[str, str, str, str],
    title: str,
    unit: str,
    module: str,
    out_dir: Path,
    gx_dir: Path,
) -> dict:
    """Run the suite `build(gx)` makes on `table` in a fresh GX project at gx_dir (data docs and an offline
    report.html included); write report.txt into out_dir; raise ExpectationsFailed naming `title` on failure.
    names: the GX data source, asset, batch definition and validation (and checkpoint) names."""
    import logging

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx

    source, asset_name, batch_name, name = names
    out_dir, gx_dir = Path(out_dir), Path(gx_dir)
    for folder in (out_dir, gx_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    try:
        context.variables.progress_bars = {"globally": False}
    except Exception:  # noqa: BLE001 - progress bars are cosmetic; older/newer GX shapes differ
        pass
    asset = context.data_sources.add_pandas(source).add_dataframe_asset(asset_name)
    batch = asset.add_batch_definition_whole_dataframe(batch_name)
    suite = context.suites.add(build(gx))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": table})
    failures = []
    rows = []
    checked = 0
    for run in result.run_results.values():
        for item in run.results:
            checked += 1
            cfg_ = item.expectation_config
            detail = item.result or {}
            sample = detail.get("partial_unexpected_list") or detail.get("observed_value")
            rows.append(
                (
                    cfg_.type,
                    _kwargs(cfg_.kwargs),
                    bool(item.success),
                    detail.get("unexpected_count", ""),
                    str(sample)[:200] if sample is not None else "",
                )
            )
            if not item.success:
                failures.append(
                    f"{cfg_.type}({_kwargs(cfg_.kwargs)}): unexpected={detail.get('unexpected_count', '?')} "
                    f"e.g. {str(sample)[:120]}"
                )
    (gx_dir / "report.html").write_text(offline_report(rows, len(table), title=title, unit=unit, module=module))
    docs = next(gx_dir.rglob("local_site/index.html"), None)
    report = {"expectations": checked, "failed": len(failures), "data_docs": str(docs) if docs else ""}
    (out_dir / "report.txt").write_text(
        f"{checked} expectations, {len(failures)} failed\n" + "".join(f"  FAILED {f}\n" for f in failures)
    )
    if failures:
        raise ExpectationsFailed(
            f"{title.lower()} failed {len(failures)} of {checked} expectations (report: {out_dir / 'report.txt'}): "
            + "; ".join(failures[:5])
        )
    return report


def offline_report(
    rows: list[tuple],
    n_rows: int,
    *,
    title: str = "Clip metadata",
    unit: str = "clips",
    module: str = "svd.curation.expectations",
) -> str:
    """One self-contained HTML page (inline style, no script, no external asset) of the suite's results: rows of
    (expectation, settings, passed, unexpected count, observed or sample)."""
    from html import escape

    failed = sum(not ok for _, _, ok, _, _ in rows)
    body = "".join(
        f"<tr class={'ok' if ok else 'bad'}><td>{escape(kind)}</td><td>{escape(kw)}</td>"
        f"<td>{'passed' if ok else 'FAILED'}</td><td>{escape(str(n))}</td><td>{escape(seen)}</td></tr>\n"
        for kind, kw, ok, n, seen in rows
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title.lower()} expectations</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left;vertical-align:top}tr.ok td:nth-child(3){color:#060}"
        "tr.bad td{background:#fdd}</style></head><body>"
        f"<h1>{title}: {len(rows) - failed} of {len(rows)} expectations passed</h1>"
        f"<p>{n_rows} {unit}, validated by Great Expectations ({module}). This page needs no "
        f"network; GX's own data docs (gx/uncommitted/data_docs) load their styles from CDNs.</p>"
        "<table><tr><th>expectation</th><th>settings</th><th>verdict</th><th>unexpected</th>"
        f"<th>observed / sample</th></tr>\n{body}</table></body></html>\n"
    )


def _kwargs(kwargs: dict) -> str:
    keep = {
        k: v
        for k, v in kwargs.items()
        if k in ("column", "column_A", "column_B", "column_list", "min_value", "max_value", "type_")
    }
    return ", ".join(f"{k}={v}" for k, v in keep.items())
