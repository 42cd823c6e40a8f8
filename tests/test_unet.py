"""UNet builders: the paper's size on the meta device, Stage I -> Stage II inflation, parameter report."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from svd.config import ConfigError, deep_merge
from svd.models.inflate import (
    InflationError,
    inflate_image_unet,
    match_video_norm_eps,
    mix_alphas,
    reset_temporal_mix,
    set_temporal_passthrough,
    temporal_parameters,
    zero_init_temporal,
)
from svd.models.info import format_report, parameter_report
from svd.models.unet import (
    A100_IMAGE_UNET,
    A100_UNET_PARAMS,
    A100_VIDEO_UNET,
    PROFILE_UNET_PARAMS,
    TINY_IMAGE_UNET,
    TINY_UNET_PARAMS,
    TINY_VIDEO_UNET,
    added_time_embedding,
    build_image_unet,
    build_video_unet,
    image_to_video_config,
    image_unet_config,
    parameter_split,
    unet_params,
    video_unet_config,
)

PAPER_TOTAL = 1521e6
PAPER_TEMPORAL = 656e6
B, T, H = 2, 8, 16


def _image_unet(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = build_image_unet(cfg)
    with torch.no_grad():
        # norms start at 1/0 and biases at 0: jitter them so a swapped norm or bias would show in the outputs
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _inputs(cfg: dict, n_ids: int, channels: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, channels or cfg["in_channels"], H, H, generator=g)
    ctx = torch.randn(B, 7, cfg["cross_attention_dim"], generator=g)
    t = torch.tensor([3.0, 700.0])
    ids = torch.rand(B, n_ids, generator=g) * 100
    return x, ctx, t, ids


def _framewise(image_unet, x, ctx, t, class_labels=None):
    """The image UNet on every frame: (B, T, C, H, W) -> (B*T, C, H, W) with per-video context repeated."""
    kwargs = {}
    if class_labels is not None:
        kwargs["class_labels"] = class_labels.repeat_interleave(T, 0)
    out = image_unet(x.flatten(0, 1), t.repeat_interleave(T), ctx.repeat_interleave(T, 0), **kwargs).sample
    return out.reshape(B, T, *out.shape[1:])


def test_a100_video_unet_is_the_papers():
    assert image_to_video_config(A100_UNET_PARAMS) == A100_VIDEO_UNET
    video = build_video_unet(A100_VIDEO_UNET, device="meta")
    assert next(video.parameters()).device.type == "meta"
    split = parameter_split(video)
    assert abs(split["total"] - PAPER_TOTAL) / PAPER_TOTAL < 0.02
    assert abs(split["temporal"] - PAPER_TEMPORAL) / PAPER_TEMPORAL < 0.02
    # the spatial half is exactly the SD 2.1-shaped image UNet, plus conv_in's 4 conditioning input channels
    image_total = sum(p.numel() for p in build_image_unet(A100_IMAGE_UNET, device="meta").parameters())
    assert split["spatial"] == image_total + 320 * 4 * 3 * 3
    assert split["total"] == split["spatial"] + split["conditioning"] + split["temporal"]


def test_unet_params_are_checked():
    with pytest.raises(ConfigError, match="unknown keys \\['typo'\\]"):
        unet_params({**TINY_UNET_PARAMS, "typo": 1})
    with pytest.raises(ConfigError, match="multiple of 32"):
        unet_params({**TINY_UNET_PARAMS, "block_out_channels": [48, 64]})
    with pytest.raises(ConfigError, match="one entry per"):
        unet_params({**TINY_UNET_PARAMS, "cross_attention": [True]})
    # the whole params dict and its model section are accepted too
    assert video_unet_config({"model": {"unet": TINY_UNET_PARAMS}}) == TINY_VIDEO_UNET


def test_tiny_video_unet_trains():
    video = build_video_unet(TINY_VIDEO_UNET)
    x, ctx, t, ids = _inputs(TINY_VIDEO_UNET, n_ids=2)
    out = video(x, t, ctx, ids).sample
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in temporal_parameters(video))


def test_inflated_video_unet_is_the_image_unet_frame_by_frame(tmp_path):
    from diffusers import UNetSpatioTemporalConditionModel

    image = _image_unet(TINY_IMAGE_UNET)
    video = inflate_image_unet(image, TINY_VIDEO_UNET, seed=3).eval()
    match_video_norm_eps(image, video)
    x, ctx, t, ids = _inputs(TINY_VIDEO_UNET, n_ids=2)
    with torch.no_grad():
        ref = _framewise(image, x, ctx, t)
        mixed = video(x, t, ctx, ids).sample  # fresh temporal layers mixed in with alpha = sigmoid(0.5)
        assert set_temporal_passthrough(video) > 0
        assert set(mix_alphas(video).values()) == {1.0}
        passthrough = video(x, t, ctx, ids).sample
        other_ids = video(x, t, ctx, ids * 3 + 1).sample  # add_embedding starts at zero: ids change nothing yet
    scale = ref.abs().max().item()
    assert (mixed - ref).abs().max().item() > 1e-2 * scale
    assert torch.allclose(passthrough, ref, atol=1e-5, rtol=0)
    assert torch.equal(passthrough, other_ids)

    video.save_pretrained(tmp_path / "video")
    reloaded = UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "video").eval()
    assert dict(reloaded.config)["num_attention_heads"] == TINY_VIDEO_UNET["num_attention_heads"]
    with torch.no_grad():
        assert torch.equal(reloaded(x, t, ctx, ids).sample, passthrough)

    # the task names what inflation added at zero (its lr scale, train.video.new_inputs_lr_scale): the micro-
    # conditioning's last layer; nothing when a video UNet is continued, or once that layer has grown
    from svd.tasks.text_to_video import TASK

    added = TASK.new_inputs(video, "inflated:image/unet")
    assert [
        p is q
        for p, q in zip(
            [p for p, _, _ in added], [video.add_embedding.linear_2.weight, video.add_embedding.linear_2.bias]
        )
    ] == [True, True]
    assert TASK.new_inputs(video, "continued:video/unet") == []

    # the trainable alternative: temporal output layers at zero, mix left at its init
    reset_temporal_mix(video)
    assert zero_init_temporal(video)
    with torch.no_grad():
        assert torch.allclose(video(x, t, ctx, ids).sample, ref, atol=1e-5, rtol=0)


def test_inflation_copies_class_embedding_and_zeroes_concat_channels():
    params = {
        **TINY_UNET_PARAMS,
        "in_channels": 4,
        "out_channels": 4,
        "image_class_embedding": True,
        "concat_channels": 4,
        "num_added_ids": 3,
    }
    image_cfg, video_cfg = image_unet_config(params), video_unet_config(params)
    assert video_cfg["in_channels"] == 8 and image_cfg["class_embed_type"] == "projection"
    image = _image_unet(image_cfg)
    video = inflate_image_unet(image, video_cfg).eval()
    match_video_norm_eps(image, video)
    set_temporal_passthrough(video)
    x, ctx, t, ids = _inputs(video_cfg, n_ids=3, channels=8)
    labels = added_time_embedding(ids, params["addition_time_embed_dim"])
    with torch.no_grad():
        ref = _framewise(image, x[:, :, :4], ctx, t, class_labels=labels)
        out = video(x, t, ctx, ids).sample
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    # conditioning latents (channels 4:8) start with zero weight, ids go through Stage I's projection
    assert video.conv_in.weight[:, 4:].abs().sum() == 0
    assert torch.equal(video.add_embedding.linear_1.weight, image.class_embedding.linear_1.weight)


def test_inflation_fails_loudly():
    image = build_image_unet(TINY_IMAGE_UNET)
    bad = copy.deepcopy(TINY_VIDEO_UNET)
    bad["cross_attention_dim"] = 32
    bad["num_attention_heads"] = [1, 1]
    with pytest.raises(InflationError, match="cross_attention_dim.*heads per level"):
        inflate_image_unet(image, bad)

    image.extra_head = torch.nn.Linear(2, 2)  # a weight with no home in the video UNet
    image.conv_out = torch.nn.Conv2d(32, 8, kernel_size=1)  # same config, different shape
    with pytest.raises(InflationError) as err:
        inflate_image_unet(image, TINY_VIDEO_UNET)
    message = str(err.value)
    assert "extra_head.weight" in message and "extra_head.bias" in message
    assert "conv_out.weight (8, 32, 1, 1) -> conv_out.weight (8, 32, 3, 3)" in message


def test_parameter_report():
    tiny = parameter_report("tiny")
    assert [r["name"] for r in tiny] == ["video_unet", "i2v_unet", "image_unet", "vae", "text_encoder"]
    video, i2v, image, vae, text = tiny
    assert vae["trainable"] == 0 and text["trainable"] == 0 and "svd-tiny-text" in text["class"]
    assert video["temporal"] > 0 and image["temporal"] == 0 and video["trainable"] == video["total"]
    assert video["total"] == sum(p.numel() for p in build_video_unet(TINY_VIDEO_UNET, "meta").parameters())
    # image-to-video: conv_in takes 8 more channels (x 32 outputs x 3 x 3), add_embedding one more id (32 x 128)
    assert i2v["total"] - video["total"] == 8 * 32 * 9 + 32 * 128

    a100 = {r["name"]: r for r in parameter_report("a100")}
    assert abs(a100["i2v_unet"]["total"] - PAPER_TOTAL) / PAPER_TOTAL < 0.02  # the released (image-to-video) model
    assert a100["i2v_unet"]["total"] == 1_524_623_082  # diffusers' stable-video-diffusion-img2vid unet
    assert a100["vae"]["total"] == 83_653_863 and a100["vae"]["trainable"] == 0
    text = a100["text_encoder"]
    assert text["total"] is None or 340e6 < text["total"] < 360e6
    table = format_report(list(a100.values()))
    assert "UNetSpatioTemporalConditionModel" in table and "1,524.6M" in table
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["model", "class", "total"] and len(lines) == 2 + len(a100)


@pytest.mark.parametrize("profile", sorted(PROFILE_UNET_PARAMS))
def test_params_yaml_model_section_matches(params_file, profile):
    raw = yaml.safe_load(params_file.read_text())
    if "model" not in raw:
        pytest.skip("params.yaml has no model section yet")
    merged = deep_merge(raw, raw.get("profiles", {}).get(profile, {}))
    assert unet_params(merged) == PROFILE_UNET_PARAMS[profile]
