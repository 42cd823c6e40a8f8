"""Stage II initialisation: the Stage I image UNet becomes the spatial half of a spatio-temporal UNet.

`inflate_image_unet` copies every image-UNet weight into its spatial twin in the video UNet:

    conv_in, time_embedding, conv_norm_out, conv_out            -> same names
    *.resnets.N.*                                                -> *.resnets.N.spatial_res_block.*
    *.attentions.N.{norm,proj_in,transformer_blocks,proj_out}.*  -> same names (spatial half of the ST transformer)
    *.downsamplers.* / *.upsamplers.*                            -> same names
    class_embedding.* (image UNet with class_embed_type "projection") -> add_embedding.*

and leaves the temporal modules (temporal_res_block, temporal_transformer_blocks, time_pos_embed, time_mixer) as
freshly initialised. Anything else fails loudly, naming the weights: an image weight with no home, a shape that
differs, a spatial video weight that nothing fills.

Conditioning. The video UNet adds add_embedding(sinusoids(added_time_ids)) (fps, motion, cond_aug) to the time
embedding; an SD-style image UNet has nothing there. Without a class embedding, add_embedding's last linear layer is
zeroed, so the micro-conditioning starts contributing exactly nothing and the first layer still gets gradients once
the last one moves (the ControlNet zero-conv argument). With `image_class_embedding: true` Stage I has already
learned the same projection (fed with `svd.models.unet.added_time_embedding`) and it is copied.

Input channels. When the video UNet takes more input channels than the image UNet (image-to-video concatenates 4
conditioning latents), conv_in's extra input channels are zeroed, so the conditioning also starts at zero. This is the
only shape difference allowed.

Norm epsilon. diffusers' SVD port hard-codes GroupNorm eps 1e-6 in the resnets of the cross-attention down blocks
and of every up block (1e-5 elsewhere), while UNet2DConditionModel has one `norm_eps` (1e-5, SD 2.1's). eps is not a
weight, so inflation cannot carry it; the effect is eps/variance per group (about 1e-4 absolute at outputs of order
1 on a randomly initialised tiny UNet, less once activations are trained). `match_video_norm_eps` aligns an image
UNet in memory when exact frame-by-frame equality is wanted (tests, comparing Stage I with the video model).

Settings that must match between the image config and the video config (checked, with the offending values listed):
block_out_channels, layers_per_block, transformer_layers_per_block, cross_attention_dim, heads per level, where
cross-attention sits, out_channels; the image UNet must also use the values the video UNet hard-codes (linear
projections, GroupNorm 32 / eps 1e-5, flip_sin_to_cos with shift 0, silu, UNetMidBlock2DCrossAttn, no
addition_embed_type, ...). Building both from one `model.unet` block (svd.models.unet) satisfies all of it.
"""

from __future__ import annotations

import copy
import math
import re

import torch

from svd.errors import SvdError
from svd.models.unet import build_video_unet, is_temporal


class InflationError(SvdError, ValueError):
    """The image UNet cannot seed the video UNet; the message names the settings or weights."""


# image-UNet config values the video UNet hard-codes (diffusers' UNetSpatioTemporalConditionModel)
_FIXED_IMAGE_SETTINGS = {
    "use_linear_projection": True,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "time_cond_proj_dim": None,
    "timestep_post_act": None,
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "attention_type": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "cross_attention_norm": None,
    "reverse_transformer_layers_per_block": None,
    "class_embeddings_concat": False,
}
_BIG = 100.0  # sigmoid(100) is exactly 1.0 in float16/32/64


def _per_level(value, levels: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * levels


def check_compatible(image_config: dict, video_cfg: dict) -> None:
    """Raise InflationError listing every setting that stops `image_config` from seeding `video_cfg`."""
    ic, vc = dict(image_config), dict(video_cfg)
    levels = len(vc["block_out_channels"])
    problems = []

    def differ(name: str, image_value, video_value) -> None:
        if image_value != video_value:
            problems.append(f"{name}: image {image_value!r} vs video {video_value!r}")

    differ("block_out_channels", list(ic["block_out_channels"]), list(vc["block_out_channels"]))
    if len(ic["block_out_channels"]) == levels:
        differ(
            "layers_per_block", _per_level(ic["layers_per_block"], levels), _per_level(vc["layers_per_block"], levels)
        )
        differ(
            "transformer_layers_per_block",
            _per_level(ic["transformer_layers_per_block"], levels),
            _per_level(vc["transformer_layers_per_block"], levels),
        )
        differ(
            "cross_attention_dim",
            _per_level(ic["cross_attention_dim"], levels),
            _per_level(vc["cross_attention_dim"], levels),
        )
        # UNet2DConditionModel's legacy `attention_head_dim` holds the number of heads
        image_heads = ic.get("num_attention_heads") or ic["attention_head_dim"]
        differ("heads per level", _per_level(image_heads, levels), _per_level(vc["num_attention_heads"], levels))
        differ(
            "cross-attention levels (down)",
            ["CrossAttn" in t for t in ic["down_block_types"]],
            ["CrossAttn" in t for t in vc["down_block_types"]],
        )
        differ(
            "cross-attention levels (up)",
            ["CrossAttn" in t for t in ic["up_block_types"]],
            ["CrossAttn" in t for t in vc["up_block_types"]],
        )
    differ("out_channels", ic["out_channels"], vc["out_channels"])
    if vc["in_channels"] < ic["in_channels"]:
        problems.append(f"in_channels: video {vc['in_channels']} < image {ic['in_channels']}")
    for key, want in _FIXED_IMAGE_SETTINGS.items():
        if key in ic and ic[key] != want:
            problems.append(f"image {key} = {ic[key]!r} (the video UNet hard-codes {want!r})")
    if ic.get("class_embed_type") not in (None, "projection"):
        problems.append(f"image class_embed_type = {ic['class_embed_type']!r} (only None or 'projection' map)")
    if ic.get("class_embed_type") == "projection":
        differ(
            "projection_class_embeddings_input_dim",
            ic.get("projection_class_embeddings_input_dim"),
            vc["projection_class_embeddings_input_dim"],
        )
    if problems:
        raise InflationError("image UNet config does not match the video config: " + "; ".join(problems))


_RESNET = re.compile(r"^((?:down_blocks|up_blocks)\.\d+\.resnets\.\d+\.|mid_block\.resnets\.\d+\.)")


def video_name(image_name: str) -> str:
    """The video-UNet parameter an image-UNet parameter is copied into."""
    if image_name.startswith("class_embedding."):
        return "add_embedding." + image_name[len("class_embedding.") :]
    return _RESNET.sub(r"\1spatial_res_block.", image_name)


def inflate_image_unet(image_unet, video_cfg: dict, seed: int | None = None):
    """A `UNetSpatioTemporalConditionModel` (config `video_cfg`) whose spatial weights are `image_unet`'s.

    Temporal modules get diffusers' fresh init (seeded by `seed` when given); see the module docstring for the
    conditioning and input-channel rules. The result has the image UNet's dtype and device.
    """
    check_compatible(image_unet.config, video_cfg)
    param = next(image_unet.parameters())
    if param.device.type == "meta":
        raise InflationError("image UNet is on the meta device: it has no weights to copy")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        video = build_video_unet(copy.deepcopy(dict(video_cfg)), device="cpu")
    if param.dtype != torch.float32:
        video = video.to(dtype=param.dtype)

    target = video.state_dict()
    filled: set[str] = set()
    homeless, mismatched = [], []
    for name, value in image_unet.state_dict().items():
        dest = video_name(name)
        if dest not in target:
            homeless.append(name)
            continue
        want = target[dest].shape
        value = value.detach().to("cpu")
        grows_inputs = value.ndim == 4 and value.shape[0] == want[0] and value.shape[2:] == want[2:]
        if name == "conv_in.weight" and value.shape != want and grows_inputs:
            # extra input channels (concatenated conditioning latents) start at zero
            expanded = torch.zeros(want, dtype=value.dtype)
            expanded[:, : value.shape[1]] = value
            value = expanded
        if value.shape != want:
            mismatched.append(f"{name} {tuple(value.shape)} -> {dest} {tuple(want)}")
            continue
        target[dest] = value
        filled.add(dest)
    if homeless or mismatched:
        raise InflationError(
            f"{len(homeless)} image weights have no home in the video UNet {homeless}; "
            f"{len(mismatched)} shapes differ {mismatched}"
        )

    if not any(n.startswith("class_embedding.") for n in image_unet.state_dict()):
        # no learned vector conditioning yet: its contribution to the time embedding starts at exactly zero
        for key in ("add_embedding.linear_2.weight", "add_embedding.linear_2.bias"):
            target[key] = torch.zeros_like(target[key])
            filled.add(key)
    unfilled = sorted(
        n for n in target if not is_temporal(n) and n not in filled and not n.startswith("add_embedding.")
    )
    if unfilled:
        raise InflationError(f"{len(unfilled)} spatial weights of the video UNet have no image counterpart {unfilled}")
    video.load_state_dict(target, strict=True)
    return video.to(param.device)


def match_video_norm_eps(image_unet, video_unet) -> list[str]:
    """Set every norm eps of `image_unet` to its video twin's (in memory; not part of the saved config).

    Returns the changed module names. See "Norm epsilon" in the module docstring.
    """
    video_modules = dict(video_unet.named_modules())
    changed = []
    for name, module in image_unet.named_modules():
        twin = video_modules.get(video_name(name + ".weight")[: -len(".weight")])
        if hasattr(module, "eps") and twin is not None and getattr(twin, "eps", module.eps) != module.eps:
            module.eps = twin.eps
            changed.append(name)
    return changed


def _blenders(video_unet):
    from diffusers.models.resnet import AlphaBlender

    return [(name, m) for name, m in video_unet.named_modules() if isinstance(m, AlphaBlender)]


@torch.no_grad()
def set_temporal_passthrough(video_unet) -> int:
    """Make every temporal mix return its spatial input only; returns how many AlphaBlenders were set.

    diffusers' AlphaBlender computes alpha * x_spatial + (1 - alpha) * x_temporal with alpha = sigmoid(mix_factor)
    ("learned"; "learned_with_images" too, where image-only frames force alpha = 1) or alpha = mix_factor ("fixed");
    `switch_spatial_to_temporal_mix` (temporal VAE) swaps the sides. So mix_factor = +100 (sigmoid rounds to exactly
    1.0) or 1.0 for "fixed" leaves the spatial path alone. For checks and image-mode use, not a training init: at
    alpha = 1 exactly, neither the temporal layers nor mix_factor get a gradient (use `zero_init_temporal` instead).
    """
    blenders = _blenders(video_unet)
    for _, m in blenders:
        if m.merge_strategy == "fixed":
            value = 0.0 if m.switch_spatial_to_temporal_mix else 1.0
        else:
            value = -_BIG if m.switch_spatial_to_temporal_mix else _BIG
        m.mix_factor.fill_(value)
    return len(blenders)


@torch.no_grad()
def reset_temporal_mix(video_unet, merge_factor: float = 0.5) -> int:
    """Undo `set_temporal_passthrough`: every learned mix_factor back to diffusers' init (0.5, sigmoid = 0.62)."""
    blenders = _blenders(video_unet)
    for _, m in blenders:
        m.mix_factor.fill_(merge_factor)
    return len(blenders)


@torch.no_grad()
def zero_init_temporal(video_unet) -> list[str]:
    """Zero the output layer of every temporal module so each is an exact identity; returns the zeroed weights.

    temporal_res_block.conv2 (residual block -> identity), time_pos_embed.linear_2 (no frame-position offset) and, in
    each temporal transformer block, ff_in's, attn1's, attn2's and ff's output projections (all residual). Then
    x_temporal == x_spatial, so the video UNet equals the image UNet frame by frame whatever the mix, and unlike
    pass-through every temporal layer still gets gradients (through the zeroed outputs). An option for Stage II's
    start, not the paper's (the paper does not say how its temporal layers were initialised).
    """
    from diffusers.models.attention import TemporalBasicTransformerBlock
    from diffusers.models.resnet import TemporalResnetBlock

    zeroed = []

    def zero(prefix: str, layer: torch.nn.Module) -> None:
        for pname, p in layer.named_parameters():
            p.zero_()
            zeroed.append(f"{prefix}.{pname}")

    for name, m in video_unet.named_modules():
        if isinstance(m, TemporalResnetBlock):
            if m.conv_shortcut is not None:
                raise InflationError(f"{name}: temporal resnet changes channels, it cannot start as identity")
            zero(f"{name}.conv2", m.conv2)
        elif isinstance(m, TemporalBasicTransformerBlock):
            if not m.is_res:
                raise InflationError(f"{name}: temporal transformer block is not residual, it cannot start as identity")
            zero(f"{name}.ff_in.net.2", m.ff_in.net[2])
            zero(f"{name}.attn1.to_out.0", m.attn1.to_out[0])
            if m.attn2 is not None:
                zero(f"{name}.attn2.to_out.0", m.attn2.to_out[0])
            zero(f"{name}.ff.net.2", m.ff.net[2])
        elif name.endswith("time_pos_embed"):
            zero(f"{name}.linear_2", m.linear_2)
    return zeroed


def temporal_parameters(video_unet) -> list[torch.nn.Parameter]:
    """The parameters of the temporal layers (for temporal-only training or a separate learning rate)."""
    return [p for n, p in video_unet.named_parameters() if is_temporal(n)]


def mix_alphas(video_unet) -> dict[str, float]:
    """Current alpha (weight of the spatial path) of every temporal mix, for logging."""
    out = {}
    for name, m in _blenders(video_unet):
        v = float(m.mix_factor.detach().float().reshape(-1)[0])
        alpha = v if m.merge_strategy == "fixed" else 1.0 / (1.0 + math.exp(-v))
        out[name] = 1.0 - alpha if m.switch_spatial_to_temporal_mix else alpha
    return out


def param_groups(unet, lr: float, temporal_lr_scale: float) -> list[dict]:
    """AdamW groups: the temporal layers at lr x temporal_lr_scale, everything else at lr (one group when 1).

    Ours: Stage II's temporal layers start from random while the spatial ones arrive trained from Stage I; at one
    shared lr the temporal layers learned frame-to-frame coherence slowly (direction 0.19 after 600 steps at lr 1e-3,
    0.375 with the temporal lr x4; README, "Numbers that are ours")."""
    if temporal_lr_scale == 1.0:
        return [{"params": list(unet.parameters()), "lr": lr}]
    temporal = temporal_parameters(unet)
    ids = {id(p) for p in temporal}
    spatial = [p for p in unet.parameters() if id(p) not in ids]
    return [{"params": spatial, "lr": lr}, {"params": temporal, "lr": lr * temporal_lr_scale}]
