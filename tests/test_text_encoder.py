"""The text encoder: penultimate-layer tokens of an open_clip text tower, frozen, checked against open_clip's own
forward; weights from a file load; bad settings fail naming the params key."""

import pytest
import torch

from svd.errors import WeightsError
from svd.models.clip import load_clip
from svd.models.text import load_text_encoder


def test_penultimate_tokens_match_open_clip_intermediates():
    enc = load_text_encoder("svd-tiny-text", None, seed=3)
    model, _, tok, _, _ = load_clip("svd-tiny-text", None, seed=3)
    tokens = tok(["a red circle moving left", ""])
    # independent path: open_clip's transformer, all but the last block, then ln_final
    x = model.token_embedding(tokens) + model.positional_embedding
    for block in model.transformer.resblocks[:-1]:
        x = block(x, attn_mask=model.attn_mask)
    want = model.ln_final(x)
    got = enc.encode(["a red circle moving left", ""])
    assert got.shape == (2, 32, 64)
    torch.testing.assert_close(got, want)
    # and it is not the last layer's output
    full = model.ln_final(model.transformer(model.token_embedding(tokens) + model.positional_embedding,
                                            attn_mask=model.attn_mask))
    assert not torch.allclose(got, full)


def test_frozen_seeded_and_distinguishes_prompts():
    a, b = load_text_encoder("svd-tiny-text", None, seed=0), load_text_encoder("svd-tiny-text", None, seed=0)
    assert all(not p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training
    x = a.encode(["a red circle moving left", "a red circle moving right"])
    torch.testing.assert_close(x, b.encode(["a red circle moving left", "a red circle moving right"]))
    assert (x[0] - x[1]).abs().max() > 1e-3
    with pytest.raises(TypeError):
        a.encode("not a list")


def test_weights_file_round_trip_and_errors(tmp_path):
    model, *_ = load_clip("svd-tiny-text", None, seed=7)
    torch.save(model.state_dict(), tmp_path / "text.pt")
    enc = load_text_encoder("svd-tiny-text", str(tmp_path / "text.pt"), seed=0)
    ref = load_text_encoder("svd-tiny-text", None, seed=7)
    assert enc.pretrained and "text.pt" in enc.backend
    torch.testing.assert_close(enc.encode(["a blue square"]), ref.encode(["a blue square"]))
    with pytest.raises(WeightsError, match=r"weights\.text_pretrained"):
        load_text_encoder("svd-tiny-text", str(tmp_path / "missing.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"weights\.text_pretrained"):
        load_text_encoder("svd-tiny-text", str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match=r"weights\.text_model"):
        load_text_encoder("no-such-arch", None)
