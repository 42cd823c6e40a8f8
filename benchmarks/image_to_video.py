"""Image-to-video sampling: our sampler against diffusers' StableVideoDiffusionPipeline on the same model, same steps,
same frames, same guidance, in the same run; and the peak memory of decoding 25 frames.

Anchor: `StableVideoDiffusionPipeline` loaded from the model's `svd export` folder (its batched CFG: one UNet call on
a doubled batch per step). Ours: `svd.tasks.image_to_video.generate` (two UNet calls per step). Printed: seconds per
video for each and the ratio ours / pipeline (goal <= 1.10), then the peak resident memory added by decoding a
25-frame latent video with `svd.models.vae.decode` (chunked as the pipeline's decode_chunk_size) at the model's size
(and on a CUDA machine, torch's peak allocation). Both start from the same noise (frames agree to uint8 rounding,
tests/test_image_to_video.py).

    .venv/bin/python benchmarks/image_to_video.py [--model models/i2v] [--videos 4] [--steps 25] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from svd.config import load_params  # noqa: E402
from svd.export import export_model  # noqa: E402
from svd.tasks.image_to_video import generate  # noqa: E402
from svd.training.sampling import IMAGE_TO_VIDEO_STAGES, resolve_model  # noqa: E402
from svd.training.stages import load_model  # noqa: E402


def peak_rss_during(fn) -> tuple[float, float]:
    """(seconds, peak resident memory added while fn runs, MiB), sampled every 2 ms."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return seconds, (peak[0] - base) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="image-to-video folder or models:/... (default: the newest)")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None, help="default: the model's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-frames", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml")
    folder = resolve_model(params, args.model, IMAGE_TO_VIDEO_STAGES)
    model = load_model(folder)
    meta = model["meta"]
    steps = args.steps or meta["sample_steps"]
    h, w = meta["size"]
    frames = meta["frames"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.videos)]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    kw = dict(
        num_frames=frames,
        steps=steps,
        guidance=tuple(meta["guidance"]),
        fps=meta["fps"],
        motion_bucket=meta["motion_bucket"],
        cond_aug=meta["cond_aug"],
    )

    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        export_model(params, folder, Path(tmp) / "pipe")
        pipe = StableVideoDiffusionPipeline.from_pretrained(Path(tmp) / "pipe")
        pipe.set_progress_bar_config(disable=True)
        generate(model["unet"], model["vae"], model["image_encoder"], x[:1], seed=0, **{**kw, "steps": 2})  # warm
        start = time.perf_counter()
        generate(model["unet"], model["vae"], model["image_encoder"], x, seed=0, **kw)
        ours = (time.perf_counter() - start) / args.videos
        start = time.perf_counter()
        pipe(
            [Image.fromarray(im) for im in images],
            height=h,
            width=w,
            num_frames=frames,
            num_inference_steps=steps,
            fps=int(meta["fps"]),
            motion_bucket_id=int(meta["motion_bucket"]),
            noise_aug_strength=meta["cond_aug"],
            min_guidance_scale=meta["guidance"][0],
            max_guidance_scale=meta["guidance"][1],
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        theirs = (time.perf_counter() - start) / args.videos
    print(
        f"model {folder} ({meta['stage']}): {args.videos} videos of {frames} x {h} x {w}, {steps} steps, "
        f"{args.threads} threads"
    )
    print(f"sampling  ours {ours:.2f} s/video   diffusers pipeline {theirs:.2f} s/video   ratio {ours / theirs:.2f}")

    from svd.models.vae import decode

    c = model["vae"].config.latent_channels
    lh, lw = meta["latent_size"]
    latents = torch.randn(1, args.decode_frames, c, lh, lw)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        seconds, mib = peak_rss_during(lambda: decode(model["vae"], latents, chunk=args.decode_frames))
    cuda = f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if torch.cuda.is_available() else ""
    print(f"decode    {args.decode_frames} frames at {h} x {w}: {seconds:.2f} s, peak RSS +{mib:.0f} MiB{cuda}")


if __name__ == "__main__":
    main()
