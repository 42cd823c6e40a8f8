import pytest

from svd.config import ConfigError, deep_merge, flatten, load_params, parse_override


def test_default_profile_is_tiny(params_file):
    p = load_params(params_file)
    assert p.profile == "tiny"
    assert p.weights.clip_pretrained is None


def test_profile_merges_over_base(params_file):
    p = load_params(params_file, profile="a100")
    assert p.profile == "a100"
    assert p.weights.clip_model == "ViT-L-14"
    # values the profile does not mention stay at the base
    assert p.curate.filters.motion_bottom == 0.25


def test_overrides_are_typed(params_file):
    p = load_params(
        params_file, overrides=["curate.cuts.min_clip_s=2.5", "curate.write_clips=false", "world.sizes=[[64, 48]]"]
    )
    assert p.curate.cuts.min_clip_s == 2.5
    assert p.curate.write_clips is False
    assert p.world.sizes == [(64, 48)]


@pytest.mark.parametrize(
    "override, message",
    [
        ("curate.cuts.nope=1", "unknown parameter 'curate.cuts.nope'"),
        ("curate.cuts.min_clip_s.x=1", "is not a section"),
        ("curate.cuts.min_clip_s=fast", "curate.cuts.min_clip_s"),
        ("curate.filters.motion_bottom=1.5", "curate.filters.motion_bottom"),
        ("train.video.static_weight=1.5", "train.video.static_weight"),
        ("novalue", "key=value"),
        ("profile=a100", "--profile"),
    ],
)
def test_bad_overrides_fail_with_the_key(params_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_params(params_file, overrides=[override])


def test_unknown_profile_and_missing_file(params_file, tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'h100'"):
        load_params(params_file, profile="h100")
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_helpers():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert flatten({"a": {"b": 1}, "c": [1]}) == {"a.b": 1, "c": [1]}
    assert parse_override("x.y=null") == (["x", "y"], None)


def test_params_noise_presets_match_the_code_and_the_paper(params_file):
    """params.yaml is the one source of numbers; the code's stage presets and the paper's table must agree."""
    from svd.diffusion.edm import STAGE_NOISE

    p = load_params(params_file)
    assert {k: tuple(v) for k, v in p.diffusion.noise.items()} == STAGE_NOISE
    assert p.diffusion.noise["hq"] == (0.5, 1.4) and p.diffusion.noise["i2v_hq"] == (1.0, 1.6)
    assert p.diffusion.guidance["frames_14"] == (1.0, 2.5) and p.diffusion.guidance["frames_25"] == (1.5, 3.0)
    assert (p.diffusion.sampler.steps_14_frames, p.diffusion.sampler.steps_25_frames) == (25, 30)
    # the shifted tiny presets (ours) stay out of the a100 profile, which trains as the paper does
    assert (p.train.image.noise, p.train.video.noise, p.train.hq.noise) == ("image_tiny", "video_tiny", "hq")
    a100 = load_params(params_file, profile="a100")
    assert (a100.train.image.noise, a100.train.video.noise, a100.train.hq.noise) == ("image", "video", "hq")
