"""Training windows as a stream: memory bounded by a shuffle buffer, not by the size of the curated set.

The cached path (svd.training.latents.read_windows + a task's `training_set`) decodes and encodes every window
before the first step: right for the tiny profile, impossible for LVD. Here a stage reads its clips unit by unit (a
WebDataset shard from `svd shard`, or a group of clip files), decodes one clip at a time into the same windows the
cached path would take (evenly spaced starts, the same flips), passes them through a shuffle buffer of
`train.stream.buffer` windows, and each micro-batch is encoded by the frozen VAE and text tower when it is taken
(the task's `encode_batch`). What is held at once: the buffer, one clip's windows and one batch.

Order and resume: each epoch shuffles the units by (seed, epoch); process r of N reads units r, r+N, ... of that
order (the usual split by shard, so processes read disjoint data), and its buffer draws from (seed, epoch, r). An
epoch lasts as many steps as the process with the fewest windows can fill, the same number on every process,
computed from metadata before anything is decoded. A checkpoint's (epoch, global batches consumed) resumes by
replaying the epoch's stream up to that point: the same windows in the same order as the uninterrupted run. Unlike
the cached path, a different process count reads a different order (each process owns other units).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from svd.data.clips import ClipRef, CuratedSet, VideoClipDataset, collate, read_frames
from svd.data.shards import ShardSet
from svd.diffusion.conditioning import motion_bucket
from svd.errors import ConfigError, InputError
from svd.training.latents import flip_caption, flip_combinations, flip_video, window_starts


def to_unit(video: torch.Tensor) -> torch.Tensor:
    """uint8 frames (..., 3, H, W) -> float32 in [-1, 1], as the cached path converts them."""
    return video.float().div_(127.5).sub_(1.0)


class WindowStream:
    """The windows of a clip selection, unit by unit. `shards`: read the clips' bytes from these shards (one unit per
    shard); None: from the clip files (units of `clips_per_unit` clips in the set's order)."""

    def __init__(
        self,
        clips: CuratedSet,
        *,
        num_frames: int,
        fps: float,
        size: tuple[int, int],
        windows_per_clip: int,
        augment: Sequence[str] = (),
        caption_probs=(0.5, 0.25, 0.25),
        motion_score_at_255: float = 0.5,
        seed: int = 0,
        buffer: int = 64,
        shards: ShardSet | None = None,
        clips_per_unit: int = 16,
    ):
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        if windows_per_clip < 1:
            raise ValueError(f"windows_per_clip must be >= 1, got {windows_per_clip}")
        self.items = VideoClipDataset(
            clips,
            num_frames,
            fps,
            size,
            caption_probs=caption_probs,
            motion_score_at_255=motion_score_at_255,
            seed=seed,
        )
        self.num_frames, self.fps, self.size = num_frames, fps, tuple(size)
        self.windows_per_clip, self.seed, self.buffer = windows_per_clip, seed, buffer
        self.combos = flip_combinations(augment)
        self.shards = shards
        if shards is not None:
            by_shard: dict[int, list[tuple[ClipRef, int]]] = {}
            for ref, stride in self.items.items:
                if ref.from_source:
                    raise InputError(
                        f"clip {ref.clip_id} has no clip file, so no shard holds it (the uncurated set "
                        f"streams from clip files: train.stream.source: clips)"
                    )
                by_shard.setdefault(shards.shard_of(ref.clip_id), []).append((ref, stride))
            self.units = [by_shard[s] for s in sorted(by_shard)]
            self.unit_shards = sorted(by_shard)
        else:
            if clips_per_unit < 1:
                raise ValueError(f"clips_per_unit must be >= 1, got {clips_per_unit}")
            items = self.items.items
            self.units = [items[i : i + clips_per_unit] for i in range(0, len(items), clips_per_unit)]
            self.unit_shards = None
        self.unit_windows = [
            sum(len(self._starts(ref, stride)) for ref, stride in unit) * len(self.combos) for unit in self.units
        ]
        self.max_held = 0  # the most windows held at once by the last iteration (buffer + one clip's): for tests

    def __len__(self) -> int:
        return sum(self.unit_windows)

    def _starts(self, ref: ClipRef, stride: int) -> np.ndarray:
        return window_starts(ref.n_frames, self.num_frames, stride, self.windows_per_clip)

    def unit_order(self, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
        """The units process `rank` reads in `epoch`, in order."""
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.units)).tolist()
        return order[rank::world]

    def windows_for(self, epoch: int, rank: int, world: int) -> int:
        return sum(self.unit_windows[u] for u in self.unit_order(epoch, rank, world))

    def _clips(self, unit: int) -> Iterator[tuple[ClipRef, int, bytes | None]]:
        """(clip, stride, its bytes or None to read its file) for the clips of a unit, in stored order."""
        if self.shards is None:
            for ref, stride in self.units[unit]:
                yield ref, stride, None
            return
        wanted = {ref.clip_id: (ref, stride) for ref, stride in self.units[unit]}
        for sample in self.shards.read(self.unit_shards[unit], set(wanted)):
            ref, stride = wanted[sample.key]
            yield ref, stride, sample.mp4

    def clip_windows(self, ref: ClipRef, stride: int, data: bytes | None, epoch: int) -> list[dict]:
        """Every window (and flip) of one clip, as the cached path takes them, uint8 (T, 3, H, W) (StreamBatches
        converts each batch with `to_unit`); one decode."""
        starts = self._starts(ref, stride)
        used = sorted({int(s) + k * stride for s in starts for k in range(self.num_frames)})
        if data is None:
            frames = self.items.set.read(ref, used, self.size)
        else:
            frames = read_frames(data, used, self.size, name=f"{ref.clip_id}.mp4 in {self.shards.root}")
        frames = torch.from_numpy(frames).movedim(-1, -3)  # uint8 (F, 3, H, W): 4x less buffer than float
        where = {f: i for i, f in enumerate(used)}
        rng = np.random.default_rng([self.seed, epoch, zlib.crc32(ref.clip_id.encode())])
        bucket = int(motion_bucket(ref.motion_score, self.items.motion_score_at_255))
        out = []
        for start in starts:
            video = frames[[where[int(start) + k * stride] for k in range(self.num_frames)]]
            caption = self.items.caption_for(ref, rng)
            for combo in self.combos:
                v, c = video, caption
                for f in combo:
                    v, c = flip_video(v, f), flip_caption(c, f)
                out.append(
                    {
                        "video": v,
                        "caption": c,
                        "fps_id": int(round(self.fps)) - 1,
                        "motion_bucket": bucket,
                        "clip_id": ref.clip_id,
                    }
                )
        return out

    def iterate(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator[dict]:
        """Process `rank`'s windows of `epoch` through the shuffle buffer."""
        rng = np.random.default_rng([self.seed, epoch, rank, 11])
        buffer: list[dict] = []
        self.max_held = 0
        for unit in self.unit_order(epoch, rank, world):
            for ref, stride, data in self._clips(unit):
                windows = self.clip_windows(ref, stride, data, epoch)
                self.max_held = max(self.max_held, len(buffer) + len(windows))
                for window in windows:
                    if len(buffer) < self.buffer:
                        buffer.append(window)
                        continue
                    j = int(rng.integers(len(buffer)))
                    yield buffer[j]
                    buffer[j] = window
        for j in rng.permutation(len(buffer)):
            yield buffer[j]


class StreamBatches:
    """The loop's batch source (the interface of svd.training.loop.ResumableBatches) over a WindowStream:
    `next_step()` returns this process's `accumulation` micro-batches, each `encode(collated windows)`."""

    def __init__(
        self,
        stream: WindowStream,
        encode: Callable[[dict], dict],
        batch_size: int,
        *,
        rank: int = 0,
        world: int = 1,
        accumulation: int = 1,
        epoch: int = 0,
        consumed: int = 0,
    ):
        self.stream, self.encode, self.batch_size = stream, encode, batch_size
        self.rank, self.world, self.accumulation = rank, world, accumulation
        self.global_batch = batch_size * world * accumulation
        if world > len(stream.units):
            raise ConfigError(
                f"{world} processes but the stream has {len(stream.units)} units (shards or clip "
                f"groups): write smaller shards (shards.samples_per_shard) or use fewer processes"
            )
        self.epoch, self.consumed = epoch, consumed
        self._it: Iterator[dict] | None = None
        self.per_epoch = self.steps_in(epoch)

    def steps_in(self, epoch: int) -> int:
        """Optimizer steps in `epoch`: what the process with the fewest windows can fill (the same on all)."""
        per = min(self.stream.windows_for(epoch, r, self.world) for r in range(self.world))
        steps = per // (self.batch_size * self.accumulation)
        if steps < 1:
            raise ValueError(
                f"epoch {epoch} gives a process {per} windows, less than one step's "
                f"{self.batch_size} x {self.accumulation} (batch per process x accumulation)"
            )
        return steps

    def _open(self) -> None:
        it = self.stream.iterate(self.epoch, self.rank, self.world)
        skip = self.consumed * self.batch_size * self.accumulation  # replay to where the checkpoint was
        self._it = itertools.islice(it, skip, None)

    def next_step(self) -> list[dict]:
        if self.consumed >= self.per_epoch:
            self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
            self.per_epoch = self.steps_in(self.epoch)
        if self._it is None:
            self._open()
        micro = []
        for _ in range(self.accumulation):
            windows = list(itertools.islice(self._it, self.batch_size))
            if len(windows) < self.batch_size:
                raise RuntimeError(f"the stream of epoch {self.epoch} ended early on process {self.rank}")
            batch = collate(windows)
            batch["video"] = to_unit(batch["video"])
            micro.append(self.encode(batch))
        self.consumed += 1
        return micro


@dataclass
class StreamInfo:
    """What a stage reads from its training set besides batches: the empty caption's tokens (row 0 of a caption
    table, for text dropout) and the motion buckets of its clips (the preview's and svd_model.json's)."""

    text: torch.Tensor
    motion_bucket: torch.Tensor


class StreamItems:
    """A streamed training set for svd.training.loop.train: `len` windows per epoch, batches from
    `resumable_batches` (the loop asks for them instead of sampling a map-style dataset)."""

    def __init__(self, stream: WindowStream, encode: Callable[[dict], dict], data: StreamInfo):
        self.stream, self.encode, self.data = stream, encode, data

    def __len__(self) -> int:
        return len(self.stream)

    def resumable_batches(
        self, batch_size: int, *, rank: int, world: int, accumulation: int, epoch: int, consumed: int
    ) -> StreamBatches:
        return StreamBatches(
            self.stream,
            self.encode,
            batch_size,
            rank=rank,
            world=world,
            accumulation=accumulation,
            epoch=epoch,
            consumed=consumed,
        )


__all__ = ["StreamBatches", "StreamInfo", "StreamItems", "WindowStream", "to_unit"]
