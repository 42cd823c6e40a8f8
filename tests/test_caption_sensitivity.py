"""Caption sensitivity: the denoising-loss gaps when a caption's words are swapped
(svd.evaluation.caption_sensitivity)."""

import torch

from svd.diffusion.edm import precondition
from svd.evaluation.caption_sensitivity import single_object, steering, swap_colour, word_gaps

COLOURS = ["red", "green", "blue"]
CAPTIONS = ["a red circle moving left", "a blue square moving up", "a green circle moving right"]


def _encode(captions):
    """A stand-in text encoder: one row per word in a fixed vocabulary, so each word moves the context on its own."""
    vocab = ["a", "red", "green", "blue", "circle", "square", "moving", "left", "right", "up", "down"]
    out = torch.zeros(len(captions), 6, len(vocab))
    for i, c in enumerate(captions):
        for j, w in enumerate(c.split()[:6]):
            out[i, j, vocab.index(w)] = 1.0
    return out


def _latents():
    return torch.randn(3, 4, 2, 4, 4, generator=torch.Generator().manual_seed(123))  # not word_gaps' noise seed


def test_a_model_that_ignores_text_has_no_gap():
    def blind(x, c_noise, *, context):
        return 0.5 * x

    r = word_gaps(blind, _encode, _latents(), CAPTIONS, colours=COLOURS, sigmas=(0.5, 5.0))
    for gaps in r["relative_gap"].values():
        assert gaps == [0.0, 0.0]
    assert r["sigmas"] == [0.5, 5.0] and len(r["loss"]["true"]) == 2


def test_a_model_that_reads_one_word_pays_only_for_that_word():
    latents = _latents()

    def reads_direction(x, c_noise, *, context):
        left = context[:, :, 7].sum(dim=1)  # 1 where the caption says "left" (the stand-in vocabulary's index 7)
        return x * 0 + left.reshape(-1, 1, 1, 1, 1) * latents.sign()

    r = word_gaps(reads_direction, _encode, latents, CAPTIONS, colours=COLOURS, sigmas=(1.0, 5.0))
    assert r["relative_gap"]["colour_swapped"] == [0.0, 0.0]
    assert all(g != 0.0 for g in r["relative_gap"]["direction_swapped"])


def test_swaps_and_the_single_object_rule():
    assert swap_colour("a red circle and a blue square", COLOURS) == "a green circle and a red square"
    assert single_object("a red circle moving left")
    assert not single_object("a red circle moving left and a blue square moving up")
    assert not single_object("a red circle moving left, the camera pans right")
    assert not single_object("")


def _red_squares_moving_left(n=3, t=8, size=32):
    """Pixel videos (n, t, 3, H, W) in [-1, 1]: a red square moving 2 px per frame to the left over grey."""
    video = torch.full((n, t, 3, size, size), 0.0)
    for i in range(n):
        for k in range(t):
            x = 22 - 2 * k - i
            video[i, k, :, 10 + i : 18 + i, x : x + 7] = torch.tensor([0.8, -0.8, -0.8]).reshape(3, 1, 1)
    return video


def _oracle(target_of):
    """model_fn whose denoiser returns target_of(context) exactly at every sigma (F = (target - c_skip x) / c_out)."""

    def fn(x_in, c_noise, *, context):
        sigma = torch.exp(4 * c_noise)
        c_skip, c_out, c_in, _ = (c.reshape(-1, 1, 1, 1, 1) for c in precondition(sigma))
        x = x_in / c_in
        return (target_of(context) - c_skip * x) / c_out

    return fn


def test_steering_tells_a_model_that_follows_the_word_from_one_that_ignores_it():
    videos = _red_squares_moving_left()
    captions = ["a red square moving left"] * 3

    def follows(context):  # the stand-in vocabulary's "right" (index 8) plays the clip backwards
        right = context[:, :, 8].sum(dim=1).bool()
        return torch.where(right.reshape(-1, 1, 1, 1, 1), videos.flip(1), videos)

    def ignores(context):
        return videos

    kw = dict(fps=4.0, start_sigmas=(1.0, 5.0), steps=6, guidance=1.0)
    steered = steering(_oracle(follows), _encode, lambda z: z, videos, captions, **kw)
    assert steered["ceiling"] == 1.0
    assert steered["keeps_direction"] == {"true": [1.0, 1.0], "swapped": [0.0, 0.0]}
    assert steered["turned"] == [1.0, 1.0]
    blind = steering(_oracle(ignores), _encode, lambda z: z, videos, captions, **kw)
    assert blind["keeps_direction"] == {"true": [1.0, 1.0], "swapped": [1.0, 1.0]}
    assert blind["turned"] == [0.0, 0.0] and blind["start_sigmas"] == [1.0, 5.0]
