"""UCF-101 zero-shot text-to-video FVD (paper App. E.4; REFERENCE.md, Evaluation), and the world's stand-in for it.

The protocol: N samples following the class distribution of the real set, the prompt is the class name, F frames at
R fps, classifier-free guidance 7, generated at `size`, resized (bilinear, antialiased) to `resize`, centre-cropped
to `crop`; then the FVD feature extractor (`svd.evaluation.fvd`) takes the first `evaluate.fvd.frames` frames and
preprocesses them exactly once. Real clips are subsampled to R fps (every round(native / R)-th frame), resized to
cover `crop` and centre-cropped to it (UCF-101's 320x240 frames already are the paper's 240x320 crop).

The real set is UCF-101 (`evaluate.video.ucf101_root`: <Class>/v_*.avi, optionally one split list), or, when that
key is null, the shapes world's held-aside action clips (<paths.world>/eval/actions.parquet; class_name = prompt).
World numbers compare runs of this project with each other, never with the paper's.

Generation is sharded and resumable. The sample list is a pure function of the params: sample i has the class
chosen by apportionment, seed `seed + i`, and file samples/NNNNNN.mp4. It is cut into chunks of `batch` samples, and
a chunk is always generated as one sampler call with the same members, so a sample's pixels do not depend on how
the list was sharded or how often the run was killed (CPU sampling is not batch-invariant in the last bit, so the
chunk is the unit). Shard i/n takes a contiguous block of chunks; a chunk with any file missing is generated again
and only its missing files are written (each written under a temporary name and renamed, so a kill never leaves a
half-written sample that counts as done). Samples are lossless H.264 by default (`crf: 0`): x264 at a lossy crf
encoded the same frames to different pixels from run to run here (it reads uninitialised memory), lossless decodes
to exactly the generated pixels (after yuv420p). plan.json fingerprints the model and the protocol: an out-dir made
by another model or protocol is emptied first (a DVC `persist` output re-used after retraining).

When every sample exists, the run scores them: FVD against the real set's statistics (cached as .npz and refused
when another extractor, protocol or real set made them), and the world evaluator's colour/direction accuracy for
prompts it can parse (the world's; UCF-101 class names have no colour or direction to check). The two see different
faults: FVD on the world net's logits (one head per attribute plus an order head, svd.evaluation.i3d) rises for
clips shuffled in time, frozen or with jumping objects (svd.evaluation.fvd_sanity measures each), but not for a
reversed clip (left and right are equally common classes), which the world evaluator fails.

Out-dir layout: samples/NNNNNN.mp4, manifest.parquet (index, class_name, prompt, seed, file), plan.json,
scores.parquet (per-sample world judgements), report.md (our number beside the paper's rows).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from svd.errors import InputError, WeightsError

KEY = "evaluate.video"
PLAN_FILE = "plan.json"
MANIFEST_FILE = "manifest.parquet"
SCORES_FILE = "scores.parquet"
FEATURES_FILE = "features.npz"  # both feature sets and per-sample verdicts, for paired comparisons (registry gate)
REPORT_FILE = "report.md"
SAMPLES_DIR = "samples"
UCF_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")

# UCF-101 zero-shot FVD as the paper reports it (lower is better)
PAPER_FVD = [
    ("SVD (paper)", 242.02),
    ("PYoCo", 355.20),
    ("Make-A-Video", 367.23),
    ("Video LDM", 550.61),
    ("MagicVideo", 655.00),
    ("CogVideo (EN)", 701.59),
]
PAPER_PROTOCOL = {
    "frames": 16,
    "fps": 25.0,
    "size": (320, 576),
    "resize": (240, 432),
    "crop": (240, 320),
    "guidance": 7.0,
    "n_samples": 13320,
}

Log = Callable[[str], None]


# ---------------------------------------------------------------- the clip protocol


@dataclass(frozen=True)
class ClipProtocol:
    frames: int
    fps: float
    size: tuple[int, int]  # generated (H, W)
    resize: tuple[int, int]
    crop: tuple[int, int]

    @classmethod
    def of(cls, vcfg) -> ClipProtocol:
        p = cls(int(vcfg.frames), float(vcfg.fps), tuple(vcfg.size), tuple(vcfg.resize), tuple(vcfg.crop))
        if p.crop[0] > p.resize[0] or p.crop[1] > p.resize[1]:
            raise InputError(f"{KEY}.crop {list(p.crop)} is larger than {KEY}.resize {list(p.resize)}")
        if p.size[0] % 2 or p.size[1] % 2:
            raise InputError(f"{KEY}.size {list(p.size)} must be even (H.264 samples)")
        return p

    def describe(self) -> str:
        (h, w), (rh, rw), (ch, cw) = self.size, self.resize, self.crop
        return (
            f"clips={self.frames}@{self.fps:g}fps;generated={h}x{w}->resize={rh}x{rw},bilinear,antialias"
            f"->crop=centre-{ch}x{cw};real=cover-{ch}x{cw},centre"
        )


def resize_video(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, h, w, 3), bilinear with antialiasing (a plain bilinear downscale aliases)."""
    t, h, w, _ = video.shape
    if (h, w) == tuple(size):
        return video
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def centre_crop(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = video.shape[1:3]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} out of {h}x{w}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return video[:, top : top + ch, left : left + cw]


def generated_view(video: np.ndarray, protocol: ClipProtocol) -> np.ndarray:
    """A generated sample as the FVD extractor sees it: resized to `resize`, centre crop `crop`."""
    return centre_crop(resize_video(video, protocol.resize), protocol.crop)


def real_view(video: np.ndarray, protocol: ClipProtocol) -> np.ndarray:
    """A real clip as the FVD extractor sees it: resized (aspect kept) to cover `crop`, centre crop `crop`."""
    h, w = video.shape[1:3]
    ch, cw = protocol.crop
    scale = max(ch / h, cw / w)
    covered = (max(ch, round(h * scale)), max(cw, round(w * scale)))
    return centre_crop(resize_video(video, covered), protocol.crop)


def read_clip(path: Path, frames: int, stride: int = 1) -> np.ndarray:
    """(frames, H, W, 3) uint8: every `stride`-th frame from the start, decoding no further than needed."""
    from svd.io.video import VideoReadError, iter_frames

    gen = iter_frames(path)
    try:
        got = list(islice(gen, 0, frames * stride, stride))
    except VideoReadError as exc:
        raise InputError(f"{path}: {exc}") from None
    finally:
        gen.close()
    if len(got) < frames:
        raise InputError(f"{path} has {len(got)} frames at stride {stride}; the protocol takes {frames}")
    return np.stack(got)


def stride_for(native_fps: float, fps: float) -> int:
    return max(1, int(round(native_fps / fps)))


# ---------------------------------------------------------------- the real set


@dataclass(frozen=True)
class RealClip:
    file: Path
    class_name: str
    prompt: str
    fps: float | None  # None: read from the container


@dataclass(frozen=True)
class RealSet:
    clips: tuple[RealClip, ...]
    source: str  # "ucf101:<root>[:<split>]" or "world:<actions.parquet>"
    kind: str  # "ucf101" | "world"

    def classes(self) -> list[tuple[str, str, int]]:
        """(class_name, prompt, clip count) in sorted class order."""
        counts: dict[str, int] = {}
        prompts: dict[str, str] = {}
        for c in self.clips:
            counts[c.class_name] = counts.get(c.class_name, 0) + 1
            prompts[c.class_name] = c.prompt
        return [(name, prompts[name], counts[name]) for name in sorted(counts)]

    def digest(self) -> str:
        """Which clips: names and byte sizes (cheap for 13,320 files; a changed file changes its size or name)."""
        h = hashlib.sha256()
        for c in self.clips:
            h.update(f"{c.class_name}\t{c.file.name}\t{c.file.stat().st_size}\n".encode())
        return h.hexdigest()[:16]


def class_prompt(name: str) -> str:
    """UCF-101's CamelCase class names as words: 'ApplyEyeMakeup' -> 'apply eye makeup' (the paper: the prompt is
    the class name; it says no more)."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b|\d)|[A-Z]?[a-z]+|\d+", name)
    return " ".join(w.lower() for w in words) if words else name


def read_ucf101(root: str | Path, split: str | None = None) -> RealSet:
    """UCF-101 as released: <root>/<Class>/v_<Class>_gXX_cYY.avi; `split` a list file of <Class>/<file> lines
    (ucfTrainTestlist/trainlist01.txt, testlist01.txt; a trailing label is ignored), relative to the root."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(
            f"{KEY}.ucf101_root: no such folder {root} (UCF-101's <Class>/v_*.avi; null = the world's "
            f"held-aside action clips)"
        )
    if split:
        listing = Path(split) if Path(split).is_absolute() else root / split
        if not listing.is_file():
            raise InputError(f"{KEY}.ucf101_split: no such file {listing}")
        rels = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        files = [root / r for r in rels]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(
                f"{KEY}.ucf101_split: {len(missing)} listed video(s) missing under {root}, e.g. {missing[0]}"
            )
    else:
        files = sorted(
            p
            for d in root.iterdir()
            if d.is_dir()
            for p in d.iterdir()
            if p.is_file() and p.suffix.lower() in UCF_SUFFIXES
        )
    if not files:
        raise InputError(f"{KEY}.ucf101_root: {root} holds no videos in class folders (<Class>/v_*.avi)")
    clips = tuple(
        RealClip(f, f.parent.name, class_prompt(f.parent.name), None)
        for f in sorted(files, key=lambda p: (p.parent.name, p.name))
    )
    return RealSet(clips, f"ucf101:{root}" + (f":{split}" if split else ""), "ucf101")


def read_world_actions(world: str | Path) -> RealSet:
    """The world's held-aside action clips (a UCF-101 stand-in): eval/actions.parquet (file, class_name, fps)."""
    import pandas as pd

    table = Path(world) / "eval" / "actions.parquet"
    if not table.is_file():
        raise InputError(f"no world action clips at {table}: run `svd world` (or set {KEY}.ucf101_root)")
    rows = pd.read_parquet(table).to_dict("records")
    clips = []
    for row in rows:
        path = Path(world) / row["file"]
        if not path.is_file():
            raise InputError(f"{table} lists {row['file']}, which is missing under {world}")
        clips.append(RealClip(path, str(row["class_name"]), str(row["class_name"]), float(row["fps"])))
    if not clips:
        raise InputError(f"{table} lists no clips")
    return RealSet(tuple(sorted(clips, key=lambda c: (c.class_name, c.file.name))), f"world:{table}", "world")


def real_set(params) -> RealSet:
    vcfg = params.evaluate.video
    if vcfg.ucf101_root is not None:
        return read_ucf101(vcfg.ucf101_root, vcfg.ucf101_split)
    return read_world_actions(params.paths.world)


# ---------------------------------------------------------------- statistics


def stats_description(extractor, protocol: ClipProtocol) -> str:
    """What makes two statistics comparable: the extractor (weights digest, feature, its preprocessing) and the
    clip protocol in front of it."""
    return f"{extractor.description};{protocol.describe()}"


def _stream_stats(videos, extractor, description: str):
    stats = extractor.stats_of_stream(videos, keep_features=True)
    return dataclasses.replace(stats, extractor=description)


def real_stats(
    real: RealSet, protocol: ClipProtocol, extractor, cache: str | Path | None = None, log: Log | None = None
):
    """Feature statistics of the real set under the protocol; read from `cache` when it holds exactly these
    (extractor, protocol, real set), computed and written there when it is missing. A cache made another way is
    refused (an InputError saying how to recompute), never silently replaced: it is a DVC output of its own stage."""
    from svd.evaluation.fvd import load_stats, save_stats

    description = stats_description(extractor, protocol)
    keyed = f"{description};real={real.kind}:{real.digest()},n={len(real.clips)}"
    path = Path(cache) if cache is not None else None
    if path is not None and path.is_file():
        try:
            stats = load_stats(path, expect_extractor=keyed)
        except InputError as exc:
            raise InputError(f"{KEY}.real_stats: {exc} (run `svd evaluate train-features`, or delete {path})") from None
        if stats.features is None:
            raise InputError(
                f"{KEY}.real_stats: {path} holds no feature vectors (written by an older svd; the intervals "
                f"resample them): run `svd evaluate train-features`, or delete it"
            )
        return dataclasses.replace(stats, extractor=description)

    def videos() -> Iterator[np.ndarray]:
        from svd.io.video import VideoReadError, probe

        for clip in real.clips:
            fps = clip.fps
            if fps is None:
                try:
                    fps = probe(clip.file).fps
                except VideoReadError as exc:
                    raise InputError(f"{clip.file}: {exc}") from None
            yield real_view(read_clip(clip.file, protocol.frames, stride_for(fps, protocol.fps)), protocol)

    started = time.perf_counter()
    stats = _stream_stats(videos(), extractor, keyed)
    if log:
        log(f"real set: {stats.n} clips in {time.perf_counter() - started:.1f} s ({real.source})")
    if path is not None:
        save_stats(path, stats)
    return dataclasses.replace(stats, extractor=description)


def sample_stats(out: Path, samples: list[Sample], protocol: ClipProtocol, extractor):
    description = stats_description(extractor, protocol)
    videos = (generated_view(read_clip(out / s.file, protocol.frames), protocol) for s in samples)
    return _stream_stats(videos, extractor, description)


# ---------------------------------------------------------------- the sample plan


@dataclass(frozen=True)
class Sample:
    index: int
    class_name: str
    prompt: str
    seed: int
    file: str  # relative to the out-dir


def apportion(counts: list[int], n: int) -> list[int]:
    """n split over classes in proportion to counts (largest remainder; ties to the earlier class). With n equal to
    the number of real clips (the paper's 13,320) every class gets exactly its own count."""
    total = sum(counts)
    if total <= 0:
        raise ValueError("no real clips to follow")
    exact = [n * c / total for c in counts]
    quota = [math.floor(e) for e in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: n - sum(quota)]:
        quota[i] += 1
    return quota


def sample_plan(real: RealSet, n: int, seed: int) -> list[Sample]:
    out: list[Sample] = []
    classes = real.classes()
    for (name, prompt, _), q in zip(classes, apportion([c for _, _, c in classes], n)):
        for _ in range(q):
            i = len(out)
            out.append(Sample(i, name, prompt, seed + i, f"{SAMPLES_DIR}/{i:06d}.mp4"))
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise InputError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m[1]), int(m[2])


def chunk_bounds(n: int, batch: int) -> list[tuple[int, int]]:
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


def shard_chunks(chunks: list[tuple[int, int]], shard: tuple[int, int]) -> list[tuple[int, int]]:
    """A contiguous block of whole chunks per shard: the shards partition the chunks."""
    i, n = shard
    c = len(chunks)
    return chunks[i * c // n : (i + 1) * c // n]


# ---------------------------------------------------------------- the out-dir


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Shards starting together check and reset the out-dir one at a time."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def prepare_out(out: Path, plan: dict, samples: list[Sample], log: Log | None = None) -> bool:
    """Make `out` hold this plan: kept when plan.json has the same fingerprint (a resumed or sharded run), else
    emptied and re-planned. Returns True when kept."""
    import pandas as pd

    with _locked(out):
        old = out / PLAN_FILE
        if old.is_file():
            try:
                same = json.loads(old.read_text()).get("fingerprint") == plan["fingerprint"]
            except ValueError:
                same = False
            if same and (out / MANIFEST_FILE).is_file():
                return True
            if log:
                log(f"{out} holds samples of another model or protocol: starting it over")
        for item in out.iterdir():
            if item.name == ".lock":
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        (out / SAMPLES_DIR).mkdir()
        frame = pd.DataFrame([dataclasses.asdict(s) for s in samples])
        _write_atomic(out / MANIFEST_FILE, lambda p: frame.to_parquet(p, index=False))
        _write_atomic(out / PLAN_FILE, lambda p: p.write_text(json.dumps(plan, indent=2) + "\n"))
        return False


def read_manifest(out: Path) -> list[Sample]:
    import pandas as pd

    path = Path(out) / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"no sample manifest {path}")
    return [
        Sample(int(r["index"]), str(r["class_name"]), str(r["prompt"]), int(r["seed"]), str(r["file"]))
        for r in pd.read_parquet(path).to_dict("records")
    ]


def model_digest(folder: Path, meta: dict) -> str:
    from svd import tracking

    parts = [json.dumps(meta, sort_keys=True), tracking.hash_path(folder / "unet")]
    parts.append(tracking.hash_path(folder / "vae") if meta.get("vae") == "vae" else str(meta.get("vae")))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def make_plan(params, folder: Path, meta: dict, real: RealSet, protocol: ClipProtocol) -> dict:
    vcfg, sampler = params.evaluate.video, params.diffusion.sampler
    body = {
        "model": model_digest(folder, meta),
        "classes": [[name, prompt, count] for name, prompt, count in real.classes()],
        "n_samples": vcfg.n_samples,
        "frames": protocol.frames,
        "fps": protocol.fps,
        "size": list(protocol.size),
        "guidance": vcfg.guidance,
        "steps": vcfg.steps,
        "seed": vcfg.seed,
        "batch": vcfg.batch,
        "crf": vcfg.crf,
        "sampler": sampler.model_dump(),
        "sigma_data": params.diffusion.sigma_data,
        "motion_bucket": meta["motion_bucket"],
    }
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {"fingerprint": fingerprint, "model_dir": str(folder), **body}


# ---------------------------------------------------------------- generation


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def generate_missing(
    params,
    load: Callable[[], dict],
    out: Path,
    samples: list[Sample],
    protocol: ClipProtocol,
    shard: tuple[int, int],
    log: Log | None = None,
) -> list[int]:
    """Generate this shard's chunks that have a sample file missing; write only the missing files. Returns the
    indices written. `load()` gives the model; it is called only when something is missing (a re-score of a
    finished out-dir never loads the UNet)."""
    from svd.io.video import write_video
    from svd.tasks.text_to_video import generate
    from svd.training.stages import vae_downsampling

    vcfg, sampler = params.evaluate.video, params.diffusion.sampler
    mine = shard_chunks(chunk_bounds(len(samples), vcfg.batch), shard)
    for partial in (out / SAMPLES_DIR).glob(".*.partial.mp4"):  # a killed run's half-written files of this shard
        index = int(partial.name.split(".")[1])
        if any(s <= index < e for s, e in mine):
            partial.unlink(missing_ok=True)
    todo = [(s, e) for s, e in mine if any(not (out / samples[i].file).is_file() for i in range(s, e))]
    if log:
        done = sum(e - s for s, e in mine) - sum(e - s for s, e in todo)
        log(
            f"shard {shard[0]}/{shard[1]}: {len(mine)} chunk(s), {done} sample(s) already written, "
            f"{len(todo)} chunk(s) to generate"
        )
    if not todo:
        return []
    loaded = load()
    factor = vae_downsampling(loaded["vae"])
    if protocol.size[0] % factor or protocol.size[1] % factor:
        raise InputError(f"{KEY}.size {list(protocol.size)} is not divisible by the model's VAE downsampling {factor}")
    latent = (protocol.size[0] // factor, protocol.size[1] // factor)
    written: list[int] = []
    for k, (s, e) in enumerate(todo):
        started = time.perf_counter()
        part = samples[s:e]
        # one call per chunk with seed + s: sample i gets seed + i (svd.tasks.text_to_video.generate)
        videos = generate(
            loaded["unet"],
            loaded["vae"],
            loaded["text"],
            [x.prompt for x in part],
            latent_size=latent,
            num_frames=protocol.frames,
            steps=vcfg.steps,
            guidance=vcfg.guidance,
            seed=vcfg.seed + s,
            fps=protocol.fps,
            motion_bucket=loaded["meta"]["motion_bucket"],
            sigma_min=sampler.sigma_min,
            sigma_max=sampler.sigma_max,
            rho=sampler.rho,
            method=sampler.method,
            sigma_data=params.diffusion.sigma_data,
            batch=e - s,
        )
        for sample, video in zip(part, videos):
            target = out / sample.file
            if target.is_file():
                continue
            tmp = target.with_name(f".{sample.index:06d}.{os.getpid()}.partial.mp4")
            write_video(tmp, video, protocol.fps, crf=vcfg.crf)
            os.replace(tmp, target)
            written.append(sample.index)
        if log:
            log(f"chunk {k + 1}/{len(todo)}: samples {s}-{e - 1} in {time.perf_counter() - started:.1f} s")
    return written


def load_for_sampling(params, folder: Path) -> dict:
    from svd.training.stages import load_model

    loaded = load_model(folder)
    device = _device(params.evaluate.video.device)
    for part in ("unet", "vae", "text"):
        loaded[part] = loaded[part].to(device)
    return loaded


# ---------------------------------------------------------------- scoring


def world_scores(out: Path, samples: list[Sample], protocol: ClipProtocol) -> tuple[dict | None, list[dict]]:
    """The world evaluator on every sample whose prompt it can parse (on the whole generated frame)."""
    from svd.evaluation.world import judge, parse_prompt

    rows = []
    for s in samples:
        try:
            prompt = parse_prompt(s.prompt)
        except ValueError:
            continue
        verdict = judge(read_clip(out / s.file, protocol.frames), prompt, protocol.fps)
        rows.append(
            {
                "index": s.index,
                "prompt": s.prompt,
                "colour_present": verdict["colour_present"],
                "colour_fraction": verdict["colour_fraction"],
                "direction": verdict["direction"],
                "direction_correct": verdict["direction_correct"],
            }
        )
    if not rows:
        return None, []
    return {
        "colour_accuracy": float(np.mean([r["colour_present"] for r in rows])),
        "direction_accuracy": float(np.mean([r["direction_correct"] for r in rows])),
        "n_judged": len(rows),
    }, rows


def score_intervals(real, fake, rows: list[dict], bootstrap: dict) -> dict[str, float]:
    """Bootstrap intervals (evaluate.video.bootstrap) of FVD (real set and samples resampled) and of the world
    scores (samples resampled): {"fvd_lo", "fvd_hi", "colour_accuracy_lo", ...}; {} without rounds."""
    from svd.evaluation.fvd import fvd_interval
    from svd.evaluation.intervals import mean_interval

    rounds, seed = bootstrap["rounds"], bootstrap["seed"]
    out: dict[str, float] = {}
    fvd = fvd_interval(real.features, fake.features, rounds=rounds, seed=seed)
    if fvd:
        out.update({"fvd_lo": fvd["lo"], "fvd_hi": fvd["hi"]})
    for key, column in (("colour_accuracy", "colour_present"), ("direction_accuracy", "direction_correct")):
        if rows:
            m = mean_interval([r[column] for r in rows], rounds=rounds, seed=seed)
            if "lo" in m:
                out.update({f"{key}_lo": m["lo"], f"{key}_hi": m["hi"]})
    return out


def save_features(path: Path, real, fake, samples: list[Sample], rows: list[dict]) -> None:
    """What a later paired comparison needs (svd.registry's gate): both feature sets, the per-sample world
    verdicts by sample index (NaN: not judged), and what makes two evaluations comparable (the extractor and the
    real set, the sample plan)."""
    n = len(samples)
    colour, direction = np.full(n, np.nan), np.full(n, np.nan)
    for r in rows:
        colour[r["index"]], direction[r["index"]] = float(r["colour_present"]), float(r["direction_correct"])
    plan = hashlib.sha256(json.dumps([[s.index, s.prompt, s.seed] for s in samples]).encode()).hexdigest()[:16]
    with open(path, "wb") as f:
        np.savez(
            f,
            real=real.features,
            fake=fake.features,
            colour_accuracy=colour,
            direction_accuracy=direction,
            extractor=np.str_(real.extractor),
            real_n=np.int64(real.n),
            plan=np.str_(plan),
        )


def score_samples(
    out: Path,
    samples: list[Sample],
    real: RealSet,
    protocol: ClipProtocol,
    extractor,
    real_cache: str | Path | None = None,
    log: Log | None = None,
    bootstrap: dict | None = None,
) -> dict[str, Any]:
    """FVD of the out-dir's samples against the real set, plus the world evaluator where prompts allow. The same
    function scores any folder laid out like `svd evaluate video` writes it (samples/ + manifest.parquet)."""
    import pandas as pd

    from svd.evaluation.fvd import fvd_from_stats

    missing = [s.file for s in samples if not (out / s.file).is_file()]
    if missing:
        raise InputError(
            f"{out}: {len(missing)} of {len(samples)} samples missing (e.g. {missing[0]}): run the "
            f"remaining shards first"
        )
    started = time.perf_counter()
    ref = real_stats(real, protocol, extractor, real_cache, log)
    gen = sample_stats(out, samples, protocol, extractor)
    try:
        fvd = fvd_from_stats(ref, gen)
    except ValueError as exc:
        raise InputError(f"FVD: {exc}") from None
    world, rows = world_scores(out, samples, protocol)
    if rows:
        frame = pd.DataFrame(rows)
        _write_atomic(out / SCORES_FILE, lambda p: frame.to_parquet(p, index=False))
    intervals = score_intervals(ref, gen, rows, bootstrap or {"rounds": 0, "seed": 0})
    _write_atomic(out / FEATURES_FILE, lambda p: save_features(p, ref, gen, samples, rows))
    return {
        **intervals,
        "fvd": fvd,
        "n_samples": gen.n,
        "n_real": ref.n,
        "feature_dim": ref.dim,
        "colour_accuracy": world["colour_accuracy"] if world else None,
        "direction_accuracy": world["direction_accuracy"] if world else None,
        "n_judged": world["n_judged"] if world else 0,
        "score_seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------- the whole evaluation


def default_name(ref: str | None, folder: Path) -> str:
    if ref and ref.startswith("models:/"):
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", ref.removeprefix("models:/")).strip("-")
    return folder.name


def check_extractor(params, protocol: ClipProtocol):
    """The configured FVD extractor, checked against the clip protocol before any sample is generated."""
    from svd.evaluation.fvd import load_extractor
    from svd.evaluation.i3d import read_metadata

    fvd = params.evaluate.fvd
    if fvd.frames > protocol.frames:
        raise InputError(
            f"evaluate.fvd.frames ({fvd.frames}) is more than {KEY}.frames ({protocol.frames}): the "
            f"extractor would have no frames to read"
        )
    extractor = load_extractor(fvd)
    trained = read_metadata(fvd.i3d_weights).get("protocol")
    if isinstance(trained, dict) and trained.get("fps") and abs(float(trained["fps"]) - protocol.fps) > 1e-6:
        raise WeightsError(
            f"evaluate.fvd.i3d_weights was trained on clips at {trained['fps']:g} fps; {KEY}.fps is "
            f"{protocol.fps:g}: retrain it (`svd evaluate train-features`) or match the rates"
        )
    return extractor


def feature_net_accuracy(params) -> float | None:
    from svd.evaluation.i3d import read_metadata

    value = read_metadata(params.evaluate.fvd.i3d_weights).get("heldout_accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def comparable_to_paper(real: RealSet, extractor, protocol: ClipProtocol, params, n: int) -> bool:
    p = PAPER_PROTOCOL
    return (
        real.kind == "ucf101"
        and extractor.description.startswith("i3d-torchscript")
        and (protocol.frames, protocol.fps, protocol.size, protocol.resize, protocol.crop)
        == (p["frames"], p["fps"], p["size"], p["resize"], p["crop"])
        and params.evaluate.video.guidance == p["guidance"]
        and n == p["n_samples"]
    )


def evaluate_video(
    params,
    model: str | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
    shard: str | None = None,
    log: Log | None = None,
    score: bool = True,
) -> dict[str, Any]:
    """Generate (this shard of) the protocol's samples with a model folder or registered model, then, when all
    samples exist and `score`, score them. Returns {"complete": bool, ...}; complete results carry the report's
    keys. score=False: generate only (a process of several, whose main process scores)."""
    from svd.training.sampling import resolve_model
    from svd.training.stages import read_model

    vcfg = params.evaluate.video
    shard_ = parse_shard(shard)
    folder = resolve_model(params, model)
    meta = read_model(folder)
    if meta["profile"] != params.profile:
        raise InputError(
            f"{folder} was trained with profile {meta['profile']}, this run uses profile "
            f"{params.profile}: pass --profile {meta['profile']}"
        )
    if meta.get("kind") != "text-to-video":
        raise InputError(f"{folder} holds a {meta.get('kind')} model; the video protocol needs a text-to-video one")
    protocol = ClipProtocol.of(vcfg)
    real = real_set(params)  # every problem with the real set or the extractor shows before any sample is made
    extractor = check_extractor(params, protocol)
    name = name or default_name(model, folder)
    out = Path(out_dir) if out_dir is not None else Path(vcfg.out_root) / name
    samples = sample_plan(real, vcfg.n_samples, vcfg.seed)
    plan = make_plan(params, folder, meta, real, protocol)
    prepare_out(out, plan, samples, log)
    started = time.perf_counter()
    written = generate_missing(params, lambda: load_for_sampling(params, folder), out, samples, protocol, shard_, log)
    generate_seconds = time.perf_counter() - started
    present = sum((out / s.file).is_file() for s in samples)
    result: dict[str, Any] = {
        "complete": present == len(samples),
        "name": name,
        "model": model or str(folder),
        "model_dir": str(folder),
        "model_stage": meta.get("stage"),
        "profile": params.profile,
        "out_dir": str(out),
        "shard": f"{shard_[0]}/{shard_[1]}",
        "generated": written,
        "present": present,
        "planned": len(samples),
        "generate_seconds": generate_seconds,
    }
    if not result["complete"] or not score:
        if log and not result["complete"]:
            log(
                f"{present} of {len(samples)} samples written; the report comes when every shard is done "
                f"(run again without --shard, or the last shard, to score)"
            )
        return {**result, "complete": False}
    scores = score_samples(
        out,
        samples,
        real,
        protocol,
        extractor,
        vcfg.real_stats,
        log,
        bootstrap={"rounds": vcfg.bootstrap, "seed": vcfg.seed},
    )
    result.update(scores)
    result.update(
        {
            "feature_extractor": stats_description(extractor, protocol),
            "feature_net_accuracy": feature_net_accuracy(params),
            "real_set": real.source,
            "real_kind": real.kind,
            "n_classes": len(real.classes()),
            "frames": protocol.frames,
            "fps": protocol.fps,
            "size": list(protocol.size),
            "resize": list(protocol.resize),
            "crop": list(protocol.crop),
            "guidance": vcfg.guidance,
            "steps": vcfg.steps,
            "seed": vcfg.seed,
            "comparable_to_paper": comparable_to_paper(real, extractor, protocol, params, len(samples)),
            "fingerprint": plan["fingerprint"],
        }
    )
    return result


REPORT_KEYS = (
    "fvd",
    "fvd_lo",
    "fvd_hi",
    "colour_accuracy",
    "colour_accuracy_lo",
    "colour_accuracy_hi",
    "direction_accuracy",
    "direction_accuracy_lo",
    "direction_accuracy_hi",
    "n_samples",
    "n_real",
    "n_classes",
    "n_judged",
    "feature_extractor",
    "feature_net_accuracy",
    "feature_dim",
    "real_set",
    "comparable_to_paper",
    "model",
    "model_stage",
    "profile",
    "frames",
    "fps",
    "size",
    "resize",
    "crop",
    "guidance",
    "steps",
    "seed",
    "generate_seconds",
    "score_seconds",
    "fingerprint",
)


def report(result: dict[str, Any]) -> dict[str, Any]:
    """The flat metrics JSON (`metrics/evaluate_<name>.json`)."""
    return {k: result.get(k) for k in REPORT_KEYS}


def markdown(result: dict[str, Any]) -> str:
    """Our number beside the paper's rows, and what may be compared with what."""

    def num(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    def span(key, fmt="{:.2f}"):  # " [lo, hi]" when the evaluation bootstrapped the score
        lo, hi = result.get(f"{key}_lo"), result.get(f"{key}_hi")
        return "" if lo is None or hi is None else f" [{fmt.format(lo)}, {fmt.format(hi)}]"

    ours = f"**ours: {result['name']}** ({result['profile']} profile, {result['model_stage']} stage)"
    lines = [
        f"## Zero-shot text-to-video FVD: {result['name']}",
        "",
        "| model | FVD (lower is better) | real set | source |",
        "|---|---:|---|---|",
    ]
    paper_set = "UCF-101, 13,320 samples"
    our_set = (
        f"UCF-101, {result['n_samples']} samples"
        if result["real_kind"] == "ucf101"
        else f"shapes world, {result['n_samples']} samples vs {result['n_real']} clips"
    )
    rows = [(name, value, paper_set, "paper (App. E.4)") for name, value in PAPER_FVD]
    if result["comparable_to_paper"]:
        rows = sorted(rows + [(ours, result["fvd"], our_set, "this run")], key=lambda r: r[1])
    else:  # kept apart, below the paper's rows: its place among them would mean nothing
        rows.append((f"{ours}, *not comparable*", result["fvd"], our_set, "this run"))
    for label, value, where, source in rows:
        interval = span("fvd") if source == "this run" else ""
        lines.append(f"| {label} | {value:.2f}{interval} | {where} | {source} |")
    lines += [
        "",
        f"- Colour accuracy {num(result['colour_accuracy'])}{span('colour_accuracy')}, direction accuracy "
        f"{num(result['direction_accuracy'])}{span('direction_accuracy')} (world evaluator, {result['n_judged']} "
        "samples whose prompt it parses). Brackets: 95% bootstrap intervals over the samples (FVD: the real set "
        "resampled too; resampling biases FVD upward, so its interval is a spread, not bounds on the value).",
        f"- Protocol: {result['frames']} frames at {result['fps']:g} fps, CFG {result['guidance']:g}, "
        f"{result['steps']} steps, generated {result['size'][0]}x{result['size'][1]}, resized to "
        f"{result['resize'][0]}x{result['resize'][1]}, centre crop {result['crop'][0]}x{result['crop'][1]}.",
        f"- Features: {result['feature_extractor']}"
        + (
            f" (held-out accuracy {result['feature_net_accuracy']:.3f} on the world's action classes)"
            if result.get("feature_net_accuracy") is not None
            else ""
        )
        + ".",
        "",
    ]
    if result["comparable_to_paper"]:
        lines.append(
            "This run follows the paper's protocol (UCF-101, StyleGAN-V's Kinetics I3D, 13,320 samples at "
            "16 frames, 25 fps, CFG 7, 320x576 -> 240x432 -> 240x320); its FVD may be set beside the "
            "paper's, with the caveats of REFERENCE.md (resize path, real-set size)."
        )
    else:
        lines.append(
            "**Not comparable with the paper's rows.** This number comes from "
            + (
                "the shapes world's held-aside action clips and a feature net trained on them, "
                if result["real_kind"] == "world"
                else "a protocol or extractor that differs from the paper's, "
            )
            + "at another size, frame count and sample count: it ranks runs of this project against each "
            "other (lower is better), never against the paper. The paper's rows are shown for the scale "
            "of the protocol only."
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- MLflow


def model_run_id(params, ref: str | None, folder: Path) -> str | None:
    """The MLflow run that trained the evaluated model, when one can be named for certain: svd_model.json's
    `mlflow_run_id` (if the training side records it), the registry version of a models:/ reference, or, for a
    folder, the version its stage registered (svd-t2v@<stage>) when that version holds these very UNet weights."""
    from svd import tracking
    from svd.training.stages import REGISTERED_NAME, read_model

    meta = read_model(folder)
    if meta.get("mlflow_run_id"):
        return str(meta["mlflow_run_id"])
    mlflow = tracking._mlflow()
    tracking.configure(params)
    client = mlflow.MlflowClient()
    try:
        if ref and ref.startswith("models:/"):
            body = ref.removeprefix("models:/")
            if "@" in body:
                version = client.get_model_version_by_alias(*body.split("@", 1))
            else:
                version = client.get_model_version(*body.rsplit("/", 1))
            return version.run_id or None
        name = REGISTERED_NAME.get(meta.get("stage"))
        if name is None:
            return None
        version = client.get_model_version_by_alias(name, meta["stage"])
        local = tracking.download_model(params, f"models:/{name}/{version.version}")
        if tracking.hash_path(local / "unet") == tracking.hash_path(folder / "unet"):
            return version.run_id or None
    except (mlflow.exceptions.MlflowException, InputError, OSError, ValueError):
        return None  # not registered (or the store is unreachable): the evaluation gets a run of its own
    return None


METRIC_PREFIX = "eval_video."


def log_to_model_run(params, run_id: str, name: str, metrics: dict[str, Any], files: list[Path]) -> None:
    """The report's numbers (prefixed eval_video.) and files on the model's own training run."""
    from mlflow.entities import Metric

    from svd import tracking

    mlflow = tracking._mlflow()
    tracking.configure(params)
    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    numbers = [
        Metric(f"{METRIC_PREFIX}{k}", float(v), now, 0)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
    ]
    if numbers:
        client.log_batch(run_id, metrics=numbers)
    client.set_tag(run_id, f"svd.eval_video.{name}", metrics.get("fingerprint", ""))
    for f in files:
        if Path(f).is_file():
            client.log_artifact(run_id, str(f), artifact_path=f"eval_video/{name}")


# ---------------------------------------------------------------- the FVD feature net and the real statistics


def train_features(params, out: str | Path | None = None, log: Log | None = None, logger=None) -> dict[str, Any]:
    """Train the world's FVD feature net (`svd.evaluation.i3d.train_feature_net`, at `evaluate.fvd.feature_net`,
    on clips at its fps) into OUT (default: evaluate.fvd.feature_net.out), then cache the real set's
    statistics under the configured extractor at evaluate.video.real_stats (the a100 profile's extractor is the
    Kinetics I3D: the net is trained all the same, and the statistics are UCF-101's). On the world's real set,
    `svd.evaluation.fvd_sanity` then scores another world seed's clips and broken copies of them."""
    from svd.evaluation.i3d import train_feature_net

    net = params.evaluate.fvd.feature_net
    out = Path(out if out is not None else net.out)
    if net.threads is not None:
        from svd.runtime import set_threads

        set_threads(net.threads)
    summary = train_feature_net(params.world.eval, net, out, seed=params.seed, logger=logger)
    if log:
        log(
            f"feature net: held-out accuracy {summary['heldout_accuracy']:.3f} after {summary['steps']} steps "
            f"({summary['train_seconds']:.0f} s)"
        )
    protocol = ClipProtocol.of(params.evaluate.video)
    real = real_set(params)
    extractor = check_extractor(params, protocol)
    cache = Path(params.evaluate.video.real_stats)
    cache.unlink(missing_ok=True)  # a new net (or protocol) makes new statistics
    started = time.perf_counter()
    stats = real_stats(real, protocol, extractor, cache, log)
    summary.update(
        {
            "real_stats": str(cache),
            "real_n": stats.n,
            "real_set": real.source,
            "real_seconds": time.perf_counter() - started,
            "feature_extractor": extractor.description,
        }
    )
    if real.kind == "world":  # what the FVD sees: another world seed's clips, and the same clips broken
        from svd.evaluation.fvd_sanity import fvd_sanity

        summary["sanity"] = fvd_sanity(params, extractor, protocol, stats.features, log)
    return summary


__all__ = [
    "ClipProtocol",
    "PAPER_FVD",
    "RealSet",
    "Sample",
    "apportion",
    "class_prompt",
    "evaluate_video",
    "log_to_model_run",
    "markdown",
    "model_run_id",
    "parse_shard",
    "read_ucf101",
    "read_world_actions",
    "real_stats",
    "report",
    "sample_plan",
    "score_samples",
    "train_features",
]
