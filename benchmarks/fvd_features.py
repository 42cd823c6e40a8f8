"""FVD feature-extraction throughput of our code against a bare forward of the same I3D, in the same run.

Model: the full-size InceptionI3d (12.7M parameters, random weights: throughput does not depend on them) at the
protocol's input, 16 x 224 x 224.

Anchor: a bare loop calling the model on float tensors already in its layout (N, 3, 16, 224, 224) in [-1, 1],
`batch` videos per forward under no_grad; no preprocessing, no copies.
Ours: `FeatureExtractor.features_of` on uint8 videos (N, 16, 240, 320, 3), UCF-101's frame size: preprocessing
(antialiased resize of the short side to 224, centre crop, scaling, layout), the batching, the float64 features.
The ratio ours / bare (videos/s) is our whole overhead; preprocessing alone is timed too. Goal: >= 0.90.

On CUDA (when available) the same comparison runs on the GPU with more videos.

    .venv/bin/python benchmarks/fvd_features.py [--videos 4] [--batch 2] [--threads 2] [--cuda-videos 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from svd.evaluation.fvd import Protocol, preprocess, random_extractor  # noqa: E402

SOURCE_HW = (240, 320)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def bare(model, inputs: torch.Tensor, batch: int, device: torch.device) -> float:
    """videos/s of model(x) over pre-made float inputs (the anchor)."""
    model(inputs[:batch].to(device), features="pool")  # warm-up (allocator, cudnn autotune)
    sync(device)
    start = time.perf_counter()
    for i in range(0, inputs.shape[0], batch):
        model(inputs[i : i + batch].to(device), features="pool").cpu()
    sync(device)
    return inputs.shape[0] / (time.perf_counter() - start)


def ours(extractor, videos: np.ndarray, device: torch.device) -> float:
    extractor.features_of(videos[: extractor.batch])  # warm-up
    sync(device)
    start = time.perf_counter()
    extractor.features_of(videos)
    sync(device)
    return len(videos) / (time.perf_counter() - start)


def compare(device: torch.device, n: int, batch: int, protocol: Protocol) -> None:
    extractor = random_extractor(protocol, "pool", batch=batch, device=device)
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, size=(n, protocol.frames, *SOURCE_HW, 3), dtype=np.uint8)
    inputs = preprocess(videos, protocol).tensor  # the anchor's inputs: the same videos, made ready beforehand
    start = time.perf_counter()
    preprocess(videos, protocol)
    prep = n / (time.perf_counter() - start)
    a1 = bare(extractor.model, inputs, batch, device)
    o = ours(extractor, videos, device)
    a2 = bare(extractor.model, inputs, batch, device)  # drift check
    anchor = (a1 + a2) / 2
    print(
        f"[{device.type}] {n} videos x {protocol.frames} x {SOURCE_HW[0]}x{SOURCE_HW[1]} uint8 -> "
        f"{protocol.size}x{protocol.size}, batch {batch}"
    )
    print(f"[{device.type}] preprocess only:          {prep:8.2f} videos/s")
    print(f"[{device.type}] bare I3D forward:         {a1:8.2f} / {a2:8.2f} videos/s (anchor {anchor:.2f})")
    print(
        f"[{device.type}] ours (FeatureExtractor):  {o:8.2f} videos/s  -> ours/bare = {o / anchor:.3f} (goal >= 0.90)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cuda-videos", type=int, default=64)
    ap.add_argument("--cuda-batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    protocol = Protocol(frames=16, size=224)
    print(f"InceptionI3d (full size, random weights), {args.threads} CPU threads")
    compare(torch.device("cpu"), args.videos, args.batch, protocol)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        print(f"CUDA: {torch.cuda.get_device_name()}")
        compare(torch.device("cuda"), args.cuda_videos, args.cuda_batch, protocol)
    else:
        print("CUDA: not available; GPU comparison skipped")


if __name__ == "__main__":
    main()
