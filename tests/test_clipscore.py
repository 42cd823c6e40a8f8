"""open_clip model construction (random / local file) and the CLIP scores (aesthetic head formats, similarity)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import PARAMS
from svd.config import load_params
from svd.curation.clipscore import ClipScorer
from svd.errors import WeightsError
from svd.models.clip import load_clip


@pytest.fixture(scope="module")
def weights():
    return load_params(PARAMS).weights  # tiny profile: svd-tiny-clip, nothing pretrained


def frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (144, 256, 3), dtype=np.uint8) for _ in range(n)]


def test_random_init_is_seeded_and_frozen():
    model, preprocess, tokenizer, backend, is_pretrained = load_clip("svd-tiny-clip", None)
    assert backend == "open_clip:svd-tiny-clip:random" and is_pretrained is False
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.randn(2, 3, 64, 64)
    again = load_clip("svd-tiny-clip", None)[0]
    assert torch.equal(model.encode_image(x), again.encode_image(x))
    assert model.encode_text(tokenizer(["a red circle"])).shape == (1, 64)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pretrained_file_roundtrip(tmp_path, suffix):
    model, *_ = load_clip("svd-tiny-clip", None, seed=7)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save(model.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded, _, tokenizer, backend, is_pretrained = load_clip("svd-tiny-clip", str(path))
    assert is_pretrained and backend == f"open_clip:svd-tiny-clip:{path.name}"
    x = torch.randn(2, 3, 64, 64)
    t = tokenizer(["a blue square moving left"])
    assert torch.equal(loaded.encode_image(x), model.encode_image(x))
    assert torch.equal(loaded.encode_text(t), model.encode_text(t))
    # a different seed is a different random model: the file, not the seed, decided the weights
    assert not torch.equal(load_clip("svd-tiny-clip", None, seed=0)[0].encode_image(x), model.encode_image(x))


def test_missing_or_bad_weights(tmp_path):
    with pytest.raises(WeightsError, match="weights.clip_pretrained"):
        load_clip("svd-tiny-clip", str(tmp_path / "nope.bin"))
    with pytest.raises(WeightsError, match="weights.coca_pretrained"):
        load_clip("svd-tiny-coca", "laion2b_s13b_b90k", key="coca")  # a tag would download: refused
    other, *_ = load_clip("svd-tiny-coca", None)
    path = tmp_path / "coca.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(WeightsError, match="cannot load"):
        load_clip("svd-tiny-clip", str(path))
    with pytest.raises(WeightsError, match="weights.clip_model"):
        load_clip("no-such-arch", None)


def test_scorer_shapes_and_determinism(weights):
    scorer = ClipScorer(weights)
    assert scorer.backend == "open_clip:svd-tiny-clip:random+aesthetic:random"
    assert not scorer.pretrained and not scorer.aesthetic_pretrained and not scorer.similarity_pretrained
    fr = frames()
    emb = scorer.embed(fr)
    assert emb.shape == (3, 64) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert np.array_equal(emb, ClipScorer(weights).embed(fr))
    a, s = scorer.aesthetic(emb), scorer.similarity(emb, "a red circle on a blue background")
    assert isinstance(a, float) and isinstance(s, float) and -1 <= s <= 1
    manual = float(np.mean(emb @ scorer.embed_text("a red circle on a blue background")))
    assert s == pytest.approx(manual, abs=1e-6)


def _linear_head(d):
    torch.manual_seed(1)
    return torch.nn.Linear(d, 1)


def _mlp_head(d):
    # LAION "improved aesthetic predictor": Linear/Dropout stack, no activations
    torch.manual_seed(2)
    return torch.nn.Sequential(
        torch.nn.Linear(d, 1024),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    ).eval()


@pytest.mark.parametrize("kind,suffix", [("linear", ".pth"), ("mlp", ".pth"), ("mlp", ".safetensors")])
def test_aesthetic_head_formats(tmp_path, weights, kind, suffix):
    clip_file = tmp_path / "clip.pt"
    torch.save(load_clip("svd-tiny-clip", None)[0].state_dict(), clip_file)
    head = _linear_head(64) if kind == "linear" else _mlp_head(64)
    # the MLP's state dict is saved as LAION's MLP module does: keys layers.N.weight/bias
    state = head.state_dict() if kind == "linear" else {f"layers.{k}": v for k, v in head.state_dict().items()}
    path = tmp_path / f"head{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    w = weights.model_copy(update={"clip_pretrained": str(clip_file), "aesthetic_head": str(path)})
    scorer = ClipScorer(w)
    assert scorer.head_kind == kind and scorer.aesthetic_pretrained and scorer.similarity_pretrained
    assert scorer.pretrained and scorer.backend.endswith(f"aesthetic:{path.name}({kind})")
    emb = scorer.embed(frames())
    with torch.no_grad():
        expected = head(torch.nn.functional.normalize(torch.from_numpy(emb), dim=-1)).mean().item()
    assert scorer.aesthetic(emb) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_head_without_clip_weights_is_not_pretrained(tmp_path, weights):
    path = tmp_path / "head.pth"
    torch.save(_linear_head(64).state_dict(), path)
    scorer = ClipScorer(weights.model_copy(update={"aesthetic_head": str(path)}))
    assert scorer.head_pretrained and not scorer.aesthetic_pretrained and not scorer.pretrained


def test_aesthetic_head_errors(tmp_path, weights):
    with pytest.raises(WeightsError, match="weights.aesthetic_head.*not found"):
        ClipScorer(weights.model_copy(update={"aesthetic_head": str(tmp_path / "missing.pth")}))
    wrong_dim = tmp_path / "wrong.pth"
    torch.save(_linear_head(768).state_dict(), wrong_dim)  # a ViT-L/14 head on a 64-dim model
    with pytest.raises(WeightsError, match="768-dim"):
        ClipScorer(weights.model_copy(update={"aesthetic_head": str(wrong_dim)}))
    junk = tmp_path / "junk.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, junk)
    with pytest.raises(WeightsError, match="weights.aesthetic_head: cannot use"):
        ClipScorer(weights.model_copy(update={"aesthetic_head": str(junk)}))
