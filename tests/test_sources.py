"""Where weights come from (svd.models.sources): a local folder, or a hub id already in the local cache, told apart
the same way by every loader; nothing is downloaded, and every refusal names the params key."""

import pytest

from svd.errors import WeightsError
from svd.models.sources import cached_snapshot, local_or_cached, looks_like_path


def _cache(root, repo: str, files: list[str]):
    """A Hugging Face cache holding `files` of `repo` at revision main (the layout hf_hub_download reads offline)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    rev = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snapshot = folder / "snapshots" / rev
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    return snapshot


def test_paths_and_hub_ids_are_told_apart():
    for path in ("/abs/model", "./rel", "~/m", "a/b/c", "C:\\models\\vae"):
        assert looks_like_path(path), path
    for hub_id in ("stabilityai/stable-video-diffusion-img2vid-xt", "gpt2"):
        assert not looks_like_path(hub_id), hub_id


def test_cached_snapshot_finds_nested_files_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _cache(tmp_path / "hub", "org/pipe", ["model_index.json", "image_encoder/config.json"])
    assert cached_snapshot("org/pipe", ["image_encoder/config.json"]) == snapshot
    assert cached_snapshot("org/pipe", ["vae/config.json", "model_index.json"]) == snapshot
    assert cached_snapshot("org/pipe", ["unet/config.json"]) is None
    assert cached_snapshot("org/absent", ["model_index.json"]) is None
    assert local_or_cached("org/pipe", "weights.x", ["model_index.json"]) == snapshot


def test_refusals_name_the_key(tmp_path):
    with pytest.raises(WeightsError, match=r"weights\.x: folder not found"):
        local_or_cached(str(tmp_path / "missing"), "weights.x", ["config.json"])
    (tmp_path / "file").write_text("")
    with pytest.raises(WeightsError, match=r"weights\.x: .* is a file; expected a folder holding config\.json"):
        local_or_cached(str(tmp_path / "file"), "weights.x", ["config.json"])
    with pytest.raises(
        WeightsError,
        match=r"weights\.x: 'nobody/none' is neither a local folder nor a hub id in "
        r"the local cache",
    ):
        local_or_cached("nobody/none", "weights.x", ["config.json"])
    assert local_or_cached(str(tmp_path), "weights.x", ["config.json"]) == tmp_path


def test_every_loader_refuses_the_same_way(tmp_path):
    from svd.models.image_encoder import load_image_encoder
    from svd.models.vae import load_vae
    from svd.tasks.image_to_video import pipeline_folder

    (tmp_path / "file").write_text("")
    for load, key in (
        (lambda s: load_vae(s), "weights.vae"),
        (lambda s: load_image_encoder(s), "weights.image_encoder"),
        (lambda s: pipeline_folder(s, "weights.i2v_pipeline"), "weights.i2v_pipeline"),
    ):
        with pytest.raises(WeightsError, match=rf"{key}: .*is a file"):
            load(str(tmp_path / "file"))
        with pytest.raises(WeightsError, match=rf"{key}: 'nobody/none' is neither"):
            load("nobody/none")
