"""LoRA adapters on the video UNet's temporal attention (svd.models.lora): injection with no effect at start, only the
adapter trains, save and reload give the same outputs, several adapters at their scales switch without reloading the
base, and bad files meet one-line errors."""

import pytest
import torch

from svd.errors import InputError
from svd.models import lora
from svd.models.unet import TINY_UNET_PARAMS, build_video_unet, video_unet_config


def _unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_video_unet(video_unet_config(TINY_UNET_PARAMS)).eval()


def _inputs(unet, frames: int = 4):
    g = torch.Generator().manual_seed(1)
    cfg = unet.config
    x = torch.randn(2, frames, cfg.in_channels, 8, 12, generator=g)
    ctx = torch.randn(2, 1, cfg.cross_attention_dim, generator=g)
    n_ids = cfg.projection_class_embeddings_input_dim // cfg.addition_time_embed_dim  # fps, motion (, cond_aug)
    ids = torch.tensor([[3.0, 60.0, 0.0][:n_ids]] * 2)
    return x, torch.tensor([1.0, 1.0]), ctx, ids


def _out(unet, inputs):
    x, t, ctx, ids = inputs
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=ctx, added_time_ids=ids).sample


def _train_a_little(unet, name: str, inputs, steps: int = 3):
    params = lora.adapter_parameters(unet, name)
    opt = torch.optim.SGD(params, lr=0.5)
    x, t, ctx, ids = inputs
    for _ in range(steps):
        loss = unet(x, t, encoder_hidden_states=ctx, added_time_ids=ids).sample.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return params


def test_adapter_targets_temporal_attention_only_and_starts_without_effect():
    unet = _unet()
    inputs = _inputs(unet)
    before, digest = _out(unet, inputs), lora.base_digest(unet)
    lora.add_adapter(unet, "horizontal", rank=2)
    wrapped = [n for n, m in unet.named_modules() if hasattr(m, "lora_A")]
    assert wrapped and all(".temporal_transformer_blocks." in n for n in wrapped)
    assert {n.rsplit(".", 1)[-1] for n in wrapped} >= {"to_q", "to_k", "to_v"}
    assert all(".attn1." in n or ".attn2." in n for n in wrapped)
    assert lora.base_digest(unet) == digest  # the wrapping does not change the base's identity
    assert torch.equal(_out(unet, inputs), before)  # LoRA B starts at zero


def test_only_the_adapter_trains_and_a_reload_reproduces_it(tmp_path):
    unet = _unet()
    inputs = _inputs(unet)
    base_out, digest = _out(unet, inputs), lora.base_digest(unet)
    base_state = {k: v.clone() for k, v in unet.state_dict().items()}
    lora.add_adapter(unet, "zoom", rank=2)
    trained = _train_a_little(unet, "zoom", inputs)
    assert all(".lora_" in n for n, p in unet.named_parameters() if p.requires_grad) and trained
    for k, v in unet.state_dict().items():
        if ".lora_" not in k:
            assert torch.equal(v, base_state[k.replace(".base_layer.", ".")])  # the base never moved
    lora.set_scales(unet, {"zoom": 1.0})
    adapted = _out(unet, inputs)
    assert not torch.allclose(adapted, base_out)
    path = lora.save_adapter(tmp_path / "zoom.safetensors", unet, "zoom", digest, extra={"motion": "zoom"})
    tensors, meta = lora.read_adapter(path)
    assert meta["rank"] == "2" and meta["base_sha256"] == digest and meta["svd.motion"] == '"zoom"'
    assert all(".lora_A." in k or ".lora_B." in k for k in tensors)

    fresh = _unet()  # the same base, built again
    assert lora.load_adapter(fresh, path) == "zoom"
    lora.set_scales(fresh, {"zoom": 1.0})
    assert torch.allclose(_out(fresh, inputs), adapted, atol=1e-6)
    lora.set_scales(fresh, {})
    assert torch.allclose(_out(fresh, inputs), base_out, atol=1e-6)  # no adapter: the base itself


def test_several_adapters_switch_and_scale_without_reloading(tmp_path):
    unet = _unet()
    inputs = _inputs(unet)
    digest = lora.base_digest(unet)
    for name in ("horizontal", "static"):
        lora.add_adapter(unet, name, rank=2)
        _train_a_little(unet, name, inputs)
    lora.set_scales(unet, {"horizontal": 1.0})
    only_h = _out(unet, inputs)
    lora.set_scales(unet, {"static": 1.0})
    only_s = _out(unet, inputs)
    lora.set_scales(unet, {"horizontal": 1.0, "static": 1.0})
    both = _out(unet, inputs)
    assert not torch.allclose(only_h, only_s) and not torch.allclose(both, only_h)
    # a layer's LoRA delta is linear in the scale: half the scale, half the delta
    layer = next(m for m in unet.modules() if hasattr(m, "lora_A") and "horizontal" in m.lora_A)
    h = torch.randn(3, layer.in_features)
    lora.set_scales(unet, {"horizontal": 1.0})
    full = layer(h) - layer.base_layer(h)
    lora.set_scales(unet, {"horizontal": 0.5})
    assert torch.allclose(layer(h) - layer.base_layer(h), 0.5 * full, atol=1e-6)
    with pytest.raises(InputError, match="no adapter 'pan' is loaded"):
        lora.set_scales(unet, {"pan": 1.0})
    assert lora.base_digest(unet) == digest


def test_bad_adapter_files_meet_one_line_errors(tmp_path):
    unet = _unet()
    digest = lora.base_digest(unet)
    lora.add_adapter(unet, "horizontal", rank=2)
    good = lora.save_adapter(tmp_path / "h.safetensors", unet, "horizontal", digest)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file at all")
    other_base = _unet(seed=1)
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    cases = [
        (lambda: lora.load_adapter(_unet(), tmp_path / "missing.safetensors"), "no adapter file"),
        (lambda: lora.load_adapter(_unet(), broken), "is not a safetensors file"),
        (lambda: lora.load_adapter(_unet(), plain), "is not an svd LoRA adapter"),
        (lambda: lora.load_adapter(other_base, good), "trained on another base UNet"),
    ]
    # a file whose tensors are of another rank than its metadata says
    tensors, meta = lora.read_adapter(good)
    wrong = tmp_path / "wrong_rank.safetensors"
    save_file(tensors, str(wrong), metadata={**meta, "rank": "4"})
    cases.append((lambda: lora.load_adapter(_unet(), wrong), "not rank 4"))
    loaded = _unet()
    lora.load_adapter(loaded, good)
    cases.append((lambda: lora.load_adapter(loaded, good), "already loaded"))
    for call, message in cases:
        with pytest.raises(InputError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_lora_spec_parsing():
    assert lora.parse_lora_spec("horizontal") == ("horizontal", 1.0)
    assert lora.parse_lora_spec("zoom:0.6") == ("zoom", 0.6)
    for bad in (":0.5", "zoom:fast"):
        with pytest.raises(InputError):
            lora.parse_lora_spec(bad)
