"""Training core: EMA against numpy, checkpoint round trip and atomicity, and a real SIGKILL + resume that must
reach bit-identical weights."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from svd.errors import SvdError
from svd.training import EMA, CheckpointMismatch, latest, load_checkpoint, prune, save_checkpoint, train
from svd.training.checkpoint import checkpoints


def _mlp(width=16):
    return nn.Sequential(nn.Linear(4, width), nn.Dropout(0.2), nn.GELU(), nn.Linear(width, 2))


class _Shapes(torch.utils.data.Dataset):
    """Fixed points with random augmentation from all three global RNGs (python, numpy, torch)."""

    def __init__(self, n=48):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.stack([self.x[:, 0] * self.x[:, 1], self.x[:, 2].sin()], 1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + 0.05 * torch.randn(4) + float(np.random.uniform(-0.01, 0.01))
        return (-x if random.random() < 0.5 else x), self.y[i]


def _step_fn(model, batch, rng):
    x, y = batch
    noise = rng.randn(x.shape)
    return nn.functional.mse_loss(model(x + 0.1 * noise), y)


# ------------------------------------------------------------------------------------------------ EMA
def test_ema_matches_numpy_recurrence():
    torch.manual_seed(0)
    model = _mlp().to(torch.bfloat16)
    decay = 0.9
    ema = EMA(model, decay)
    ref = {k: v.detach().float().numpy().astype(np.float64) for k, v in model.named_parameters()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        for k, p in model.named_parameters():
            ref[k] = decay * ref[k] + (1 - decay) * p.detach().float().numpy().astype(np.float64)
    assert ema.num_updates == 5
    for k, v in ema.shadow.items():
        assert v.dtype == torch.float32
        np.testing.assert_allclose(v.numpy(), ref[k], rtol=1e-5, atol=1e-6)

    other = EMA(_mlp().to(torch.bfloat16), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == decay and other.num_updates == 5
    target = _mlp()
    other.copy_to(target)
    for k, p in target.named_parameters():
        assert torch.equal(p, ema.shadow[k])


# ------------------------------------------------------------------------------------------------ checkpoints
def _trained(seed=0):
    torch.manual_seed(seed)
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 5))
    ema = EMA(model, 0.9)
    for _ in range(3):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        ema.update(model)
    return model, opt, sched, ema


def test_checkpoint_round_trip(tmp_path):
    model, opt, sched, ema = _trained()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    path = save_checkpoint(
        tmp_path,
        3,
        model=model,
        optimizer=opt,
        lr_scheduler=sched,
        ema=ema,
        epoch=2,
        batches_in_epoch=5,
        seed=11,
        profile="tiny",
    )
    assert path.name == "step-000003" and latest(tmp_path) == path
    assert {p.name for p in path.iterdir()} == {"model", "ema", "trainer.pt", "meta.json"}
    expected = (random.random(), np.random.rand(), torch.rand(1))  # what the RNGs give after the save

    m2, o2, s2, e2 = _trained(seed=1)  # different weights and RNG history
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    state = load_checkpoint(path, model=m2, optimizer=o2, lr_scheduler=s2, ema=e2, profile="tiny")
    assert state == {"step": 3, "epoch": 2, "batches_in_epoch": 5, "seed": 11, "loss": None, "history": []}
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    for a, b in zip(model.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    for k in ema.shadow:
        assert torch.equal(ema.shadow[k], e2.shadow[k])
    assert e2.num_updates == 3 and s2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"]
    sa, sb = opt.state_dict(), o2.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][key], sb["state"][i][key])
    # trainer.pt is plain data: the weights_only loader accepts it
    torch.load(path / "trainer.pt", weights_only=True)


def test_diffusers_model_uses_save_pretrained_layout(tmp_path):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    ema = EMA(unet, 0.99)
    path = save_checkpoint(tmp_path, 1, model=unet, ema=ema, profile="tiny")
    for sub in ("model", "ema"):
        assert (path / sub / "config.json").is_file()
        assert (path / sub / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = UNet2DModel.from_pretrained(path / "ema")
    for k, v in reloaded.named_parameters():
        assert torch.equal(v, ema.shadow[k])


def test_latest_ignores_partial_writes_and_prune_keeps_last(tmp_path):
    model, opt, _, _ = _trained()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, model=model, optimizer=opt)
    # a writer killed mid-save leaves its temporary folder, or a step folder without meta.json
    (tmp_path / ".tmp-step-000040-999").mkdir()
    (tmp_path / ".tmp-step-000040-999" / "trainer.pt").write_bytes(b"half")
    (tmp_path / "step-000050").mkdir()
    assert latest(tmp_path).name == "step-000030"
    assert [p.name for p in prune(tmp_path, 2)] == ["step-000010"]
    assert [s for s, _ in checkpoints(tmp_path)] == [20, 30]
    assert latest(tmp_path / "missing") is None


def test_mismatch_names_both_sides(tmp_path):
    model, opt, _, _ = _trained()
    path = save_checkpoint(tmp_path, 1, model=model, optimizer=opt, profile="a100")
    with pytest.raises(CheckpointMismatch, match="'a100'.*'tiny'"):
        load_checkpoint(path, model=model, optimizer=opt, profile="tiny")
    wider = _mlp(width=32)
    with pytest.raises(CheckpointMismatch, match=r"checkpoint=\{.*run=\{") as err:
        load_checkpoint(path, model=wider, profile="a100")
    assert isinstance(err.value, SvdError) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ the loop
def test_train_logs_samples_checkpoints_and_resumes_in_process(tmp_path):
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    logs, samples, probes = [], [], []
    summary = train(
        _step_fn,
        model,
        opt,
        _Shapes(),
        max_steps=7,
        ckpt_dir=tmp_path,
        ckpt_every=3,
        log_every=2,
        logger=lambda m, s: logs.append((s, m)),
        sample_every=3,
        sample_fn=lambda m, s: samples.append(s),
        probe_every=2,
        probe_fn=lambda m, s: probes.append((s, m.training)),
        batch_size=8,
        ema_decay=0.9,
        progress=False,
        keep_last=2,
    )
    assert [s for s, _ in logs] == [2, 4, 6, 7] and set(logs[0][1]) >= {"loss", "lr", "samples_per_s"}
    assert samples == [3, 6]
    assert probes == [(2, False), (4, False), (6, False)] and model.training  # in eval mode, then back
    assert [s for s, _ in checkpoints(tmp_path)] == [6, 7]
    assert summary["steps"] == 7 and summary["resumed_from"] is None and summary["final_loss"] > 0
    assert summary["samples_per_s"] > 0 and summary["seconds"] > 0

    again = train(
        _step_fn,
        _mlp(),
        torch.optim.AdamW(_mlp().parameters()),
        _Shapes(),
        max_steps=7,
        ckpt_dir=tmp_path,
        ckpt_every=3,
        batch_size=8,
        ema_decay=0.9,
        progress=False,
    )
    assert again["resumed_from"] == 7 and again["steps_this_run"] == 0
    with pytest.raises(CheckpointMismatch):
        train(
            _step_fn,
            _mlp(width=8),
            torch.optim.AdamW(_mlp(width=8).parameters()),
            _Shapes(),
            max_steps=9,
            ckpt_dir=tmp_path,
            ckpt_every=3,
            batch_size=8,
            progress=False,
        )


_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import _Shapes, _mlp, _step_fn
    from svd.training import train

    ckpt_dir, out, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "slow"
    torch.manual_seed(0)  # same init in every run; a resume then overwrites it from the checkpoint
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 8))

    def sample_fn(m, step):
        if slow and step > 20:
            time.sleep(0.5)  # holds the run past step 20 so the test can kill it between checkpoints
        torch.rand(3)  # sampling consumes global RNG: must not shift training's random draws

    summary = train(_step_fn, model, opt, _Shapes(), max_steps=30, ckpt_dir=ckpt_dir, ckpt_every=10, batch_size=8,
                    lr_scheduler=sched, ema_decay=0.9, seed=5, sample_every=1, sample_fn=sample_fn, progress=False)
    json.dump(summary, open(out, "w"))
""")


def _run(script, ckpt_dir, out, mode):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(ckpt_dir), str(out), mode], env=env)


def test_sigkill_and_resume_is_bit_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(tests=os.path.dirname(__file__)))

    straight = tmp_path / "straight"
    assert _run(script, straight, tmp_path / "a.json", "fast").wait(timeout=120) == 0

    killed = tmp_path / "killed"
    proc = _run(script, killed, tmp_path / "b.json", "slow")
    deadline = time.monotonic() + 120
    while not (killed / "step-000020" / "meta.json").exists():
        assert proc.poll() is None, "training exited before writing step-000020"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert latest(killed).name == "step-000020" and not (tmp_path / "b.json").exists()

    assert _run(script, killed, tmp_path / "c.json", "fast").wait(timeout=120) == 0
    resumed = json.loads((tmp_path / "c.json").read_text())
    assert resumed["resumed_from"] == 20 and resumed["steps"] == 30
    assert json.loads((tmp_path / "a.json").read_text())["final_loss"] == resumed["final_loss"]

    for sub in ("model/model.safetensors", "ema/model.safetensors"):
        a, b = load_file(straight / "step-000030" / sub), load_file(killed / "step-000030" / sub)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{sub}:{k} differs after resume"
    ta = torch.load(straight / "step-000030" / "trainer.pt", weights_only=True)
    tb = torch.load(killed / "step-000030" / "trainer.pt", weights_only=True)
    assert (ta["epoch"], ta["batches_in_epoch"]) == (tb["epoch"], tb["batches_in_epoch"])
    for i, st in ta["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], tb["optimizer"]["state"][i]["exp_avg_sq"])


def test_scale_updates_gives_columns_their_own_lr():
    """Scaling the update of a tensor's last columns equals training those columns as their own parameter at
    lr x scale (AdamW, no decay); the other columns move exactly as without the hooks."""
    from svd.training.loop import scale_updates

    torch.manual_seed(0)
    w0 = torch.randn(4, 6)
    x, y = torch.randn(16, 6), torch.randn(16, 4)

    def loss(w):
        return ((x @ w.T - y) ** 2).mean()

    whole = nn.Parameter(w0.clone())
    opt = torch.optim.AdamW([whole], lr=1e-2, weight_decay=0.0)
    scale_updates(opt, [(whole, 1, 4)], 10.0)
    old, new = nn.Parameter(w0[:, :4].clone()), nn.Parameter(w0[:, 4:].clone())
    ref = torch.optim.AdamW([{"params": [old], "lr": 1e-2}, {"params": [new], "lr": 1e-1}], weight_decay=0.0)
    for _ in range(5):
        for o, w in ((opt, whole), (ref, None)):
            o.zero_grad()
            loss(whole if w is not None else torch.cat([old, new], 1)).backward()
            o.step()
    torch.testing.assert_close(whole.detach(), torch.cat([old, new], 1).detach(), rtol=1e-5, atol=1e-6)
