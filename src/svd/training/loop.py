"""The training loop: short enough to read in one sitting (nanoGPT), generic over what is trained.

Determinism contract: everything random in step ``s`` derives from (seed, s, rank) and the data order from
(seed, epoch), so a run killed and resumed from its last checkpoint reaches bit-identical weights on CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from svd.training.checkpoint import latest, load_checkpoint, save_checkpoint
from svd.training.ema import EMA

StepFn = Callable[[torch.nn.Module, Any, torch.Generator], torch.Tensor]


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed + step alone would make run seed 1 step 0 == seed 0 step 1)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str = "constant", final_fraction: float = 0.1):
    """LambdaLR factor: linear warm-up over `warmup_steps`, then constant or cosine down to `final_fraction` at
    `total_steps`. A function of the step only, so a resumed run follows the same schedule."""
    import math

    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr schedule must be 'constant' or 'cosine', got {schedule!r}")
    warm = max(1, warmup_steps)

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / warm)
        if schedule == "cosine":
            t = min(1.0, step / max(1, total_steps))
            f *= final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))
        return f

    return factor


def scale_updates(optimizer: torch.optim.Optimizer, parts: list[tuple[torch.nn.Parameter, int, int]],
                  scale: float) -> None:
    """Multiply the optimizer's update of some columns of some parameters by `scale`: each part is (parameter, dim,
    start), the slice start: along dim. Adam's step is about lr whatever the gradient's size, so weights that start at
    zero can only grow by ~lr per step; this gives them their own lr without splitting the tensor (the rest of it
    keeps the group's lr). Exact for AdamW without weight decay (the only decay scaled with it)."""
    if scale == 1.0 or not parts:
        return
    before: list[torch.Tensor] = []

    def keep(opt, args, kwargs):
        before[:] = [p.detach()[_columns(p, d, s)].clone() for p, d, s in parts]

    def rescale(opt, args, kwargs):
        with torch.no_grad():
            for (p, d, s), old in zip(parts, before):
                cols = p.data[_columns(p, d, s)]
                cols.copy_(old + scale * (cols - old))

    optimizer.register_step_pre_hook(keep)
    optimizer.register_step_post_hook(rescale)


def _columns(p: torch.Tensor, dim: int, start: int) -> tuple:
    return (slice(None),) * dim + (slice(start, None),)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA devices too


class ResumableBatches:
    """Batches of a map-style dataset in an order fixed by (seed, epoch), sharded over ranks, resumable mid-epoch.

    ``epoch`` and ``consumed`` (batches of this epoch already handed out) are the whole position; a new iterator
    recreates the epoch's permutation and skips ``consumed`` batches without loading them.
    Augmentation inside the dataset is reproducible across resume with num_workers=0 (it draws from the global RNG
    the loop reseeds each step); with workers, put random augmentation in step_fn using its generator.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0, collate_fn=None, epoch: int = 0, consumed: int = 0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.num_workers, self.collate_fn = rank, world, num_workers, collate_fn
        self.per_epoch = len(dataset) // world // batch_size  # drop_last: every rank takes the same number of steps
        if self.per_epoch < 1:
            raise ValueError(f"dataset of {len(dataset)} items gives no full batch of {batch_size} on {world} ranks")
        self.epoch, self.consumed = epoch, consumed
        self._it = None

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(len(self.dataset), generator=g)[self.rank::self.world].tolist()
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.per_epoch)]

    def _open(self) -> None:
        batches = self._epoch_batches(self.epoch)[self.consumed:]
        # A dedicated generator: DataLoader otherwise draws its worker base seed from the global RNG at iterator
        # creation, which happens at different steps in a resumed run.
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, self.consumed, self.rank))
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=self.collate_fn, generator=g)
        self._it = iter(loader)

    def next(self):
        if self.consumed >= self.per_epoch:
            self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
        if self._it is None:
            self._open()
        batch = next(self._it)
        self.consumed += 1
        return batch


def _batch_len(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0])
    return 1


def train(step_fn: StepFn, model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Dataset, *,
          max_steps: int, ckpt_dir: str | Path, ckpt_every: int, lr_scheduler=None, ema_decay: float | None = None,
          log_every: int = 10, logger: Callable[[dict, int], None] | None = None, seed: int = 0, resume: bool = True,
          accelerator=None, profile: str = "tiny", grad_clip: float | None = 1.0, sample_every: int | None = None,
          sample_fn: Callable[[torch.nn.Module, int], Any] | None = None, batch_size: int = 1, num_workers: int = 0,
          collate_fn=None, keep_last: int | None = None, mixed_precision: str = "no",
          gradient_checkpointing: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``model`` for ``max_steps`` optimizer steps of ``step_fn(model, batch, generator) -> loss``.

    ``accelerator`` (an accelerate.Accelerator) carries device, bf16, DDP/FSDP and gradient accumulation; without
    one, an Accelerator(mixed_precision=...) is made. ``logger(metrics, step)`` gets loss, lr, samples_per_s, epoch
    every ``log_every`` steps on the main process. Checkpoints go to ``ckpt_dir/step-NNNNNN`` every ``ckpt_every``
    steps and at the end; with ``resume`` the newest complete one is loaded first.
    """
    from accelerate import Accelerator
    from accelerate.utils import send_to_device
    from tqdm.auto import tqdm

    started = time.perf_counter()
    accelerator = accelerator or Accelerator(mixed_precision=mixed_precision)
    if gradient_checkpointing:
        if not hasattr(model, "enable_gradient_checkpointing"):
            raise ValueError(f"{type(model).__name__} has no enable_gradient_checkpointing()")
        model.enable_gradient_checkpointing()
    # The scheduler is not prepared: accelerate would step it num_processes times per step; here it steps once
    # per optimizer step, so a schedule means the same thing on 1 GPU and on 8.
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    ema = EMA(raw, ema_decay) if ema_decay else None
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process

    step, epoch, consumed, resumed_from = 0, 0, 0, None
    if resume and (ck := latest(ckpt_dir)) is not None:
        state = load_checkpoint(ck, model=raw, optimizer=optimizer, lr_scheduler=lr_scheduler, ema=ema,
                                profile=profile)
        step, epoch, consumed, resumed_from = state["step"], state["epoch"], state["batches_in_epoch"], state["step"]
    batches = ResumableBatches(data, batch_size, seed=seed, rank=rank, world=world, num_workers=num_workers,
                               collate_fn=collate_fn, epoch=epoch, consumed=consumed)

    def checkpoint(at: int) -> Path | None:
        path = None
        if main:
            path = save_checkpoint(ckpt_dir, at, model=raw, optimizer=optimizer, lr_scheduler=lr_scheduler, ema=ema,
                                   epoch=batches.epoch, batches_in_epoch=batches.consumed, seed=seed,
                                   profile=profile, keep_last=keep_last)
        accelerator.wait_for_everyone()
        return path

    bar = tqdm(total=max_steps, initial=step, disable=not (progress and main), desc=f"train[{profile}]",
               dynamic_ncols=True)
    first_step, last_saved, last_path = step, step if resumed_from is not None else None, None
    window_loss = torch.zeros((), device=accelerator.device)  # summed on device: no host sync per step
    window_n, window_samples, window_t = 0, 0, time.perf_counter()
    loss = None
    model.train()
    while step < max_steps:
        step += 1
        step_seed = derive_seed(seed, step, rank)
        seed_everything(step_seed)  # dropout and in-dataset augmentation draw the same numbers, resumed or not
        batch = send_to_device(batches.next(), accelerator.device)
        generator = torch.Generator(device=accelerator.device).manual_seed(step_seed)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss = step_fn(model, batch, generator)
            accelerator.backward(loss)
            if grad_clip and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if lr_scheduler is not None and accelerator.sync_gradients:
                lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if ema is not None and accelerator.sync_gradients:
            ema.update(raw)

        window_loss += loss.detach().float()
        window_n += 1
        window_samples += _batch_len(batch) * world
        bar.update(1)
        if step % log_every == 0 or step == max_steps:
            mean_loss = accelerator.reduce(window_loss / window_n, reduction="mean").item()  # .item() syncs: only here
            now = time.perf_counter()
            metrics = {"loss": mean_loss, "lr": optimizer.param_groups[0]["lr"],
                       "samples_per_s": window_samples / max(now - window_t, 1e-9), "epoch": batches.epoch}
            bar.set_postfix(loss=f"{mean_loss:.4g}")
            if logger is not None and main:
                logger(metrics, step)
            window_loss.zero_()
            window_n, window_samples, window_t = 0, 0, now
        if sample_fn is not None and sample_every and step % sample_every == 0 and main:
            raw.eval()
            sample_fn(raw, step)
            raw.train()
        if step % ckpt_every == 0 or step == max_steps:
            last_path, last_saved = checkpoint(step), step
    bar.close()
    if last_saved != step:  # max_steps reached before this call began a step (or nothing saved yet)
        last_path = checkpoint(step)

    seconds = time.perf_counter() - started
    done = step - first_step
    return {
        "final_loss": float(loss.detach().float().item()) if loss is not None else None,
        "steps": step,
        "steps_this_run": done,
        "resumed_from": resumed_from,
        "seconds": seconds,
        "samples_per_s": done * batch_size * world / seconds if done and seconds > 0 else None,  # None: no step ran
        "checkpoint": str(last_path) if last_path is not None else (str(latest(ckpt_dir)) if main else None),
    }
