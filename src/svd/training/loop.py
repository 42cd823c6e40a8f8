"""The training loop: short enough to read in one sitting (nanoGPT), generic over what is trained.

Determinism contract: everything random in step ``s`` derives from (seed, s) and the data order from (seed, epoch),
so a run killed and resumed from its last checkpoint reaches bit-identical weights on CPU.

Several processes (DDP under `accelerate launch` / `torchrun`): a step is one optimizer step over a global batch of
batch_size x processes x accumulation samples. Each epoch's permutation is cut into global batches, and process r
takes rows ((m * processes + r) * batch_size ...) of each for its micro-batch m; StepRandom draws the step's noise for
the whole global batch and hands each micro-batch its rows. So a sample sees the same data and the same noise on 1
process or N at the same global batch, the loss curves agree up to the order of the gradient all-reduce's float sums,
and a checkpoint (which counts global batches) resumes under another process count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from svd.training.checkpoint import latest, load_checkpoint, save_checkpoint
from svd.training.ema import EMA

StepFn = Callable[[torch.nn.Module, Any, "StepRandom"], torch.Tensor]


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


def scale_updates(
    optimizer: torch.optim.Optimizer, parts: list[tuple[torch.nn.Parameter, int, int]], scale: float
) -> None:
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


class StepRandom:
    """The random numbers of one micro-batch of one optimizer step, handed to the step function.

    ``randn``, ``rand`` and ``rows`` draw for the whole global batch (``total`` rows) from a generator seeded by the
    step alone and return this micro-batch's rows (``start`` ...): a sample's noise depends on (seed, step, its place
    in the global batch), not on how many processes or accumulation micro-steps share the batch. ``generator`` is a
    plain generator of this process and micro-batch, for draws that cannot be split by row (a VAE posterior's
    sample); a step function uses one kind or the other. With one process and no accumulation both are seeded like
    the loop's earlier single generator, so single-process runs draw exactly what they drew before.
    """

    def __init__(
        self,
        seed: int,
        step: int,
        *,
        rank: int = 0,
        micro: int = 0,
        world: int = 1,
        accumulation: int = 1,
        batch_size: int = 1,
        device: torch.device | str = "cpu",
    ):
        self.start = (micro * world + rank) * batch_size
        self.total: int | None = batch_size * world * accumulation
        self.device = torch.device(device)
        self._global_seed = derive_seed(seed, step, 0)
        self._local_seed = derive_seed(seed, step, rank) if micro == 0 else derive_seed(seed, step, rank, micro)
        self._global: torch.Generator | None = None
        self._local: torch.Generator | None = None

    @classmethod
    def of(cls, generator: torch.Generator) -> StepRandom:
        """One process, one micro-batch, every draw from ``generator`` (tests, benchmarks, scripts)."""
        rng = cls(0, 0, device=generator.device)
        rng._global = rng._local = generator
        rng.total = None
        return rng

    @property
    def global_generator(self) -> torch.Generator:
        if self._global is None:
            self._global = torch.Generator(device=self.device).manual_seed(self._global_seed)
        return self._global

    @property
    def generator(self) -> torch.Generator:
        if self._local is None:
            self._local = torch.Generator(device=self.device).manual_seed(self._local_seed)
        return self._local

    def rows(self, n: int, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        """This micro-batch's n rows of ``draw(total, generator)`` (one row per sample of the global batch)."""
        if self.total is None:
            return draw(n, self.global_generator)
        if self.start + n > self.total:
            raise ValueError(
                f"a micro-batch of {n} rows from row {self.start} overruns the global batch of {self.total}"
            )
        return draw(self.total, self.global_generator)[self.start : self.start + n]

    def randn(self, shape, **kw) -> torch.Tensor:
        shape = tuple(shape)
        return self.rows(shape[0], lambda k, g: torch.randn((k, *shape[1:]), generator=g, device=self.device, **kw))

    def rand(self, n: int, **kw) -> torch.Tensor:
        return self.rows(n, lambda k, g: torch.rand(k, generator=g, device=self.device, **kw))


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA devices too


class ResumableBatches:
    """This process's micro-batches of a map-style dataset, in an order fixed by (seed, epoch), resumable mid-epoch.

    Each epoch's permutation is cut into global batches of batch_size x world x accumulation items (drop_last: every
    process takes the same number of steps); ``next_step()`` returns this process's ``accumulation`` micro-batches of
    the next one. ``epoch`` and ``consumed`` (global batches of this epoch already taken) are the whole position,
    the same on every process and under any process count that keeps the global batch; a new iterator recreates
    the epoch's permutation and skips what was consumed without loading it.
    Augmentation inside the dataset is reproducible across resume with num_workers=0 (it draws from the global RNG
    the loop reseeds each step); with workers, put random augmentation in step_fn using its generator.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        accumulation: int = 1,
        num_workers: int = 0,
        collate_fn=None,
        epoch: int = 0,
        consumed: int = 0,
    ):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.accumulation = rank, world, accumulation
        self.num_workers, self.collate_fn = num_workers, collate_fn
        self.global_batch = batch_size * world * accumulation
        self.per_epoch = len(dataset) // self.global_batch
        if self.per_epoch < 1:
            raise ValueError(
                f"dataset of {len(dataset)} items gives no full global batch of {self.global_batch} "
                f"({batch_size} per process x {world} processes x {accumulation} accumulation steps)"
            )
        self.epoch, self.consumed = epoch, consumed
        self._it = None

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches of the epoch, in the order the steps take them."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        b, out = self.batch_size, []
        for step in range(self.per_epoch):
            chunk = order[step * self.global_batch : (step + 1) * self.global_batch]
            for micro in range(self.accumulation):
                start = (micro * self.world + self.rank) * b
                out.append(chunk[start : start + b])
        return out

    def _open(self) -> None:
        batches = self._epoch_batches(self.epoch)[self.consumed * self.accumulation :]
        # A dedicated generator: DataLoader otherwise draws its worker base seed from the global RNG at iterator
        # creation, which happens at different steps in a resumed run.
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, self.consumed, self.rank))
        loader = DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=self.collate_fn, generator=g
        )
        self._it = iter(loader)

    def next_step(self) -> list:
        if self.consumed >= self.per_epoch:
            self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
        if self._it is None:
            self._open()
        micro_batches = [next(self._it) for _ in range(self.accumulation)]
        self.consumed += 1
        return micro_batches


def _batch_len(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0])
    return 1


def train(
    step_fn: StepFn,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    *,
    max_steps: int,
    ckpt_dir: str | Path,
    ckpt_every: int,
    lr_scheduler=None,
    ema_decay: float | None = None,
    log_every: int = 10,
    logger: Callable[[dict, int], None] | None = None,
    seed: int = 0,
    resume: bool = True,
    accelerator=None,
    profile: str = "tiny",
    grad_clip: float | None = 1.0,
    sample_every: int | None = None,
    sample_fn: Callable[[torch.nn.Module, int], Any] | None = None,
    probe_every: int | None = None,
    probe_fn: Callable[[torch.nn.Module, int], Any] | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn=None,
    keep_last: int | None = None,
    mixed_precision: str = "no",
    gradient_checkpointing: bool = False,
    progress: bool = True,
    gradient_accumulation: int = 1,
    parallel: str = "ddp",
) -> dict[str, Any]:
    """Train ``model`` for ``max_steps`` optimizer steps of ``step_fn(model, batch, rng: StepRandom) -> loss``.

    ``data``: a map-style dataset, or a streamed set with a ``resumable_batches(batch_size, rank=, world=,
    accumulation=, epoch=, consumed=)`` batch source (svd.training.stream.StreamItems).
    ``batch_size`` is per process and micro-batch: a step takes batch_size x processes x ``gradient_accumulation``
    samples. ``accelerator`` (an accelerate.Accelerator) carries device, bf16 and DDP/FSDP; without one, an
    Accelerator(mixed_precision=...) is made (under `accelerate launch` it joins the process group).
    ``logger(metrics, step)`` gets loss, lr, samples_per_s, epoch every ``log_every`` steps on the main process.
    Checkpoints go to ``ckpt_dir/step-NNNNNN`` every ``ckpt_every`` steps and at the end, written by the main
    process; with ``resume`` the newest complete one is loaded first, on every process.
    ``parallel``: "ddp" (each process holds the whole model) or "fsdp" (parameters, gradients and optimizer state
    sharded, svd.training.fsdp; with one process it is plain training). Sharded runs sample no previews: a forward
    of a sharded model is collective, and previews run on the main process alone.
    ``probe_fn(model, step)`` runs every ``probe_every`` steps like the previews (main process, eval mode): the
    caller's measurement of the model in training (the CLI's word-gap probe), which training itself never imports.
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
    if parallel not in ("ddp", "fsdp"):
        raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    fsdp_groups = None
    if parallel == "fsdp" and world > 1:
        from svd.training.fsdp import full_model_state, full_optimizer_state, full_tensors, shard_model

        model.to(accelerator.device)
        fsdp_groups = shard_model(model, optimizer)  # torch FSDP2 itself: accelerate's plugin is DDP on a CPU
        raw = model
    else:
        # The scheduler is not prepared: accelerate would step it num_processes times per step; here it steps once
        # per optimizer step, so a schedule means the same thing on 1 GPU and on 8.
        model, optimizer = accelerator.prepare(model, optimizer)
        raw = accelerator.unwrap_model(model)
    ema = EMA(raw, ema_decay) if ema_decay else None

    step, epoch, consumed, resumed_from, last_loss = 0, 0, 0, None, None
    history: list[dict] = []  # {"step", "loss"} at every log step: the curve a resumed run continues
    if resume and (ck := latest(ckpt_dir)) is not None:
        state = load_checkpoint(
            ck,
            model=raw,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            ema=ema,
            profile=profile,
            fsdp_groups=fsdp_groups,
        )
        step, epoch, consumed, resumed_from = state["step"], state["epoch"], state["batches_in_epoch"], state["step"]
        last_loss = state["loss"]
        history = [row for row in state["history"] if row["step"] <= step]
    if gradient_accumulation < 1:
        raise ValueError(f"gradient_accumulation must be >= 1, got {gradient_accumulation}")
    if hasattr(data, "resumable_batches"):  # a streamed set (svd.training.stream) brings its own batch source
        batches = data.resumable_batches(
            batch_size, rank=rank, world=world, accumulation=gradient_accumulation, epoch=epoch, consumed=consumed
        )
    else:
        batches = ResumableBatches(
            data,
            batch_size,
            seed=seed,
            rank=rank,
            world=world,
            accumulation=gradient_accumulation,
            num_workers=num_workers,
            collate_fn=collate_fn,
            epoch=epoch,
            consumed=consumed,
        )

    def checkpoint(at: int) -> Path | None:
        nonlocal last_loss
        path = None
        if loss is not None:
            last_loss = accelerator.reduce(loss, reduction="mean").item()  # every process: a collective
        full = None
        if fsdp_groups is not None:  # consolidate on the main process: every process takes part
            full = {"model": full_model_state(model), "optimizer": full_optimizer_state(model, optimizer, fsdp_groups)}
            if ema is not None:
                full["ema"] = full_tensors(ema.shadow)
        if main:
            path = save_checkpoint(
                ckpt_dir,
                at,
                model=raw,
                optimizer=optimizer,
                lr_scheduler=lr_scheduler,
                ema=ema,
                epoch=batches.epoch,
                batches_in_epoch=batches.consumed,
                seed=seed,
                profile=profile,
                keep_last=keep_last,
                loss=last_loss,
                full_state=full,
                history=history,
            )
        accelerator.wait_for_everyone()
        return path

    bar = tqdm(
        total=max_steps, initial=step, disable=not (progress and main), desc=f"train[{profile}]", dynamic_ncols=True
    )
    first_step, last_saved, last_path = step, step if resumed_from is not None else None, None
    window_loss = torch.zeros((), device=accelerator.device)  # summed on device: no host sync per step
    window_n, window_samples, window_t = 0, 0, time.perf_counter()
    loss = None
    model.train()
    accumulation = gradient_accumulation
    while step < max_steps:
        step += 1
        seed_everything(derive_seed(seed, step, rank))  # dropout, in-dataset augmentation: the same when resumed
        step_loss = torch.zeros((), device=accelerator.device)
        for micro, batch in enumerate(batches.next_step()):
            batch = send_to_device(batch, accelerator.device)
            rng = StepRandom(
                seed,
                step,
                rank=rank,
                micro=micro,
                world=world,
                accumulation=accumulation,
                batch_size=batch_size,
                device=accelerator.device,
            )
            last = micro == accumulation - 1
            # gradients are all-reduced (FSDP: reduce-scattered) once per step, on the last micro-batch
            if fsdp_groups is not None:
                model.set_requires_gradient_sync(last)
                sync = contextlib.nullcontext()
            else:
                sync = contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(model)
            with sync:
                with accelerator.autocast():
                    loss = step_fn(model, batch, rng)
                accelerator.backward(loss / accumulation if accumulation > 1 else loss)
            step_loss += loss.detach().float()
            window_samples += _batch_len(batch) * world
        if grad_clip and fsdp_groups is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # the norm over every shard
        elif grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(raw)

        loss = step_loss / accumulation
        window_loss += loss
        window_n += 1
        bar.update(1)
        if step % log_every == 0 or step == max_steps:
            mean_loss = accelerator.reduce(window_loss / window_n, reduction="mean").item()  # .item() syncs: only here
            now = time.perf_counter()
            metrics = {
                "loss": mean_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": window_samples / max(now - window_t, 1e-9),
                "epoch": batches.epoch,
            }
            bar.set_postfix(loss=f"{mean_loss:.4g}")
            history.append({"step": step, "loss": mean_loss})
            if logger is not None and main:
                logger(metrics, step)
            window_loss.zero_()
            window_n, window_samples, window_t = 0, 0, now
        for every, hook in ((sample_every, sample_fn), (probe_every, probe_fn)):
            if hook is not None and every and step % every == 0 and main and fsdp_groups is None:
                raw.eval()
                hook(raw, step)
                raw.train()
        if step % ckpt_every == 0 or step == max_steps:
            last_path, last_saved = checkpoint(step), step
    bar.close()
    if last_saved != step:  # max_steps reached before this call began a step (or nothing saved yet)
        last_path = checkpoint(step)

    seconds = time.perf_counter() - started
    done = step - first_step
    return {
        "final_loss": last_loss,  # the last step's loss, averaged over processes (kept in the checkpoint)
        "history": history,  # the loss at every log step since step 1 (resumed runs included)
        "steps": step,
        "steps_this_run": done,
        "resumed_from": resumed_from,
        "seconds": seconds,
        "samples_per_s": done * batches.global_batch / seconds if done and seconds > 0 else None,  # None: no step ran
        "checkpoint": str(last_path) if last_path is not None else (str(latest(ckpt_dir)) if main else None),
    }
