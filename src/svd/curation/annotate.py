"""All per-clip annotators behind one object, built once per process and fed from the one decode pass.

Each value carries the backend that produced it (e.g. `open_clip:svd-tiny-clip:random`), so nobody mistakes a
random-initialised score for a real one, and the filters know which scores they may act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from svd.config import Params


@dataclass
class ClipFrames:
    frames: Sequence[np.ndarray]  # every frame of the clip, decode size, RGB uint8 (converted when indexed)
    fps: float

    def key_frames(self) -> list[np.ndarray]:
        """First, middle and last frames (paper: text and CLIP scores on these three)."""
        n = len(self.frames)
        return [self.frames[0], self.frames[(n - 1) // 2], self.frames[-1]]

    def step(self, fps: float) -> int:
        """Frames between samples at `fps` (the nearest whole step)."""
        return max(1, int(round(self.fps / fps)))

    def sampled(self, fps: float) -> list[np.ndarray]:
        return self.frames[:: self.step(fps)]


class Annotators:
    def __init__(self, params: Params):
        cfg, weights = params.curate, params.weights
        self.params = params
        self.backends: dict[str, str] = {}
        self.real: dict[str, bool] = {}
        self.text = None
        self.clip = None
        self.captioners: dict = {}
        if cfg.motion.enabled:
            self.backends["motion"] = "farneback"
            self.real["motion"] = True
            if cfg.camera.enabled:
                self.backends["camera"] = "farneback-global-fit"
        if cfg.text.enabled:
            from svd.curation.text import TextDetector

            self.text = TextDetector(cfg.text, weights.craft)
            self.backends["text"] = self.text.backend
            self.real["text"] = self.real["text_area"] = True
        if cfg.clip.enabled:
            from svd.curation.clipscore import ClipScorer

            self.clip = ClipScorer(weights)
            self.backends["clip"] = self.clip.backend
            self.real["aesthetic"] = bool(self.clip.aesthetic_pretrained)
            self.real["clip_score"] = bool(self.clip.similarity_pretrained)
        if cfg.captions.enabled:
            from svd.curation.captions import build_captioners

            self.captioners = build_captioners(weights, cfg.captions)
        for name in ("coca", "video", "llm"):
            captioner = self.captioners.get(name)
            self.backends[f"caption_{name}"] = captioner.backend if captioner is not None else "none"

    def annotate(self, clip: ClipFrames, source_description: str | None) -> dict:
        cfg = self.params.curate
        row: dict = {}
        if cfg.motion.enabled:
            from svd.curation.motion import flow_fields, score_of_fields

            fields = flow_fields(clip.sampled(cfg.motion.fps), cfg.motion)
            row["motion_score"] = score_of_fields(fields, cfg.motion)
            if cfg.camera.enabled:
                from svd.curation.camera import classify, fit_clip, label_video

                cam = cfg.camera
                if cam.fps == cfg.motion.fps:  # the same fields: no second flow pass
                    fit = fit_clip(fields, cfg.motion.compute_short_side, clip.fps / clip.step(cam.fps))
                    motion = classify(fit, cam.min_pan, cam.min_zoom, cam.min_explained)
                else:  # pairs closer in time than the motion score's (curate.camera.fps)
                    motion = label_video(clip.frames, clip.fps, cfg.motion, cam)
                row.update(motion.to_row())
        keys = clip.key_frames()
        if self.text is not None:
            row["text_area"] = float(self.text.text_area(keys))
        captions = self._captions(clip, keys)
        row.update(captions)
        caption, source = self._training_caption(captions, source_description)
        row["caption"] = caption
        row["caption_source"] = source
        row["source_description"] = source_description
        if self.clip is not None:
            emb = self.clip.embed(keys)
            row["aesthetic"] = float(self.clip.aesthetic(emb))
            row["clip_score"] = float(self.clip.similarity(emb, caption)) if caption else None
        return row

    def _captions(self, clip: ClipFrames, keys: Sequence[np.ndarray]) -> dict:
        out = {"caption_coca": None, "caption_video": None, "caption_llm": None}
        coca = self.captioners.get("coca")
        if coca is not None:
            out["caption_coca"] = coca.caption([keys[1]])
        video = self.captioners.get("video")
        if video is not None:
            n = len(clip.frames)
            picks = [clip.frames[int(i)] for i in np.linspace(0, n - 1, num=min(8, n))]
            out["caption_video"] = video.caption(picks)
        llm = self.captioners.get("llm")
        if llm is not None and (out["caption_coca"] or out["caption_video"]):
            out["caption_llm"] = llm.summarize(out["caption_coca"] or "", out["caption_video"] or "")
        return out

    @staticmethod
    def _training_caption(captions: dict, source_description: str | None) -> tuple[str | None, str]:
        """The caption training uses by default (it samples coca/video/llm 0.5/0.25/0.25 when all exist). With no
        captioner weights (tiny profile) it is the world's per-shot source description, and says so."""
        if captions.get("caption_coca"):
            return captions["caption_coca"], "coca"
        if captions.get("caption_video"):
            return captions["caption_video"], "video"
        if source_description:
            return source_description, "source_description"
        return None, "none"
