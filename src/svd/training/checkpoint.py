"""Checkpoint folders that resume exactly and never half-exist.

Layout of ``ckpt_dir/step-000100/``:
    model/       diffusers save_pretrained layout (config.json + diffusion_pytorch_model.safetensors) for ConfigMixin
                 models, else model.safetensors + config.json
    ema/         the EMA weights (float32) in the same layout, when EMA is on
    trainer.pt   optimizer, lr scheduler, EMA counters, step, epoch, sampler position, RNG states; only tensors and
                 plain containers, so it loads with torch.load(weights_only=True)
    meta.json    profile, model class and config: what a resume must match

Each checkpoint is written into a hidden temporary folder, fsynced and renamed into place, so a kill mid-write
leaves only a temporary folder that ``latest`` never picks.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from svd.errors import SvdError
from svd.training.ema import EMA
from svd.training.fsdp import GroupNames, is_sharded, load_full_state, shard_like, unsharded_class

FORMAT = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
PLAIN_WEIGHTS = "model.safetensors"


class CheckpointMismatch(SvdError):
    """A checkpoint was written for another profile or model architecture than the run that tries to load it."""


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def _is_config_model(model: nn.Module) -> bool:
    return hasattr(model, "save_pretrained") and hasattr(model, "save_config") and hasattr(model, "config")


def model_config(model: nn.Module) -> dict[str, Any]:
    """What identifies an architecture: a ConfigMixin's public config, else the class and parameter shapes."""
    if _is_config_model(model):
        cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    else:
        cfg = {"shapes": {k: list(v.shape) for k, v in model.state_dict().items()}}
    cfg = {"_class_name": unsharded_class(model).__name__, **cfg}
    return json.loads(json.dumps(cfg, default=str))  # tuples -> lists so saved and live configs compare equal


# ---------------------------------------------------------------- RNG states as weights_only-loadable values
def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- weights
def _save_weights(
    folder: Path, model: nn.Module, ema: EMA | None = None, state: dict | None = None, shadow: dict | None = None
) -> None:
    """`state` / `shadow`: the model's and the EMA's full tensors when the live ones are sharded (FSDP)."""
    folder.mkdir(parents=True)
    if ema is None and state is None and _is_config_model(model):
        model.save_pretrained(folder, safe_serialization=True)
        return
    if ema is None and state is None:
        save_model(model, str(folder / PLAIN_WEIGHTS))  # save_model copes with tied (shared) tensors
        (folder / "config.json").write_text(json.dumps(model_config(model), indent=2))
        return
    # EMA weights: the model's buffers plus the float32 shadow, so from_pretrained(ema/) gives the averaged model
    # and a resume restores the shadow bit for bit.
    state = {k: v.detach().contiguous().cpu() for k, v in (state if state is not None else model.state_dict()).items()}
    if ema is not None:
        state.update({k: v.detach().contiguous().cpu() for k, v in (shadow or ema.shadow).items()})
    if _is_config_model(model):
        model.save_config(folder)
        if is_sharded(model):  # the config names the model's own class, not fully_shard's FSDP<Class>
            config = json.loads((folder / "config.json").read_text())
            config["_class_name"] = unsharded_class(model).__name__
            (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(folder / DIFFUSERS_WEIGHTS), metadata={"format": "pt"})
    else:
        save_file(state, str(folder / PLAIN_WEIGHTS), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(model_config(model), indent=2))


def _load_state(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))  # several when save_pretrained sharded a large model
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def _load_model(folder: Path, model: nn.Module) -> None:
    if (folder / PLAIN_WEIGHTS).exists() and not _is_config_model(model):
        load_model(model, str(folder / PLAIN_WEIGHTS), strict=True)
    else:
        model.load_state_dict(_load_state(folder), strict=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- public API
def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    *,
    model: nn.Module,
    optimizer=None,
    lr_scheduler=None,
    ema: EMA | None = None,
    epoch: int = 0,
    batches_in_epoch: int = 0,
    seed: int | None = None,
    profile: str = "tiny",
    keep_last: int | None = None,
    loss: float | None = None,
    full_state: dict | None = None,
    history: list[dict] | None = None,
) -> Path:
    """Write ``ckpt_dir/step-NNNNNN/`` atomically; pass the unwrapped model. Returns the folder. ``loss``: the last
    step's, so a run resumed at its final step still reports it. ``history``: the loss curve so far (rows of step
    and loss), so a resumed run's curve starts at step 1. ``full_state``: for a sharded (FSDP) model, its
    consolidated "model", "optimizer" and "ema" states (svd.training.fsdp), written in the same layout."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / step_dir_name(step)
    tmp = ckpt_dir / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    full = full_state or {}
    _save_weights(tmp / "model", model, state=full.get("model"))
    if ema is not None:
        _save_weights(tmp / "ema", model, ema, state=full.get("model"), shadow=full.get("ema"))
    trainer = {
        "format": FORMAT,
        "step": int(step),
        "epoch": int(epoch),
        "batches_in_epoch": int(batches_in_epoch),
        "seed": seed,
        "loss": None if loss is None else float(loss),
        "history": list(history or []),
        "optimizer": (full["optimizer"] if "optimizer" in full else optimizer.state_dict())
        if optimizer is not None
        else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        # the shadow itself lives in ema/ (float32), not twice on disk
        "ema": {"decay": ema.decay, "num_updates": ema.num_updates} if ema is not None else None,
        "rng": rng_state(),
    }
    torch.save(trainer, tmp / "trainer.pt")
    meta = {
        "format": FORMAT,
        "step": int(step),
        "profile": profile,
        "model_config": model_config(model),
        "ema": ema is not None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    _fsync_tree(tmp)

    if final.exists():  # re-saving a step (e.g. a resumed run ending where it began): swap, then drop the old one
        old = ckpt_dir / f"{_TMP_PREFIX}old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    _fsync_dir(ckpt_dir)
    if keep_last:
        prune(ckpt_dir, keep_last)
    return final


def checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first; temporary folders and folders without meta.json are not checkpoints."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file() and (p / "trainer.pt").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest(ckpt_dir: str | Path) -> Path | None:
    found = checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def prune(ckpt_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (and stale temporary folders of this process)."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    removed = [p for _, p in checkpoints(ckpt_dir)[:-keep_last]]
    for p in removed:
        shutil.rmtree(p)
    return removed


def read_meta(path: str | Path) -> dict:
    return json.loads((Path(path) / "meta.json").read_text())


def check_compatible(path: str | Path, *, model: nn.Module, profile: str) -> None:
    """Raise CheckpointMismatch, naming both sides, when ``path`` was written for another profile or architecture."""
    meta = read_meta(path)
    if meta["profile"] != profile:
        raise CheckpointMismatch(
            f"checkpoint {path} was written by profile '{meta['profile']}' but this run is "
            f"profile '{profile}'; use a separate ckpt_dir per profile or resume=False"
        )
    saved, live = meta["model_config"], model_config(model)
    if saved != live:
        keys = sorted(k for k in set(saved) | set(live) if saved.get(k) != live.get(k))
        diff = ", ".join(f"{k}: checkpoint={saved.get(k)!r} run={live.get(k)!r}" for k in keys[:4])
        raise CheckpointMismatch(
            f"checkpoint {path} holds a {saved.get('_class_name')} that differs from this run's "
            f"{live.get('_class_name')} ({diff}); use a separate ckpt_dir or resume=False"
        )


def load_weights(path: str | Path, *, model: nn.Module, which: str = "model", profile: str = "tiny") -> None:
    """Only the weights of a checkpoint: the trained ones (`which="model"`) or their EMA (`"ema"`)."""
    if which not in ("model", "ema"):
        raise ValueError(f"which must be 'model' or 'ema', got {which!r}")
    path = Path(path)
    check_compatible(path, model=model, profile=profile)
    if not (path / which).is_dir():
        raise CheckpointMismatch(f"checkpoint {path} holds no {which} weights")
    _load_model(path / which, model)


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer=None,
    lr_scheduler=None,
    ema: EMA | None = None,
    profile: str = "tiny",
    restore_rng: bool = True,
    fsdp_groups: GroupNames | None = None,
) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote into the live objects; returns step, epoch, batches_in_epoch,
    seed, loss (None in checkpoints written before it was kept) and history (the loss curve; [] likewise).
    ``fsdp_groups``: the model is sharded (svd.training.fsdp.shard_model's group names); every process loads its
    shard (collective)."""
    path = Path(path)
    check_compatible(path, model=model, profile=profile)
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    if optimizer is not None and trainer["optimizer"] is None:
        raise CheckpointMismatch(f"checkpoint {path} has no optimizer state but this run has an optimizer")
    if fsdp_groups is not None:
        load_full_state(
            model,
            optimizer,
            fsdp_groups,
            _load_state(path / "model"),
            trainer["optimizer"] if optimizer is not None else None,
        )
    else:
        _load_model(path / "model", model)
        if optimizer is not None:
            optimizer.load_state_dict(trainer["optimizer"])
    if lr_scheduler is not None and trainer["lr_scheduler"] is not None:
        lr_scheduler.load_state_dict(trainer["lr_scheduler"])
    if ema is not None:
        if trainer["ema"] is None or not (path / "ema").is_dir():
            raise CheckpointMismatch(f"checkpoint {path} was written without EMA but this run has ema_decay set")
        weights = _load_state(path / "ema")
        ema.load_state_dict({**trainer["ema"], "shadow": {k: shard_like(weights[k], v) for k, v in ema.shadow.items()}})
    if restore_rng:
        set_rng_state(trainer["rng"])
    return {
        **{k: trainer[k] for k in ("step", "epoch", "batches_in_epoch", "seed")},
        "loss": trainer.get("loss"),
        "history": list(trainer.get("history") or []),  # absent in checkpoints written before it was kept
    }
