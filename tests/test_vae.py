"""The latent autoencoder: loading (local folders only), encode/decode, measured scaling factor, training."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from svd.errors import InputError, WeightsError
from svd.models.vae import SD21_VAE, TINY_VAE, build_vae, decode, encode, latent_scale, load_vae, num_parameters
from svd.training.checkpoint import CheckpointMismatch

SMALL = {
    **TINY_VAE,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "scaling_factor": 0.5,
    "latent_channels": 4,
}


def _small(seed=0):
    torch.manual_seed(seed)
    return build_vae(SMALL).eval()


@pytest.fixture(scope="module")
def curated(small_curated):
    return small_curated[1]


def test_sd21_vae_builds_on_meta_with_the_papers_count():
    with torch.device("meta"):
        vae = build_vae(SD21_VAE)
    assert num_parameters(vae) == 83_653_863
    assert vae.config.scaling_factor == 0.18215


def test_load_vae_from_folder_and_pipeline_subfolder(tmp_path):
    vae = _small()
    vae.save_pretrained(tmp_path / "vae_only")
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    want = decode(vae, encode(vae, x))
    for folder in ("vae_only", "pipe"):
        loaded, backend = load_vae(tmp_path / folder)
        assert isinstance(loaded, AutoencoderKL) and not loaded.training
        assert backend == f"diffusers:AutoencoderKL:{tmp_path / folder}"
        torch.testing.assert_close(decode(loaded, encode(loaded, x)), want)


def test_load_vae_errors_name_the_params_key(tmp_path):
    with pytest.raises(WeightsError, match=r"weights\.vae.*not found"):
        load_vae(tmp_path / "missing")
    with pytest.raises(WeightsError, match=r"weights\.vae.*local cache"):
        load_vae("nobody/no-such-vae")  # a hub id: looked up in the local cache only, never downloaded
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no config.json"):
        load_vae(tmp_path / "empty")
    other = tmp_path / "unet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(WeightsError, match="UNet2DConditionModel, not a VAE"):
        load_vae(other)
    with pytest.raises(WeightsError, match="null"):
        load_vae(None, None)


def test_random_init_backend_and_encode_decode_shapes_and_scale():
    vae, backend = load_vae(None, SMALL)
    assert backend == "diffusers:AutoencoderKL:random"
    x = torch.rand(2, 3, 3, 32, 32) * 2 - 1  # (B, T, C, H, W) frames
    z = encode(vae, x, chunk=4)
    assert z.shape == (2, 3, 4, 16, 16)
    torch.testing.assert_close(z, encode(vae, x, scale=False) * 0.5)
    torch.testing.assert_close(z.flatten(0, 1), encode(vae, x.flatten(0, 1), chunk=2))  # chunking changes nothing
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(encode(vae, x, sample=True, generator=g), z)
    y = decode(vae, z, chunk=5)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    s = latent_scale(vae, x)
    assert s == pytest.approx(1 / encode(vae, x, scale=False).flatten().std().item(), rel=1e-5)
    tiny = build_vae(TINY_VAE)
    assert encode(tiny, torch.zeros(1, 3, 32, 48)).shape == (1, 8, 8, 12)  # x4: 32 x 48 frames -> 8 x 12 latents


@pytest.mark.slow  # three short training runs on a small curated set
def test_train_vae_learns_saves_and_reloads(curated, tmp_path):
    from svd.training.vae import psnr, train_vae

    losses = []
    kw = dict(
        cfg=SMALL, steps=60, batch_size=8, lr=3e-3, size=32, seed=0, ckpt_every=30, frames_per_clip=4, eval_frames=8
    )  # 60 steps: +4.8 dB on the textured world (30 gave +0.7, a margin too thin for the 1 dB bar)
    out = tmp_path / "run"
    summary = train_vae(curated, out, logger=lambda m, s: losses.append(m["loss"]), **kw)
    assert summary["steps"] == 60 and len(losses) == 6
    assert losses[-1] < losses[0]
    assert summary["psnr"] > summary["psnr_init"] + 1.0
    assert summary["scaling_factor"] == pytest.approx(1 / summary["latent_std"])
    assert (out / "recon.png").is_file() and (out / "checkpoints" / "step-000060").is_dir()

    vae = AutoencoderKL.from_pretrained(out / "vae")
    assert vae.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    from svd.data.clips import CuratedSet
    from svd.training.vae import _frames, _split

    held_set = _split(CuratedSet(curated))[1]  # the held-out clips, read as train_vae reads them
    held = _frames(held_set, (32, 32), max(2, 8 // len(held_set)), 1)[:8]
    assert psnr(vae, held) == pytest.approx(summary["psnr"], abs=1e-4)

    # the finished run resumes to itself; another VAE config in the same folder is refused
    again = train_vae(curated, out, **kw)
    assert again["resumed_from"] == 60
    with pytest.raises(CheckpointMismatch):
        train_vae(curated, out, **{**kw, "cfg": {**SMALL, "latent_channels": 8}})


def test_train_vae_rejects_an_empty_curated_set(tmp_path):
    from svd.training.vae import train_vae

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        train_vae(
            tmp_path / "empty",
            tmp_path / "out",
            cfg=SMALL,
            steps=1,
            batch_size=1,
            lr=1e-3,
            size=32,
            seed=0,
            ckpt_every=1,
        )


def test_random_patches_are_crops_drawn_from_the_generator():
    from svd.training.vae import random_patches

    images = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    a = random_patches(images, (4, 6), torch.Generator().manual_seed(3))
    b = random_patches(images, (4, 6), torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 4, 6) and torch.equal(a, b)  # same generator state, same crops (resume draws the same)
    for im, crop in zip(images, a):
        # a crop of its own image: its top-left value locates it, and the whole window matches there
        y, x = divmod(int(crop[0, 0, 0].item()) - int(im[0, 0, 0].item()), 12)
        assert 0 <= y <= 4 and 0 <= x <= 6 and torch.equal(im[:, y : y + 4, x : x + 6], crop)
    offsets = {
        tuple(random_patches(images[:1], (4, 6), torch.Generator().manual_seed(s))[0, 0, 0, :1].tolist())
        for s in range(20)
    }
    assert len(offsets) > 5  # offsets vary with the draw
    with pytest.raises(ValueError, match="larger"):
        random_patches(images, (9, 6), None)


def test_train_vae_on_patches_refuses_a_patch_larger_than_the_frames(curated, tmp_path):
    from svd.training.vae import train_vae

    with pytest.raises(ValueError, match="train.vae.patch"):
        train_vae(
            curated,
            tmp_path / "run",
            cfg=SMALL,
            steps=2,
            batch_size=4,
            lr=1e-3,
            size=16,
            seed=0,
            ckpt_every=10,
            frames_per_clip=2,
            patch=(8, 24),
        )
