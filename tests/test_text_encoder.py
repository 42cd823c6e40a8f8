"""The text encoder: penultimate-layer tokens of an open_clip text tower, frozen, checked against open_clip's own
forward; weights from a file load; bad settings fail naming the params key."""

import pytest
import torch

from svd.errors import WeightsError
from svd.models.clip import load_clip
from svd.models.text import RANDOM_TOKEN_STD, load_text_encoder


def test_penultimate_tokens_match_open_clip_intermediates():
    enc = load_text_encoder("svd-tiny-text", None, seed=3)
    model, _, tok, _, _ = load_clip("svd-tiny-text", None, seed=3)
    tokens = tok(["a red circle moving left", ""])
    with torch.no_grad():  # a random tower redraws its token embeddings (checked below); the rest is open_clip's
        model.token_embedding.weight.copy_(enc.token_embedding.weight)
    # independent path: open_clip's transformer, all but the last block, then ln_final
    x = model.token_embedding(tokens) + model.positional_embedding
    for block in model.transformer.resblocks[:-1]:
        x = block(x, attn_mask=model.attn_mask)
    want = model.ln_final(x)
    got = enc.encode(["a red circle moving left", ""])
    assert got.shape == (2, 32, 64)
    torch.testing.assert_close(got, want)
    # and it is not the last layer's output
    full = model.ln_final(
        model.transformer(model.token_embedding(tokens) + model.positional_embedding, attn_mask=model.attn_mask)
    )
    assert not torch.allclose(got, full)


def test_random_tower_keeps_words_apart():
    """At open_clip's init (token std 0.02) "red" and "blue" come out at cosine ~0.8 at the same position; the
    redrawn token embeddings keep words distinct, which is what lets Stage I bind colours (README)."""
    enc = load_text_encoder("svd-tiny-text", None, seed=0)
    assert enc.token_embedding.weight.std().item() == pytest.approx(RANDOM_TOKEN_STD, rel=0.01)
    e = enc.encode(["a red circle moving left", "a blue circle moving left", "a red circle moving right"])
    cos = torch.nn.functional.cosine_similarity
    assert cos(e[0, 2], e[1, 2], dim=0) < 0.5  # the colour word (position 2: start token, "a", colour)
    assert cos(e[0, 5], e[2, 5], dim=0) < 0.5  # the direction word
    torch.testing.assert_close(e[0, :2], e[1, :2])  # causal: tokens before the colour do not see it


def test_direction_word_is_read_the_same_for_every_object():
    """The direction word comes last, so a causal tower mixes the whole caption into its feature. If that mixing
    dominated, "left" after "a red circle" and after "a blue square" would be different inputs to the UNet, and the
    binding would have to be learned once per appearance. Over every colour x shape x direction prompt of the world,
    the direction alone explains 97% of the feature's variance at its position (seed 0); open_clip's token std 0.02
    gives 68%, the appearance taking most of the rest."""
    import itertools

    from svd.world.scene import COLOURS, DIRECTIONS, SHAPES

    enc = load_text_encoder("svd-tiny-text", None, seed=0)
    prompts = list(itertools.product(COLOURS, SHAPES, [d for d in DIRECTIONS if d != "still"]))
    x = enc.encode([f"a {c} {s} moving {d}" for c, s, d in prompts])[:, 5].double()  # start, a, c, s, moving, d
    x = x - x.mean(0)

    def explained(key) -> float:
        groups: dict = {}
        for i, p in enumerate(prompts):
            groups.setdefault(key(p), []).append(i)
        means = torch.zeros_like(x)
        for rows in groups.values():
            means[rows] = x[rows].mean(0)
        return float((means**2).sum() / (x**2).sum())

    assert explained(lambda p: p[2]) > 0.9
    assert explained(lambda p: (p[0], p[1])) < 0.05


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
    assert enc.pretrained and "text.pt" in enc.backend
    # a weights file is used as it is: its token embeddings are not redrawn like a random tower's
    torch.testing.assert_close(enc.token_embedding.weight, model.token_embedding.weight)
    for name, value in model.transformer.state_dict().items():
        torch.testing.assert_close(enc.transformer.state_dict()[name], value)
    with pytest.raises(WeightsError, match=r"weights\.text_pretrained"):
        load_text_encoder("svd-tiny-text", str(tmp_path / "missing.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"weights\.text_pretrained"):
        load_text_encoder("svd-tiny-text", str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match=r"weights\.text_model"):
        load_text_encoder("no-such-arch", None)
