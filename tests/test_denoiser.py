"""The EDM training step on latents and the text-to-video sampler: loss equals the v-MSE reference, text dropout
uses the empty caption, micro-conditioning reaches the UNet, samples are reproducible per prompt."""

import copy

import numpy as np
import pytest
import torch

from svd.diffusion.edm import DenoiserConfig, v_target
from svd.models.text import load_text_encoder
from svd.models.unet import TINY_UNET_PARAMS, build_image_unet, build_video_unet, image_unet_config, video_unet_config
from svd.models.vae import TINY_VAE, build_vae
from svd.tasks.text_to_video import generate, make_step
from svd.training.denoiser import prompt_noise, unet_call
from svd.training.loop import StepRandom

P = copy.deepcopy(TINY_UNET_PARAMS)


def _batch(b=3, t=4):
    g = torch.Generator().manual_seed(0)
    return {
        "latents": torch.randn(b, t, P["in_channels"], 4, 6, generator=g),
        "text_index": torch.tensor([1, 2, 1][:b]),
        "fps_id": torch.tensor([3] * b),
        "motion_bucket": torch.tensor([10, 100, 255][:b]),
    }


def _table():
    return torch.randn(3, 32, P["cross_attention_dim"], generator=torch.Generator().manual_seed(1))


def test_video_step_is_the_v_mse_with_dropout_to_the_empty_caption():
    torch.manual_seed(0)
    unet = build_video_unet(video_unet_config(P)).eval()
    table, batch = _table(), _batch()
    noise = DenoiserConfig(1.0, -1.2, 1.2)
    step = make_step(noise, table, video=True, text_dropout=0.5)
    loss = step(unet, batch, StepRandom.of(torch.Generator().manual_seed(5)))

    # independent replay of the same draws: sigma, noise, dropout mask (in the step's order)
    g = torch.Generator().manual_seed(5)
    x0 = batch["latents"]
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(3, generator=g))
    eps = torch.randn(x0.shape, generator=g)
    keep = torch.rand(3, generator=g) >= 0.5
    index = torch.where(keep, batch["text_index"], torch.zeros(3, dtype=torch.int64))
    ids = torch.stack([batch["fps_id"].float(), batch["motion_bucket"].float()], 1)
    s = sigma.reshape(3, 1, 1, 1, 1)
    c_in, c_noise = 1 / torch.sqrt(s**2 + 1), 0.25 * torch.log(sigma)
    f = unet((x0 + s * eps) * c_in, c_noise, table[index], added_time_ids=ids).sample
    want = ((f - v_target(x0, eps, sigma)) ** 2).flatten(1).mean(1).mean()
    torch.testing.assert_close(loss, want, rtol=1e-4, atol=1e-5)
    assert keep.tolist() == [False, False, True]  # this seed drops two captions and keeps one: both paths checked


def test_video_step_passes_static_weight_to_the_loss():
    """The same draws with static_weight 0.25: the loss is the replayed error split over frames (edm_loss's own
    formula is checked in test_edm); the image step refuses it (one frame has no mean over frames)."""
    torch.manual_seed(0)
    unet = build_video_unet(video_unet_config(P)).eval()
    table, batch = _table(), _batch()
    noise = DenoiserConfig(1.0, -1.2, 1.2)
    loss = make_step(noise, table, video=True, text_dropout=0.0, static_weight=0.25)(
        unet, batch, StepRandom.of(torch.Generator().manual_seed(5))
    )
    g = torch.Generator().manual_seed(5)
    x0 = batch["latents"]
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(3, generator=g))
    eps = torch.randn(x0.shape, generator=g)
    ids = torch.stack([batch["fps_id"].float(), batch["motion_bucket"].float()], 1)
    s = sigma.reshape(3, 1, 1, 1, 1)
    f = unet(
        (x0 + s * eps) / torch.sqrt(s**2 + 1), 0.25 * torch.log(sigma), table[batch["text_index"]], added_time_ids=ids
    ).sample
    e = f - v_target(x0, eps, sigma)
    m = e.mean(1, keepdim=True)
    want = ((e - m) ** 2 + 0.25 * m**2).flatten(1).mean(1).mean()
    torch.testing.assert_close(loss, want, rtol=1e-4, atol=1e-5)
    image = make_step(noise, table, video=False, static_weight=0.25)
    with pytest.raises(ValueError, match="needs videos"):
        image(build_image_unet(image_unet_config(P)), _batch(t=1), StepRandom.of(torch.Generator().manual_seed(0)))


def test_step_trains_and_conditioning_matters():
    torch.manual_seed(0)
    unet = build_video_unet(video_unet_config(P))
    step = make_step(DenoiserConfig(1.0, -1.2, 1.2), _table(), video=True, text_dropout=0.15)
    loss = step(unet, _batch(), StepRandom.of(torch.Generator().manual_seed(0)))
    loss.backward()
    assert torch.isfinite(loss)
    assert unet.conv_in.weight.grad.abs().sum() > 0
    # the motion bucket reaches the output through add_embedding
    fn = unet_call(unet.eval())
    x, c = torch.randn(1, 4, P["in_channels"], 4, 6), torch.zeros(1)
    ctx = _table()[1:2]
    a = fn(x, c, context=ctx, added_time_ids=torch.tensor([[3.0, 0.0]]))
    b = fn(x, c, context=ctx, added_time_ids=torch.tensor([[3.0, 255.0]]))
    assert (a - b).abs().max() > 0  # a fresh (not inflated) video UNet: add_embedding is live from the start


def test_image_step_uses_first_frame():
    torch.manual_seed(0)
    unet = build_image_unet(image_unet_config(P))
    step = make_step(DenoiserConfig(1.0, -1.2, 1.0), _table(), video=False)
    batch = _batch(t=1)
    assert torch.isfinite(step(unet, batch, StepRandom.of(torch.Generator().manual_seed(0))))
    with pytest.raises(ValueError, match="text_dropout"):
        make_step(DenoiserConfig(), _table(), video=False, text_dropout=1.0)


def test_prompt_noise_is_per_prompt():
    a = prompt_noise((2, 3), [7, 8])
    b = prompt_noise((2, 3), [8])
    torch.testing.assert_close(a[1], b[0])


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return (
        build_video_unet(video_unet_config(P)).eval(),
        build_vae(TINY_VAE).eval(),
        load_text_encoder("svd-tiny-text", None),
    )


def test_generate_reproducible_and_batch_independent(parts):
    unet, vae, text = parts
    kw = dict(latent_size=(4, 6), num_frames=3, steps=2, guidance=3.0, seed=11, fps=4.0, motion_bucket=50.0)
    a = generate(unet, vae, text, ["a red circle moving left", "a blue square moving up"], **kw)
    assert a.shape == (2, 3, 16, 24, 3) and a.dtype == np.uint8
    b = generate(unet, vae, text, ["a red circle moving left", "a blue square moving up"], **kw)
    assert np.array_equal(a, b)
    # prompt i uses seed + i whatever the batching (equal up to float rounding: batch size changes CPU kernels)
    c = generate(unet, vae, text, ["a red circle moving left", "a blue square moving up"], batch=1, **kw)
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 2
    d = generate(unet, vae, text, ["a red circle moving left"], **{**kw, "seed": 12})
    assert not np.array_equal(a[:1], d)
    with pytest.raises(ValueError, match="no prompts"):
        generate(unet, vae, text, [], **kw)
