"""The `svd` command: a thin typer layer over the library; every step is a plain function elsewhere."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from svd.config import ConfigError, Params, flatten, load_params
from svd.errors import SvdError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Stable Video Diffusion as a pipeline: world -> curate -> train -> evaluate, tracked and versioned.",
    pretty_exceptions_enable=False,
)


class State:
    params_file: Path = Path("params.yaml")
    profile: str | None = None
    overrides: list[str] = []

    def params(self) -> Params:
        return load_params(self.params_file, self.profile, self.overrides)

    def file_params(self) -> Params:
        """The params file as written (no --set): where the pipeline's own outputs live."""
        return load_params(self.params_file, self.profile)


state = State()


@app.callback()
def _global(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="The params file."),
    profile: str | None = typer.Option(None, "--profile", help="Profile from params.yaml (default: its `profile`)."),
    set_: list[str] = typer.Option([], "--set", help="Override a parameter: --set curate.cuts.min_clip_s=1.5"),
) -> None:
    state.params_file, state.profile, state.overrides = params, profile, list(set_)


def _setup() -> Params:
    from svd.runtime import set_threads

    params = state.params()
    # under `accelerate launch` / torchrun the processes on one machine share its cores
    set_threads(params.threads // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return params


@app.command()
def world(
    out: Path | None = typer.Option(None, help="Output folder (default: paths.world)."),
    videos: int | None = typer.Option(None, min=1, help="Number of long videos (default: world.videos)."),
    seed: int | None = typer.Option(None, help="Random seed (default: seed)."),
    track: bool = typer.Option(True, help="Record an MLflow run."),
) -> None:
    """Render the synthetic shapes world: long videos with truth, a held-aside eval set and broken inputs."""
    from svd import tracking
    from svd.world import generate_world

    params = _setup()
    out = out or Path(params.paths.world)
    seed = params.seed if seed is None else seed
    run = tracking.stage_run(params, "world") if track else _null()
    with run:
        summary = generate_world(params.world, out, seed=seed, videos=videos)
        _write_metrics(params, "world", summary, out, Path(state.file_params().paths.world))
        if track:
            tracking.log_metrics(summary)
            tracking.log_artifacts(out / "world.json")
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@app.command()
def orbits(
    out: Path | None = typer.Option(
        None, help="Output folder (default: paths.orbits); the Great Expectations project goes beside it, OUT-gx."
    ),
    source: Path | None = typer.Option(
        None,
        "--source",
        help="An Objaverse-style render folder (<object>/000.png ... + cameras.json) to index and validate instead "
        "of rendering (default: orbits.source); its views are not copied, broken objects go to OUT/quarantine.json.",
    ),
    seed: int | None = typer.Option(None, help="Random seed (default: seed)."),
    track: bool = typer.Option(True, help="Record an MLflow run."),
) -> None:
    """Training orbits for the multi-view finetune: render the world's training objects (kinds disjoint from the
    held-out eval orbits) or read an Objaverse-style render folder; writes OUT/orbits.parquet."""
    from svd import tracking
    from svd.world.orbits import import_orbit_folder, orbits_gx_dir, render_training_orbits

    params = _setup()
    out = out or Path(params.paths.orbits)
    seed = params.seed if seed is None else seed
    if source is None and params.orbits.source:
        source = Path(params.orbits.source)
    run = tracking.stage_run(params, "orbits", inputs={"source": source} if source else None) if track else _null()
    with run:
        if source is not None:
            summary = import_orbit_folder(source, out, params.world.eval.orbit_frames)
        else:
            summary = render_training_orbits(params.orbits, params.world.eval, out, seed)
        _write_metrics(params, "orbits", summary, out, Path(state.file_params().paths.orbits))
        if track:
            tracking.log_metrics(_numeric(summary))
            for name in ("orbits.json", "orbits.parquet", "quarantine.json", "expectations"):
                tracking.log_artifacts(out / name, None if name != "expectations" else "expectations")
            tracking.log_artifacts(orbits_gx_dir(out), "expectations")
    if summary["quarantined"]:
        left_out = f"{summary['quarantined']} broken objects left out (see {out / 'quarantine.json'})"
        typer.echo(f"orbits: {left_out}", err=True)
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@app.command()
def curate(
    input: Path | None = typer.Option(None, "--input", help="Folder of videos (default: <paths.world>/videos)."),
    out: Path | None = typer.Option(
        None, help="Output folder (default: paths.curated); the Great Expectations project goes beside it, OUT-gx."
    ),
    truth: Path | None = typer.Option(
        None,
        help="World truth folder for source descriptions and cut scoring (default: the input's parent if it has "
        "shots.parquet).",
    ),
    track: bool = typer.Option(True, help="Record an MLflow run."),
) -> None:
    """Curate videos: cascaded cuts, clips, annotations, expectations, the paper's filters."""
    from svd import tracking
    from svd.curation.pipeline import curate as run_curation
    from svd.curation.pipeline import gx_dir_for

    params = _setup()
    if out is None and not os.environ.get("DVC_STAGE"):
        raise SvdError(
            f"svd curate with no --out would re-curate {params.paths.curated}, the output of DVC stage "
            f"`curate` (dvc.lock would no longer describe it): run `dvc repro curate` or `svd pipeline` to "
            f"update the pipeline's set, or give --out DIR (and --input FOLDER; default: the world's "
            f"videos) for a curation of your own"
        )
    input = input or Path(params.paths.world) / "videos"
    out = out or Path(params.paths.curated)
    if truth is None and (input.parent / "shots.parquet").is_file():
        truth = input.parent
    run = tracking.stage_run(params, "curate", inputs={"videos": input}) if track else _null()
    with run:
        summary = run_curation(params, input, out, truth=truth)
        _write_metrics(params, "curate", summary, out, Path(state.file_params().paths.curated))
        if track:
            tracking.log_metrics(_numeric(summary))
            for name in ("summary.json", "clips.parquet", "quarantine.parquet", "expectations"):
                tracking.log_artifacts(out / name, None if name != "expectations" else "expectations")
            tracking.log_artifacts(gx_dir_for(out), "expectations")
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@app.command()
def shard(
    curated: Path | None = typer.Option(None, "--curated", help="Curated folder (default: paths.curated)."),
    out: Path | None = typer.Option(None, "--out", help="Shard folder, replaced (default: paths.shards)."),
    samples_per_shard: int | None = typer.Option(
        None, "--samples-per-shard", min=1, help="Clips per tar (default: shards.samples_per_shard)."
    ),
) -> None:
    """Write the kept clips as WebDataset tar shards (mp4 + txt + json per clip), byte-deterministic."""
    from svd.data.shards import write_shards

    params = _setup()
    summary = write_shards(
        curated or Path(params.paths.curated),
        out or Path(params.paths.shards),
        samples_per_shard=samples_per_shard or params.shards.samples_per_shard,
    )
    typer.echo(json.dumps(summary, indent=2))


@app.command("train")
def train_cmd(
    stage: str = typer.Option(
        ...,
        "--stage",
        help="vae | image | video | hq (Stages I-III after the VAE) | i2v | i2v_xt (image-to-video, SVD and SVD-XT) | "
        "lora_horizontal | lora_zoom | lora_static (camera-motion LoRAs on i2v) | interp (frame interpolation) | "
        "mv (multi-view, SVD-MV, on `svd orbits`).",
    ),
    track: bool = typer.Option(True, help="Record an MLflow run (and register video models)."),
    register: bool = typer.Option(
        True, help="Register video models (--no-register: an ablation arm that must not move the stage's aliases)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    evaluate: bool = typer.Option(
        True,
        "--eval/--no-eval",
        help="Score the trained model with its task's evaluator (`svd evaluate stage` does it later).",
    ),
) -> None:
    """Train one stage into models/<stage>/ (models/<stage>-uncurated/ for the curation ablation), then score it with
    its task's evaluator; a killed run resumes from its newest checkpoint."""
    from svd import tracking
    from svd.evaluation.prompts import after_training, preview_curve, score_preview
    from svd.training import stages as st

    params = _setup()
    from svd import tasks

    known = ("vae", *tasks.STAGE_TASKS)  # the task registry, which names every diffusion stage
    if stage not in known:
        raise SvdError(f"--stage must be one of {', '.join(known)}, got {stage!r}")
    from svd.runtime import distributed

    dist = distributed()  # under torchrun / accelerate launch: joins the process group (gloo on CPU, NCCL on GPU)
    if dist.num_processes > 1 and stage == "vae":
        raise SvdError("the VAE stage (tiny profile) trains on one process: run it without accelerate launch")
    if not dist.is_main_process:  # the others train with it; the main process logs, evaluates and registers
        st.train_diffusion_stage(params, stage, progress=False)
        return
    name = f"train_{st.stage_name(params, stage)}"  # train_video-uncurated for the curation ablation
    run = tracking.stage_run(params, name, inputs=st.stage_inputs(params, stage)) if track else _null()
    # Stages I-III preview world prompts, which the world evaluator scores as they are made (the curve's points)
    scored = stage in ("image", "video", "hq")
    with run:
        logger = tracking.step_logger() if track else None
        probe_rows: list[dict] = []
        if stage == "vae":
            summary = st.train_vae_stage(params, logger=logger, progress=progress)
        else:

            def on_samples(folder: Path, step: int) -> None:
                if scored:
                    preview = score_preview(folder, getattr(params.train, stage).fps, video=stage != "image")
                    if logger is not None:
                        logger({f"preview.{k}": v for k, v in preview.items() if k != "step"}, step)
                if track:
                    tracking.log_artifacts(folder, f"samples/{folder.name}")

            on_probe = (
                _word_gap_probe(params, logger, probe_rows)
                if stage in ("video", "hq")
                else _task_probe(params, stage, logger, probe_rows)
            )
            summary = st.train_diffusion_stage(
                params, stage, logger=logger, progress=progress, on_samples=on_samples, on_probe=on_probe
            )
            summary["processes"] = dist.num_processes
        history = summary.pop("history", [])
        scores = after_training(params, stage, st.stage_dir(params, stage)) if evaluate else None
        if scores is not None:
            summary["roundtrip" if stage == "vae" else "eval"] = scores
        written = _write_metrics(
            params,
            name,
            summary,
            st.stage_dir(params, stage),
            Path(state.file_params().paths.models) / st.stage_name(params, stage),
        )
        curves = preview_curve(st.stage_dir(params, stage), summary, scores) if scored else []
        _write_curves(written, history, curves, probe_rows)
        if track:
            tracking.log_summary(_numeric(summary))
            st.track_stage(params, stage, summary, register=register)
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@app.command()
def sample(
    prompt: list[str] = typer.Option([], "--prompt", help="Text prompt, text-to-video (repeat for several videos)."),
    image: list[Path] = typer.Option(
        [],
        "--image",
        help="Conditioning image, image-to-video (repeat for several videos); resized to the model's size.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output mp4 (a GIF preview is written beside it); several inputs get _0, _1, ... suffixes."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="A model folder (models/hq, models/i2v) or a "
        "registered model (models:/NAME@ALIAS). Default: the "
        "newest text-to-video (--prompt) or image-to-video "
        "(--image) model the pipeline trained.",
    ),
    frames: int | None = typer.Option(None, min=1, help="Frames (default: the model's training frames)."),
    seed: int | None = typer.Option(None, help="Seed (default: sample.seed); input i uses seed + i."),
    steps: int | None = typer.Option(
        None, min=1, help="Sampler steps (default: sample.steps; image-to-video: the model's, 25 or 30)."
    ),
    guidance: float | None = typer.Option(
        None,
        min=0.0,
        help="Classifier-free guidance (default: "
        "sample.guidance; image-to-video: the last frame's, "
        "rising linearly from the model's first-frame "
        "value).",
    ),
    motion_bucket: float | None = typer.Option(
        None, "--motion-bucket", help="Image-to-video: motion_bucket_id (default: training's median)."
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Frame rate conditioned on and written (default: the model's)."
    ),
    cond_aug: float | None = typer.Option(
        None, "--cond-aug", help="Image-to-video: noise on the conditioning frame (default 0.02)."
    ),
    lora: list[str] = typer.Option(
        [],
        "--lora",
        help="Image-to-video: a camera-motion adapter NAME[:SCALE] (horizontal, zoom, static, a LoRA folder or an "
        "adapter file; repeat for several, each at its scale). Default model: the adapter's base.",
    ),
    interpolate: bool = typer.Option(
        False, "--interpolate", help="Raise the samples' frame rate 4x with the interpolation model (n -> 4n-3 frames)."
    ),
    interpolation_model: str | None = typer.Option(
        None,
        "--interpolation-model",
        help="With --interpolate: a model folder or models:/NAME@ALIAS (default: models/interp).",
    ),
    multiview: bool = typer.Option(
        False,
        "--multiview",
        help="Multi-view: each --image is an object's front view; writes its 360-degree orbit (OUT.mp4 and the views "
        "as OUT_views/NNN.png) with a multi-view model (default: models/mv).",
    ),
    elevation: list[float] = typer.Option(
        [], "--elevation", help="With --multiview: the camera elevation in degrees (one, or one per --image)."
    ),
    scale: int = typer.Option(4, min=1, help="Nearest-neighbour upscale of the written video (tiny models are small)."),
) -> None:
    """Generate videos from text (text-to-video), from an image (image-to-video) or an orbit around an object from
    its front view (--multiview) with a trained model."""
    from svd.training import sampling

    params = _setup()
    if multiview or elevation:
        if not multiview:
            raise SvdError("--elevation is for --multiview")
        unused = {
            "--prompt": prompt, "--frames": frames, "--motion-bucket": motion_bucket, "--fps": fps,
            "--cond-aug": cond_aug, "--lora": lora, "--interpolate": interpolate,
        }  # fmt: skip
        given = [k for k, v in unused.items() if v]
        if given:
            raise SvdError(f"--multiview takes --image, --elevation, --model, --seed, --steps, --guidance; not {given}")
        if not elevation:
            raise SvdError("--multiview needs --elevation DEG (the camera's elevation of the front view)")
        from svd.multiview import sample_orbits

        written = sample_orbits(
            params, images=[str(i) for i in image], elevations=list(elevation), out=out, model=model, seed=seed,
            steps=steps, guidance=guidance, scale=scale,
        )  # fmt: skip
        for line in written["warnings"]:
            typer.secho(f"warning: {line}", fg="yellow", err=True)
        typer.echo(json.dumps(written, indent=2, default=_jsonable))
        return
    written = sampling.sample_to_files(
        params,
        prompts=list(prompt),
        images=[str(i) for i in image],
        out=out,
        model=model,
        frames=frames,
        seed=seed,
        steps=steps,
        guidance=guidance,
        scale=scale,
        motion_bucket=motion_bucket,
        fps=fps,
        cond_aug=cond_aug,
        loras=list(lora),
        interpolate=interpolate,
        interpolation_model=interpolation_model,
    )
    for line in written["warnings"]:
        typer.secho(f"warning: {line}", fg="yellow", err=True)
    typer.echo(json.dumps(written, indent=2, default=_jsonable))


@app.command("interpolate")
def interpolate_cmd(
    src: Path = typer.Argument(..., help="The video to interpolate (any length >= 2 frames, any rate)."),
    out: Path = typer.Option(
        ..., "--out", help="Output mp4 at 4x the input's frame rate (a GIF is written beside it)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="An interpolation model folder or models:/NAME@ALIAS (default: models/interp)."
    ),
    seed: int | None = typer.Option(None, help="Seed (default: sample.seed); window i uses seed + i."),
    steps: int | None = typer.Option(None, min=1, help="Sampler steps (default: the model's)."),
    scale: int = typer.Option(1, min=1, help="Nearest-neighbour upscale of the written video."),
) -> None:
    """Raise a video's frame rate 4x: n frames in, 4n-3 out, the input's frames kept (frame interpolation)."""
    from svd.interpolate import interpolate_file

    params = _setup()
    result = interpolate_file(params, src, out, model=model, seed=seed, steps=steps, scale=scale)
    for line in result["warnings"]:
        typer.secho(f"warning: {line}", fg="yellow", err=True)
    typer.echo(json.dumps(result, indent=2, default=_jsonable))


@app.command("export")
def export_cmd(
    model: str | None = typer.Option(
        None,
        "--model",
        help="An image-to-video model folder (models/i2v) or a "
        "registered model (models:/svd-i2v@newest). Default: "
        "the newest image-to-video model.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write (replaced if it exists)."),
    lora: list[str] = typer.Option(
        [], "--lora", help="A camera-motion adapter to carry (horizontal, zoom, static, a LoRA folder or a file)."
    ),
) -> None:
    """Export an image-to-video model as a diffusers StableVideoDiffusionPipeline folder (from_pretrained-able), with
    its camera-motion adapters under adapters/ (loaded onto the pipeline's UNet through peft)."""
    from svd.export import export_model
    from svd.models.lora import parse_lora_spec
    from svd.training.sampling import IMAGE_TO_VIDEO_STAGES, adapter_file, resolve_model

    params = _setup()
    adapters = [adapter_file(params, parse_lora_spec(spec)[0], spec) for spec in lora]
    folder = resolve_model(params, model, IMAGE_TO_VIDEO_STAGES)
    typer.echo(json.dumps(export_model(params, folder, out, adapters), indent=2, default=_jsonable))


evaluate_app = typer.Typer(
    no_args_is_help=True, help="Evaluate by the paper's protocols: FVD, multi-view metrics, preference Elo."
)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("frechet")
def frechet_cmd(
    real: Path = typer.Argument(..., help="Features of the real videos: .npy, N x D."),
    fake: Path = typer.Argument(..., help="Features of the generated videos: .npy, M x D."),
) -> None:
    """Fréchet distance (FVD on I3D features) between two feature sets, in float64, printed as JSON."""
    from svd.evaluation.fvd import frechet_of_files

    typer.echo(json.dumps(frechet_of_files(real, fake)))


@evaluate_app.command("preference-serve")
def preference_serve(
    videos: Path | None = typer.Option(
        None,
        "--videos",
        help="Folder with one sub-folder of mp4 samples per "
        "model version, each with a prompts.json ({file: "
        "prompt}, as `svd train` writes next to its "
        "samples).",
    ),
    models: list[str] = typer.Option(
        [],
        "--model",
        help="A model version to compare (models:/NAME@ALIAS, "
        "models:/NAME/VERSION or a model folder); repeat it. Their "
        "samples are laid out in --videos (default: "
        "evaluate.preference.gather_root) first.",
    ),
    db: Path | None = typer.Option(
        None, "--db", help="SQLite file the votes go to (default: evaluate.preference.db); created if missing."
    ),
    host: str | None = typer.Option(None, "--host", help="Interface (default: evaluate.preference.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port (default: evaluate.preference.port)."),
) -> None:
    """Serve a blind side-by-side vote page: two versions' videos for one prompt, votes stored in SQLite."""
    from svd.evaluation.preference import serve

    params = _setup()
    pref = params.evaluate.preference
    if models:
        from svd.evaluation.preference import gather_versions

        if len(models) < 2:
            raise SvdError("--model: give at least two model versions to compare")
        videos = gather_versions(params, models, videos or Path(pref.gather_root))
    elif videos is None:
        raise SvdError("give --videos FOLDER (one sub-folder of samples per version) or --model REF twice or more")

    def ready(url, catalog):
        typer.echo(
            f"{len(catalog.videos)} videos of {len(catalog.versions)} versions "
            f"({', '.join(catalog.versions)}), {len(catalog.shared)} version pair(s); votes -> "
            f"{db or pref.db}; open {url} (Ctrl-C to stop)"
        )

    serve(videos, db or Path(pref.db), host=host or pref.host, port=port or pref.port, seed=pref.seed, on_ready=ready)


@evaluate_app.command("elo")
def elo_cmd(
    db: Path | None = typer.Option(None, "--db", help="Votes database (default: evaluate.preference.db)."),
    k: float | None = typer.Option(None, "--k", help="Elo step (default: evaluate.preference.k)."),
    initial: float | None = typer.Option(
        None, "--initial", help="Starting rating (default: evaluate.preference.initial)."
    ),
    bootstrap: int | None = typer.Option(
        None,
        "--bootstrap",
        help="Bootstrap rounds for median and 95% "
        "interval, 0 for none (default: "
        "evaluate.preference.bootstrap_rounds).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Bootstrap seed (default: evaluate.preference.seed)."),
    out: Path | None = typer.Option(None, "--out", help="JSON written (default: evaluate.preference.out)."),
) -> None:
    """Elo ratings per model version from the preference votes, printed as JSON and written to --out."""
    from svd.evaluation.preference import elo_report, write_report

    params = _setup()
    pref = params.evaluate.preference
    report = elo_report(
        db or Path(pref.db),
        k=pref.k if k is None else k,
        initial=pref.initial if initial is None else initial,
        rounds=pref.bootstrap_rounds if bootstrap is None else bootstrap,
        seed=pref.seed if seed is None else seed,
    )
    write_report(report, out or Path(pref.out))
    typer.echo(json.dumps(report, indent=2))


@evaluate_app.command("multiview")
def multiview_cmd(
    fake: Path = typer.Option(
        ...,
        "--fake",
        help="Folder of generated orbits: <object>/000.png ... or <object>.mp4, named like the ground truth's objects.",
    ),
    real: Path | None = typer.Option(
        None,
        "--real",
        help="Ground-truth orbits: an orbits.parquet manifest, a "
        "folder holding one, or a folder of orbits (default: "
        "evaluate.multiview.gso_root, else the world's "
        "<paths.world>/eval/orbits.parquet).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Report written (default: <paths.metrics>/multiview.json)."),
    track: bool = typer.Option(False, help="Record an MLflow run with the means and the report."),
) -> None:
    """GSO multi-view metrics: PSNR, LPIPS (AlexNet) and CLIP-S per object of 21-frame orbits, and their means."""
    from svd.evaluation.multiview import evaluate_multiview, resolve_real, write_report

    params = _setup()
    out = out or Path(params.paths.metrics) / "multiview.json"
    if track:
        from svd import tracking

        run = tracking.stage_run(
            params, "evaluate_multiview", inputs={"real": resolve_real(params, real)[0], "fake": fake}
        )
    else:
        run = _null()
    with run:
        report = evaluate_multiview(params, fake=fake, real=real)
        write_report(report, out)
        if track:
            tracking.log_metrics({k: report[k] for k in ("psnr", "lpips", "clip_s", "n_objects", "n_failed")})
            tracking.log_artifacts(out)
    for name, why in report["failed"].items():
        typer.secho(f"warning: {name}: {why}", fg="yellow", err=True)
    summary = {
        k: report[k] for k in ("n_objects", "n_failed", "psnr", "lpips", "clip_s", "lpips_backbone", "clip_backbone")
    }
    typer.echo(json.dumps({**summary, "out": str(out), "paper": report["paper"]["note"]}, indent=2))


@evaluate_app.command("video")
def video_cmd(
    model: str | None = typer.Option(
        None,
        "--model",
        help="A model folder (models/hq) or a registered model "
        "(models:/NAME@ALIAS). Default: the newest "
        "text-to-video model the pipeline trained.",
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Samples, manifest.parquet and plan.json (default: <evaluate.video.out_root>/<name>)."
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Report name: metrics/evaluate_<name>.json (the "
        "markdown table: <out-dir>/report.md; default: the "
        "folder's name, or NAME-ALIAS).",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="i/n: generate only shard i of n (separately "
        "started workers split the sample list; under "
        "torchrun each process takes its own); the report "
        "comes once every sample exists.",
    ),
    track: bool = typer.Option(
        True, help="Record an MLflow run, and log the report to the model's training run when it has one."
    ),
) -> None:
    """UCF-101 zero-shot FVD (the world's action clips in the tiny profile) plus the world evaluator's accuracy;
    resumable (written samples are skipped) and shardable."""
    from svd.evaluation import ucf101
    from svd.runtime import distributed
    from svd.training.sampling import resolve_model

    params = _setup()
    dist = distributed()  # under torchrun / accelerate launch every process generates its own shard
    if dist.num_processes > 1:
        if shard is not None:
            raise SvdError(
                "--shard splits the samples over separately started workers; under torchrun or "
                "accelerate launch each process already takes its own shard (rank/processes): drop --shard"
            )
        shard = f"{dist.process_index}/{dist.num_processes}"
        if not dist.is_main_process:  # its share of the samples; the main process scores and reports
            ucf101.evaluate_video(
                params,
                model=model,
                out_dir=out_dir,
                name=name,
                shard=shard,
                score=False,
                log=lambda m: typer.echo(m, err=True),
            )
            dist.wait_for_everyone()
            return
    # the MLflow run is open while the samples are made and scored, so its start, end and system metrics are the
    # evaluation's own
    folder = resolve_model(params, model)
    run_name = f"evaluate_{name or ucf101.default_name(model, folder)}"
    if track:
        from svd import tracking

        run = tracking.stage_run(params, run_name, inputs={"model": folder / "unet"})
    else:
        run = _null()
    with run:
        result = ucf101.evaluate_video(
            params,
            model=model,
            out_dir=out_dir,
            name=name,
            shard=shard,
            score=dist.num_processes == 1,
            log=lambda m: typer.echo(m, err=True),
        )
        if dist.num_processes > 1:
            dist.wait_for_everyone()  # every process's samples are written: score them all here
            result = ucf101.evaluate_video(
                params, model=model, out_dir=out_dir, name=name, log=lambda m: typer.echo(m, err=True)
            )
        if not result["complete"]:
            if track:
                tracking._mlflow().set_tags({"svd.shard": result["shard"], "svd.complete": "false"})
                tracking.log_metrics({"generated": len(result["generated"]), "present": result["present"]})
            typer.echo(json.dumps(result, indent=2, default=_jsonable))
            return
        flat = ucf101.report(result)
        metrics_dir = Path(params.paths.metrics)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        js, md = metrics_dir / f"evaluate_{result['name']}.json", Path(result["out_dir"]) / ucf101.REPORT_FILE
        # metrics/ (git, `dvc metrics`): the numbers a re-run reproduces; report.json beside the samples (DVC):
        # everything, descriptions included (extractor, real set, model, sizes)
        full = Path(result["out_dir"]) / "report.json"
        full.write_text(json.dumps(flat, indent=2, default=_jsonable) + "\n")
        js.write_text(json.dumps(_metric_values(flat), indent=2) + "\n")
        md.write_text(ucf101.markdown(result))
        run_id = None
        if track:
            run_id = ucf101.model_run_id(params, model, folder)
            tracking._mlflow().set_tags(
                {
                    "svd.model_ref": result["model"],
                    "svd.model_run_id": run_id or "none",
                    "svd.real_set": result["real_set"],
                    "svd.complete": "true",
                }
            )
            tracking.log_metrics(flat)
            tracking._mlflow().set_tags(
                {
                    "svd.feature_extractor": str(flat["feature_extractor"])[:5000],
                    "svd.eval_fingerprint": str(flat["fingerprint"]),
                }
            )
            for f in (
                js,
                full,
                md,
                Path(result["out_dir"]) / ucf101.MANIFEST_FILE,
                Path(result["out_dir"]) / ucf101.SCORES_FILE,
            ):
                tracking.log_artifacts(f, "evaluate")
    if run_id:
        ucf101.log_to_model_run(params, run_id, result["name"], flat, [js, md])
    if track:
        flat["mlflow_model_run"] = run_id
    typer.echo(
        json.dumps(
            {
                **flat,
                "generated": len(result["generated"]),
                "out_dir": result["out_dir"],
                "metrics": str(js),
                "report": str(md),
            },
            indent=2,
            default=_jsonable,
        )
    )


@evaluate_app.command("stage")
def evaluate_stage_cmd(
    stage: str = typer.Argument(..., help="A trained diffusion stage: image | video | hq | i2v | i2v_xt."),
    model: Path | None = typer.Option(
        None, "--model", help="The model folder (default: the stage's own, models/<stage>)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Score a trained model with its task's evaluator (what `svd train` runs after training): the eval prompts for
    text-to-video, the held-aside-clip checks for image-to-video (fidelity, identity, motion, FVD, scene)."""
    from svd import tasks
    from svd.evaluation.prompts import after_training
    from svd.training import stages as st

    params = _setup()
    if stage not in tasks.STAGE_TASKS:
        raise SvdError(f"stage must be one of {', '.join(tasks.STAGE_TASKS)}, got {stage!r}")
    result = after_training(params, stage, model or st.stage_dir(params, stage))
    text = json.dumps(result, indent=2, default=_jsonable)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


@evaluate_app.command("caption-sensitivity")
def caption_sensitivity_cmd(
    model: str | None = typer.Option(
        None,
        "--model",
        help="A video model folder (models/video) or a registered "
        "model (models:/NAME@ALIAS). Default: the newest "
        "text-to-video model the pipeline trained.",
    ),
    windows: int = typer.Option(
        48, "--windows", min=1, help="Single-object, static-camera windows to measure on (one per curated clip)."
    ),
    steer: bool = typer.Option(
        True,
        help="Also sample from noised windows with the true and the direction-swapped "
        "caption, and judge which way the object moves (slower).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Does the model use its captions' words? Denoising loss with the direction or colour word swapped (or no
    caption) against the true caption, per sigma; a relative gap near 0 means the word is ignored. With --steer:
    partial sampling from noised windows, whether the motion is kept and whether a swapped direction word turns it."""
    from svd.evaluation.caption_sensitivity import caption_sensitivity
    from svd.training.sampling import resolve_model

    params = _setup()
    result = caption_sensitivity(params, resolve_model(params, model), windows=windows, seed=params.seed, steer=steer)
    text = json.dumps(result, indent=2, default=_jsonable)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


@evaluate_app.command("train-features")
def train_features_cmd(
    out: Path | None = typer.Option(
        None, "--out", help="Folder for i3d.safetensors and feature_net.json (default: evaluate.fvd.feature_net.out)."
    ),
    track: bool = typer.Option(True, help="Record an MLflow run."),
) -> None:
    """Train the FVD feature net on the world's action classes (the tiny profile's stand-in for Kinetics I3D
    weights), then cache the real set's statistics under the configured extractor (evaluate.video.real_stats)."""
    from svd import tracking
    from svd.evaluation import ucf101

    params = _setup()
    run = tracking.stage_run(params, "evaluate_features") if track else _null()
    with run:
        summary = ucf101.train_features(
            params,
            out,
            log=lambda m: typer.echo(m, err=True),
            logger=tracking.step_logger("feature_net.") if track else None,
        )
        _write_metrics(
            params,
            "fvd_features",
            summary,
            Path(summary["path"]).parent,
            Path(state.file_params().evaluate.fvd.feature_net.out),
        )
        if track:
            tracking.log_metrics(_numeric(summary))
            tracking.log_artifacts(Path(summary["path"]).parent / "feature_net.json")
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@app.command("register")
def register_cmd(
    model: Path = typer.Option(..., "--model", help="A model folder written by `svd train` (models/hq)."),
    name: str | None = typer.Option(
        None, "--name", help="Registered model name (default: register.name, else the stage's name, svd-t2v)."
    ),
    metrics: Path | None = typer.Option(
        None, "--metrics", help="Flat evaluation JSON the gate reads (default: register.metrics)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Register content already registered, and move champion "
        "when the champion has no recorded gate metric (recorded as "
        "tag svd.register.force); never overrides a measured loss "
        "or a floor.",
    ),
) -> None:
    """Register a model version with its lineage as `candidate`; `champion` moves only when the evaluation beats
    the current champion's (register.metric / mode / min_delta / require)."""
    from svd.registry import register_model

    params = _setup()
    report = register_model(params, model, name=name, metrics=metrics, force=force)
    typer.echo(json.dumps(report, indent=2, default=_jsonable))


ablate_app = typer.Typer(no_args_is_help=True, help="Ablations over training seeds (on demand; not part of make run).")
app.add_typer(ablate_app, name="ablate")


@ablate_app.command("curation")
def ablate_curation_cmd(
    track: bool = typer.Option(True, help="Record MLflow runs: one parent, the arms' runs as its children."),
) -> None:
    """Stage II from the pipeline's Stage I on curated vs all clips, for every seed in ablation.curation.seeds, each
    arm scored by `svd evaluate video`; writes ablation.curation.metrics (+ .csv, the DVC plot) and a report.
    Resumes: finished arms and written samples are kept. DVC stage: ablations/dvc.yaml."""
    from svd.ablation import run_curation_ablation

    params = _setup()
    summary = run_curation_ablation(params, _global_args(), log=lambda m: typer.echo(m, err=True), track=track)
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


@ablate_app.command("multiview")
def ablate_multiview_cmd(
    track: bool = typer.Option(True, help="Record MLflow runs: one parent, the arms' runs as its children."),
) -> None:
    """The multi-view finetune (train.mv) from the video prior, the image prior and random weights, for every seed
    in ablation.multiview.seeds, probed on held-out orbits as it trains and judged at the end; writes
    ablation.multiview.metrics (+ .csv, the curves) and a report. Resumes: finished arms are kept. DVC stage:
    ablations/dvc.yaml (multiview)."""
    from svd.ablation_multiview import run_multiview_ablation

    params = _setup()
    summary = run_multiview_ablation(params, _global_args(), log=lambda m: typer.echo(m, err=True), track=track)
    typer.echo(json.dumps(summary, indent=2, default=_jsonable))


def _global_args() -> list[str]:
    """The `svd` options this call was given (--params, --profile, --set ...), to hand on to child calls."""
    args = ["--params", str(state.params_file)]
    if state.profile:
        args += ["--profile", state.profile]
    for item in state.overrides:
        args += ["--set", item]
    return args


@app.command()
def doctor() -> None:
    """Report the environment: versions, threads, and which pretrained weights are configured and found."""
    from svd.doctor import report

    params = _setup()
    ok = report(params)
    raise typer.Exit(0 if ok else 1)


@app.command("model-info")
def model_info() -> None:
    """Parameter counts of every model of the profile (built on the meta device: no memory, no weights)."""
    from svd.models.info import format_report, parameter_report

    params = _setup()
    typer.echo(f"profile {params.profile}")
    typer.echo(format_report(parameter_report(params.profile, params.model_dump())))


@app.command()
def pipeline(
    stages: list[str] = typer.Argument(None, help="Stages to run (default: all in dvc.yaml, in graph order)."),
    force: bool = typer.Option(False, help="Re-run stages even when DVC says they are up to date."),
) -> None:
    """Run the dvc.yaml stages as the Prefect flow `svd` (a temporary local Prefect server if none is configured)."""
    import os

    # with no server configured Prefect starts a temporary one; keep its state in the project, not in ~
    os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    # its first start builds the SQLite database (migrations), which on a fresh clone and 2 busy cores took longer
    # than Prefect's default 20 s wait ("Timed out while attempting to connect to ephemeral Prefect API server")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    sys.path.insert(0, str(Path.cwd()))
    try:
        from flows.pipeline import svd_flow
    except ImportError as exc:
        raise SvdError(f"run `svd pipeline` from the project root (flows/ not importable: {exc})") from None
    state_ = svd_flow(stages=list(stages) if stages else None, force=force)
    typer.echo(json.dumps(state_, indent=2, default=str))


def _write_metrics(params: Params, stage: str, summary: dict, out: Path, pipeline_out: Path) -> Path:
    """Write the run's numbers and return where they went.

    <paths.metrics>/<stage>.json is the DVC metrics file of the pipeline's own output (`pipeline_out`: where
    params.yaml, without --set, puts it). A run into another folder (`--out`, `--set paths.*`) writes OUT-metrics.json
    beside it instead (inside, its wall times would make OUT's bytes differ from run to run), so that a scratch run
    never overwrites the numbers dvc.lock records for the pipeline; unless paths.metrics was set on the command line
    too, which says where they belong."""
    metrics_set = Path(params.paths.metrics).resolve() != Path(state.file_params().paths.metrics).resolve()
    if metrics_set or Path(out).resolve() == Path(pipeline_out).resolve():
        path = Path(params.paths.metrics) / f"{stage}.json"
    else:
        out = Path(out) if Path(out).name else Path(out).resolve()
        path = out.with_name(out.name + "-metrics.json")
        typer.echo(f"{stage}: output is not the pipeline's ({pipeline_out}), so its metrics go to {path}", err=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    numbers = {k: v for k, v in _numeric(summary).items() if k.rsplit(".", 1)[-1] not in WALL_CLOCK}
    path.write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return path


def _word_gap_probe(params, logger, rows: list[dict]):
    """Stages II-III's on_probe hook: the swapped words' loss gaps (WordGapProbe) every train.probe_every steps, to
    MLflow (probe.*) and to `rows` (the .probe.csv curve). A curated set without a single-object window leaves the
    run unprobed, with a warning, rather than stopping its training."""
    from svd.errors import InputError
    from svd.evaluation.caption_sensitivity import WordGapProbe

    probe = WordGapProbe(params.train.probe_windows, seed=params.seed)
    failed = False

    def on_probe(model, step: int, tools: dict) -> None:
        nonlocal failed
        if failed:
            return
        try:
            gaps = probe(model, step, tools)
        except InputError as err:
            failed = True
            typer.echo(f"warning: no word-gap probe in this run: {err}", err=True)
            return
        rows.append({"step": step, **{k.removeprefix("probe."): v for k, v in gaps.items()}})
        if logger is not None:
            logger(gaps, step)

    return on_probe


def _task_probe(params, stage: str, logger, rows: list[dict]):
    """A task's own on_probe (its `prober`, "module:Class" built with (params, stage)), its values to MLflow and to
    `rows` (the .probe.csv curve); None for a task without one, with train.probe_every 0, or when the probe cannot be
    built (a warning: missing weights stop the probe, not the training). Multi-view: the held-out orbits' metrics."""
    import importlib

    from svd import tasks

    prober = getattr(tasks.for_stage(stage), "prober", None)
    if prober is None or not params.train.probe_every:
        return None
    module, name = prober.split(":")
    try:
        probe = getattr(importlib.import_module(module), name)(params, stage)
    except SvdError as err:  # a probe is a view of training, not part of it: train unprobed, and say so
        typer.secho(f"warning: no {stage} probe in this run: {err}", fg="yellow", err=True)
        return None

    def on_probe(model, step: int, tools: dict) -> None:
        values = probe(model, step, tools)
        rows.append({"step": step, **{k.removeprefix("probe."): v for k, v in values.items()}})
        if logger is not None:
            logger(values, step)

    return on_probe


def _write_curves(metrics_path: Path, history: list[dict], scores: list[dict], probes: list[dict]) -> None:
    """The training curves beside a stage's metrics file, for `dvc plots` (tracked by git like the metrics):
    <stem>.loss.csv (step, loss at every log step); for stages scored as they train, <stem>.eval.csv (step,
    colour and direction accuracy of the previews, and the final evaluation at the last step); for Stages II-III,
    <stem>.probe.csv (step, the swapped words' loss gaps per sigma; the points this run measured: a resumed run's
    start after its resume)."""
    import csv

    for suffix, rows in ((".loss.csv", history), (".eval.csv", scores), (".probe.csv", probes)):
        path = metrics_path.with_suffix(suffix)
        if not rows:
            path.unlink(missing_ok=True)
            continue
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)


# Numbers of how a run went rather than what it made (wall times, throughput, where it resumed): logged to MLflow,
# kept out of metrics/*.json, which git tracks and a reproducing re-run must leave unchanged.
WALL_CLOCK = frozenset(
    {
        "seconds",
        "train_seconds",
        "sample_seconds",
        "real_seconds",
        "generate_seconds",
        "score_seconds",
        "samples_per_s",
        "resumed_from",
        "startup_seconds",
        "retried",
        "workers",
        "processes",
    }
)


def _metric_values(flat: dict) -> dict[str, float]:
    """What a metrics file holds: finite numbers (a yes/no as 1/0), no wall times, no text, no unknowns."""
    out = {}
    for key, value in flat.items():
        if key in WALL_CLOCK or value is None or isinstance(value, (str, list, dict)):
            continue
        out[key] = int(value) if isinstance(value, bool) else value
    return out


def _numeric(summary: dict) -> dict[str, float]:
    """The numbers of a nested summary as flat metrics ('filters.motion.would_drop')."""
    return {k: v for k, v in flatten(summary).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _jsonable(value):
    """numpy scalars and paths in summaries -> plain JSON."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


GLOBAL_OPTIONS = ("--params", "--profile", "--set")  # options of `_global`, given before the command


def hoist_global_options(argv: list[str]) -> list[str]:
    """`svd model-info --profile a100` as `svd --profile a100 model-info`: the global options (which no command
    defines for itself) are accepted anywhere and moved before the command, as users type them."""
    command = None
    i = 0
    while i < len(argv):  # the command is the first word that is neither a global option nor its value
        if argv[i] in GLOBAL_OPTIONS:
            i += 2
            continue
        if argv[i].startswith("-"):
            i += 1
            continue
        command = i
        break
    if command is None:
        return list(argv)
    before, after, moved = list(argv[:command]), [], []
    rest = argv[command:]
    j = 0
    while j < len(rest):
        word = rest[j]
        if word in GLOBAL_OPTIONS and j + 1 < len(rest):
            moved += [word, rest[j + 1]]
            j += 2
        elif word.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in word:
            moved.append(word)
            j += 1
        elif word == "--":  # everything after belongs to the command
            after += rest[j:]
            break
        else:
            after.append(word)
            j += 1
    return before + moved + after


def main() -> None:
    try:
        app(args=hoist_global_options(sys.argv[1:]))
    except (SvdError, ConfigError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
