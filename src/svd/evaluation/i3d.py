"""Inception-I3D (Carreira & Zisserman 2017), the network FVD is defined on, and loading its weights.

The layout follows the PyTorch `InceptionI3d` of piergiaj/pytorch-i3d (module names Conv3d_1a_7x7 ... Mixed_5c,
`logits`; units hold `conv3d` and `bn`), so a state dict saved from that layout loads here unchanged. Convolutions
and max-pools pad like TensorFlow's "SAME" (the original was trained in TF), computed per input size.

`width` scales every channel count (1.0 = the paper's network, 12M parameters); the tiny profile trains narrow
copies on the CPU. Features: "pool" is the globally average-pooled Mixed_5c output (1024 at width 1), "logits" the
400 pre-softmax class scores, which is what the TF FVD and the StyleGAN-V TorchScript I3D (`return_features=True`)
return.

Weights come from one configured file (never downloaded):
- the community TorchScript export `i3d_torchscript.pt` (StyleGAN-V), called as
  `module(x, rescale=False, resize=False, return_features=True)` on x of shape (N, 3, T, 224, 224) in [-1, 1]
  (rescale=True would map [0, 255] to [-1, 1] inside the module, resize=True would resize to 224 inside it; we do
  both ourselves, once, in `svd.evaluation.fvd.preprocess`);
- a state dict of `InceptionI3d` (.pt/.pth via `torch.load(weights_only=True)`, or .safetensors, which
  `save_inception_i3d` writes together with the architecture in its metadata).
Every failure is a `WeightsError` naming the params key.

No Kinetics weights exist on these machines, so `train_feature_net` trains a narrow InceptionI3d on the shapes
world's action clips (a UCF-101 stand-in) for the tiny profile: one softmax head per attribute (colour, shape,
direction) and an order head trained on clips shuffled in time as negatives, so the features FVD compares see
temporal order as well as content. Its file records the input protocol it expects and its heads.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svd.errors import WeightsError

KINETICS_CLASSES = 400
WEIGHTS_KEY = "evaluate.fvd.i3d_weights"
FEATURES = ("logits", "pool")
FORMAT = "svd-inception-i3d"

# Inception blocks in order, with the pooling that precedes some of them. Branch widths per block:
# (1x1, 3x3-reduce, 3x3, 3x3-reduce, 3x3, pool-proj); a block outputs 1x1 + 3x3 + 3x3 + pool-proj channels.
_BLOCKS: list[tuple[str, tuple[int, ...]]] = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]
_POOL_BEFORE = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Pad (N, C, T, H, W) like TF 'SAME': output size ceil(in / stride), the odd pixel going to the end."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad wants W first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + BatchNorm (TF's eps 1e-3) + ReLU; the logits unit has bias and neither."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        bn: bool = True,
        relu: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class SamePool3d(nn.Module):
    """Max-pool with TF SAME padding. Zero padding equals TF's -inf padding here: every input follows a ReLU."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        c0, c1r, c1, c2r, c2, c3 = widths
        self.b0 = Unit3D(cin, c0)
        self.b1a, self.b1b = Unit3D(cin, c1r), Unit3D(c1r, c1, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c2r), Unit3D(c2r, c2, (3, 3, 3))
        self.b3a, self.b3b = SamePool3d((3, 3, 3), (1, 1, 1)), Unit3D(cin, c3)
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D on (N, 3, T, H, W) in [-1, 1]; `forward(x, features)` returns (N, D)."""

    def __init__(
        self, num_classes: int = KINETICS_CLASSES, width: float = 1.0, in_channels: int = 3, dropout: float = 0.5
    ):
        super().__init__()
        if width <= 0 or num_classes < 1:
            raise ValueError(f"InceptionI3d needs width > 0 and num_classes >= 1, got {width}, {num_classes}")
        self.config = {"num_classes": int(num_classes), "width": float(width), "in_channels": int(in_channels)}
        c = lambda n: scaled(n, width)  # noqa: E731
        self.Conv3d_1a_7x7 = Unit3D(in_channels, c(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self._order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        cin = c(192)
        for name, widths in _BLOCKS:
            if name in _POOL_BEFORE:
                pool, k, s = _POOL_BEFORE[name]
                setattr(self, pool, SamePool3d(k, s))
                self._order.append(pool)
            block = InceptionBlock(cin, tuple(c(w) for w in widths))
            setattr(self, name, block)
            self._order.append(name)
            cin = block.out_channels
        self.feature_dim = cin
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(cin, num_classes, bn=False, relu=False, bias=True)

    def dims(self) -> dict[str, int]:
        return {"pool": self.feature_dim, "logits": self.config["num_classes"]}

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._order:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor, features: str = "logits") -> torch.Tensor:
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        x = self.trunk(x)
        # the original's AvgPool3d([2, 7, 7], stride 1) at 16 x 224 x 224 (Mixed_5c is 2 x 7 x 7), generalised to
        # any input size; the time steps left are averaged, as the reference's clients do with its logits
        x = F.avg_pool3d(x, (min(2, x.shape[2]), x.shape[3], x.shape[4]), stride=1)
        if features == "pool":
            return x.mean(dim=(2, 3, 4))
        return self.logits(self.dropout(x)).mean(dim=(2, 3, 4))


class TorchScriptI3D(nn.Module):
    """The community TorchScript I3D behind the same `forward(x, features)`; it only returns logits."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, features: str = "logits") -> torch.Tensor:
        if features != "logits":
            raise ValueError("the TorchScript I3D returns its pre-softmax logits only (features=logits)")
        return self.module(x, rescale=False, resize=False, return_features=True)


# ---------------------------------------------------------------- weights


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry compiled code (code/...) and constants.pkl; torch.save archives never do."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names)


def _check_file(path: str | Path | None, key: str) -> Path:
    if path is None:
        raise WeightsError(
            f"{key} is not set: FVD needs the I3D weights (i3d_torchscript.pt or an InceptionI3d "
            f"state dict); nothing is downloaded"
        )
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"{key}: no such file {p}")
    return p


def load_torchscript_i3d(
    path: str | Path, key: str = WEIGHTS_KEY, device: str | torch.device = "cpu"
) -> TorchScriptI3D:
    p = _check_file(path, key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.9+ marks TorchScript deprecated; it still loads
            module = torch.jit.load(str(p), map_location=device)
    except Exception as exc:  # noqa: BLE001 - any failure of the archive is the same user error
        raise WeightsError(f"{key}: {p} is not a loadable TorchScript module ({_short(exc)})") from None
    try:
        names = {a.name for a in module.forward.schema.arguments}
    except Exception:  # noqa: BLE001
        names = set()
    missing = {"rescale", "resize", "return_features"} - names
    if missing:
        raise WeightsError(
            f"{key}: {p} is TorchScript but its forward lacks {', '.join(sorted(missing))}; expected "
            f"the StyleGAN-V I3D (forward(x, rescale, resize, return_features))"
        )
    return TorchScriptI3D(module.eval())


def _read_state_dict(p: Path, key: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, architecture config if the file records one)."""
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{key}: {p} is not a readable safetensors file ({_short(exc)})") from None
        config = json.loads(meta["config"]) if meta.get("format") == FORMAT and "config" in meta else None
        return sd, config
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(
            f"{key}: {p} is not a state dict torch.load(weights_only=True) accepts ({_short(exc)})"
        ) from None
    config = None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        config = obj.get("config") if isinstance(obj.get("config"), dict) else None
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{key}: {p} does not hold a state dict of tensors")
    # checkpoints saved from DataParallel prefix every key with "module."
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
    return sd, config


def load_inception_i3d(path: str | Path, key: str = WEIGHTS_KEY) -> InceptionI3d:
    """An InceptionI3d from a state dict; the architecture comes from the file's metadata or its tensor shapes."""
    p = _check_file(path, key)
    sd, config = _read_state_dict(p, key)
    if config is None:
        first, head = sd.get("Conv3d_1a_7x7.conv3d.weight"), sd.get("logits.conv3d.weight")
        if first is None or head is None or first.ndim != 5 or head.ndim != 5:
            raise WeightsError(
                f"{key}: {p} is not an InceptionI3d state dict (no Conv3d_1a_7x7 / logits convolution weights)"
            )
        config = {"num_classes": int(head.shape[0]), "width": first.shape[0] / 64.0, "in_channels": int(first.shape[1])}
    try:
        model = InceptionI3d(**{k: config[k] for k in ("num_classes", "width", "in_channels")})
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{key}: {p} records an unusable architecture {config} ({_short(exc)})") from None
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{key}: {p} does not fit InceptionI3d{config}: {_short(exc)}") from None
    return model.eval()


def save_inception_i3d(model: InceptionI3d, path: str | Path, extra: dict | None = None) -> Path:
    """safetensors with the architecture in its metadata (what `load_inception_i3d` reads back); `extra` entries
    (JSON-able) are stored beside it, e.g. the protocol a trained net expects."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config)}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    path.write_bytes(_sorted_metadata(save(sd, metadata=meta)))
    return path


def _sorted_metadata(blob: bytes) -> bytes:
    """safetensors bytes with the header's __metadata__ keys in sorted order. safetensors keeps metadata in a hash
    map, so its key order, and with it the file's bytes and DVC hash, changed from run to run for the same weights
    (the FVD feature net's dvc.lock hash moved on every re-run). The header keeps its length, so the tensor offsets
    (relative to the data after it) stay valid."""
    import struct

    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:
        raise ValueError("re-serialised safetensors header grew")  # never: same content, same compact form
    return blob[:8] + text + b" " * (n - len(text)) + blob[8 + n :]


def read_metadata(path: str | Path) -> dict:
    """The JSON entries `save_inception_i3d` stored (empty for other files)."""
    p = Path(path)
    if p.suffix != ".safetensors" or not p.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - unreadable files are reported by the loader
        return {}
    if meta.get("format") != FORMAT:
        return {}
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def load_i3d(
    path: str | Path | None, key: str = WEIGHTS_KEY, device: str | torch.device = "cpu"
) -> tuple[nn.Module, str]:
    """(model in eval mode on `device`, a name saying which weights: kind and file digest)."""
    p = _check_file(path, key)
    digest = file_digest(p)[:16]
    if is_torchscript(p):
        return load_torchscript_i3d(p, key, device), f"i3d-torchscript:{p.name}:sha256={digest}"
    model = load_inception_i3d(p, key).to(device)
    cfg = model.config
    return model, (f"inception-i3d(width={cfg['width']:g},classes={cfg['num_classes']}):{p.name}:sha256={digest}")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------- a feature net for the shapes world

STREAM_FEATURE_TRAIN = 21  # seed streams of our own: the world stage's eval clips use STREAM_ACTIONS (3)
STREAM_FEATURE_HELDOUT = 22
ORDER = ("coherent", "broken")  # the order head: does the clip run in a physically possible order?
BROKEN_KINDS = ("shuffled", "jump", "frozen")  # what the held-out report checks (training: feature_net.broken_kinds)


def action_classes(ecfg) -> list[tuple[str, str, str]]:
    """(colour, shape, direction) of every class of the world's action set (world.eval)."""
    import itertools

    return list(itertools.product(ecfg.colours, ecfg.shapes, ecfg.directions))


def feature_heads(ecfg) -> dict[str, list[str]]:
    """The feature net's outputs, in order: one softmax per attribute of the world's action clips (colour, shape,
    direction) and the order head. Their concatenated logits are FVD's features, so a sample set is far from the
    real one when any attribute's distribution is off, or when its clips do not run in order."""
    return {
        "colour": list(ecfg.colours),
        "shape": list(ecfg.shapes),
        "direction": list(ecfg.directions),
        "order": list(ORDER),
    }


def head_slices(heads: dict[str, list[str]]) -> dict[str, slice]:
    out, start = {}, 0
    for name, labels in heads.items():
        out[name] = slice(start, start + len(labels))
        start += len(labels)
    return out


def shuffled_order(n: int, rng) -> np.ndarray:
    """A permutation of n frames that is neither the identity nor its reverse (a reversed clip is a valid clip of
    the opposite direction, not a broken one)."""
    if n < 3:
        raise ValueError(f"a shuffled clip needs at least 3 frames, got {n}")
    forward = np.arange(n)
    while True:
        order = rng.permutation(n)
        if not (np.array_equal(order, forward) or np.array_equal(order, forward[::-1])):
            return order


def jumped(spec, rng):
    """The shot with its object moved a third of the frame across its direction of motion (towards the middle)."""
    import dataclasses

    obj = spec.objects[0]
    step = spec.width / 3
    if obj.direction in ("left", "right"):
        moved = dataclasses.replace(obj, y0=obj.y0 + (step if obj.y0 < spec.height / 2 else -step))
    else:
        moved = dataclasses.replace(obj, x0=obj.x0 + (step if obj.x0 < spec.width / 2 else -step))
    return dataclasses.replace(spec, objects=(moved, *spec.objects[1:]))


def render_action_clip(ecfg, frames: int, cls: tuple[str, str, str], rng, broken: str | None = None) -> np.ndarray:
    """(frames, S, S, 3) uint8: one clip of a class, rendered in memory like the world's eval clips; `broken`:
    "shuffled" (frames out of order), "jump" (the object jumps across its path between two frames) or "frozen"
    (the first frame held)."""
    from svd.world.render import ShotRenderer
    from svd.world.scene import action_shot

    spec = action_shot(rng, ecfg.action_size, ecfg.action_fps, frames, *cls)
    renderer = ShotRenderer(spec)
    if broken == "jump":
        cut = int(rng.integers(max(1, frames // 4), max(2, 3 * frames // 4 + 1)))
        other = ShotRenderer(jumped(spec, rng))
        return np.stack([renderer.frame(k) if k < cut else other.frame(k) for k in range(frames)])
    clip = np.stack([renderer.frame(k) for k in range(frames)])
    if broken == "shuffled":
        return clip[shuffled_order(frames, rng)]
    if broken == "frozen":
        return np.repeat(clip[:1], frames, axis=0)
    if broken is not None:
        raise ValueError(f"broken must be one of {BROKEN_KINDS} or None, got {broken!r}")
    return clip


def _labels(heads: dict[str, list[str]], cls: tuple[str, str, str], broken: bool) -> dict[str, int]:
    """Target index per head; -100 (ignored) for the direction of a broken clip, which has none."""
    colour, shape, direction = cls
    return {
        "colour": heads["colour"].index(colour),
        "shape": heads["shape"].index(shape),
        "direction": -100 if broken else heads["direction"].index(direction),
        "order": int(broken),
    }


def train_feature_net(ecfg, net, out: str | Path, seed: int, logger=None) -> dict:
    """Train a narrow InceptionI3d on the world's action clips, one softmax head per attribute (feature_heads),
    from fresh clips every step (seed stream STREAM_FEATURE_TRAIN); `net.broken` of them are broken in time
    (`net.broken_kinds`) and labelled so by the order head. Reports per-attribute accuracy on held-out clips (their
    own stream) and how often each kind of broken clip is caught, and saves OUT/i3d.safetensors with the protocol
    it expects. Deterministic: torch's deterministic algorithms, the caller's fixed thread count, seeded clips, so a
    second run on the same machine writes the same bytes. `ecfg`: world.eval; `net`: evaluate.fvd.feature_net.
    Inputs go through `svd.evaluation.fvd.preprocess`, the exact path FVD feeds it by."""
    import time

    from svd.evaluation.fvd import Protocol, preprocess

    out = Path(out)
    if getattr(net, "fps", None):
        # clips at the evaluation's rate, so an object moves as far per frame as in the clips FVD will score
        ecfg = ecfg.model_copy(update={"action_fps": net.fps})
    classes = action_classes(ecfg)
    heads = feature_heads(ecfg)
    slices = head_slices(heads)
    kinds = list(net.broken_kinds)
    protocol = Protocol(frames=net.frames, size=net.size)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = InceptionI3d(num_classes=sum(map(len, heads.values())), width=net.width, dropout=net.dropout)
        opt = torch.optim.AdamW(model.parameters(), lr=net.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=net.lr, total_steps=net.steps, pct_start=0.1)
        start, losses = time.perf_counter(), []
        model.train()
        for step in range(net.steps):
            rng = np.random.default_rng([seed, STREAM_FEATURE_TRAIN, step])
            picks = rng.integers(0, len(classes), net.batch)
            broken = [
                kinds[int(rng.integers(len(kinds)))] if kinds and rng.random() < net.broken else None for _ in picks
            ]
            clips = np.stack([render_action_clip(ecfg, net.frames, classes[c], rng, b) for c, b in zip(picks, broken)])
            targets = [_labels(heads, classes[c], b is not None) for c, b in zip(picks, broken)]
            logits = model(preprocess(clips, protocol).tensor, features="logits")
            loss = sum(
                F.cross_entropy(logits[:, sl], torch.tensor([t[name] for t in targets]), ignore_index=-100)
                for name, sl in slices.items()
                if any(t[name] >= 0 for t in targets)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if logger is not None:
                logger({"loss": losses[-1], "lr": sched.get_last_lr()[0]}, step)
        seconds = time.perf_counter() - start
        summary = heldout_report(model, ecfg, net, seed, heads, protocol)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    summary.update(
        {
            "chance": 1.0 / len(classes),
            "classes": len(classes),
            "features": sum(map(len, heads.values())),
            "steps": net.steps,
            "final_loss": float(np.mean(losses[-10:])),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": seconds,
            "fps": float(ecfg.action_fps),
        }
    )
    path = save_inception_i3d(
        model,
        out / "i3d.safetensors",
        extra={
            "protocol": {"frames": protocol.frames, "size": protocol.size, "fps": float(ecfg.action_fps)},
            "heads": heads,
            "broken_kinds": kinds,
            "heldout_accuracy": summary["heldout_accuracy"],
        },
    )
    # the wall time goes to the run's summary (MLflow), not into the folder DVC hashes
    (out / "feature_net.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "train_seconds"}, indent=2) + "\n"
    )
    summary["path"] = str(path)
    return summary


@torch.no_grad()
def heldout_report(model, ecfg, net, seed: int, heads: dict[str, list[str]], protocol) -> dict[str, float]:
    """Accuracy per attribute on held-out clips (net.heldout_per_class coherent clips per class), the joint
    accuracy (every head right: the class), and per kind of broken clip the share the order head calls broken
    (kinds training never showed included: the report says which generalise)."""
    from svd.evaluation.fvd import preprocess

    classes = action_classes(ecfg)
    slices = head_slices(heads)
    model.eval()

    def predict(broken: str | None, stream: int) -> tuple[dict[str, np.ndarray], list[dict[str, int]]]:
        preds: dict[str, list[int]] = {name: [] for name in heads}
        targets = []
        for ci, cls in enumerate(classes):
            rngs = [
                np.random.default_rng([seed, STREAM_FEATURE_HELDOUT, stream, ci, k])
                for k in range(net.heldout_per_class)
            ]
            clips = np.stack([render_action_clip(ecfg, net.frames, cls, r, broken) for r in rngs])
            logits = model(preprocess(clips, protocol).tensor, features="logits")
            for name, sl in slices.items():
                preds[name] += logits[:, sl].argmax(1).tolist()
            targets += [_labels(heads, cls, broken is not None)] * len(rngs)
        return {k: np.asarray(v) for k, v in preds.items()}, targets

    pred, targets = predict(None, 0)
    right = {name: pred[name] == np.asarray([t[name] for t in targets]) for name in heads}
    report = {f"heldout_{name}_accuracy": float(right[name].mean()) for name in heads}
    report["heldout_accuracy"] = float(np.logical_and.reduce([right[n] for n in heads]).mean())
    report["heldout_clips"] = len(targets)
    for i, kind in enumerate(BROKEN_KINDS, start=1):
        broken_pred, _ = predict(kind, i)
        report[f"heldout_{kind}_detected"] = float((broken_pred["order"] == ORDER.index("broken")).mean())
    return report
