"""GSO multi-view metrics (paper §4.4, Fig. 10a): PSNR, LPIPS and CLIP-S between corresponding ground-truth and
generated frames of 21-frame 360-degree orbits, per object and averaged over objects.

Averaging: every metric is computed per frame, averaged over the frames of an object (the per-object value), then
the per-object values are averaged over objects (the reported mean; every object weighs the same).

- PSNR: on RGB in [0, 1] (uint8 / 255, float64), data range 1: 10 log10(1 / MSE) over all pixels and channels of a
  frame. Identical frames have MSE 0; their PSNR is capped at PSNR_CAP_DB so the report stays finite JSON.
- LPIPS: the `lpips` package, v0.1, net='alex'. The linear layers are the package's own calibrated weights (they
  ship inside it, lpips/weights/v0.1/alex.pth). The AlexNet backbone comes from `evaluate.multiview.lpips_alexnet`
  (a torchvision AlexNet state dict, e.g. alexnet-owt-7be5be79.pth, loaded weights-only); null means a seeded random
  backbone and the report says `lpips_backbone: "random"`. Nothing is ever downloaded: the package is told the
  backbone is random (`pnet_rand=True`) and the weights are put in afterwards. Frames are scaled from [0, 1] to
  [-1, 1] here, once; the package's own `normalize` flag stays off. AlexNet needs frames of at least LPIPS_MIN_SIDE.
- CLIP-S: cosine similarity of the open_clip image embeddings (svd.models.clip: `weights.clip_model`, weights from
  `weights.clip_pretrained`, random when null) of the two frames, each through the model's own preprocessing once.

Orbits. The real side is, in order: the --real argument; `evaluate.multiview.gso_root` when configured; the world's
orbits (<paths.world>/eval/orbits.parquet), a GSO stand-in read through the same code. A real path may be
- an orbits manifest (`orbits.parquet`, columns object, frame, file; the world writes one): files relative to the
  manifest's folder or, as the world writes them (eval/orbits/<object>/NN.png), to the folder above it;
- a folder holding `orbits.parquet` or `eval/orbits.parquet` (the world's root or eval folder);
- a folder of orbits, the layout GSO renders should take and generated orbits take (the fake side):
      ROOT/<object>/000.png ... 020.png    one folder per object, frames numbered consecutively (.png/.jpg)
      ROOT/<object>.mp4                    or one video per object (.mp4/.webm/.mkv/.mov/.avi)
  Other files (json, gif previews, ...) and hidden entries are ignored. RGBA frames (GSO renders usually have alpha)
  are composited over grey level `evaluate.multiview.alpha_background` (255: white, as the paper's renders show).
Objects are matched by name. An object missing on one side, a frame count other than `evaluate.multiview.frames`,
unreadable files or mismatched sizes fail that object alone: the failure is recorded in the report with its reason
and the other objects are still scored. Nothing scored at all is an InputError.

Sizes. The paper scores at the generation resolution (576x576), so when sizes differ the ground truth is resized to
the generated frames' size (area filter down, bicubic up; `evaluate.multiview.resize_real`, false: a failure). A
different aspect ratio is always a failure (a resize would distort one side).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from svd.config import MultiviewParams, Params, Weights
from svd.errors import InputError, WeightsError

log = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0  # identical frames (MSE 0); = MSE 1e-10
LPIPS_MIN_SIDE = 31  # AlexNet's strides and pools leave no pixel for its second pool below this
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
ASPECT_TOL = 0.01
LPIPS_KEY = "evaluate.multiview.lpips_alexnet"

# Fig. 10a of the paper: 50 GSO objects, 21-frame orbits, generated at 576x576.
PAPER = {
    "SVD-MV": {"psnr": 16.83, "lpips": 0.14, "clip_s": 0.89},
    "SD2.1-MV": {"psnr": 15.06, "lpips": 0.18, "clip_s": 0.83},
    "Scratch-MV": {"psnr": 14.20, "lpips": 0.22, "clip_s": 0.76},
    "SyncDreamer": {"psnr": 15.29, "lpips": 0.18, "clip_s": 0.88},
    "Zero123XL": {"psnr": 14.51, "lpips": 0.20, "clip_s": 0.87},
}
PAPER_OBJECTS = 50
METRICS = ("psnr", "lpips", "clip_s")


# ------------------------------------------------------------------------------------------------------- PSNR


def psnr(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """(T,) PSNR in dB per frame of two uint8 RGB orbits (T, H, W, 3) of one size, on [0, 1] with data range 1."""
    a, b = _check_pair(real, fake)
    diff = a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)


def _check_pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(real), np.asarray(fake)
    for name, x in (("real", a), ("fake", b)):
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise ValueError(f"{name} frames must be uint8 (T, H, W, 3), got {x.dtype} {x.shape}")
    if a.shape != b.shape:
        raise ValueError(f"real and fake frames differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _to_unit(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0


# ------------------------------------------------------------------------------------------------------ LPIPS


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict of tensors")
    return state


def _alexnet_features(state: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """torchvision AlexNet state dict (features.N.* + classifier.*, or the features alone: N.*) -> {N: {param: t}}."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = re.fullmatch(r"(?:module\.)?(?:features\.)?(\d+)\.(weight|bias)", key)
        if m is None:
            if re.match(r"(?:module\.)?classifier\.", key):
                continue  # the classifier head plays no part in LPIPS
            raise ValueError(f"unexpected key {key!r} (expected torchvision AlexNet features.N.weight/bias)")
        out.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return out


class LpipsScorer:
    """LPIPS v0.1 with AlexNet: `scorer(real, fake)` -> (T,) distances of uint8 orbits."""

    def __init__(self, alexnet: str | None, device: str | torch.device = "cpu", seed: int = 0, batch: int = 21):
        import lpips

        self.device = torch.device(device)
        self.batch = max(1, int(batch))
        state = None
        if alexnet is not None:
            path = Path(alexnet).expanduser()
            if not path.is_file():
                raise WeightsError(
                    f"{LPIPS_KEY}: {alexnet} is not a file (a torchvision AlexNet state dict such as "
                    f"alexnet-owt-7be5be79.pth; null = random backbone)"
                )
            try:
                state = _alexnet_features(_read_state(path))
            except Exception as exc:
                raise WeightsError(
                    f"{LPIPS_KEY}: cannot read {path} as AlexNet weights ({exc.__class__.__name__}: {_line(exc)})"
                ) from None
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(seed)  # a random backbone repeats run to run
            warnings.simplefilter("ignore")  # torchvision's deprecation notes about `pretrained=`
            # pnet_rand: the backbone is built without torchvision's download; pretrained=False: we load the linear
            # layers ourselves, weights-only
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        linear = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / "v0.1" / "alex.pth"
        lin_state = torch.load(linear, map_location="cpu", weights_only=True)
        # the file holds the linear layers only (lin0..lin4; `lins.N` are the same modules under a second name)
        expected = {k for k in model.state_dict() if re.fullmatch(r"lin\d+\.model\.1\.weight", k)}
        if set(lin_state) != expected:
            raise RuntimeError(f"lpips package weights {linear} do not fit its own model")  # a broken install
        model.load_state_dict(lin_state, strict=False)
        if state is not None:
            self._load_backbone(model.net, state, path)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.pretrained = state is not None
        self.backbone = str(path) if state is not None else "random"
        self.linear = f"lpips v0.1 alex ({linear.name}, shipped with the package)"

    @staticmethod
    def _load_backbone(net: torch.nn.Module, features: dict[int, dict[str, torch.Tensor]], path: Path) -> None:
        # the package splits AlexNet.features into slices that keep the torchvision indices as child names
        where = {int(child): f"{name}.{child}" for name, sl in net.named_children() for child, _ in sl.named_children()}
        target = {}
        for idx, params in features.items():
            if idx not in where:
                raise WeightsError(f"{LPIPS_KEY}: {path} has features.{idx}, which AlexNet's features do not have")
            for pname, tensor in params.items():
                target[f"{where[idx]}.{pname}"] = tensor
        try:
            net.load_state_dict(target, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{LPIPS_KEY}: {path} does not fit torchvision AlexNet ({_line(exc)})") from None

    def __call__(self, real: np.ndarray, fake: np.ndarray) -> np.ndarray:
        a, b = _check_pair(real, fake)
        if min(a.shape[1:3]) < LPIPS_MIN_SIDE:
            raise ValueError(
                f"LPIPS (AlexNet) needs frames of at least {LPIPS_MIN_SIDE} px, got {a.shape[2]}x{a.shape[1]}"
            )
        out = []
        with torch.inference_mode():
            for i in range(0, len(a), self.batch):
                x = _to_unit(a[i : i + self.batch], self.device) * 2.0 - 1.0  # [0, 1] -> [-1, 1], the only scaling
                y = _to_unit(b[i : i + self.batch], self.device) * 2.0 - 1.0
                out.append(self.model(x, y, normalize=False).reshape(-1).double().cpu().numpy())
        return np.concatenate(out)


# ----------------------------------------------------------------------------------------------------- CLIP-S


class ClipSimilarity:
    """CLIP-S: `scorer(real, fake)` -> (T,) cosine similarities of open_clip image embeddings of uint8 orbits."""

    def __init__(self, weights: Weights, device: str | torch.device = "cpu", seed: int = 0, batch: int = 21):
        from svd.models.clip import load_clip

        self.device = torch.device(device)
        self.batch = max(1, int(batch))
        self.model, self.preprocess, _, self.backend, self.pretrained = load_clip(
            weights.clip_model, weights.clip_pretrained, device=self.device, key="clip", seed=seed
        )
        self.model_name = weights.clip_model
        self.backbone = str(weights.clip_pretrained) if self.pretrained else "random"

    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """(T, D) L2-normalised float32 embeddings; each frame through the model's preprocessing exactly once."""
        from PIL import Image

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"CLIP expects uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch):
                pixels = torch.stack(
                    [self.preprocess(Image.fromarray(np.ascontiguousarray(f))) for f in frames[i : i + self.batch]]
                ).to(self.device)
                emb = self.model.encode_image(pixels).float()
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu())
        return torch.cat(out)

    def __call__(self, real: np.ndarray, fake: np.ndarray) -> np.ndarray:
        a, b = _check_pair(real, fake)
        return (self.embed(a) * self.embed(b)).sum(dim=-1).double().numpy()


# ----------------------------------------------------------------------------------------------------- orbits


@dataclass(frozen=True)
class OrbitSource:
    """Where one object's orbit lives: numbered image files (in order) or one video file."""

    name: str
    frames: tuple[Path, ...] = ()
    video: Path | None = None
    problem: str | None = None  # set when the orbit was found but cannot be used (recorded as that object's failure)

    @property
    def where(self) -> str:
        return str(self.video if self.video is not None else (self.frames[0].parent if self.frames else self.name))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]


def _numbered(files: list[Path]) -> tuple[tuple[Path, ...], str | None]:
    """Frame files sorted by their number; a problem string when names are not consecutive numbers."""
    try:
        numbered = sorted((int(f.stem), f) for f in files)
    except ValueError:
        bad = next(f.name for f in files if not f.stem.isdigit())
        return (), f"frame files must be numbered (000.png, 001.png, ...), found {bad!r}"
    nums = [n for n, _ in numbered]
    if len(set(nums)) != len(nums):
        return (), "two frame files share a number (e.g. 01.png and 001.png, or .png and .jpg)"
    if nums != list(range(nums[0], nums[0] + len(nums))):
        gap = next(n + 1 for n, m in zip(nums, nums[1:]) if m != n + 1)
        return (), f"frame {gap} is missing (frames must be numbered consecutively)"
    return tuple(f for _, f in numbered), None


def scan_folder(root: Path) -> dict[str, OrbitSource]:
    """Orbits in a folder laid out as ROOT/<object>/NNN.png or ROOT/<object>.mp4 (see the module doc)."""
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    found: dict[str, OrbitSource] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            images = [f for f in entry.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                continue  # not an orbit (e.g. a folder of previews)
            frames, problem = _numbered(images)
            src = OrbitSource(entry.name, frames=frames, problem=problem)
        elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            src = OrbitSource(entry.stem, video=entry)
        else:
            continue
        if src.name in found:
            src = OrbitSource(
                src.name,
                problem=f"two orbits named {src.name!r} in {root} (a folder and a video, or two videos): keep one",
            )
        found[src.name] = src
    if not found:
        raise InputError(
            f"no orbits in {root}: expected one folder of numbered frames per object "
            f"(<object>/000.png ...) or one video per object (<object>.mp4)"
        )
    return found


def read_manifest(path: Path) -> dict[str, OrbitSource]:
    """Orbits from an orbits.parquet manifest (columns object, frame, file), as `svd world` writes it."""
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as exc:
        raise InputError(f"cannot read orbits manifest {path} ({exc.__class__.__name__}: {_line(exc)})") from None
    missing = {"object", "frame", "file"} - set(table.columns)
    if missing:
        raise InputError(
            f"orbits manifest {path} lacks column(s) {', '.join(sorted(missing))} (expected object, frame, file)"
        )
    if table.empty:
        raise InputError(f"orbits manifest {path} has no rows")
    bases = (path.parent, path.parent.parent)  # files relative to the manifest, or to the world root above it
    found: dict[str, OrbitSource] = {}
    for name, rows in table.groupby("object", sort=True):
        rows = rows.sort_values("frame")
        nums = [int(n) for n in rows["frame"]]
        problem = None
        if nums != list(range(nums[0], nums[0] + len(nums))):
            problem = f"manifest frames of {name!r} are not consecutive: {nums}"
        files = []
        for rel in rows["file"]:
            hit = next((b / rel for b in bases if (b / rel).is_file()), None)
            if hit is None and problem is None:
                problem = f"frame file {rel} not found next to {path} or in {path.parent.parent}"
            files.append(hit if hit is not None else bases[0] / rel)
        found[str(name)] = OrbitSource(str(name), frames=tuple(files), problem=problem)
    return found


def open_orbits(path: Path) -> dict[str, OrbitSource]:
    """The orbits at PATH: a manifest file, a folder with a manifest, or a folder of orbits."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"{path}: expected an orbits manifest (.parquet) or a folder of orbits")
        return read_manifest(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    for manifest in (path / "orbits.parquet", path / "eval" / "orbits.parquet"):
        if manifest.is_file():
            return read_manifest(manifest)
    return scan_folder(path)


def resolve_real(params: Params, real: Path | str | None) -> tuple[Path, str]:
    """(path, source) of the ground-truth orbits: --real, else evaluate.multiview.gso_root, else the world's orbits."""
    if real is not None:
        path = Path(real)
        if not path.exists():
            raise InputError(f"--real {path}: no such file or folder")
        return path, "given"
    mv = params.evaluate.multiview
    if mv.gso_root is not None:
        path = Path(mv.gso_root).expanduser()
        if not path.is_dir():
            raise InputError(
                f"evaluate.multiview.gso_root: {mv.gso_root} is not a folder (GSO renders: "
                f"<object>/000.png ... or <object>.mp4; null = the world's orbits)"
            )
        return path, "gso"
    path = Path(params.paths.world) / "eval" / "orbits.parquet"
    if not path.is_file():
        raise InputError(
            f"no world orbits at {path} (run `svd world`, set paths.world, or point "
            f"evaluate.multiview.gso_root / --real at ground-truth orbits)"
        )
    return path, "world"


def _read_image(path: Path, background: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read image {path}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        # renders with alpha: composite over the configured background rather than whatever RGB hides under alpha 0
        alpha = img[..., 3:4].astype(np.float64) / 255.0
        rgb = img[..., 2::-1].astype(np.float64) * alpha + background * (1.0 - alpha)
        return np.clip(rgb.round(), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1])


def read_orbit(src: OrbitSource, background: int = 255) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of one orbit; InputError naming the file when it cannot be used."""
    from svd.io.video import VideoReadError, iter_frames

    if src.problem:
        raise InputError(src.problem)
    if src.video is not None:
        try:
            frames = list(iter_frames(src.video))
        except VideoReadError as exc:
            raise InputError(f"{src.video}: {exc}") from None
        if not frames:
            raise InputError(f"{src.video}: no frames")
    else:
        frames = [_read_image(f, background) for f in src.frames]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(f"{src.where}: frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


def match_size(real: np.ndarray, fake: np.ndarray, resize_real: bool) -> tuple[np.ndarray, bool]:
    """The ground truth at the generated frames' size (the paper scores at the generation resolution)."""
    (hr, wr), (hf, wf) = real.shape[1:3], fake.shape[1:3]
    if (hr, wr) == (hf, wf):
        return real, False
    if abs(hr / wr - hf / wf) > ASPECT_TOL * (hf / wf):
        raise InputError(f"aspect ratios differ: real {wr}x{hr}, generated {wf}x{hf} (a resize would distort)")
    if not resize_real:
        raise InputError(f"sizes differ: real {wr}x{hr}, generated {wf}x{hf} (evaluate.multiview.resize_real is false)")
    interp = cv2.INTER_AREA if hf * wf < hr * wr else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (wf, hf), interpolation=interp) for f in real]), True


# ----------------------------------------------------------------------------------------------------- report


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(np.asarray(values, np.float64)))


def score_orbit(real: np.ndarray, fake: np.ndarray, lpips_fn: Callable, clip_fn: Callable) -> dict:
    """Per-frame and per-object (mean over frames) PSNR, LPIPS and CLIP-S of one orbit pair of one size."""
    per_frame = {"psnr": psnr(real, fake), "lpips": lpips_fn(real, fake), "clip_s": clip_fn(real, fake)}
    out = {k: _mean(v) for k, v in per_frame.items()}
    out["per_frame"] = {k: [round(float(x), 6) for x in v] for k, v in per_frame.items()}
    return out


def evaluate_orbits(
    real: dict[str, OrbitSource],
    fake: dict[str, OrbitSource],
    mv: MultiviewParams,
    lpips_fn: Callable,
    clip_fn: Callable,
) -> dict:
    """Score every object present on both sides; the others, and any that cannot be read, become failures."""
    common = sorted(set(real) & set(fake))
    if not common:
        raise InputError(f"no object names in common: real has {_names(real)}, generated has {_names(fake)}")
    failed: dict[str, str] = {}
    for name in sorted(set(real) - set(fake)):
        failed[name] = "missing in the generated orbits"
    for name in sorted(set(fake) - set(real)):
        failed[name] = "no ground-truth orbit of that name"
    objects: dict[str, dict] = {}
    for name in common:
        try:
            a = read_orbit(real[name], mv.alpha_background)
            b = read_orbit(fake[name], mv.alpha_background)
            for side, x in (("real", a), ("generated", b)):
                if len(x) != mv.frames:
                    raise InputError(
                        f"{side} orbit has {len(x)} frames, the protocol needs {mv.frames} (evaluate.multiview.frames)"
                    )
            a, resized = match_size(a, b, mv.resize_real)
            scores = score_orbit(a, b, lpips_fn, clip_fn)
        except (InputError, ValueError) as exc:
            failed[name] = _line(exc)
            log.warning("multiview: %s failed: %s", name, failed[name])
            continue
        objects[name] = {
            **{k: scores[k] for k in METRICS},
            "frames": int(len(b)),
            "size": [int(b.shape[1]), int(b.shape[2])],
            "resized_real": resized,
            "per_frame": scores["per_frame"],
        }
    if not objects:
        detail = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
        raise InputError(f"no orbit could be scored ({len(failed)} failed; {detail})")
    return {"objects": objects, "failed": dict(sorted(failed.items()))}


def _names(orbits: dict) -> str:
    names = sorted(orbits)
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_multiview(params: Params, fake: Path | str, real: Path | str | None = None) -> dict:
    """The GSO multi-view protocol between the ground-truth orbits (see resolve_real) and a folder of generated
    orbits; returns the report (see the module doc for the averaging)."""
    mv = params.evaluate.multiview
    real_path, source = resolve_real(params, real)
    fake_path = Path(fake)
    if not fake_path.is_dir():
        raise InputError(f"--fake {fake_path}: not a folder of generated orbits")
    real_orbits = open_orbits(real_path)
    fake_orbits = scan_folder(fake_path)
    device = _device(mv.device)
    lpips_fn = LpipsScorer(mv.lpips_alexnet, device=device, seed=params.seed, batch=mv.batch)
    clip_fn = ClipSimilarity(params.weights, device=device, seed=params.seed, batch=mv.batch)
    result = evaluate_orbits(real_orbits, fake_orbits, mv, lpips_fn, clip_fn)
    objects = result["objects"]
    means = {k: _mean([o[k] for o in objects.values()]) for k in METRICS}
    intervals = {}
    if mv.bootstrap and len(objects) > 1:  # objects resampled: the spread a different draw of objects would give
        from svd.evaluation.intervals import mean_interval

        for k in METRICS:
            ci = mean_interval([o[k] for o in objects.values()], rounds=mv.bootstrap, seed=params.seed)
            intervals.update({f"{k}_lo": ci["lo"], f"{k}_hi": ci["hi"]})
    if source == "world" or (source == "given" and _is_world(real_path)):
        source = "world"
    notes = []
    if source == "world":
        notes.append("ground truth is the synthetic world's orbits (a GSO stand-in): not comparable to the paper")
    if not lpips_fn.pretrained:
        notes.append(
            f"LPIPS backbone is a random AlexNet ({LPIPS_KEY} is null): LPIPS values are not the paper's metric"
        )
    if not clip_fn.pretrained:
        notes.append(
            "CLIP backbone is random (weights.clip_pretrained is null): CLIP-S values are not the paper's metric"
        )
    if len(objects) != PAPER_OBJECTS:
        notes.append(f"{len(objects)} objects scored; the paper averages {PAPER_OBJECTS} GSO objects")
    comparable = source != "world" and lpips_fn.pretrained and clip_fn.pretrained and len(objects) == PAPER_OBJECTS
    return {
        "protocol": "GSO multi-view (paper Fig. 10a): PSNR / LPIPS / CLIP-S between corresponding frames",
        "averaging": "per frame, mean over an object's frames, then mean over objects",
        "real": {"path": str(real_path), "source": source},
        "fake": {"path": str(fake_path)},
        "frames": mv.frames,
        "n_objects": len(objects),
        "n_failed": len(result["failed"]),
        **means,
        **intervals,  # 95% bootstrap over objects (evaluate.multiview.bootstrap); absent for a single object
        "psnr_data_range": 1.0,
        "psnr_cap_db": PSNR_CAP_DB,
        "lpips_backbone": lpips_fn.backbone,
        "clip_backbone": clip_fn.backbone,
        "backbones": {
            "lpips": {
                "net": "alex",
                "backbone": lpips_fn.backbone,
                "pretrained": lpips_fn.pretrained,
                "linear": lpips_fn.linear,
            },
            "clip": {
                "model": clip_fn.model_name,
                "backbone": clip_fn.backbone,
                "pretrained": clip_fn.pretrained,
                "backend": clip_fn.backend,
            },
        },
        "objects": objects,
        "failed": result["failed"],
        "paper": {
            "source": "Blattmann et al. 2023, Fig. 10a (50 GSO objects, 21-frame orbits, 576x576)",
            "methods": PAPER,
            "ours": {k: round(v, 4) for k, v in means.items()},
            "comparable": bool(comparable),
            "note": "; ".join(notes) if notes else "same protocol and pretrained backbones",
        },
    }


def _is_world(path: Path) -> bool:
    """Whether a --real path is the world's own orbits (its manifest, eval folder or root)."""
    path = Path(path)
    if path.is_dir():
        path = next((m for m in (path / "orbits.parquet", path / "eval" / "orbits.parquet") if m.is_file()), path)
    return path.name == "orbits.parquet" and path.parent.name == "eval"


def write_report(report: dict, out: Path | str) -> Path:
    import json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, out)  # a killed run never leaves half a report
    return out
