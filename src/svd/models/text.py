"""The text encoder of text-to-video (SD 2.1's, as the paper's never-released T2V model used it).

OpenCLIP's text tower, output of the penultimate transformer layer after ln_final, one vector per token:
(B, context_length, width) fed to the UNet's cross-attention (a100: ViT-H-14, (B, 77, 1024); sgm's
FrozenOpenCLIPEmbedder with layer="penultimate"). Always frozen. The tiny profile uses `svd-tiny-text` (context 32,
width 64 = model.unet.cross_attention_dim), random-initialised with a fixed seed: its embeddings are a fixed random
function of the tokens, which the UNet's cross-attention learns to read (runs are tagged `text_encoder=random`).

A random tower keeps open_clip's layer init but draws its token embeddings with std RANDOM_TOKEN_STD (ours) instead
of 0.02: at 0.02 the random blocks' outputs swamp the token identity, so every word at a position comes out nearly
the same vector (cosine 0.8 between "red" and "blue", 0.83 between "left" and "right"), and cross-attention has to
amplify a faint difference before it can learn anything. At 1.0 those cosines are 0.28 and 0.07, as distinct as a
trained tower keeps its words. Frozen all the same: the features stay a fixed random function of the tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from svd.errors import WeightsError
from svd.models.clip import load_clip


RANDOM_TOKEN_STD = 1.0  # token-embedding std of a random (unpretrained) tower; see the module docstring


class TextEncoder(nn.Module):
    """Frozen open_clip text tower -> penultimate-layer token features. `encode(list[str]) -> (B, L, width)`."""

    def __init__(self, clip_model: nn.Module, tokenizer, backend: str, pretrained: bool):
        super().__init__()
        for name in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(clip_model, name):
                raise WeightsError(f"weights.text_model: {type(clip_model).__name__} has no built-in text tower "
                                   f"(missing {name}); use an open_clip CLIP architecture")
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.tokenizer = tokenizer
        self.backend = backend
        self.pretrained = pretrained
        self.requires_grad_(False)
        self.eval()

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        blocks = self.transformer.resblocks
        for block in blocks[: len(blocks) - 1]:  # penultimate layer (SD 2.x)
            x = block(x, attn_mask=self.attn_mask)
        return self.ln_final(x)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode() takes a list of strings")
        tokens = self.tokenizer(list(texts)).to(self.token_embedding.weight.device)
        return self.forward(tokens)


def load_text_encoder(model_name: str, pretrained: str | None, seed: int = 0,
                      device: str | torch.device = "cpu") -> TextEncoder:
    """The text tower of open_clip `model_name`; weights from the local file `pretrained`, or random (seeded)."""
    model, _, tokenizer, backend, is_pretrained = load_clip(model_name, pretrained, device=device, key="text",
                                                            seed=seed)
    if not is_pretrained:
        generator = torch.Generator().manual_seed(seed)
        weight = model.token_embedding.weight
        with torch.no_grad():
            weight.copy_(torch.randn(weight.shape, generator=generator) * RANDOM_TOKEN_STD)
    encoder = TextEncoder(model, tokenizer, backend, is_pretrained)
    encoder.seed = seed  # which random draw this is (svd_model.json records it as text_seed)
    encoder.model_name, encoder.pretrained_source = model_name, pretrained  # what a model folder records
    del model.visual  # only the text tower is kept
    return encoder


__all__ = ["TextEncoder", "load_text_encoder"]
