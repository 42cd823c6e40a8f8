"""Captioners: tiny random models saved locally and reloaded through the configured paths (plumbing, not words)."""

import numpy as np
import pytest
import torch

from conftest import PARAMS
from svd.config import Captions, Weights, load_params
from svd.curation.captions import (
    Captioner,
    CocaCaptioner,
    LLMSummarizer,
    Summarizer,
    VideoCaptioner,
    build_captioners,
    consensus,
)
from svd.errors import WeightsError
from svd.models.clip import load_clip

WORDS = (
    "a the red blue green yellow circle square moves left right up down on background video clip caption summary "
    "one two these of same into short"
).split()


@pytest.fixture(scope="module")
def params():
    return load_params(PARAMS)


@pytest.fixture(scope="module")
def cfg(params) -> Captions:
    return params.curate.captions


def weights(**kw) -> Weights:
    return Weights(clip_model="svd-tiny-clip", coca_model="svd-tiny-coca", **kw)


def frames(n=3):
    return [np.random.default_rng(i).integers(0, 256, (144, 256, 3), dtype=np.uint8) for i in range(n)]


def _words_only(model, specials):
    """Random init puts special tokens on a par with words; zero their (tied) embeddings so greedy decoding emits
    words and the test sees text come through the whole path."""
    with torch.no_grad():
        model.get_output_embeddings().weight[specials] = 0


def gpt2_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "<|endoftext|>", *WORDS, ":", "1", "2"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path_factory.mktemp("llm")
    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=128,
            n_embd=32,
            n_layer=1,
            n_head=2,
            bos_token_id=2,
            eos_token_id=2,
            pad_token_id=1,
            initializer_range=0.5,
        )
    )
    _words_only(model, [0, 1, 2])
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ved_dir(tmp_path_factory):
    """VisionEncoderDecoder: tiny ViT encoder + tiny GPT-2 decoder, image processor and tokenizer side by side."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    d = tmp_path_factory.mktemp("ved")
    tok = gpt2_tokenizer()
    enc = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    dec = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
        add_cross_attention=True,
        is_decoder=True,
        initializer_range=0.5,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 2, 1, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    _words_only(model.decoder, [0, 1, 2])
    model.save_pretrained(d)
    tok.save_pretrained(d)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    """BLIP captioning model with a BlipProcessor (BERT word-piece tokenizer built from a word list)."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    d = tmp_path_factory.mktemp("blip")
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(toks)}, bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(toks),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=5,
            sep_token_id=3,
            eos_token_id=3,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(d)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    processor.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def coca_file(tmp_path_factory):
    model = load_clip("svd-tiny-coca", None, seed=3)[0]
    with torch.no_grad():  # open_clip leaves the decoder's output projection at zero; random words need it random
        torch.nn.init.normal_(model.text_decoder.text_projection, std=0.5)
    path = tmp_path_factory.mktemp("coca") / "tiny_coca.pt"
    torch.save(model.state_dict(), path)
    return path


def test_coca_reloaded_from_file_writes_words(coca_file):
    cap = CocaCaptioner(weights(coca_pretrained=str(coca_file)), max_new_tokens=8)
    assert isinstance(cap, Captioner) and cap.backend == "open_clip:svd-tiny-coca:tiny_coca.pt"
    text = cap.caption(frames())
    assert isinstance(text, str) and text and "<" not in text
    assert cap.caption(frames()) == text  # greedy: deterministic
    ids = cap.generate(cap.preprocess(__import__("PIL.Image").Image.fromarray(frames()[1])).unsqueeze(0))
    assert 5 <= len(ids) <= 8  # min_tokens keeps end-of-text away for 5 tokens; max_new_tokens caps it
    assert cap.tokenizer.decode(ids).strip() == text


@pytest.mark.parametrize("which", ["ved", "blip"])
def test_video_captioner_from_folder(request, which):
    d = request.getfixturevalue(f"{which}_dir")
    cap = VideoCaptioner(weights(video_captioner=str(d)), max_new_tokens=6)
    assert isinstance(cap, Captioner)
    assert cap.backend.startswith("transformers:") and cap.backend.endswith(d.name)
    per_frame = cap.caption_frames(frames(4))
    assert len(per_frame) == 4 and all(isinstance(c, str) and c for c in per_frame)
    assert cap.caption(frames(4)) in per_frame
    assert set(" ".join(per_frame).split()) <= set(WORDS)


def test_consensus_picks_the_majority_caption():
    caps = ["a red circle moves left", "a red circle moves left on blue", "green square", "a red circle"]
    assert consensus(caps) == "a red circle moves left"
    assert consensus(["only one"]) == "only one"


def test_llm_summarizer(llm_dir):
    s = LLMSummarizer(weights(llm=str(llm_dir)), max_new_tokens=6)
    assert isinstance(s, Summarizer) and s.backend == f"transformers:gpt2:{llm_dir.name}"
    out = s.summarize("a red circle moves left", "a red circle on blue background")
    assert isinstance(out, str) and out and len(out.split()) <= 6
    assert s.summarize("a red circle moves left", "a red circle on blue background") == out


def test_build_captioners(params, cfg, coca_file, blip_dir, llm_dir, tmp_path):
    # tiny profile: nothing configured -> all None (the driver writes null captions, backend "none")
    assert build_captioners(params.weights, cfg) == {"coca": None, "video": None, "llm": None}
    full = weights(coca_pretrained=str(coca_file), video_captioner=str(blip_dir), llm=str(llm_dir))
    built = build_captioners(full, cfg)
    assert isinstance(built["coca"], CocaCaptioner) and isinstance(built["video"], VideoCaptioner)
    assert isinstance(built["llm"], LLMSummarizer)
    off = build_captioners(full, cfg.model_copy(update={"video": False, "llm": False}))
    assert off["video"] is None and off["llm"] is None and off["coca"] is not None
    disabled = build_captioners(full, cfg.model_copy(update={"enabled": False}))
    assert disabled == {"coca": None, "video": None, "llm": None}


@pytest.mark.parametrize("key", ["coca_pretrained", "video_captioner", "llm"])
def test_configured_but_missing_is_an_error(cfg, tmp_path, key):
    with pytest.raises(WeightsError, match=f"weights.{key}"):
        build_captioners(weights(**{key: str(tmp_path / "missing")}), cfg)


def test_hub_id_not_in_cache_is_an_error(cfg):
    with pytest.raises(WeightsError, match="weights.llm.*nothing is downloaded"):
        build_captioners(weights(llm="svd-test/definitely-not-cached-model"), cfg)


def test_empty_folder_is_an_error(cfg, tmp_path):
    with pytest.raises(WeightsError, match="weights.video_captioner: cannot load"):
        VideoCaptioner(weights(video_captioner=str(tmp_path)))
