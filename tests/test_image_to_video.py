"""Image-to-video (svd.tasks.image_to_video): the UNet made from a text-to-video parent predicts what the parent did,
the conditioning latent and CLIP embedding match what diffusers' StableVideoDiffusionPipeline computes, the training
step and the sampler condition as SVD does, and conditioning images of every awkward kind are read or refused."""

from pathlib import Path

import numpy as np
import pytest
import torch

from svd.models.unet import TINY_UNET_PARAMS, build_video_unet, image_to_video_config, video_unet_config
from svd.models.vae import TINY_VAE, build_vae
from svd.tasks import image_to_video as i2v
from svd.training.loop import StepRandom

ENCODER = {"hidden_size": 32, "layers": 1, "heads": 2, "patch_size": 32, "projection_dim": 64}


def _t2v_unet(seed=0):
    torch.manual_seed(seed)
    unet = build_video_unet(video_unet_config(TINY_UNET_PARAMS))
    with torch.no_grad():  # a parent whose micro-conditioning already matters (inflation starts it at zero)
        for p in unet.add_embedding.parameters():
            p.normal_(0, 0.2)
    return unet.eval()


def _vae():
    torch.manual_seed(1)
    return build_vae({**TINY_VAE, "scaling_factor": 0.5}).eval()  # as a trained VAE records its measured factor


def _encoder():
    from svd.models.image_encoder import load_image_encoder

    return load_image_encoder(None, ENCODER, seed=0)


def test_extended_unet_predicts_exactly_what_its_parent_did():
    parent = _t2v_unet()
    child = i2v.extend_for_images(parent).eval()
    assert dict(child.config)["in_channels"] == 16 and child.config.projection_class_embeddings_input_dim == 96
    assert dict(child.config) == {**dict(parent.config), "in_channels": 16, "projection_class_embeddings_input_dim": 96}
    assert {k: v for k, v in child.config.items() if not k.startswith("_")} == {
        **image_to_video_config(TINY_UNET_PARAMS),
        "sample_size": parent.config.sample_size,
    }
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 4, 6, generator=g)
    concat = torch.randn(2, 4, 8, 4, 6, generator=g) * 3  # whatever the conditioning latent and cond_aug hold
    context = torch.randn(2, 1, 64, generator=g)
    t = torch.tensor([0.3, -0.5])
    with torch.no_grad():
        want = parent(x, t, context, added_time_ids=torch.tensor([[3.0, 120.0], [7.0, 30.0]])).sample
        got = child(
            torch.cat([x, concat], 2), t, context, added_time_ids=torch.tensor([[3.0, 120.0, 0.07], [7.0, 30.0, 0.5]])
        ).sample
    assert torch.equal(got, want)
    # and the new inputs are live: their weights get gradients
    loss = (
        child(
            torch.cat([x, concat], 2), t, context, added_time_ids=torch.tensor([[3.0, 120.0, 0.07], [7.0, 30.0, 0.5]])
        )
        .sample.square()
        .mean()
    )
    loss.backward()
    assert child.conv_in.weight.grad[:, 8:].abs().sum() > 0
    assert child.add_embedding.linear_1.weight.grad[:, 64:].abs().sum() > 0
    # the task names exactly the zero columns it added (their lr scale), and none when it continues a model
    parts = i2v.TASK.new_inputs(child, "extended:parent/unet")
    assert [(p.shape, d, s) for p, d, s in parts] == [
        (child.conv_in.weight.shape, 1, 8),
        (child.add_embedding.linear_1.weight.shape, 1, 64),
    ]
    assert all(not p.detach()[:, s:].any() and p.detach()[:, :s].any() for p, d, s in parts)
    assert i2v.TASK.new_inputs(child, "continued:i2v/unet") == []
    with pytest.raises(ValueError, match="not a text-to-video model"):
        i2v.extend_for_images(child)


def test_freeze_spatial_leaves_the_temporal_layers():
    from svd.models.unet import is_temporal

    unet = i2v.extend_for_images(_t2v_unet())
    n = i2v.freeze_spatial(unet)
    assert 0 < n < sum(p.numel() for p in unet.parameters())
    assert all(p.requires_grad == is_temporal(name) for name, p in unet.named_parameters())


def _pipeline(unet, vae, encoder):
    from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    from svd.models.image_encoder import CLIP_MEAN, CLIP_STD

    scheduler = EulerDiscreteScheduler(
        prediction_type="v_prediction",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_type="continuous",
        interpolation_type="linear",
    )
    extractor = CLIPImageProcessor(image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return StableVideoDiffusionPipeline(
        vae=vae, image_encoder=encoder.model, unet=unet, scheduler=scheduler, feature_extractor=extractor
    )


def test_conditioning_matches_diffusers_pipeline():
    """The concatenated latent is the encoder's mean, unscaled; the context is the CLIP embedding of the frame resized
    to 224 with antialiasing: both as StableVideoDiffusionPipeline computes them from the same frame."""
    from PIL import Image

    vae, encoder = _vae(), _encoder()
    pipe = _pipeline(i2v.extend_for_images(_t2v_unet()), vae, encoder)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want_latent = pipe._encode_vae_image(x, "cpu", 1, False)
        want_embed = pipe._encode_image(Image.fromarray(frame), "cpu", 1, False)
    assert torch.allclose(i2v.condition_latent(vae, x), want_latent, atol=1e-6)
    assert not torch.allclose(i2v.condition_latent(vae, x), want_latent * vae.config.scaling_factor, atol=1e-3)
    assert torch.allclose(encoder.encode(x), want_embed, atol=1e-5)


def _data(n=6, t=4):
    g = torch.Generator().manual_seed(3)
    return i2v.ImageWindows(
        latents=torch.randn(n, t, 8, 4, 6, generator=g),
        cond_frames=torch.rand(3, 3, 16, 24, generator=g) * 2 - 1,
        embeds=torch.randn(3, 1, 64, generator=g),
        cond_index=torch.tensor([0, 1, 2, 0, 1, 2]),
        fps_id=torch.full((n,), 3),
        motion_bucket=torch.arange(n) * 40,
        clip_ids=[f"c{i}" for i in range(n)],
    )


def test_training_step_conditions_like_svd():
    from svd.data.clips import collate
    from svd.diffusion.edm import DenoiserConfig

    data, vae = _data(), _vae()
    seen = {}
    unet = i2v.extend_for_images(_t2v_unet())
    forward = unet.forward

    def spy(sample, timestep, encoder_hidden_states, added_time_ids, **kw):
        seen.update(sample=sample, context=encoder_hidden_states, ids=added_time_ids)
        return forward(sample, timestep, encoder_hidden_states, added_time_ids=added_time_ids, **kw)

    unet.forward = spy
    step = i2v.make_step(
        DenoiserConfig(1.0, 0.7, 1.6),
        data,
        vae,
        cond_aug=(-3.0, 0.5),
        dropout={"image": 0.0, "latent": 0.0, "both": 0.0},
    )
    batch = collate([i2v.ImageItems(data)[i] for i in range(4)])
    loss = step(unet, batch, StepRandom.of(torch.Generator().manual_seed(0)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    sample, ids = seen["sample"], seen["ids"]
    assert sample.shape == (4, 4, 16, 4, 6)
    concat = sample[:, :, 8:]
    assert torch.equal(concat[:, 0], concat[:, 3])  # the conditioning latent repeated over the frames
    assert torch.equal(ids[:, :2], torch.tensor([[3.0, 0.0], [3.0, 40.0], [3.0, 80.0], [3.0, 120.0]]))
    sigma = ids[:, 2]
    assert len(set(sigma.tolist())) == 4 and bool(((sigma > 0.005) & (sigma < 0.5)).all())  # ln s ~ N(-3, 0.5)
    # cond_aug's sigma is the noise actually on the frame: a clean frame's latent differs by about that much
    clean = i2v.condition_latent(vae, data.cond_frames[batch["cond_index"]])
    assert torch.equal(seen["context"], data.embeds[batch["cond_index"]])
    assert not torch.allclose(concat[:, 0], clean, atol=1e-4)


def test_dropout_masks_follow_their_rates():
    g = torch.Generator().manual_seed(0)
    emb, lat = i2v.dropout_masks(torch.rand(200_000, generator=g), {"image": 0.05, "latent": 0.1, "both": 0.15})
    assert abs((emb & ~lat).float().mean() - 0.05) < 0.005
    assert abs((lat & ~emb).float().mean() - 0.1) < 0.005
    assert abs((emb & lat).float().mean() - 0.15) < 0.005
    from svd.diffusion.edm import DenoiserConfig

    with pytest.raises(ValueError, match="cond_dropout"):
        i2v.make_step(
            DenoiserConfig(1.0, 0.0, 1.0),
            _data(),
            _vae(),
            cond_aug=(-3, 0.5),
            dropout={"image": 0.6, "latent": 0.5, "both": 0.0},
        )


def test_sampler_zeroes_both_conditions_in_the_unconditional_branch_and_guides_per_frame():
    vae, encoder = _vae(), _encoder()
    unet = i2v.extend_for_images(_t2v_unet()).eval()
    calls = []
    forward = unet.forward

    def spy(sample, timestep, encoder_hidden_states, added_time_ids, **kw):
        calls.append((sample[:, :, 8:].clone(), encoder_hidden_states.clone(), added_time_ids.clone()))
        return forward(sample, timestep, encoder_hidden_states, added_time_ids=added_time_ids, **kw)

    unet.forward = spy
    images = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kw = dict(num_frames=4, steps=2, seed=5, fps=4.0, motion_bucket=[10.0, 200.0], cond_aug=0.02)
    a = i2v.generate(unet, vae, encoder, images, guidance=(1.0, 2.5), **kw)
    assert a.shape == (2, 4, 16, 24, 3) and a.dtype == np.uint8
    (c_lat, c_ctx, c_ids), (u_lat, u_ctx, u_ids) = calls[0], calls[1]
    assert c_lat.abs().sum() > 0 and c_ctx.abs().sum() > 0
    assert u_lat.abs().sum() == 0 and u_ctx.abs().sum() == 0  # the reference sampler's unconditional branch
    assert torch.equal(c_ids, torch.tensor([[3.0, 10.0, 0.02], [3.0, 200.0, 0.02]]))
    assert torch.equal(u_ids, c_ids)  # both branches see the same fps, motion and cond_aug
    calls.clear()
    b = i2v.generate(unet, vae, encoder, images, guidance=(1.0, 2.5), **kw)
    assert np.array_equal(a, b)  # seeded
    one = i2v.generate(unet, vae, encoder, images[1:], guidance=(1.0, 2.5), **{**kw, "seed": 6, "motion_bucket": 200.0})
    # sample i depends on seed + i only, not on the batch (up to float rounding of batched kernels)
    assert np.abs(one[0].astype(int) - a[1]).max() <= 1
    calls.clear()
    i2v.generate(unet, vae, encoder, images, guidance=(1.0, 1.0), **kw)
    assert len(calls) == 2  # max guidance <= 1: no unconditional branch (as diffusers)


def test_read_image_converts_and_reports(tmp_path):
    import cv2

    from svd.errors import InputError
    from svd.io.image import read_image, resize_frame

    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])
    got, notes = read_image(tmp_path / "rgb.png")
    assert np.array_equal(got, rgb) and notes == []
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[..., 0])
    got, notes = read_image(tmp_path / "grey.png")
    assert got.shape == (30, 40, 3) and "greyscale" in notes[0]
    rgba = np.dstack([rgb[..., ::-1], np.full((30, 40), 0, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    got, notes = read_image(tmp_path / "rgba.png")
    assert (got == 255).all() and "over white" in notes[0]
    cv2.imwrite(str(tmp_path / "deep.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
    got, notes = read_image(tmp_path / "deep.png")
    assert np.array_equal(got, rgb) and "16-bit" in notes[0]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    resized, notes = resize_frame(got, (40, 64))
    assert resized.shape == (40, 64, 3) and "aspect ratio changes from 1.33 to 1.60" in notes[0]
    resized, notes = resize_frame(np.zeros((20, 32, 3), np.uint8), (40, 64))
    assert resized.shape == (40, 64, 3) and notes == []


def _model_folder(tmp_path):
    """An image-to-video model folder as the i2v stage writes it (random weights), at 16x24, 4 frames."""
    import json

    from svd.models.image_encoder import save_image_encoder

    folder = tmp_path / "i2v"
    i2v.extend_for_images(_t2v_unet()).save_pretrained(folder / "unet")
    _vae().save_pretrained(folder / "vae")
    encoder = _encoder()
    save_image_encoder(encoder, folder)
    meta = {
        "stage": "i2v",
        "kind": "image-to-video",
        "profile": "tiny",
        "vae": "vae",
        "size": [16, 24],
        "latent_size": [4, 6],
        "frames": 4,
        "fps": 4.0,
        "motion_bucket": 60.0,
        "motion_range": [0.0, 120.0],
        "image_encoder": "image_encoder",
        "image_encoder_backend": encoder.backend,
        "image_encoder_pretrained": False,
        "image_encoder_seed": 0,
        "guidance": [1.0, 2.5],
        "sample_steps": 4,
        "cond_aug": 0.02,
    }
    (folder / "svd_model.json").write_text(json.dumps(meta))
    return folder


def test_exported_pipeline_gives_our_frames(tmp_path):
    """`svd export` writes a folder StableVideoDiffusionPipeline.from_pretrained loads; from the same start noise and
    augmentation noise it gives the frames of our sampler within 1/255 (measured: 0.5, the uint8 rounding; the
    sigmas are float32 there, float64 here)."""
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    from svd.config import load_params
    from svd.export import export_model
    from svd.training.stages import load_model

    params = load_params("params.yaml")
    folder = _model_folder(tmp_path)
    report = export_model(params, folder, tmp_path / "diffusers")
    assert (tmp_path / "diffusers" / "model_index.json").is_file()
    pipe = StableVideoDiffusionPipeline.from_pretrained(tmp_path / "diffusers")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    noise = torch.randn(1, 4, 8, 4, 6, generator=torch.Generator().manual_seed(1))
    aug = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    call = report["call"]
    theirs = pipe(
        Image.fromarray(frame),
        height=16,
        width=24,
        num_frames=4,
        num_inference_steps=4,
        fps=4,
        motion_bucket_id=60,
        noise_aug_strength=0.02,
        min_guidance_scale=1.0,
        max_guidance_scale=2.5,
        generator=torch.Generator().manual_seed(2),
        latents=noise,
        output_type="np",
    ).frames[0]
    assert call == {
        "height": 16,
        "width": 24,
        "num_frames": 4,
        "fps": 4.0,
        "motion_bucket_id": 60.0,
        "noise_aug_strength": 0.02,
        "min_guidance_scale": 1.0,
        "max_guidance_scale": 2.5,
        "num_inference_steps": 4,
    }
    model = load_model(folder)
    ours = i2v.generate(
        model["unet"],
        model["vae"],
        model["image_encoder"],
        torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1,
        num_frames=4,
        steps=4,
        guidance=(1.0, 2.5),
        seed=0,
        fps=4.0,
        motion_bucket=60.0,
        cond_aug=0.02,
        noise=noise,
        aug_noise=aug,
    )[0]
    diff = np.abs(ours.astype(np.float64) - np.asarray(theirs) * 255.0)
    print("max abs difference (0-255):", diff.max(), "mean:", diff.mean())
    assert diff.max() <= 1.0, diff.max()
    assert np.abs(ours.astype(float) - ours.mean()).mean() > 1  # not a blank video agreeing with a blank video


def test_export_refuses_a_text_to_video_model(tmp_path):
    import json

    from svd.config import load_params
    from svd.errors import InputError
    from svd.export import export_model

    folder = _model_folder(tmp_path)
    meta = json.loads((folder / "svd_model.json").read_text())
    meta.update(kind="text-to-video", text_model="svd-tiny-text", text_pretrained=None, text_seed=0, text_token_std=1.0)
    (folder / "svd_model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="image-to-video models only"):
        export_model(load_params("params.yaml"), folder, tmp_path / "out")


# ---------------------------------------------------------------- the evaluator's per-sample measures
def _video(positions, size=(40, 64), side=8, extra=None):
    """A red square on grey at each (x, y) of `positions` (None: absent); `extra`: a second square per frame."""
    frames = []
    for i, pos in enumerate(positions):
        f = np.full((*size, 3), 128, np.uint8)
        for p in (pos, extra[i] if extra else None):
            if p is not None:
                x, y = p
                f[y : y + side, x : x + side] = (230, 25, 25)
        frames.append(f)
    return np.stack(frames)


def test_identity_catches_splits_vanishing_and_jumps():
    from svd.evaluation.image_to_video import identity

    steady = _video([(4 + 3 * t, 10) for t in range(8)])
    assert identity(steady, "red")["ok"]
    assert not identity(steady, "blue")["ok"]  # the object of the conditioning frame is not there at all
    split = _video([(4 + 3 * t, 10) for t in range(8)], extra=[None] * 4 + [(50, 25)] * 4)
    got = identity(split, "red")
    assert not got["ok"] and got["split_frames"] == 4
    gone = _video([(4, 10)] * 5 + [None] * 3)
    got = identity(gone, "red")
    assert not got["ok"] and got["missing_frames"] == 3
    teleport = _video([(4, 10)] * 4 + [(40, 10)] * 4)  # 36 px of a 64-px frame: more than a quarter
    got = identity(teleport, "red")
    assert not got["ok"] and got["one_blob"] and got["max_jump_quarters"] == pytest.approx(36 / 16)
    fast = _video([(4 + 12 * t, 10) for t in range(5)])  # 12 px a frame: under a quarter (16 px)
    assert identity(fast, "red")["ok"]


def test_psnr_and_scene_psnr_against_a_hand_computed_reference():
    from svd.evaluation.image_to_video import psnr, scene_psnr

    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0] = 110  # one pixel off by 10 in every channel: MSE = 100 / 16
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 16)))
    mask = np.zeros((4, 4), bool)
    mask[1:] = True
    assert psnr(a, b, mask) == float("inf")  # the differing pixel is outside the mask
    moving = _video([(4 + 3 * t, 10) for t in range(8)])
    # the object moves over a still grey scene: outside its masks every frame equals the conditioning frame
    assert scene_psnr(moving, moving[0], "red") == float("inf")
    noisy = moving.copy()
    noisy[:, 30:, :] = 140  # the scene below row 30 changes by 12 levels
    # by hand: outside = not (the conditioning frame's square or frame t's, each grown by 2 px to 12 x 12)
    outside = 0
    for t in range(8):
        union = np.zeros((40, 64), bool)
        union[8:20, 2:14] = True
        union[8:20, 2 + 3 * t : 14 + 3 * t] = True
        outside += (~union).sum()
    want = 10 * np.log10(255**2 / (12**2 * 8 * 10 * 64 / outside))
    # (the colour rule's 3x3 median rounds the square's corners, so a few corner pixels count as outside: 0.01 dB)
    assert scene_psnr(noisy, moving[0], "red") == pytest.approx(want, abs=0.05)


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    from svd.evaluation.intervals import bootstrap, mean_interval

    x = np.random.default_rng(0).normal(5.0, 1.0, 200)
    got = mean_interval(x, rounds=400, seed=1)
    assert got["lo"] < 5.0 < got["hi"] and got["lo"] < x.mean() < got["hi"]
    assert got["hi"] - got["lo"] == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)  # the normal-theory width
    assert mean_interval(x, rounds=400, seed=1) == got
    assert bootstrap(lambda i: float(x[i].mean()), 1, rounds=10, seed=0) is None
    assert "lo" not in mean_interval(x, rounds=0, seed=0)


def test_fvd_check_gives_each_fvd_its_interval(tmp_path):
    """The FVD check: the samples' and the still video's FVD against the real continuations, each with its own
    bootstrap interval, and the paired interval of their difference."""
    from svd.config import load_params
    from svd.evaluation.i3d import InceptionI3d, save_inception_i3d
    from svd.evaluation.image_to_video import _fvd

    torch.manual_seed(0)
    weights = save_inception_i3d(
        InceptionI3d(num_classes=6, width=0.0625),
        tmp_path / "net.safetensors",
        extra={"protocol": {"frames": 4, "size": 32}},
    )
    root = Path(__file__).resolve().parents[1]
    params = load_params(
        root / "params.yaml",
        overrides=[f"evaluate.fvd.i3d_weights={weights}", "evaluate.fvd.frames=4", "evaluate.fvd.size=32",
                   "evaluate.fvd.device=cpu", "evaluate.image_to_video.bootstrap=40"],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (16, 4, 32, 32, 3), dtype=np.uint8)
    fake = np.clip(real + rng.normal(0, 30, real.shape), 0, 255).astype(np.uint8)
    still = np.repeat(real[:, :1], 4, axis=1)
    out = _fvd(params, real, fake, still, params.evaluate.image_to_video)
    assert "skipped" not in out, out
    for key in ("samples", "still"):
        ci = out[f"{key}_interval"]
        assert np.isfinite(out[key]) and ci["lo"] < ci["hi"]
    assert out["difference"]["mean"] == pytest.approx(out["samples"] - out["still"])
