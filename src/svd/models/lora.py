"""LoRA adapters on the temporal attention of the video UNet (issue 22: the paper's camera-motion LoRAs).

Diffusers' `UNetSpatioTemporalConditionModel` has no adapter API (no PeftAdapterMixin), so this module drives peft
directly, as a diffusers user can: `peft.inject_adapter_in_model` wraps the targeted linear layers, and
`get/set_peft_model_state_dict` move one adapter's weights in peft's key format ("...to_q.lora_A.weight"), which is
also what a user of diffusers' pipeline loads through peft (`svd.export`).

Targets (TEMPORAL_ATTENTION): the query, key, value and output projections of both attentions of every temporal
transformer block: attn1 mixes each latent pixel's features across frames (where a pan or zoom lives), attn2 reads
the context along time. The spatial layers, the temporal res blocks and the feed-forwards stay as the base has them.

An adapter file is safetensors: the adapter's tensors plus metadata naming its rank, alpha, targets and the sha256
of the base UNet it was trained on (`base_digest`), so loading it onto another base is refused in one line. Several
adapters can sit on one base at once, each with its own scale (`set_scales`): switching adapters never reloads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from svd.errors import InputError

TEMPORAL_ATTENTION = r".*temporal_transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)"
FORMAT = "svd-lora/1"


def base_digest(unet: torch.nn.Module) -> str:
    """sha256 of the base UNet's weights (names, dtypes, shapes, bytes), adapters excluded and peft's wrapping
    undone, so a model with adapters injected hashes as its base does."""
    h = hashlib.sha256()
    state = unet.state_dict()
    for name in sorted(state):
        if ".lora_" in name:
            continue
        tensor = state[name].detach().cpu().contiguous()
        h.update(name.replace(".base_layer.", ".").encode())
        h.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def adapter_names(unet: torch.nn.Module) -> list[str]:
    return list(getattr(unet, "peft_config", {}) or {})


def add_adapter(unet: torch.nn.Module, name: str, rank: int, alpha: float | None = None, dropout: float = 0.0):
    """Inject a new, zero-effect adapter `name` (LoRA B starts at zero) into the temporal attention."""
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if name in adapter_names(unet):
        raise ValueError(f"the UNet already has an adapter named {name!r}")
    config = LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha if alpha is not None else rank),
        lora_dropout=float(dropout),
        target_modules=TEMPORAL_ATTENTION,
        init_lora_weights=True,
    )
    import warnings

    with warnings.catch_warnings():  # peft warns when a second adapter joins the first: that is the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, unet, adapter_name=name)
    return unet


def adapter_parameters(unet: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    """The trainable tensors of adapter `name` (and only them: the base and other adapters are frozen)."""
    params = []
    for pname, p in unet.named_parameters():
        own = f".lora_A.{name}." in pname or f".lora_B.{name}." in pname
        p.requires_grad_(own)
        if own:
            params.append(p)
    if not params:
        raise ValueError(f"the UNet has no adapter named {name!r} (it has: {adapter_names(unet) or 'none'})")
    return params


def _lora_layers(unet: torch.nn.Module):
    from peft.tuners.lora import LoraLayer

    return [m for m in unet.modules() if isinstance(m, LoraLayer)]


def set_scales(unet: torch.nn.Module, scales: Mapping[str, float]) -> None:
    """Activate exactly the adapters in `scales`, each at its scale (1 = as trained); {} runs the base alone."""
    unknown = [n for n in scales if n not in adapter_names(unet)]
    if unknown:
        raise InputError(f"no adapter {unknown[0]!r} is loaded (loaded: {', '.join(adapter_names(unet)) or 'none'})")
    for layer in _lora_layers(unet):
        if not scales:
            layer.enable_adapters(False)
            continue
        layer.enable_adapters(True)
        layer.set_adapter(list(scales))
        for name, scale in scales.items():
            layer.set_scale(name, float(scale))
    for p in unet.parameters():  # peft's set_adapter marks the active adapters trainable; sampling wants none
        p.requires_grad_(False)


def save_adapter(path: str | Path, unet: torch.nn.Module, name: str, digest: str, extra: Mapping | None = None):
    """Write adapter `name` as safetensors with its config and the base's digest in the metadata."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    config = unet.peft_config[name]
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name=name).items()}
    meta = {
        "format": FORMAT,
        "adapter": name,
        "rank": str(config.r),
        "alpha": str(config.lora_alpha),
        "target_modules": TEMPORAL_ATTENTION,
        "base_sha256": digest,
        **{f"svd.{k}": json.dumps(v) for k, v in (extra or {}).items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # never a half-written adapter under the real name
    return path


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of an adapter file, or a one-line InputError saying what is wrong with it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no adapter file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise InputError(f"{path} is not a safetensors file ({exc.__class__.__name__})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not an svd LoRA adapter (metadata format {meta.get('format')!r})")
    try:
        rank = int(meta["rank"])
    except (KeyError, ValueError):
        raise InputError(f"{path}: the adapter metadata has no valid rank") from None
    for key, t in tensors.items():
        if ".lora_A." in key and t.shape[0] != rank or ".lora_B." in key and t.shape[1] != rank:
            raise InputError(f"{path}: tensor {key} has shape {tuple(t.shape)}, not rank {rank} as its metadata says")
    if not tensors:
        raise InputError(f"{path} holds no adapter tensors")
    return tensors, meta


def load_adapter(unet: torch.nn.Module, path: str | Path, name: str | None = None, digest: str | None = None) -> str:
    """Load an adapter file onto `unet` under `name` (default: the name it was saved with) and return the name.
    `digest`: the base's `base_digest`, computed here when not given; a file trained on another base is refused."""
    from peft import set_peft_model_state_dict

    tensors, meta = read_adapter(path)
    name = name or meta.get("adapter") or Path(path).stem
    digest = digest or base_digest(unet)
    if meta.get("base_sha256") != digest:
        raise InputError(
            f"{path} was trained on another base UNet (sha256 {str(meta.get('base_sha256'))[:12]}, this one "
            f"{digest[:12]}): load it onto the model it was trained on"
        )
    if name in adapter_names(unet):
        raise InputError(f"an adapter named {name!r} is already loaded")
    add_adapter(unet, name, int(meta["rank"]), float(meta["alpha"]))
    result = set_peft_model_state_dict(unet, tensors, adapter_name=name)
    missing = [k for k in result.missing_keys if f".lora_A.{name}." in k or f".lora_B.{name}." in k]
    if missing or result.unexpected_keys:
        raise InputError(
            f"{path} does not fit this UNet's temporal attention ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors, e.g. "
            f"{(missing or list(result.unexpected_keys))[0]})"
        )
    return name


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """`horizontal` or `horizontal:0.7` -> (name, scale)."""
    name, _, scale = spec.partition(":")
    if not name:
        raise InputError(f"--lora {spec!r}: expected NAME or NAME:SCALE")
    try:
        return name, float(scale) if scale else 1.0
    except ValueError:
        raise InputError(f"--lora {spec!r}: the scale {scale!r} is not a number") from None


__all__ = [
    "FORMAT",
    "TEMPORAL_ATTENTION",
    "adapter_names",
    "adapter_parameters",
    "add_adapter",
    "base_digest",
    "load_adapter",
    "parse_lora_spec",
    "read_adapter",
    "save_adapter",
    "set_scales",
]
