"""Latent training sets: caption-aware flips (words and pixels agree), evenly spaced windows read once per clip, and
encoding with one embedding per distinct caption."""

import pytest
import torch

from svd.data import CuratedSet
from svd.errors import InputError
from svd.models.text import load_text_encoder
from svd.models.vae import TINY_VAE, build_vae
from svd.training.latents import (
    LatentItems,
    encode_windows,
    flip_caption,
    flip_combinations,
    flip_video,
    read_windows,
)


@pytest.mark.parametrize(
    "flip,text,want",
    [
        ("hflip", "a red circle moving left, the camera pans right", "a red circle moving right, the camera pans left"),
        (
            "vflip",
            "a blue square moving up and a red circle moving left",
            "a blue square moving down and a red circle moving left",
        ),
        (
            "reverse",
            "a green circle moving down, the camera zooms in",
            "a green circle moving up, the camera zooms out",
        ),
        ("hflip", "Left of a yellow square standing still", "Right of a yellow square standing still"),
        (
            "reverse",
            "a lightning bolt, outdoors",
            "a lightning bolt, outdoors",
        ),  # words containing 'in'/'out' untouched
    ],
)
def test_flip_caption(flip, text, want):
    assert flip_caption(text, flip) == want


def test_flip_combinations_and_video():
    assert flip_combinations([]) == [()]
    assert flip_combinations(["hflip", "reverse"]) == [(), ("hflip",), ("reverse",), ("hflip", "reverse")]
    assert len(flip_combinations(["hflip", "vflip", "reverse"])) == 8
    with pytest.raises(ValueError, match="unknown flips"):
        flip_combinations(["rotate"])
    v = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    assert torch.equal(flip_video(v, "hflip")[..., 0], v[..., -1])
    assert torch.equal(flip_video(v, "vflip")[..., 0, :], v[..., -1, :])
    assert torch.equal(flip_video(v, "reverse")[0], v[-1])


def test_read_windows_and_encode(small_curated):
    _, curated = small_curated
    clips = CuratedSet(curated)
    w = read_windows(clips, num_frames=4, fps=6.0, size=(16, 24), windows_per_clip=3, augment=["hflip"])
    n = len(w)
    assert w.video(0).shape == (4, 3, 16, 24) and n % 2 == 0 and n <= len(clips) * 3 * 2
    assert float(w.frames.min()) >= -1 and float(w.frames.max()) <= 1
    # every flipped copy follows its original: pixels mirrored, direction words swapped
    for i in range(0, n, 2):
        assert torch.equal(w.video(i + 1), w.video(i).flip(-1))
        assert w.captions[i + 1] == flip_caption(w.captions[i], "hflip")
        assert w.flips[i] == "none" and w.flips[i + 1] == "hflip"
    assert set(w.fps_id.tolist()) == {5}

    vae = build_vae(dict(TINY_VAE, latent_channels=4)).eval()
    text = load_text_encoder("svd-tiny-text", None)
    data = encode_windows(w, vae, text)
    assert data.latents.shape == (n, 4, 4, 4, 6)
    distinct = sorted(set(w.captions))
    assert data.text.shape[0] == 1 + len(distinct)  # row 0: the empty caption
    torch.testing.assert_close(data.text[0], text.encode([""])[0])
    for i in (0, n - 1):
        torch.testing.assert_close(data.text[data.text_index[i]], text.encode([w.captions[i]])[0])
    item = LatentItems(data)[1]
    assert set(item) == {"latents", "text_index", "fps_id", "motion_bucket"}


def test_reversed_windows_share_frames(small_curated):
    _, curated = small_curated
    w = read_windows(
        CuratedSet(curated), num_frames=3, fps=6.0, size=(16, 16), windows_per_clip=2, augment=["reverse", "hflip"]
    )
    assert w.flips[:4] == ["none", "reverse", "hflip", "reverse+hflip"]
    assert torch.equal(w.video(1), w.video(0).flip(0))
    assert torch.equal(w.video(3), w.video(0).flip(0).flip(-1))
    assert w.captions[1] == flip_caption(w.captions[0], "reverse")
    # frames are stored once per spatial flip, not once per window
    assert w.frames.shape[0] <= 2 * len(CuratedSet(curated)) * 2 * 3


def test_read_windows_errors(small_curated):
    _, curated = small_curated
    with pytest.raises(InputError, match="no clip holds 500 frames"):
        read_windows(CuratedSet(curated), num_frames=500, fps=24.0, size=(16, 16), windows_per_clip=1)
    with pytest.raises(ValueError, match="windows_per_clip"):
        read_windows(CuratedSet(curated), num_frames=2, fps=6.0, size=(16, 16), windows_per_clip=0)
