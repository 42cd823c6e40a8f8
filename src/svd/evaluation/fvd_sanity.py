"""Does the tiny FVD see what it is meant to? The real set's FVD (with its bootstrap interval) to clips that are real
but rendered from another world seed, which is the floor (what drawing another set of clips alone gives), and to
the same clips broken in the ways a video generator fails: shuffled in time, frozen on their first frame, played
backwards, with an object that jumps across its path halfway, with added noise. Every set goes through the real
set's own path (H.264 at the world's crf, decoded, subsampled to the protocol's fps, resized and cropped), so only
the breakage differs.

A reversed clip of constant speed is a valid clip of the opposite direction, and the world's classes include both
directions, so reversal is not expected to be seen at the set level; shuffled and jumping clips are (issue 20).
`separated.<variant>` is 1 when the variant's interval lies wholly above the other seed's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

VARIANTS = ("other_seed", "reversed", "noisy", "frozen", "shuffled", "jump")
OTHER_SEED_OFFSET = 1_000  # the other world: seed + this (the held-aside clips use seed)
STREAM_SANITY = 23  # shuffles and noise
NOISE_STD = 20.0  # added Gaussian noise, in 0-255 units


def render_other_world(ecfg, seed: int, crf: int, out: Path) -> dict[str, list[Path]]:
    """Every action class x videos_per_class clips of world seed `seed`, exactly as the world stage renders its
    held-aside clips (seed stream, size, fps, frame count, H.264 crf), and the same clips with a jump."""
    from svd.evaluation.i3d import action_classes, render_action_clip
    from svd.io.video import write_video
    from svd.world.evalset import STREAM_ACTIONS

    index = {name: {v: i for i, v in enumerate(values)} for name, values in
             (("c", ecfg.colours), ("s", ecfg.shapes), ("d", ecfg.directions))}  # fmt: skip
    files: dict[str, list[Path]] = {"clean": [], "jump": []}
    for colour, shape, direction in action_classes(ecfg):
        ids = (index["c"][colour], index["s"][shape], index["d"][direction])
        for k in range(ecfg.videos_per_class):
            for kind in files:
                rng = np.random.default_rng([seed, STREAM_ACTIONS, *ids, k])  # the same shot for both kinds
                clip = render_action_clip(
                    ecfg, ecfg.action_frames, (colour, shape, direction), rng, None if kind == "clean" else "jump"
                )
                path = out / kind / f"{colour}_{shape}_{direction}_{k}.mp4"
                write_video(path, iter(clip), ecfg.action_fps, crf=crf)
                files[kind].append(path)
    return files


def variants(clean: list[np.ndarray], jump: list[np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each variant as uint8 videos (N, T, H, W, 3), made from the decoded protocol views."""
    from svd.evaluation.i3d import shuffled_order

    rng = np.random.default_rng([seed, STREAM_SANITY])
    x = np.stack(clean)
    noisy = np.clip(x.astype(np.float32) + rng.normal(0.0, NOISE_STD, x.shape), 0, 255).round().astype(np.uint8)
    return {
        "other_seed": x,
        "reversed": x[:, ::-1],
        "noisy": noisy,
        "frozen": np.repeat(x[:, :1], x.shape[1], axis=1),
        "shuffled": np.stack([v[shuffled_order(len(v), rng)] for v in x]),
        "jump": np.stack(jump),
    }


def fvd_sanity(params, extractor, protocol, real_features: np.ndarray, log=None) -> dict[str, float]:
    """{variant.fvd, variant.fvd_lo, variant.fvd_hi} for every variant, and separated.<variant> (0/1)."""
    from svd.evaluation.fvd import frechet_distance, fvd_interval
    from svd.evaluation.ucf101 import read_clip, real_view, stride_for

    ecfg = params.world.eval
    rounds = params.evaluate.video.bootstrap
    other = params.seed + OTHER_SEED_OFFSET
    with tempfile.TemporaryDirectory(prefix="svd-fvd-sanity-") as tmp:
        files = render_other_world(ecfg, other, params.world.crf, Path(tmp))
        stride = stride_for(float(ecfg.action_fps), protocol.fps)
        views = {
            kind: [real_view(read_clip(p, protocol.frames, stride), protocol) for p in paths]
            for kind, paths in files.items()
        }
    out: dict[str, float] = {}
    for name, videos in variants(views["clean"], views["jump"], params.seed).items():
        fake = extractor.features_of(videos)
        out[f"{name}.fvd"] = frechet_distance(real_features, fake)
        interval = fvd_interval(real_features, fake, rounds=rounds, seed=params.seed)
        if interval:
            out[f"{name}.fvd_lo"], out[f"{name}.fvd_hi"] = interval["lo"], interval["hi"]
        if log:
            span = f" [{interval['lo']:.1f}, {interval['hi']:.1f}]" if interval else ""
            log(f"FVD sanity: {name} {out[f'{name}.fvd']:.1f}{span} ({len(videos)} clips)")
    floor = out.get("other_seed.fvd_hi", out["other_seed.fvd"])
    for name in VARIANTS[1:]:
        out[f"separated.{name}"] = int(out.get(f"{name}.fvd_lo", out[f"{name}.fvd"]) > floor)
    return out


__all__ = ["VARIANTS", "fvd_sanity", "render_other_world", "variants"]
