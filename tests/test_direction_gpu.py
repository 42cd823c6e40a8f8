"""benchmarks/direction_gpu.py's device half: it must train from a job folder on a machine without PyAV, pydantic,
open_clip or MLflow (the lent GPU's python has torch, accelerate and safetensors), write snapshots, and stop inside
its time budget."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from svd.models.unet import TINY_UNET_PARAMS, build_video_unet, video_unet_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "direction_gpu.py"
ABSENT_ON_THE_DEVICE = ("av", "pydantic", "open_clip", "mlflow", "prefect", "svd.config")


def _job(folder: Path) -> Path:
    """A job folder as `export` writes it, with a tiny UNet and random latents."""
    p = copy.deepcopy(TINY_UNET_PARAMS)
    g = torch.Generator().manual_seed(0)
    folder.mkdir()
    save_file(
        {
            "frames": torch.randn(10, p["in_channels"], 4, 6, generator=g).half(),  # windows share frames
            "index": torch.tensor(
                [[0, 1, 2, 3], [3, 2, 1, 0], [4, 5, 6, 7], [7, 6, 5, 4], [6, 7, 8, 9], [9, 8, 7, 6]], dtype=torch.int32
            ),
            "text": torch.randn(3, 32, p["cross_attention_dim"], generator=g),
            "text_index": torch.tensor([1, 2, 1, 2, 0, 1]),
            "fps_id": torch.full((6,), 3),
            "motion_bucket": torch.full((6,), 60),
        },
        str(folder / "latents.safetensors"),
    )
    torch.manual_seed(0)
    build_video_unet(video_unet_config(p)).save_pretrained(folder / "unet_init", safe_serialization=True)
    (folder / "job.json").write_text(
        json.dumps(
            {
                "overrides": [],
                "windows": 6,
                "captions": 2,
                "sigma_data": 1.0,
                "p_mean": 0.5,
                "p_std": 1.4,
                "text_dropout": 0.15,
                "static_weight": 1.0,
                "lr": 1e-3,
                "temporal_lr_scale": 4.0,
                "warmup_steps": 2,
                "batch": 16,
                "steps": 500,
                "seed": 0,
                "profile": "tiny",
                "init": "test",
            }
        )
    )
    return folder


def _train(job: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    blocker = "; ".join(f"sys.modules[{m!r}] = None" for m in ABSENT_ON_THE_DEVICE)
    argv = [str(SCRIPT), "train", "--job", str(job), "--out", str(out), *args]
    code = f"import runpy, sys; {blocker}; sys.argv = {argv!r}; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_train_runs_without_the_packages_the_device_lacks_and_writes_snapshots(tmp_path):
    job = _job(tmp_path / "job")
    r = _train(job, tmp_path / "out", "--steps", "4", "--batch", "3", "--save-every", "2", "--log-every", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    snaps = sorted((tmp_path / "out").glob("unet-*.safetensors"))
    assert [s.name for s in snaps] == ["unet-000002.safetensors", "unet-000004.safetensors"]
    init = load_file(str(job / "unet_init" / "diffusion_pytorch_model.safetensors"))
    last = load_file(str(snaps[-1]))
    assert last.keys() == init.keys()  # loadable into the job's UNet config as it is
    assert any(not torch.equal(last[k], init[k]) for k in init)  # and trained
    log = (tmp_path / "out" / "train.log").read_text()
    assert "step 2 loss" in log and '"snapshots": [2, 4]' in log


def test_train_stops_at_the_last_snapshot_inside_its_budget(tmp_path):
    job = _job(tmp_path / "job")
    r = _train(job, tmp_path / "out", "--steps", "1000", "--batch", "3", "--save-every", "1", "--minutes", "0.0001")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [s.name for s in (tmp_path / "out").glob("unet-*.safetensors")] == ["unet-000001.safetensors"]


def test_a_job_in_another_layout_is_refused_with_the_way_out(tmp_path):
    job = _job(tmp_path / "job")
    tensors = load_file(str(job / "latents.safetensors"))
    # the per-window layout export wrote at first
    tensors["latents"] = tensors.pop("frames")[tensors.pop("index").long()]
    save_file(tensors, str(job / "latents.safetensors"))
    r = _train(job, tmp_path / "out", "--steps", "2", "--batch", "3")
    assert r.returncode != 0 and "lacks ['frames', 'index']" in r.stderr and "export the job again" in r.stderr
