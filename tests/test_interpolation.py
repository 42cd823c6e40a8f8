"""Frame interpolation (svd.tasks.interpolation, svd.evaluation.interpolation, svd.interpolate): the UNet it starts
from, the conditioning layout, the learned mask embedding, the baselines' math and the frame bookkeeping."""

import numpy as np
import pytest
import torch

from svd.models.unet import TINY_UNET_PARAMS, build_video_unet, video_unet_config
from svd.tasks import interpolation as interp

ENCODER = {"hidden_size": 32, "layers": 1, "heads": 2, "patch_size": 32, "projection_dim": 64}
C = TINY_UNET_PARAMS["out_channels"]  # latent channels
D = TINY_UNET_PARAMS["cross_attention_dim"]


def _t2v_unet(seed=0):
    torch.manual_seed(seed)
    unet = build_video_unet(video_unet_config(TINY_UNET_PARAMS))
    with torch.no_grad():  # a parent whose micro-conditioning already matters
        for p in unet.add_embedding.parameters():
            p.normal_(0, 0.2)
    return unet.eval()


def test_the_extended_unet_starts_as_its_parent_and_learns_a_mask_embedding():
    parent = _t2v_unet()
    child = interp.extend_for_interpolation(parent).eval()
    per_id = TINY_UNET_PARAMS["addition_time_embed_dim"]
    assert child.config.in_channels == 2 * C + 1 and child.config.projection_class_embeddings_input_dim == 3 * per_id
    assert torch.equal(interp.mask_embedding(child), torch.zeros(C))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, C, 8, 8, generator=g)
    ctx = torch.randn(2, 2, D, generator=g)
    ends = torch.randn(2, 2, C, 8, 8, generator=g)
    cond = interp.conditioning(ends, torch.randn(C, generator=g), 5)
    t = torch.tensor([0.3, 0.3])
    with torch.no_grad():
        want = parent(x, t, ctx, added_time_ids=torch.tensor([[6.0, 30.0]] * 2)).sample
        got = child(torch.cat([x, cond], 2), t, ctx, added_time_ids=torch.tensor([[6.0, 30.0, 0.05]] * 2)).sample
    assert torch.allclose(got, want, atol=1e-5)  # the new columns and id start at zero: nothing changes
    with pytest.raises(ValueError, match="not a text-to-video model"):
        interp.extend_for_interpolation(child)


def test_conditioning_puts_the_ends_around_the_mask_embedding_with_a_known_frame_channel():
    ends = torch.arange(2 * 2 * 3 * 2 * 2, dtype=torch.float32).view(2, 2, 3, 2, 2)
    m = torch.tensor([7.0, 8.0, 9.0])
    c = interp.conditioning(ends, m, 5)
    assert c.shape == (2, 5, 4, 2, 2)
    assert torch.equal(c[:, 0, :3], ends[:, 0]) and torch.equal(c[:, 4, :3], ends[:, 1])
    for f in (1, 2, 3):
        assert torch.equal(c[:, f, :3], m.view(1, 3, 1, 1).expand(2, 3, 2, 2))
    assert c[:, [0, 4], 3].eq(1).all() and c[:, 1:4, 3].eq(0).all()
    with pytest.raises(ValueError, match="at least 3 frames"):
        interp.conditioning(ends, m, 2)


def test_a_training_step_reaches_the_mask_embedding_and_the_new_columns():
    from svd.diffusion.edm import DenoiserConfig
    from svd.training.loop import StepRandom

    unet = interp.extend_for_interpolation(_t2v_unet()).train()
    n = 4
    data = interp.InterpWindows(
        latents=torch.randn(n, 5, C, 8, 8),
        embeds=torch.randn(3, 1, D),
        end_rows=torch.tensor([[0, 1], [1, 2], [0, 2], [2, 0]]),
        fps_id=torch.full((n,), 7.0),
        motion_bucket=torch.full((n,), 40.0),
        clip_ids=["a"] * n,
    )
    step = interp.make_step(DenoiserConfig(1.0, 1.0, 1.2), data, cond_aug=(-3.0, 0.5))
    batch = {
        k: torch.stack([interp.InterpItems(data)[i][k] for i in range(n)])
        for k in ("latents", "end_rows", "fps_id", "motion_bucket")
    }
    step(unet, batch, StepRandom.of(torch.Generator().manual_seed(0))).backward()
    assert unet.conv_in.weight.grad[:, C:].abs().sum() > 0  # the conditioning and known-frame channels grow first
    with torch.no_grad():  # once they have grown, the mask embedding learns through them
        unet.conv_in.weight[:, C:].normal_(0, 0.01)
    unet.zero_grad()
    step(unet, batch, StepRandom.of(torch.Generator().manual_seed(0))).backward()
    assert interp.mask_embedding(unet).grad.abs().sum() > 0


def test_windows_land_the_filled_frames_on_true_frames():
    from svd.evaluation.interpolation import windows

    assert windows(4) == [(0, 4, [1, 2, 3]), (4, 8, [5, 6, 7]), (8, 12, [9, 10, 11])]
    assert windows(8) == [(0, 8, [2, 4, 6])]
    with pytest.raises(ValueError, match="multiple of 4"):
        windows(6)


def _square(x0: float, size=(40, 64)) -> np.ndarray:
    img = np.full((*size, 3), 60, np.uint8)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    img[(abs(xx - x0) <= 5) & (abs(yy - 20) <= 5)] = (230, 40, 40)
    return img


def test_flow_warping_finds_a_translation_that_blending_ghosts():
    """A textured scene panned by 4 px: the frame half-way is the scene at +2 px. Blending ghosts it; flow warping
    (both flows, Super SloMo's composition) recovers it (an independent check of the baseline's signs)."""
    import cv2

    from svd.evaluation.interpolation import flow_interpolate

    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (60, 120, 3)).astype(np.float32), (0, 0), 2.0)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    a, b, mid = scene[10:50, 20:84], scene[10:50, 24:88], scene[10:50, 22:86]
    blend = ((a.astype(float) + b) / 2 + 0.5).astype(np.uint8)

    def err(x):  # away from the borders, where the pan brings in what neither frame shows
        return np.abs(x[:, 8:-8].astype(float) - mid[:, 8:-8]).mean()

    assert err(flow_interpolate(a, b, 0.5)) < 0.1 * err(blend)
    assert np.array_equal(flow_interpolate(a, a, 0.5), a)  # no motion: the frame itself


def test_the_region_and_frame_scores_against_a_hand_computed_reference():
    """One clip, gap 4: a guess off by 10 grey levels inside the object's region scores 28.13 dB there."""
    from svd.evaluation.interpolation import region_masks, score, windows

    clip = np.stack([_square(10 + 2 * t) for t in range(16)])
    off = np.stack([[clip[js] for _, _, js in windows(4)]]).astype(np.int16)  # (1 clip, 3 pairs, 3, H, W, 3)
    masks = [region_masks(clip, "red", s, e) for s, e in ((0, 4), (4, 8), (8, 12))]
    for w, m in enumerate(masks):
        off[0, w][:, m] += 10
    s = score(clip[None], clip[None], ["red"], {"m": np.clip(off, 0, 255).astype(np.uint8)}, 4)
    assert s["m"]["region"][0] == pytest.approx(10 * np.log10(255**2 / 100), abs=0.05)
    assert s["roundtrip"]["frame"][0] == np.inf


def test_constant_rate_resamples_a_variable_rate_stream_by_the_frame_shown():
    from svd.interpolate import constant_rate

    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(4)]
    same, fps, variable = constant_rate(frames, [0.0, 0.5, 1.0, 1.5], 2.0)
    assert same is frames and fps == 2.0 and not variable
    out, fps, variable = constant_rate(frames, [0.0, 0.25, 1.0, 1.5], 2.0)  # a burst, then a gap
    assert variable and fps == pytest.approx(2.0)
    assert [int(f[0, 0, 0]) for f in out] == [0, 1, 2, 3][:1] + [1, 2, 3]  # ticks 0, .5, 1, 1.5 show 0, 1, 2, 3


def test_interpolated_frames_keep_the_inputs_and_fill_three_between_each_pair(tmp_path):
    """n frames -> 4n-3, the input frames at positions 0, 4, 8, ...: saved and reloaded through the stage's own
    save_weights / load_model."""
    import json

    from svd.config import load_params
    from svd.interpolate import interpolate_frames
    from svd.models.image_encoder import load_image_encoder, save_image_encoder
    from svd.models.vae import TINY_VAE, build_vae
    from svd.training.stages import load_model

    params = load_params()
    unet = interp.extend_for_interpolation(_t2v_unet())
    mask = torch.linspace(-1, 1, C)
    with torch.no_grad():
        interp.mask_embedding(unet).copy_(mask)
    folder = tmp_path / "interp"
    interp.TASK.save_weights(unet, folder, params, "interp")
    assert interp.mask_embedding(unet) is not None  # put back after saving
    torch.manual_seed(1)
    build_vae({**TINY_VAE, "scaling_factor": 0.5}).save_pretrained(folder / "vae")
    encoder = load_image_encoder(None, ENCODER, seed=0)
    save_image_encoder(encoder, folder)
    (folder / "svd_model.json").write_text(json.dumps({
        "stage": "interp", "kind": "interpolation", "profile": "tiny", "vae": "vae", "image_encoder": "image_encoder",
        "image_encoder_backend": encoder.backend, "image_encoder_pretrained": False, "image_encoder_seed": 0,
        "mask_embedding": interp.MASK_FILE, "size": [16, 16], "frames": 5, "fps": 8.0, "motion_bucket": 40.0,
        "sample_steps": 2, "cond_aug": 0.02, "guidance": [1.0, 1.0],
    }))  # fmt: skip
    loaded = load_model(folder)
    assert torch.equal(interp.mask_embedding(loaded["unet"]), mask)
    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    out = interpolate_frames(loaded, frames, 2.0, params=params, seed=0)
    assert out.shape == (9, 16, 16, 3)
    assert all(np.array_equal(out[4 * i], frames[i]) for i in range(3))
    again = interpolate_frames(loaded, frames, 2.0, params=params, seed=0)
    assert np.array_equal(out, again)  # seeded
    from svd.errors import InputError

    with pytest.raises(InputError, match="at least 2 frames"):
        interpolate_frames(loaded, frames[:1], 2.0, params=params, seed=0)
