"""CLIP scores of a clip (paper §3.1): aesthetic score and text-image similarity from the key-frame embeddings.

- `embed`: CLIP image embeddings of the given frames (first, middle, last), L2-normalised.
- `aesthetic`: the LAION aesthetic predictor applied to the L2-normalised embeddings, as LAION does, averaged over
  frames. Two head formats, told apart by their state-dict keys: the linear head (`weight` (1, D), `bias`;
  e.g. sa_0_4_vit_l_14_linear.pth) and the "improved aesthetic predictor" MLP (`layers.{0,2,4,6,7}.*`:
  D->1024->128->64->16->1, dropout between, no activations). .pth (torch.load weights_only) or .safetensors.
- `similarity`: mean cosine similarity between the frame embeddings and the caption's text embedding.

With no `weights.aesthetic_head` the head is a seeded random linear layer and `aesthetic_pretrained` is False; with no
`weights.clip_pretrained` the CLIP model is random too (`similarity_pretrained` False). The values are still computed
and recorded, with a backend string that says so; the filters only act on scores whose flag is True.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from svd.config import Weights
from svd.errors import WeightsError
from svd.models.clip import load_clip

_LAYER_KEY = re.compile(r"^(?:.*\.)?layers\.(\d+)\.(weight|bias)$")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict of tensors")
    return state


def head_from_state(state: dict[str, torch.Tensor], embed_dim: int) -> tuple[torch.nn.Module, str]:
    """Build the aesthetic head a state dict describes: ('linear' | 'mlp'); ValueError if it is neither."""
    if set(state) == {"weight", "bias"} and state["weight"].ndim == 2 and state["weight"].shape[0] == 1:
        head = torch.nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
        kind = "linear"
    else:
        layers: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            m = _LAYER_KEY.match(key)
            if m is None:
                raise ValueError(f"unexpected key {key!r} (expected a linear head or layers.N.weight/bias)")
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
        if not layers:
            raise ValueError("empty state dict")
        linears = []
        for idx in sorted(layers):
            w, b = layers[idx].get("weight"), layers[idx].get("bias")
            if w is None or b is None or w.ndim != 2:
                raise ValueError(f"layers.{idx} is not a linear layer")
            if linears and linears[-1].out_features != w.shape[1]:
                raise ValueError(
                    f"layers.{idx} takes {w.shape[1]} inputs, the layer before gives {linears[-1].out_features}"
                )
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            lin.load_state_dict({"weight": w, "bias": b})
            linears.append(lin)
        if linears[-1].out_features != 1:
            raise ValueError(f"the last layer gives {linears[-1].out_features} outputs, not 1")
        # dropout layers sit between the linears in the original and are identities at inference; no activations
        head = torch.nn.Sequential(*linears)
        kind = "mlp"
    d_in = head.in_features if isinstance(head, torch.nn.Linear) else head[0].in_features
    if d_in != embed_dim:
        raise ValueError(f"head expects {d_in}-dim embeddings, the CLIP model gives {embed_dim}")
    return head.eval(), kind


class ClipScorer:
    def __init__(self, weights: Weights, device: str | torch.device = "cpu", seed: int = 0):
        self.device = torch.device(device)
        self.model, self.preprocess, self.tokenizer, clip_backend, self.clip_pretrained = load_clip(
            weights.clip_model, weights.clip_pretrained, device=self.device, key="clip", seed=seed
        )
        # the embedding width, whatever the tower (ViT, ResNet, timm): embed one black frame
        self.embed_dim = int(self.embed([np.zeros((32, 32, 3), np.uint8)]).shape[-1])
        if weights.aesthetic_head:
            path = Path(weights.aesthetic_head).expanduser()
            if not path.is_file():
                raise WeightsError(f"weights.aesthetic_head: {path} not found")
            try:
                self.head, kind = head_from_state(_read_state(path), self.embed_dim)
            except Exception as exc:
                raise WeightsError(
                    f"weights.aesthetic_head: cannot use {path} as a LAION aesthetic head "
                    f"({exc.__class__.__name__}: {exc})"
                ) from None
            self.head_pretrained = True
            head_backend = f"aesthetic:{path.name}({kind})"
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.head = torch.nn.Linear(self.embed_dim, 1).eval()
            self.head_pretrained = False
            head_backend = "aesthetic:random"
        self.head.to(self.device)
        for p in self.head.parameters():
            p.requires_grad_(False)
        self.head_kind = "linear" if isinstance(self.head, torch.nn.Linear) else "mlp"
        self.similarity_pretrained = bool(self.clip_pretrained)
        self.aesthetic_pretrained = bool(self.clip_pretrained and self.head_pretrained)
        self.pretrained = self.aesthetic_pretrained and self.similarity_pretrained
        self.backend = f"{clip_backend}+{head_backend}"

    def _pixels(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        batch = []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"CLIP expects RGB frames (H, W, 3), got shape {f.shape}")
            batch.append(self.preprocess(Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8))))
        return torch.stack(batch).to(self.device)

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 image embeddings, L2-normalised."""
        if len(frames) == 0:
            raise ValueError("embed needs at least one frame")
        with torch.inference_mode():
            emb = self.model.encode_image(self._pixels(frames))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy()

    def aesthetic(self, emb: np.ndarray) -> float:
        """Mean aesthetic score over the frames (LAION scale ~1-10 for the real heads)."""
        x = torch.as_tensor(np.asarray(emb, np.float32), device=self.device)
        x = torch.nn.functional.normalize(x, dim=-1)  # LAION normalises before the head; idempotent here
        with torch.inference_mode():
            return float(self.head(x).mean())

    def embed_text(self, text: str) -> np.ndarray:
        with torch.inference_mode():
            t = self.model.encode_text(self.tokenizer([text]).to(self.device))
            return torch.nn.functional.normalize(t.float(), dim=-1)[0].cpu().numpy()

    def similarity(self, emb: np.ndarray, text: str) -> float:
        """Mean cosine similarity between the frame embeddings and the text embedding."""
        e = np.asarray(emb, np.float32)
        e = e / np.linalg.norm(e, axis=-1, keepdims=True)
        return float((e @ self.embed_text(text)).mean())
