"""Fréchet Video Distance: the Fréchet distance between Gaussians fitted to I3D features of two video sets.

Three parts, each usable alone:
- `frechet_distance` / `frechet_from_stats`: the distance itself, float64 throughout;
  d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
- `preprocess`: uint8 videos (N, T, H, W, 3) -> the protocol's first `frames` frames, short side resized to `size`
  (bilinear, antialiased), centre crop `size` x `size`, [-1, 1], layout (N, 3, T, size, size). It returns an
  `I3DInput`, which only it can make and which it refuses as input, and `FeatureExtractor` accepts nothing else:
  normalising twice (the pitfall that gives tiny FVDs) cannot happen.
- `FeatureExtractor`: an I3D (TorchScript or our `InceptionI3d`) plus the protocol, with a `description` that is
  saved with every statistics file so cached real statistics from another extractor or protocol are refused.

`fvd_of_folders` / `stats_of_files` decode each video file's first frames only, one file at a time, and can cache
the real set's statistics. Covariances are unbiased (N - 1, as numpy's `np.cov` and pytorch-fid); StyleGAN-V divides
by N. Features are accumulated streaming (Chan's pairwise update), so memory stays flat however many videos.

Where this differs from the paper's UCF-101 path (REFERENCE.md): the paper resizes to 240x432, crops 240x320 and
lets the TorchScript module resize that to 224x224 (aspect squeezed); we resize the short side to 224 and centre
crop, once, and call the module with rescale=False, resize=False.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from svd.errors import InputError

EPS = 1e-6  # added to both covariances' diagonals when sqrtm of their product fails (as pytorch-fid)
IMAG_TOL = 1e-3  # largest imaginary part of sqrtm (relative to its largest real entry) taken as round-off


# ---------------------------------------------------------------- the Fréchet distance


def _check_features(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{name}: features must be numeric, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name}: features must be a 2-D array (N videos x D features), got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 feature vectors for a covariance, got {a.shape[0]}")
    if a.shape[1] < 1:
        raise ValueError(f"{name}: features have no dimensions (shape {a.shape})")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise ValueError(f"{name}: {bad} feature vector(s) contain NaN or inf")
    return a


def _check_stats(mu, sigma, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: mean must be (D,) and covariance (D, D), got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: statistics contain NaN or inf")
    return mu, sigma


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular / ill-conditioned warnings: the result is checked below
        out = scipy.linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out  # older scipy returned (sqrt, error) with disp=False


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float = EPS) -> float:
    """tr((S1 S2)^(1/2)). S1 S2 is not symmetric, and with fewer samples than dimensions it is singular; sqrtm then
    returns inf/NaN or small imaginary parts from round-off. Those are handled, a large imaginary part is an error."""
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("the matrix square root of the covariance product is not finite, even with eps*I added")
    if np.iscomplexobj(covmean):
        scale = max(float(np.abs(covmean.real).max()), np.finfo(np.float64).tiny)
        imag = float(np.abs(np.diagonal(covmean).imag).max())
        if imag / scale > IMAG_TOL:
            raise ValueError(
                f"the matrix square root of the covariance product has a large imaginary part "
                f"({imag:.3g} vs {scale:.3g}): covariances too ill-conditioned; use more samples"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_from_stats(mu1, sigma1, mu2, sigma2, eps: float = EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, sigma1 = _check_stats(mu1, sigma1, "first")
    mu2, sigma2 = _check_stats(mu2, sigma2, "second")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2, eps))
    # round-off leaves identical distributions a hair below zero; anything more negative is a real fault
    scale = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2))
    if value < -1e-9 * max(scale, 1.0):
        raise ValueError(f"Fréchet distance came out negative ({value:.3g}): covariances not positive semi-definite?")
    return max(value, 0.0)


def frechet_distance(x, y, eps: float = EPS) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N1 x D and N2 x D)."""
    a, b = _check_features(x, "first"), _check_features(y, "second")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    sa, sb = stats_of(a), stats_of(b)
    return frechet_from_stats(sa.mu, sa.sigma, sb.mu, sb.sigma, eps)


# ---------------------------------------------------------------- feature statistics


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64, unbiased
    n: int
    extractor: str = ""  # `FeatureExtractor.description`; "" = unknown (features given directly)
    features: np.ndarray | None = field(default=None, compare=False)  # (n, D) float32, for bootstrap intervals

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


class StatsAccumulator:
    """Mean and covariance over batches of features in float64, merging batch moments (Chan et al.) so that large
    feature means do not cancel the covariance away as the naive sum-of-outer-products would."""

    def __init__(self, extractor: str = ""):
        self.extractor = extractor
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of outer products of deviations from the mean

    def add(self, features) -> None:
        a = np.asarray(features, np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"features must be a non-empty 2-D batch, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("features contain NaN or inf")
        if self.mean is not None and a.shape[1] != self.mean.shape[0]:
            raise ValueError(f"feature dimension changed: {self.mean.shape[0]} then {a.shape[1]}")
        nb = a.shape[0]
        mb = a.mean(axis=0)
        d = a - mb
        m2b = d.T @ d
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def result(self) -> FeatureStats:
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        return FeatureStats(self.mean.copy(), self.m2 / (self.n - 1), self.n, self.extractor)


def stats_of(features, extractor: str = "") -> FeatureStats:
    a = _check_features(features, "features")
    mu = a.mean(axis=0)
    d = a - mu
    return FeatureStats(mu, d.T @ d / (a.shape[0] - 1), a.shape[0], extractor)


def save_stats(path: str | Path, stats: FeatureStats) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if stats.features is None else {"features": stats.features.astype(np.float32)}
    with open(path, "wb") as f:  # a file handle: np.savez would otherwise append .npz to other suffixes
        np.savez(
            f,
            mu=stats.mu.astype(np.float64),
            sigma=stats.sigma.astype(np.float64),
            n=np.int64(stats.n),
            extractor=np.str_(stats.extractor),
            **extra,
        )
    return path


def load_stats(path: str | Path, expect_extractor: str | None = None) -> FeatureStats:
    """Statistics saved by `save_stats`. With `expect_extractor`, statistics computed by any other feature
    extractor or preprocessing are refused: their distance to ours would be meaningless."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no statistics file {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            mu, sigma, n, extractor = z["mu"], z["sigma"], int(z["n"]), str(z["extractor"])
            features = z["features"] if "features" in z.files else None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InputError(
            f"{path} is not a statistics file (.npz with mu, sigma, n, extractor): {' '.join(str(exc).split())[:160]}"
        ) from None
    try:
        mu, sigma = _check_stats(mu, sigma, str(path))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if expect_extractor is not None and extractor != expect_extractor:
        raise InputError(
            f"{path} holds statistics from another feature extractor or preprocessing "
            f"({extractor or 'unknown'!s}); this run uses {expect_extractor}: recompute them"
        )
    if features is not None and features.shape != (n, mu.shape[0]):
        raise InputError(f"{path}: features of shape {features.shape} do not match n={n}, D={mu.shape[0]}")
    return FeatureStats(mu, sigma, n, extractor, features)


def fvd_from_stats(real: FeatureStats, fake: FeatureStats) -> float:
    if real.extractor != fake.extractor:
        raise ValueError(f"statistics from different feature extractors: {real.extractor!r} vs {fake.extractor!r}")
    return frechet_from_stats(real.mu, real.sigma, fake.mu, fake.sigma)


def _resampled_fd(x: np.ndarray, y: np.ndarray) -> float:
    """frechet_distance of a bootstrap resample; NaN where repeated vectors leave the covariances too singular for a
    real matrix square root (tiny sets), so the round is dropped instead of failing the evaluation."""
    try:
        return frechet_distance(x, y)
    except ValueError:
        return float("nan")


def fvd_interval(real: np.ndarray, fake: np.ndarray, *, rounds: int, seed: int, confidence: float = 0.95):
    """Percentile bootstrap interval {"lo", "hi"} of FVD(real, fake), both sets resampled with replacement each
    round (None without rounds). Resampling repeats vectors, which narrows each covariance and so biases the
    resampled FVD upward: read the interval as the score's spread, not as bounds around an unbiased value."""
    from svd.evaluation.intervals import percentile_interval

    if rounds <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        r = real[rng.integers(0, len(real), len(real))]
        f = fake[rng.integers(0, len(fake), len(fake))]
        values.append(_resampled_fd(r, f))
    return percentile_interval(values, confidence)


def paired_fvd_difference(
    real: np.ndarray, fake_a: np.ndarray, fake_b: np.ndarray, *, rounds: int, seed: int, confidence: float = 0.95
) -> dict:
    """FVD(real, a) - FVD(real, b) with a paired bootstrap interval: sample i of a and of b come from the same
    prompt and seed, so each round draws one set of indices for both (and one resample of the real set), and what
    the two models share cancels in the difference. {"diff", "lo", "hi"}."""
    from svd.evaluation.intervals import percentile_interval

    if len(fake_a) != len(fake_b):
        raise ValueError(f"paired sets differ in size: {len(fake_a)} vs {len(fake_b)}")
    diff = frechet_distance(real, fake_a) - frechet_distance(real, fake_b)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        r = real[rng.integers(0, len(real), len(real))]
        i = rng.integers(0, len(fake_a), len(fake_a))
        values.append(_resampled_fd(r, fake_a[i]) - _resampled_fd(r, fake_b[i]))
    return {"diff": float(diff), **(percentile_interval(values, confidence) or {})}


# ---------------------------------------------------------------- preprocessing, exactly once


@dataclass(frozen=True)
class Protocol:
    frames: int = 16  # the first `frames` frames of every video
    size: int = 224

    def describe(self) -> str:
        return (
            f"frames={self.frames}(first);resize=short-side-{self.size},bilinear,antialias;"
            f"crop=centre-{self.size}x{self.size};range=[-1,1]"
        )


_TOKEN = object()


@dataclass(frozen=True, eq=False)
class I3DInput:
    """Videos already preprocessed for I3D: (N, 3, T, S, S) float32 in [-1, 1]. Made by `preprocess` only."""

    tensor: torch.Tensor
    protocol: Protocol
    _token: object = field(default=None, repr=False)

    def __post_init__(self):
        if self._token is not _TOKEN:
            raise TypeError("I3DInput is made by svd.evaluation.fvd.preprocess only (uint8 videos in)")

    def __len__(self) -> int:
        return int(self.tensor.shape[0])


def preprocess(videos, protocol: Protocol = Protocol(), device: str | torch.device | None = None) -> I3DInput:
    """uint8 (N, T, H, W, 3) RGB -> I3DInput. Anything but uint8 is refused: float input is either already scaled
    (preprocessing it again would normalise twice) or of unknown range. With `device` the work runs there (the
    uint8 frames travel, a quarter of the float bytes; on a GPU the resize is no longer the bottleneck)."""
    if isinstance(videos, I3DInput):
        raise ValueError("videos are already preprocessed (I3DInput); preprocessing twice would normalise twice")
    if isinstance(videos, torch.Tensor):
        if videos.dtype != torch.uint8:
            raise ValueError(
                f"preprocess takes uint8 videos (N, T, H, W, 3) in 0..255, got a {videos.dtype} tensor: "
                f"float input may be preprocessed already (normalising twice gives tiny FVDs)"
            )
        x = videos.detach()
    else:
        a = np.asarray(videos)
        if a.dtype != np.uint8:
            raise ValueError(
                f"preprocess takes uint8 videos (N, T, H, W, 3) in 0..255, got {a.dtype}: float input "
                f"may be preprocessed already (normalising twice gives tiny FVDs)"
            )
        x = torch.from_numpy(np.ascontiguousarray(a))
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"videos must be (N, T, H, W, 3) RGB, got shape {tuple(x.shape)}")
    n, t, h, w, _ = x.shape
    if n == 0:
        raise ValueError("no videos")
    if t < protocol.frames:
        raise ValueError(f"videos have {t} frames; the protocol takes the first {protocol.frames}")
    if min(h, w) < 1:
        raise ValueError(f"empty frames {h}x{w}")
    s = protocol.size
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x[:, : protocol.frames].reshape(n * protocol.frames, h, w, 3).permute(0, 3, 1, 2).float()
    nh, nw = (s, max(s, round(w * s / h))) if h <= w else (max(s, round(h * s / w)), s)
    if (nh, nw) != (h, w):
        # antialias: a plain bilinear downscale aliases (it reads 2 pixels per output whatever the factor)
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - s) // 2, (nw - s) // 2
    x = x[:, :, top : top + s, left : left + s]
    x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)  # clamp: bilinear of uint8 stays in range, up to round-off
    x = x.reshape(n, protocol.frames, 3, s, s).permute(0, 2, 1, 3, 4).contiguous()
    return I3DInput(x, protocol, _TOKEN)


# ---------------------------------------------------------------- feature extraction


class FeatureExtractor:
    """An I3D network, the feature it reads (logits | pool) and the protocol its inputs were preprocessed by."""

    def __init__(
        self,
        model: torch.nn.Module,
        protocol: Protocol,
        features: str = "logits",
        name: str = "i3d",
        batch: int = 8,
        device: str | torch.device = "cpu",
    ):
        if features not in ("logits", "pool"):
            raise ValueError(f"features must be logits or pool, got {features!r}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.model = model.eval()
        self.protocol, self.features, self.name, self.batch = protocol, features, name, int(batch)
        self.device = torch.device(device)

    @property
    def description(self) -> str:
        """Saved with statistics; two statistics are comparable only when their descriptions are equal."""
        return f"{self.name};features={self.features};{self.protocol.describe()}"

    @torch.no_grad()
    def __call__(self, inputs: I3DInput) -> np.ndarray:
        """(N, D) float64 features of preprocessed videos, in batches of `batch`."""
        if not isinstance(inputs, I3DInput):
            raise TypeError(
                f"FeatureExtractor takes the I3DInput of preprocess(uint8 videos), got "
                f"{type(inputs).__name__}: raw tensors are refused so nothing is normalised twice"
            )
        if inputs.protocol != self.protocol:
            raise ValueError(f"inputs were preprocessed for {inputs.protocol}, this extractor uses {self.protocol}")
        out = []
        for i in range(0, len(inputs), self.batch):
            x = inputs.tensor[i : i + self.batch].to(self.device, non_blocking=True)
            f = self.model(x, features=self.features)
            if f.ndim != 2 or f.shape[0] != x.shape[0]:
                from svd.errors import WeightsError

                raise WeightsError(
                    f"evaluate.fvd.i3d_weights: {self.name} returned features of shape "
                    f"{tuple(f.shape)} for {x.shape[0]} videos; expected (N, D)"
                )
            out.append(f.float().cpu().numpy().astype(np.float64))
        return np.concatenate(out, axis=0)

    def features_of(self, videos) -> np.ndarray:
        """uint8 videos (N, T, H, W, 3) -> (N, D), preprocessing `batch` videos at a time."""
        return np.concatenate(
            [
                self(preprocess(videos[i : i + self.batch], self.protocol, self.device))
                for i in range(0, len(videos), self.batch)
            ],
            axis=0,
        )

    def stats_of_stream(self, videos: Iterable[np.ndarray], keep_features: bool = False) -> FeatureStats:
        """Statistics of a stream of uint8 videos (T, H, W, 3), `batch` at a time: the videos are never held
        together. Videos may differ in size: each is preprocessed alone, then batched. `keep_features`: the stats
        carry the (N, D) feature vectors too (N x D floats, for bootstrap intervals)."""
        acc = StatsAccumulator(self.description)
        kept = []
        for chunk in _chunks(videos, self.batch):
            parts = [preprocess(np.asarray(v)[None], self.protocol, self.device) for v in chunk]
            features = self(I3DInput(torch.cat([p.tensor for p in parts]), self.protocol, _TOKEN))
            acc.add(features)
            if keep_features:
                kept.append(np.asarray(features, np.float32))
        stats = acc.result()
        return dataclasses.replace(stats, features=np.concatenate(kept)) if keep_features else stats


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_extractor(fvd, key: str = "evaluate.fvd.i3d_weights") -> FeatureExtractor:
    """The configured extractor (`evaluate.fvd`: i3d_weights, features, frames, size, batch, device)."""
    from svd.errors import WeightsError
    from svd.evaluation.i3d import TorchScriptI3D, load_i3d, read_metadata

    device = resolve_device(fvd.device)
    model, name = load_i3d(fvd.i3d_weights, key, device)
    trained_for = read_metadata(fvd.i3d_weights).get("protocol")
    if isinstance(trained_for, dict) and (trained_for.get("frames"), trained_for.get("size")) != (fvd.frames, fvd.size):
        # a net trained at one input size gives meaningless features at another
        raise WeightsError(
            f"{key} was trained for {trained_for.get('frames')} frames at {trained_for.get('size')} px; "
            f"set evaluate.fvd.frames/size to match (now {fvd.frames}, {fvd.size})"
        )
    if isinstance(model, TorchScriptI3D):
        if fvd.features != "logits":
            raise WeightsError(
                f"evaluate.fvd.features={fvd.features} needs an InceptionI3d state dict in {key}: the "
                f"TorchScript I3D returns its 400 pre-softmax logits only (features=logits)"
            )
        # its fixed AvgPool3d([2, 7, 7]) needs Mixed_5c at least 2 x 7 x 7: >= 9 frames and >= 193 px (/32)
        if fvd.frames < 9 or fvd.size < 193:
            raise WeightsError(
                f"{key} is the TorchScript I3D, which needs evaluate.fvd.frames >= 9 and "
                f"evaluate.fvd.size >= 193 (now {fvd.frames}, {fvd.size}; the protocol: 16, 224)"
            )
    return FeatureExtractor(model, Protocol(fvd.frames, fvd.size), fvd.features, name, fvd.batch, device)


def random_extractor(
    protocol: Protocol = Protocol(),
    features: str = "pool",
    width: float = 1.0,
    seed: int = 0,
    batch: int = 8,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """A randomly initialised InceptionI3d (benchmarks, tests): its name says so, so its statistics never mix
    with a trained extractor's."""
    from svd.evaluation.i3d import InceptionI3d

    torch.manual_seed(seed)
    model = InceptionI3d(width=width).to(device)
    return FeatureExtractor(
        model, protocol, features, f"inception-i3d(width={width:g},random,seed={seed})", batch, device
    )


# ---------------------------------------------------------------- files


def load_feature_file(path: str | Path) -> np.ndarray:
    """An N x D float array from a .npy file, checked; every problem is an InputError (one line)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise InputError(f"{path}: expected a .npy file of features (N x D)")
    if not path.is_file():
        raise InputError(f"no such file {path}")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy array ({' '.join(str(exc).split())[:160]})") from None
    try:
        return _check_features(a, str(path))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def frechet_of_files(real: str | Path, fake: str | Path) -> dict:
    """{"fvd", "n_real", "n_fake", "dim"} for two .npy feature files (the `svd evaluate frechet` command)."""
    a, b = load_feature_file(real), load_feature_file(fake)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature dimensions differ: {real} has {a.shape[1]}, {fake} has {b.shape[1]}")
    try:
        value = frechet_distance(a, b)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return {"fvd": value, "n_real": int(a.shape[0]), "n_fake": int(b.shape[0]), "dim": int(a.shape[1])}


# ---------------------------------------------------------------- video files and folders, streaming

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def video_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no such folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise InputError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
    return files


def read_first_frames(path: str | Path, frames: int) -> np.ndarray:
    """(frames, H, W, 3) uint8: the first `frames` frames, decoding no further (the protocol needs no more)."""
    from itertools import islice

    from svd.io.video import VideoReadError, iter_frames

    gen = iter_frames(path)
    try:
        got = list(islice(gen, frames))
    except VideoReadError as exc:
        raise InputError(f"{path}: {exc}") from None
    finally:
        gen.close()  # closes the container now, not at garbage collection
    if len(got) < frames:
        raise InputError(f"{path} has {len(got)} frames; the FVD protocol takes the first {frames}")
    return np.stack(got)


def stats_of_files(paths: Iterable[str | Path], extractor: FeatureExtractor) -> FeatureStats:
    """Feature statistics of video files, decoded one at a time and scored `batch` at a time: memory stays flat
    however many files. A file that cannot be used stops the run with its name (never a silent drop)."""
    frames = extractor.protocol.frames
    return extractor.stats_of_stream(read_first_frames(p, frames) for p in paths)


def fvd_of_folders(
    real: str | Path, fake: str | Path, extractor: FeatureExtractor, real_stats: str | Path | None = None
) -> dict:
    """FVD between the videos of two folders. `real_stats`: a cache of the real set's statistics (.npz), read when
    it exists (and refused if another extractor/protocol made it), written otherwise."""
    cache = Path(real_stats) if real_stats is not None else None
    if cache is not None and cache.is_file():
        ref = load_stats(cache, expect_extractor=extractor.description)
    else:
        ref = stats_of_files(video_files(real), extractor)
        if cache is not None:
            save_stats(cache, ref)
    gen = stats_of_files(video_files(fake), extractor)
    return {
        "fvd": fvd_from_stats(ref, gen),
        "n_real": ref.n,
        "n_fake": gen.n,
        "dim": ref.dim,
        "extractor": extractor.description,
    }
