"""`svd evaluate video` (the UCF-101 zero-shot protocol, the world standing in) and `svd evaluate train-features`:
the report's keys, resume (only a deleted sample is made again, bit for bit), sharding (two shards write the same
files as one run), the model's MLflow run, one-line errors; the protocol's parts (apportionment, class prompts, the
UCF-101 layout, resize/crop); and that FVD plus the world evaluator rank a deliberately weaker generator below a
better one through the same scoring code the command uses."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from svd.cli import app
from svd.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MODEL_SIZE = [32, 48]

# small everything: 4 world classes, 4-frame samples at 32x48 with 2 sampler steps, a 3-step feature net
FAST = [
    "threads=1",
    "world.eval.colours=[red, blue]",
    "world.eval.shapes=[circle]",
    "world.eval.directions=[left, up]",
    "evaluate.video.n_samples=6",
    "evaluate.video.frames=4",
    "evaluate.video.fps=4.0",
    f"evaluate.video.size={MODEL_SIZE}",
    f"evaluate.video.resize={MODEL_SIZE}",
    "evaluate.video.crop=[32, 32]",
    "evaluate.video.steps=2",
    "evaluate.video.batch=2",
    "evaluate.video.device=cpu",
    "evaluate.fvd.frames=4",
    "evaluate.fvd.size=32",
    "evaluate.fvd.batch=4",
    "evaluate.fvd.device=cpu",
    "evaluate.fvd.feature_net.width=0.0625",
    "evaluate.fvd.feature_net.size=32",
    "evaluate.fvd.feature_net.frames=4",
    "evaluate.fvd.feature_net.fps=4.0",
    "evaluate.fvd.feature_net.steps=3",
    "evaluate.fvd.feature_net.batch=4",
    "evaluate.fvd.feature_net.heldout_per_class=1",
]


class Result:
    """A CLI result as `svd` (svd.cli.main) reports it: SvdError/ConfigError -> exit code 2 and the message."""

    def __init__(self, result):
        from svd.config import ConfigError
        from svd.errors import SvdError

        self.exit_code, self.output, self.stdout = result.exit_code, result.output, result.stdout
        self.exception = result.exception
        if isinstance(result.exception, (SvdError, ConfigError)):
            self.exit_code, self.output = 2, f"{self.output}error: {result.exception}"
        elif result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback  # an unexpected exception: show it in the assertion message, not just "exit 1"

            self.output += "".join(traceback.format_exception(result.exception))


def svd(params: Path, *args, extra=()) -> Result:
    sets = [x for s in [*FAST, *extra] for x in ("--set", s)]
    return Result(CliRunner().invoke(app, ["--params", str(params), *sets, *args]))


def last_json(text: str) -> dict:
    """The JSON document a command printed last (log lines go before it)."""
    return json.loads(text[text.index("{\n") :])


def pixels(path: Path) -> np.ndarray:
    """Decoded frames: samples are lossless, so equal pixels mean the same sample (x264's bytes may differ)."""
    from svd.io.video import iter_frames

    return np.stack(list(iter_frames(path)))


def small_eval_world(**kw):
    from svd.config import EvalWorld

    base = dict(
        colours=["red", "blue"],
        shapes=["circle"],
        directions=["left", "up"],
        videos_per_class=2,
        action_frames=16,
        action_fps=8,
        action_size=32,
        orbit_objects=1,
        orbit_frames=4,
        orbit_size=32,
        orbit_elevation=(0.0, 10.0),
    )
    base.update(kw)
    return EvalWorld(**base)


def write_world(folder: Path, ecfg, seed: int) -> Path:
    """A world folder holding only the held-aside action clips (eval/actions.parquet + mp4), as `svd world`
    writes them."""
    from svd.world.evalset import write_actions

    rows = write_actions(ecfg, folder, seed, crf=20)
    pd.DataFrame(rows).to_parquet(folder / "eval" / "actions.parquet", index=False)
    return folder


def write_model(folder: Path, profile: str = "tiny", stage: str = "hq") -> Path:
    """A randomly initialised tiny text-to-video model folder laid out as `svd train` writes it."""
    import torch

    from svd.models.unet import TINY_VIDEO_UNET, build_video_unet
    from svd.models.vae import TINY_VAE, build_vae

    torch.manual_seed(0)
    build_video_unet(TINY_VIDEO_UNET).save_pretrained(folder / "unet", safe_serialization=True)
    build_vae(TINY_VAE).save_pretrained(folder / "vae", safe_serialization=True)
    meta = {
        "stage": stage,
        "kind": "text-to-video",
        "profile": profile,
        "vae": "vae",
        "vae_backend": "random",
        "text_model": "svd-tiny-text",
        "text_pretrained": None,
        "text_backend": "random",
        "text_seed": 0,
        "size": MODEL_SIZE,
        "latent_size": [MODEL_SIZE[0] // 4, MODEL_SIZE[1] // 4],
        "frames": 4,
        "fps": 4.0,
        "motion_bucket": 48.0,
        "noise": [0.5, 1.4],
        "data": "hq",
        "init": "random",
        "steps": 0,
        "ema": None,
    }
    try:  # newer model folders record the random text tower's token std (svd.training.stages checks it)
        from svd.models.text import RANDOM_TOKEN_STD

        meta["text_token_std"] = RANDOM_TOKEN_STD
    except ImportError:
        pass
    (folder / "svd_model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def write_params(tmp: Path, world: Path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"].update(
        {
            "world": str(world),
            "models": str(tmp / "models"),
            "metrics": str(tmp / "metrics"),
            "mlflow_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
            "mlflow_artifacts": str(tmp / "mlruns" / "artifacts"),
        }
    )
    raw["evaluate"]["fvd"]["i3d_weights"] = str(tmp / "fvd_i3d" / "i3d.safetensors")
    raw["evaluate"]["fvd"]["feature_net"]["out"] = str(tmp / "fvd_i3d")
    raw["evaluate"]["video"].update(
        {"real_stats": str(tmp / "fvd_i3d" / "real_stats.npz"), "out_root": str(tmp / "evaluate")}
    )
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(tmp, params file, model folder) with a trained (3-step) feature net and its real statistics."""
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("evaluate-video")
    world = write_world(tmp / "world", small_eval_world(), seed=1)
    params = write_params(tmp, world)
    model = write_model(tmp / "models" / "hq")
    result = svd(params, "evaluate", "train-features", "--no-track")
    assert result.exit_code == 0, result.output
    return tmp, params, model


def test_train_features_writes_net_metrics_and_real_stats(setup):
    tmp, params, _ = setup
    from svd.evaluation.fvd import load_stats
    from svd.evaluation.i3d import read_metadata

    net = tmp / "fvd_i3d"
    assert (net / "i3d.safetensors").is_file() and (net / "feature_net.json").is_file()
    meta = read_metadata(net / "i3d.safetensors")
    assert meta["protocol"] == {"frames": 4, "size": 32, "fps": 4.0}  # the evaluation's clip rate, recorded
    metrics = json.loads((tmp / "metrics" / "fvd_features.json").read_text())
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0 and metrics["classes"] == 4 and metrics["real_n"] == 8
    stats = load_stats(net / "real_stats.npz")
    dim = 2 + 1 + 2 + 2  # colours, shapes, directions, order: every head's logits
    assert stats.n == 8 and stats.dim == dim and "real=world:" in stats.extractor
    assert stats.features.shape == (8, dim)  # the vectors too: intervals resample the real set
    # the sanity check: another world seed's clips and broken copies of them, each against the real set
    from svd.evaluation.fvd_sanity import VARIANTS

    for name in VARIANTS:
        assert metrics[f"sanity.{name}.fvd"] >= 0
    assert all(metrics[f"sanity.separated.{name}"] in (0, 1) for name in VARIANTS[1:])
    np.testing.assert_allclose(stats.features.mean(axis=0), stats.mu, rtol=1e-5, atol=1e-6)


def test_report_keys_resume_and_tracking(setup):
    tmp, params, model = setup
    result = svd(params, "evaluate", "video", "--model", str(model), "--name", "t")
    assert result.exit_code == 0, result.output
    printed = last_json(result.stdout)
    assert printed["generated"] == 6
    metrics = json.loads((tmp / "metrics" / "evaluate_t.json").read_text())  # numbers only: git and `dvc metrics`
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()), metrics
    assert "generate_seconds" not in metrics and metrics["comparable_to_paper"] == 0
    report = json.loads((tmp / "evaluate" / "t" / "report.json").read_text())  # everything, beside the samples
    for key in (
        "fvd",
        "colour_accuracy",
        "direction_accuracy",
        "n_samples",
        "feature_extractor",
        "feature_net_accuracy",
        "n_real",
        "real_set",
        "comparable_to_paper",
    ):
        assert key in report, key
        assert key in metrics or isinstance(report[key], str), key
    assert report["fvd"] == metrics["fvd"] > 0 and report["n_samples"] == 6 and report["n_real"] == 8
    assert 0 <= report["colour_accuracy"] <= 1 and 0 <= report["direction_accuracy"] <= 1
    for key in ("fvd", "colour_accuracy", "direction_accuracy"):  # every score with its bootstrap interval
        assert metrics[f"{key}_lo"] <= metrics[f"{key}_hi"] and f"{key}_lo" in report, key
    assert metrics["colour_accuracy_lo"] <= metrics["colour_accuracy"] <= metrics["colour_accuracy_hi"]
    saved = np.load(tmp / "evaluate" / "t" / "features.npz")
    dim = 2 + 1 + 2 + 2  # the feature net's heads: colours, shapes, directions, order
    assert saved["fake"].shape == (6, dim) and saved["real"].shape == (8, dim) and len(saved["colour_accuracy"]) == 6
    from svd.evaluation.fvd import frechet_distance

    assert frechet_distance(saved["real"], saved["fake"]) == pytest.approx(metrics["fvd"], rel=1e-4)
    assert report["feature_net_accuracy"] is not None and report["comparable_to_paper"] is False
    assert report["feature_extractor"].startswith("inception-i3d(") and "clips=4@4fps" in report["feature_extractor"]
    md = (tmp / "evaluate" / "t" / "report.md").read_text()
    assert "| SVD (paper) | 242.02 |" in md and "| CogVideo (EN) | 701.59 |" in md and "**ours: t**" in md
    assert "Not comparable with the paper" in md and md.index("**ours: t**") > md.index("CogVideo (EN)")

    out = tmp / "evaluate" / "t"
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest["seed"]) == list(range(6)) and list(manifest["index"]) == list(range(6))
    # 6 samples over 4 equally common classes: 2, 2, 1, 1 (largest remainder, earlier classes first)
    assert manifest["class_name"].value_counts().sort_values().tolist() == [1, 1, 2, 2]
    assert (manifest["prompt"] == manifest["class_name"]).all()  # the world's class name is its prompt
    assert len(pd.read_parquet(out / "scores.parquet")) == 6

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["svd"])
    run = runs[runs["tags.mlflow.runName"] == "evaluate_t"].iloc[0]
    assert run["metrics.fvd"] == pytest.approx(report["fvd"]) and run["tags.svd.model_ref"] == str(model)
    # the run was open while the samples were made: it spans their writing, not just the logging after it
    first = min(f.stat().st_mtime for f in (out / "samples").glob("*.mp4"))
    assert run["start_time"].timestamp() <= first <= run["end_time"].timestamp()
    assert run["tags.svd.model_run_id"] == "none"  # a bare folder, never registered

    # resume: delete one sample; only it is made again, to the same pixels
    files = sorted((out / "samples").glob("*.mp4"))
    before = {f.name: (pixels(f), f.stat().st_mtime_ns) for f in files}
    files[3].unlink()
    stale = out / "samples" / ".000003.99999.partial.mp4"  # what a run killed while writing sample 3 leaves
    stale.write_bytes(b"half a video")
    result = svd(params, "evaluate", "video", "--model", str(model), "--name", "t", "--no-track")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["generated"] == 1 and not stale.exists()
    for f in sorted((out / "samples").glob("*.mp4")):
        frames, mtime = before[f.name]
        assert np.array_equal(pixels(f), frames), f.name
        assert (f.stat().st_mtime_ns == mtime) == (f.name != files[3].name), f.name
    again = json.loads((tmp / "metrics" / "evaluate_t.json").read_text())
    assert again["fvd"] == pytest.approx(report["fvd"])  # the real statistics came from the cache, unchanged
    import svd.evaluation.ucf101 as ucf101

    def no_model(*_):
        raise AssertionError("a finished out-dir is scored without loading the model")

    loader, ucf101.load_for_sampling = ucf101.load_for_sampling, no_model
    try:
        result = svd(params, "evaluate", "video", "--model", str(model), "--name", "t", "--no-track")
    finally:
        ucf101.load_for_sampling = loader
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["generated"] == 0

    # a changed protocol starts the out-dir over instead of mixing samples of two plans
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--name",
        "t",
        "--no-track",
        extra=["evaluate.video.steps=1"],
    )
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["generated"] == 6


def test_two_shards_write_what_one_run_writes(setup):
    tmp, params, model = setup
    one, two = tmp / "one", tmp / "two"
    assert (
        svd(
            params, "evaluate", "video", "--model", str(model), "--out-dir", str(one), "--name", "one", "--no-track"
        ).exit_code
        == 0
    )
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(two),
        "--name",
        "two",
        "--shard",
        "1/2",
        "--no-track",
    )
    assert result.exit_code == 0, result.output
    partial = last_json(result.stdout)
    assert partial["complete"] is False and partial["present"] == 4  # chunks of 2: shard 1 of 2 has 2 of 3
    assert not (tmp / "metrics" / "evaluate_two.json").exists()  # no report from half the samples
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(two),
        "--name",
        "two",
        "--shard",
        "0/2",
        "--no-track",
    )
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["generated"] == 2
    names = sorted(f.name for f in (one / "samples").glob("*.mp4"))
    assert names == sorted(f.name for f in (two / "samples").glob("*.mp4")) and len(names) == 6
    for n in names:
        assert np.array_equal(pixels(one / "samples" / n), pixels(two / "samples" / n)), n
    manifest = pd.read_parquet(one / "manifest.parquet")
    pd.testing.assert_frame_equal(manifest, pd.read_parquet(two / "manifest.parquet"))

    # the manifest's seeds are the ones used: chunk [2, 4) regenerated by hand from its rows matches the files
    from svd.config import load_params
    from svd.io.video import write_video
    from svd.tasks.text_to_video import generate
    from svd.training.stages import load_model

    p = load_params(params, overrides=FAST)
    m = load_model(model)
    rows = manifest.iloc[2:4]
    videos = generate(
        m["unet"],
        m["vae"],
        m["text"],
        list(rows["prompt"]),
        latent_size=(8, 12),
        num_frames=4,
        steps=2,
        guidance=7.0,
        seed=int(rows["seed"].iloc[0]),
        fps=4.0,
        motion_bucket=48.0,
        sigma_min=p.diffusion.sampler.sigma_min,
        sigma_max=p.diffusion.sampler.sigma_max,
        rho=p.diffusion.sampler.rho,
        method=p.diffusion.sampler.method,
        sigma_data=p.diffusion.sigma_data,
    )
    check = tmp / "check.mp4"
    for video, file in zip(videos, rows["file"]):
        write_video(check, video, 4.0, crf=0)
        assert np.array_equal(pixels(check), pixels(one / file)), file
    a = json.loads((tmp / "metrics" / "evaluate_one.json").read_text())
    b = json.loads((tmp / "metrics" / "evaluate_two.json").read_text())
    assert a["fvd"] == pytest.approx(b["fvd"]) and a["colour_accuracy"] == b["colour_accuracy"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(setup, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    tmp, params, model = setup
    extra = ["evaluate.video.n_samples=10", "evaluate.video.steps=3"]
    whole = tmp_path / "whole"
    assert (
        svd(
            params,
            "evaluate",
            "video",
            "--model",
            str(model),
            "--out-dir",
            str(whole),
            "--name",
            "whole",
            "--no-track",
            extra=extra,
        ).exit_code
        == 0
    )
    killed = tmp_path / "killed"
    cli = [
        str(Path(sys.executable).parent / "svd"),
        "--params",
        str(params),
        *[x for s in [*FAST, *extra] for x in ("--set", s)],
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(killed),
        "--name",
        "killed",
        "--no-track",
    ]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "samples" / "000001.mp4").exists():  # the first chunk is written, the rest is not
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(f.name for f in (killed / "samples").glob("*.mp4"))
    assert 2 <= len(done) < 10, done
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(killed),
        "--name",
        "killed",
        "--no-track",
        extra=extra,
    )
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["generated"] == 10 - len(done)
    assert not list((killed / "samples").glob(".*"))  # no half-written file left behind
    for f in sorted((whole / "samples").glob("*.mp4")):
        assert np.array_equal(pixels(f), pixels(killed / "samples" / f.name)), f.name
    a = json.loads((tmp / "metrics" / "evaluate_whole.json").read_text())
    b = json.loads((tmp / "metrics" / "evaluate_killed.json").read_text())
    assert a["fvd"] == pytest.approx(b["fvd"], rel=1e-9)


def test_registered_model_reports_to_its_training_run(setup):
    tmp, params, model = setup
    import mlflow

    from svd import tracking
    from svd.config import load_params

    p = load_params(params)
    with tracking.stage_run(p, "train_hq") as run:  # what `svd train --stage hq` does (stages.track_stage)
        tracking.register_folder(p, model, "svd-t2v", ["hq", "newest"], include=["unet", "vae", "svd_model.json"])
        train_run = run.info.run_id
    result = svd(params, "evaluate", "video", "--model", "models:/svd-t2v@hq", "--name", "reg")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["mlflow_model_run"] == train_run
    client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    logged = client.get_run(train_run).data.metrics
    report = json.loads((tmp / "metrics" / "evaluate_reg.json").read_text())
    assert logged["eval_video.fvd"] == pytest.approx(report["fvd"])
    # the folder it was registered from is recognised by its weights
    result = svd(params, "evaluate", "video", "--model", str(model), "--name", "folder")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["mlflow_model_run"] == train_run


def test_errors_are_one_line_and_name_the_key(setup, tmp_path):
    tmp, params, model = setup
    other = write_model(tmp_path / "a100-model", profile="a100")
    image = write_model(tmp_path / "image-model")
    meta = json.loads((image / "svd_model.json").read_text())
    (image / "svd_model.json").write_text(json.dumps({**meta, "kind": "text-to-image", "stage": "image"}))
    cases = [
        (["--model", str(tmp_path / "nothing")], [], "no such folder"),
        (["--model", str(other)], [], "trained with profile a100"),
        (["--model", str(image)], [], "needs a text-to-video one"),
        (
            ["--model", str(model)],
            [f"evaluate.fvd.i3d_weights={tmp_path / 'none.safetensors'}"],
            "evaluate.fvd.i3d_weights",
        ),
        (["--model", str(model)], [f"evaluate.video.ucf101_root={tmp_path / 'UCF-101'}"], "evaluate.video.ucf101_root"),
        (["--model", str(model), "--shard", "2/2"], [], "--shard"),
        (["--model", str(model)], ["evaluate.fvd.frames=8"], "evaluate.fvd.frames"),
        (["--model", str(model)], ["evaluate.video.crop=[40, 40]"], "evaluate.video.crop"),
    ]
    for args, extra, message in cases:
        result = svd(params, "evaluate", "video", "--out-dir", str(tmp_path / "out"), "--no-track", *args, extra=extra)
        assert result.exit_code == 2 and message in result.output, (args, extra, result.output)
        assert "Traceback" not in result.output
    # statistics another extractor made are refused, not silently reused
    from svd.config import load_params
    from svd.evaluation.fvd import FeatureStats, save_stats

    stale = tmp_path / "stale.npz"
    save_stats(stale, FeatureStats(np.zeros(4), np.eye(4), 8, "another extractor"))
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(tmp / "one"),
        "--no-track",
        extra=[f"evaluate.video.real_stats={stale}"],
    )
    assert result.exit_code == 2 and "evaluate.video.real_stats" in result.output, result.output
    # no sample was generated for a run that could not be scored (every check comes first)
    assert not (tmp_path / "out" / "samples").exists() or not any((tmp_path / "out" / "samples").iterdir())
    assert load_params(params).evaluate.video.ucf101_root is None


def test_ucf101_layout_runs_the_same_path(setup, tmp_path):
    """A UCF-101-shaped folder (class folders, a split list): class names become prompts, the world evaluator has
    nothing to judge, and the report says the number is not the paper's."""
    tmp, params, model = setup
    from svd.io.video import write_video

    rng = np.random.default_rng(0)
    root = tmp_path / "UCF-101"
    for cls in ("ApplyEyeMakeup", "YoYo"):
        for g in range(3):
            frames = rng.integers(0, 255, (10, 24, 32, 3), dtype=np.uint8)
            write_video(root / cls / f"v_{cls}_g{g:02d}_c01.mp4", frames, 25.0)
    (root / "lists").mkdir()
    (root / "lists" / "test.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g00_c01.mp4\nYoYo/v_YoYo_g01_c01.mp4 2\nYoYo/v_YoYo_g02_c01.mp4 2\n"
    )
    extra = [
        f"evaluate.video.ucf101_root={root}",
        "evaluate.video.ucf101_split=lists/test.txt",
        f"evaluate.video.real_stats={tmp_path / 'ucf_stats.npz'}",
        "evaluate.video.fps=25.0",
    ]
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--name",
        "ucf",
        "--no-track",
        "--out-dir",
        str(tmp_path / "ucf"),
        extra=extra,
    )
    # the feature net was trained on 4 fps clips: scoring 25 fps clips with it is refused
    assert result.exit_code == 2 and "evaluate.video.fps" in result.output, result.output
    net = tmp_path / "net.safetensors"
    from svd.evaluation.i3d import InceptionI3d, save_inception_i3d

    save_inception_i3d(InceptionI3d(num_classes=5, width=0.0625), net, extra={"protocol": {"frames": 4, "size": 32}})
    result = svd(
        params,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--name",
        "ucf",
        "--no-track",
        "--out-dir",
        str(tmp_path / "ucf"),
        extra=[*extra, f"evaluate.fvd.i3d_weights={net}"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ucf" / "report.json").read_text())
    assert report["n_real"] == 3 and report["real_set"].startswith("ucf101:") and report["n_classes"] == 2
    assert "colour_accuracy" not in json.loads((tmp / "metrics" / "evaluate_ucf.json").read_text())  # no unknowns
    assert report["colour_accuracy"] is None and report["direction_accuracy"] is None and report["n_judged"] == 0
    manifest = pd.read_parquet(tmp_path / "ucf" / "manifest.parquet")
    # 6 samples following 1 : 2 -> 2 and 4; the prompt is the class name in words
    assert manifest.groupby("class_name")["prompt"].agg(["first", "count"]).to_dict("index") == {
        "ApplyEyeMakeup": {"first": "apply eye makeup", "count": 2},
        "YoYo": {"first": "yo yo", "count": 4},
    }
    assert "Not comparable with the paper" in (tmp_path / "ucf" / "report.md").read_text()


# ---------------------------------------------------------------- the protocol's parts


def test_apportion_follows_the_class_distribution():
    from svd.evaluation.ucf101 import apportion

    counts = [145, 114, 154, 149, 131]
    assert apportion(counts, sum(counts)) == counts  # the paper: one sample per UCF-101 clip
    for n in (1, 7, 64, 1000):
        q = apportion(counts, n)
        assert sum(q) == n and all(abs(x - n * c / sum(counts)) < 1 for x, c in zip(q, counts))
    assert apportion([2, 2, 2, 2], 6) == [2, 2, 1, 1]


def test_class_prompts_and_shards():
    from svd.evaluation.ucf101 import chunk_bounds, class_prompt, parse_shard, shard_chunks

    assert class_prompt("ApplyEyeMakeup") == "apply eye makeup"
    assert class_prompt("YoYo") == "yo yo"
    assert class_prompt("PlayingDaf") == "playing daf"
    assert class_prompt("Skijet") == "skijet"
    chunks = chunk_bounds(13320, 32)
    for n in (1, 3, 8, 500):
        parts = [shard_chunks(chunks, (i, n)) for i in range(n)]
        assert [c for p in parts for c in p] == chunks  # every chunk once, in order
    assert parse_shard(None) == (0, 1) and parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_views_resize_antialiased_then_crop():
    from svd.evaluation.ucf101 import ClipProtocol, generated_view, real_view

    p = ClipProtocol(frames=2, fps=25.0, size=(320, 576), resize=(240, 432), crop=(240, 320))
    stripes = np.zeros((2, 320, 576, 3), np.uint8)
    stripes[:, :, ::2] = 255  # one-pixel stripes: an aliased resize keeps them, an antialiased one greys them
    g = generated_view(stripes, p)
    assert g.shape == (2, 240, 320, 3) and g.dtype == np.uint8
    assert 100 < g.mean() < 155 and g.std() < 40
    marker = np.zeros((1, 320, 576, 3), np.uint8)
    marker[:, :, :72] = 255  # the left 72 columns (54 after the resize) fall outside the centre crop
    assert generated_view(marker, ClipProtocol(1, 25.0, (320, 576), (240, 432), (240, 320))).max() == 0
    ucf = np.full((2, 240, 320, 3), 7, np.uint8)
    assert np.array_equal(real_view(ucf, p), ucf)  # UCF-101's frames are the crop already
    square = real_view(np.zeros((2, 64, 64, 3), np.uint8), ClipProtocol(2, 4.0, (40, 64), (40, 64), (40, 40)))
    assert square.shape == (2, 40, 40, 3)


def test_markdown_places_a_comparable_run_among_the_paper_rows():
    from svd.evaluation.ucf101 import markdown, report

    result = {
        "name": "a100-hq",
        "profile": "a100",
        "model_stage": "hq",
        "fvd": 300.0,
        "n_samples": 13320,
        "n_real": 13320,
        "real_kind": "ucf101",
        "colour_accuracy": None,
        "direction_accuracy": None,
        "n_judged": 0,
        "frames": 16,
        "fps": 25.0,
        "guidance": 7.0,
        "steps": 25,
        "size": [320, 576],
        "resize": [240, 432],
        "crop": [240, 320],
        "feature_extractor": "i3d-torchscript:x",
        "comparable_to_paper": True,
        "feature_net_accuracy": None,
    }
    md = markdown(result)
    assert md.index("SVD (paper)") < md.index("**ours: a100-hq**") < md.index("PYoCo") and "not comparable" not in md
    assert "colour" not in "".join(k for k, v in report(result).items() if v is not None)  # nothing to judge


# ---------------------------------------------------------------- it must rank


def write_samples_folder(out: Path, clips: list[np.ndarray], prompts: list[str], classes: list[str], fps: float):
    """A folder laid out like `svd evaluate video` writes one: samples/NNNNNN.mp4 + manifest.parquet."""
    from svd.io.video import write_video

    rows = []
    for i, (clip, prompt, cls) in enumerate(zip(clips, prompts, classes)):
        write_video(out / "samples" / f"{i:06d}.mp4", clip, fps)
        rows.append({"index": i, "class_name": cls, "prompt": prompt, "seed": i, "file": f"samples/{i:06d}.mp4"})
    pd.DataFrame(rows).to_parquet(out / "manifest.parquet", index=False)


@pytest.mark.slow
def test_fvd_and_world_evaluator_rank_a_weaker_generator_lower(tmp_path):
    import torch

    from svd.config import FeatureNetParams, FvdParams
    from svd.evaluation.fvd import load_extractor
    from svd.evaluation.i3d import train_feature_net
    from svd.evaluation.ucf101 import ClipProtocol, read_manifest, read_world_actions, score_samples

    torch.set_num_threads(1)
    ecfg = small_eval_world(
        colours=["red", "blue"], shapes=["circle"], directions=["left", "right", "up", "down"], videos_per_class=6
    )
    net = FeatureNetParams(width=0.125, size=32, frames=8, fps=4.0, steps=600, batch=8, lr=3e-3, heldout_per_class=2)
    summary = train_feature_net(ecfg, net, tmp_path / "net", seed=0)
    print("feature net held-out accuracy", summary["heldout_accuracy"], summary["train_seconds"])
    extractor = load_extractor(FvdParams(i3d_weights=summary["path"], frames=8, size=32, batch=8, device="cpu"))
    protocol = ClipProtocol(frames=8, fps=4.0, size=(32, 32), resize=(32, 32), crop=(32, 32))
    real = read_world_actions(write_world(tmp_path / "real", ecfg, seed=1))  # 48 clips, 8 classes

    # the "better generator": the world itself, another seed; weaker ones: the same clips damaged
    other = read_world_actions(write_world(tmp_path / "other", ecfg, seed=2))
    from svd.evaluation.ucf101 import read_clip

    clips = [read_clip(c.file, 8, 2) for c in other.clips]  # 16 frames at 8 fps -> 8 at 4 fps
    prompts = [c.prompt for c in other.clips]
    rng = np.random.default_rng(0)
    grey = [np.repeat(c.mean(axis=3, keepdims=True).astype(np.uint8), 3, axis=3) for c in clips]
    noisy = [np.clip(c + rng.normal(0, 40, c.shape), 0, 255).astype(np.uint8) for c in clips]
    frozen = [np.repeat(c[:1], 8, axis=0) for c in clips]
    from svd.evaluation.i3d import shuffled_order

    in_time = [c[shuffled_order(8, rng)] for c in clips]  # the right frames, out of order
    shuffled = prompts[8:] + prompts[:8]  # right-looking videos of the wrong class
    generators = {
        "better": (clips, prompts),
        "greyscale": (grey, prompts),
        "noisy": (noisy, prompts),
        "frozen": (frozen, prompts),
        "shuffled_in_time": (in_time, prompts),
        "wrong_class": (clips, shuffled),
    }
    scores = {}
    cache = tmp_path / "real_stats.npz"
    for name, (videos, texts) in generators.items():
        out = tmp_path / name
        write_samples_folder(out, videos, texts, [t for t in texts], protocol.fps)
        scores[name] = score_samples(out, read_manifest(out), real, protocol, extractor, cache)
    fvd = {k: v["fvd"] for k, v in scores.items()}
    print({k: {m: round(v[m], 3) for m in ("fvd", "colour_accuracy", "direction_accuracy")} for k, v in scores.items()})
    for weaker in ("greyscale", "noisy", "frozen", "shuffled_in_time"):
        assert fvd["better"] < fvd[weaker], fvd
    assert 3 * fvd["better"] < fvd["shuffled_in_time"], fvd  # the order head: time is seen, not only content
    assert 5 * fvd["better"] < min(fvd["greyscale"], fvd["frozen"]) and 2 * fvd["better"] < fvd["noisy"], fvd
    better = scores["better"]
    assert better["colour_accuracy"] >= 0.9 and better["direction_accuracy"] >= 0.8, better
    assert scores["greyscale"]["colour_accuracy"] <= 0.1  # no colour left to find
    assert scores["frozen"]["direction_accuracy"] <= 0.1  # nothing moves
    # FVD does not see a prompt mismatch (the same videos), the world evaluator does
    assert scores["wrong_class"]["direction_accuracy"] <= 0.5 * better["direction_accuracy"]
    assert cache.is_file()


@pytest.mark.slow
def test_torchrun_processes_generate_their_shards_and_the_main_one_reports(setup, tmp_path):
    """`torchrun --nproc_per_node 2 -m svd.cli evaluate video`: each process writes its shard of the samples, only
    the main one scores, reports and logs; the samples and numbers are a single run's."""
    import subprocess
    import sys

    tmp, params, model = setup
    single = tmp_path / "single"
    assert (
        svd(
            params,
            "evaluate",
            "video",
            "--model",
            str(model),
            "--out-dir",
            str(single),
            "--name",
            "single",
            "--no-track",
        ).exit_code
        == 0
    )
    both = tmp_path / "both"
    sets = [x for s in FAST for x in ("--set", s)]
    argv = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "svd.cli",
        "--params",
        str(params),
        *sets,
        "evaluate",
        "video",
        "--model",
        str(model),
        "--out-dir",
        str(both),
        "--name",
        "both",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    names = sorted(f.name for f in (single / "samples").glob("*.mp4"))
    assert names == sorted(f.name for f in (both / "samples").glob("*.mp4")) and len(names) == 6
    for n in names:
        assert np.array_equal(pixels(single / "samples" / n), pixels(both / "samples" / n)), n
    a = json.loads((tmp / "metrics" / "evaluate_single.json").read_text())
    b = json.loads((tmp / "metrics" / "evaluate_both.json").read_text())
    assert a == b
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlruns/mlflow.db")
    found = mlflow.search_runs(experiment_names=["svd"], filter_string="tags.mlflow.runName = 'evaluate_both'")
    assert len(found) == 1  # the second process opened no run

    again = subprocess.run([*argv, "--shard", "0/2"], capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "drop --shard" in again.stderr + again.stdout
