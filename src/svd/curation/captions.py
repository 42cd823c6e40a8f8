"""Synthetic captions (paper §3.1): CoCa on the middle frame, a video captioner, and an LLM summary of the two.

Weights come from params (`weights.coca_pretrained`, `weights.video_captioner`, `weights.llm`): a local file/folder,
or for the transformers models a hub id already in the local HF cache (always `local_files_only`; nothing is
downloaded). A captioner whose weights are not configured is None (the driver then writes null captions, backend
"none"): a random-init captioner would only write noise into the training captions. Configured but missing or
unusable weights raise WeightsError naming the params key.

- `CocaCaptioner`: open_clip CoCa. open_clip's `CoCa.generate` needs transformers' `BeamSearchScorer`, which
  transformers 5 removed (open_clip then refuses to generate at all), so decoding is our own loop over open_clip's
  CoCa forward pass and tokenizer: greedy (top-1), the image encoded once, end-of-text suppressed for the first
  `min_tokens` tokens (open_clip's min_seq_len), stopped at end-of-text or `max_new_tokens`.
- `VideoCaptioner`: a transformers image-to-text model (BLIP, BLIP-2, GIT, VisionEncoderDecoder, ... anything
  `AutoModelForImageTextToText` loads) standing in for the paper's V-BLIP. Each given frame is captioned (one batch,
  greedy); the clip's caption is the consensus one: the frame caption with the highest mean word-overlap (Jaccard)
  with the other frames' captions (ties: the earliest frame), i.e. what the clip shows most of the time.
- `LLMSummarizer`: a transformers causal LM; prompt "summarise the two captions into one" (through the tokenizer's
  chat template when it has one), greedy, `max_new_tokens`; the first non-empty line of the continuation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from svd.config import Captions, Weights
from svd.errors import WeightsError


@runtime_checkable
class Captioner(Protocol):
    backend: str

    def caption(self, frames: Sequence[np.ndarray]) -> str: ...


@runtime_checkable
class Summarizer(Protocol):
    backend: str

    def summarize(self, coca: str, video: str) -> str: ...


def _pil(frame: np.ndarray):
    from PIL import Image

    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"captioning expects RGB frames (H, W, 3), got shape {frame.shape}")
    return Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --- CoCa ----------------------------------------------------------------------------------------------------------


class CocaCaptioner:
    """open_clip CoCa caption of the clip's middle frame."""

    def __init__(self, weights: Weights, max_new_tokens: int = 30, min_tokens: int = 5, device="cpu"):
        from svd.models.clip import load_clip

        if not weights.coca_pretrained:
            raise WeightsError("weights.coca_pretrained is not set; CoCa captions need CoCa weights")
        self.device = torch.device(device)
        self.model, self.preprocess, self.tokenizer, self.backend, _ = load_clip(
            weights.coca_model, weights.coca_pretrained, device=self.device, key="coca"
        )
        if not hasattr(self.model, "text_decoder"):
            raise WeightsError(f"weights.coca_model: {weights.coca_model} is not a CoCa model (no text decoder)")
        self.max_new_tokens = max_new_tokens
        self.min_tokens = min_tokens
        self.sot = int(getattr(self.tokenizer, "sot_token_id", 49406))
        self.eot = int(getattr(self.tokenizer, "eot_token_id", 49407))
        self.context = int(getattr(self.model, "context_length", 76))

    @torch.inference_mode()
    def generate(self, image: torch.Tensor) -> list[int]:
        """Greedy token ids (without start/end tokens) for one preprocessed image (1, 3, H, W)."""
        latent, embs = self.model._encode_image(image)
        out = torch.tensor([[self.sot]], device=self.device)
        ids: list[int] = []
        for step in range(min(self.max_new_tokens, self.context - 1)):
            logits = self.model(image, out, image_latent=latent, image_embs=embs, output_labels=False)["logits"][0, -1]
            if step < self.min_tokens:
                logits[self.eot] = -float("inf")
            nxt = int(logits.argmax())
            if nxt == self.eot:
                break
            ids.append(nxt)
            out = torch.cat([out, torch.tensor([[nxt]], device=self.device)], dim=1)
        return ids

    def caption(self, frames: Sequence[np.ndarray]) -> str:
        if len(frames) == 0:
            raise ValueError("caption needs at least one frame")
        middle = frames[(len(frames) - 1) // 2]
        image = self.preprocess(_pil(middle)).unsqueeze(0).to(self.device)
        text = self.tokenizer.decode(self.generate(image))
        return _clean(text.replace("<start_of_text>", "").replace("<end_of_text>", ""))


# --- transformers models --------------------------------------------------------------------------------------------


def _from_pretrained(loader, source: str, key: str, what: str):
    try:
        return loader.from_pretrained(source, local_files_only=True)
    except Exception as exc:
        where = "folder" if Path(source).expanduser().exists() else "local folder or hub id in the local HF cache"
        raise WeightsError(
            f"weights.{key}: cannot load {what} from {source!r} as a {where}; nothing is downloaded "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None


def _source(value: str | None, key: str) -> str:
    if not value:
        raise WeightsError(f"weights.{key} is not set")
    path = Path(value).expanduser()
    looks_local = value.startswith((".", "/", "~")) or path.exists() or value.count("/") != 1
    if looks_local and not path.is_dir():
        raise WeightsError(f"weights.{key}: {value} is not a folder with a transformers model")
    return str(path) if looks_local else value


def _set_pad(model, tokenizer) -> None:
    """Greedy generation of one sequence needs a pad id only to stop warnings; take the tokenizer's (or eos)."""
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is not None:
            gen.pad_token_id = pad


def _jaccard(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    return len(x & y) / len(x | y) if x | y else 1.0


def consensus(captions: Sequence[str]) -> str:
    """The caption that agrees most (mean word Jaccard) with the others; ties go to the earliest."""
    if len(captions) <= 2:
        return captions[0]
    scores = [np.mean([_jaccard(c, o) for j, o in enumerate(captions) if j != i]) for i, c in enumerate(captions)]
    return captions[int(np.argmax(scores))]


class VideoCaptioner:
    """Frame-wise transformers image-to-text captions merged into one caption per clip (see module docstring)."""

    def __init__(self, weights: Weights, max_new_tokens: int = 30, device="cpu"):
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        src = _source(weights.video_captioner, "video_captioner")
        self.device = torch.device(device)
        config = _from_pretrained(AutoConfig, src, "video_captioner", "a model config")
        self.model = _from_pretrained(AutoModelForImageTextToText, src, "video_captioner", "an image-to-text model")
        self.model.to(self.device).eval()
        processor = None
        try:
            processor = AutoProcessor.from_pretrained(src, local_files_only=True)
        except Exception:
            pass
        if processor is not None and hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
            self.processor, self.image_processor, self.tokenizer = processor, None, processor.tokenizer
        else:  # e.g. VisionEncoderDecoder folders: an image processor and a tokenizer saved side by side
            self.processor = None
            self.image_processor = _from_pretrained(AutoImageProcessor, src, "video_captioner", "an image processor")
            self.tokenizer = _from_pretrained(AutoTokenizer, src, "video_captioner", "a tokenizer")
        _set_pad(self.model, self.tokenizer)
        self.max_new_tokens = max_new_tokens
        self.backend = f"transformers:{config.model_type}:{Path(src).name if Path(src).exists() else src}"

    def caption_frames(self, frames: Sequence[np.ndarray]) -> list[str]:
        images = [_pil(f) for f in frames]
        if self.processor is not None:
            inputs = self.processor(images=images, return_tensors="pt")
        else:
            inputs = self.image_processor(images=images, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return [_clean(t) for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def caption(self, frames: Sequence[np.ndarray]) -> str:
        if len(frames) == 0:
            raise ValueError("caption needs at least one frame")
        return consensus(self.caption_frames(frames))


PROMPT = (
    "Summarise these two captions of the same video clip into one short caption.\n"
    "Caption 1: {coca}\nCaption 2: {video}\nSummary:"
)


class LLMSummarizer:
    """A causal LM's one-line summary of the CoCa and video captions."""

    def __init__(self, weights: Weights, max_new_tokens: int = 30, device="cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = _source(weights.llm, "llm")
        self.device = torch.device(device)
        self.tokenizer = _from_pretrained(AutoTokenizer, src, "llm", "a tokenizer")
        self.model = _from_pretrained(AutoModelForCausalLM, src, "llm", "a causal language model")
        self.model.to(self.device).eval()
        _set_pad(self.model, self.tokenizer)
        self.max_new_tokens = max_new_tokens
        self.backend = f"transformers:{self.model.config.model_type}:{Path(src).name if Path(src).exists() else src}"

    def prompt_ids(self, coca: str, video: str) -> torch.Tensor:
        text = PROMPT.format(coca=coca.strip(), video=video.strip())
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    def summarize(self, coca: str, video: str) -> str:
        ids = self.prompt_ids(coca, video)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
            )
        text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        lines = [_clean(line) for line in text.splitlines() if line.strip()]
        return lines[0] if lines else ""


def build_captioners(weights: Weights, cfg: Captions, device="cpu") -> dict[str, Captioner | Summarizer | None]:
    """{"coca", "video", "llm"}: a captioner where enabled and configured, else None; WeightsError if configured but
    missing."""
    on = cfg.enabled
    return {
        "coca": CocaCaptioner(weights, cfg.max_new_tokens, device=device)
        if on and cfg.coca and weights.coca_pretrained
        else None,
        "video": VideoCaptioner(weights, cfg.max_new_tokens, device=device)
        if on and cfg.video and weights.video_captioner
        else None,
        "llm": LLMSummarizer(weights, cfg.max_new_tokens, device=device) if on and cfg.llm and weights.llm else None,
    }
