"""open_clip models (CLIP and CoCa) built one way for the curation scorers and the training code.

Two sources only (DESIGN rule 5): an open_clip architecture with random init, or that architecture with weights from
a local file. Our small architectures (`svd-tiny-clip`, `svd-tiny-coca`, in ./configs) are registered with open_clip at
import, so `open_clip.create_model_and_transforms("svd-tiny-clip")` works like any built-in name. They use open_clip's
bundled BPE tokenizer (no download). Nothing here ever downloads: pretrained tags (e.g. "laion2b_s32b_b82k"),
`hf-hub:` names and tower weights (timm / HF text towers) are refused or switched off.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch

from svd.errors import WeightsError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_registered = False


def _quiet_random_init(record: logging.LogRecord) -> bool:
    return "initialized randomly" not in record.getMessage()


def register_configs() -> None:
    """Make our configs (svd-tiny-*) known to open_clip; idempotent."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def list_models() -> list[str]:
    register_configs()
    import open_clip

    return open_clip.list_models()


def load_clip(
    model_name: str,
    pretrained: str | None,
    device: str | torch.device = "cpu",
    key: str = "clip",
    seed: int = 0,
    freeze: bool = True,
) -> tuple[torch.nn.Module, Callable, Any, str, bool]:
    """Build an open_clip model: (model, preprocess, tokenizer, backend, is_pretrained).

    `pretrained`: None -> random init (seeded by `seed`, so random scores repeat run to run); a local file (.bin, .pt,
    .pth, .safetensors: an open_clip state dict) -> loaded strictly. `key` names the params entries in messages
    (`weights.<key>_model`, `weights.<key>_pretrained`). The model comes back in eval mode, frozen unless
    `freeze=False` (training).
    """
    register_configs()
    import open_clip

    if model_name.startswith(("hf-hub:", "local-dir:")) or model_name not in open_clip.list_models():
        raise WeightsError(
            f"weights.{key}_model: {model_name!r} is not an open_clip architecture here "
            f"(built-in names such as ViT-L-14, or ours: svd-tiny-clip, svd-tiny-coca)"
        )
    if pretrained is not None:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights.{key}_pretrained: {pretrained} is not a file (a local open_clip weights file is needed; "
                f"pretrained tags would download and are not used)"
            )
        pretrained = str(path)
    kwargs = dict(pretrained_image=False, pretrained_text=False, device=device, weights_only=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # open_clip warns "initialized randomly" for pretrained=None: that is what the random source means
            root = logging.getLogger()
            root.addFilter(_quiet_random_init)
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, **kwargs
                )
            finally:
                root.removeFilter(_quiet_random_init)
    except WeightsError:
        raise
    except Exception as exc:
        if pretrained is None:
            raise
        raise WeightsError(
            f"weights.{key}_pretrained: cannot load {pretrained} into {model_name} "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    source = Path(pretrained).name if pretrained else "random"
    return model, preprocess, tokenizer, f"open_clip:{model_name}:{source}", pretrained is not None
