"""What a camera-motion LoRA costs against a finetune of every temporal layer (issue 22), in the same run.

Both train the image-to-video UNet of the active profile (tiny: the i2v stage's architecture; random weights: cost
does not depend on them) with svd.tasks.image_to_video's training step on synthetic windows of the stage's size:
- anchor: `trainable: temporal` (svd.tasks.image_to_video.freeze_spatial, SVD_Xtend's default for the public model);
- LoRA: the adapter of `train.lora_horizontal.lora` (rank, alpha) on the temporal attention (svd.models.lora).
Printed: trainable parameters and the bytes of what each run saves (the adapter file; the temporal layers' weights as
safetensors), seconds per optimizer step (median of --steps after 2 warm-up steps), and the ratios LoRA / anchor.

    .venv/bin/python benchmarks/lora_cost.py [--steps 10] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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
from svd.diffusion.edm import DenoiserConfig  # noqa: E402
from svd.models.lora import adapter_parameters, add_adapter, base_digest, save_adapter  # noqa: E402
from svd.models.unet import build_video_unet, is_temporal, video_unet_config  # noqa: E402
from svd.models.vae import TINY_VAE, build_vae  # noqa: E402
from svd.tasks.image_to_video import ImageItems, ImageWindows, extend_for_images, freeze_spatial, make_step  # noqa: E402
from svd.training.loop import StepRandom  # noqa: E402


def unet_for(params):
    torch.manual_seed(0)
    return extend_for_images(build_video_unet(video_unet_config(params.model.unet.model_dump())))


def windows(params, n: int) -> ImageWindows:
    cfg = params.train.lora_horizontal
    g = torch.Generator().manual_seed(0)
    c = params.model.unet.out_channels
    h, w = (s // 4 for s in cfg.size)
    return ImageWindows(
        latents=torch.randn(n, cfg.frames, c, h, w, generator=g),
        cond_frames=torch.rand(n, 3, *cfg.size, generator=g) * 2 - 1,
        embeds=torch.randn(n, 1, params.model.unet.cross_attention_dim, generator=g),
        cond_index=torch.arange(n),
        fps_id=torch.full((n,), cfg.fps - 1),
        motion_bucket=torch.full((n,), 60.0),
        clip_ids=[""] * n,
    )


def time_steps(unet, params, data, vae, steps: int, batch: int) -> float:
    p_mean, p_std = params.diffusion.noise[params.train.lora_horizontal.noise]
    step = make_step(DenoiserConfig(1.0, p_mean, p_std), data, vae, cond_aug=(-3.0, 0.5),
                     dropout={"image": 0.05, "latent": 0.05, "both": 0.05})  # fmt: skip
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    items = ImageItems(data)
    times = []
    for k in range(steps + 2):
        rows = [items[(k * batch + i) % len(items)] for i in range(batch)]
        b = {key: torch.stack([r[key] for r in rows]) for key in rows[0]}
        t0 = time.perf_counter()
        loss = step(unet, b, StepRandom.of(torch.Generator().manual_seed(k)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(profile=args.profile)
    lora = params.train.lora_horizontal.lora
    torch.manual_seed(1)
    vae = build_vae({**TINY_VAE, "scaling_factor": 0.5}).eval().requires_grad_(False)
    data = windows(params, 4 * args.batch)
    from safetensors.torch import save_file

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        anchor = unet_for(params).train()
        n_anchor = freeze_spatial(anchor)
        state = {k: v.contiguous() for k, v in anchor.state_dict().items() if is_temporal(k)}
        save_file(state, f"{tmp}/temporal.safetensors")
        out["temporal"] = (n_anchor, Path(f"{tmp}/temporal.safetensors").stat().st_size,
                           time_steps(anchor, params, data, vae, args.steps, args.batch))  # fmt: skip
        adapted = unet_for(params).train()
        add_adapter(adapted, "horizontal", lora.rank, lora.alpha)
        n_lora = sum(p.numel() for p in adapter_parameters(adapted, "horizontal"))
        save_adapter(f"{tmp}/adapter.safetensors", adapted, "horizontal", base_digest(adapted))
        out["lora"] = (n_lora, Path(f"{tmp}/adapter.safetensors").stat().st_size,
                       time_steps(adapted, params, data, vae, args.steps, args.batch))  # fmt: skip
    total = sum(p.numel() for p in anchor.parameters())
    print(f"profile {params.profile}, UNet {total:,} parameters, batch {args.batch}, {args.threads} threads")
    print(f"{'run':>10} {'trainable':>12} {'saved bytes':>12} {'s/step':>8}")
    for name, (n, size, sec) in out.items():
        print(f"{name:>10} {n:>12,} {size:>12,} {sec:>8.3f}")
    (n_a, s_a, t_a), (n_l, s_l, t_l) = out["temporal"], out["lora"]
    print(f"LoRA / temporal: parameters {n_l / n_a:.3f}, bytes {s_l / s_a:.3f}, step time {t_l / t_a:.2f}")


if __name__ == "__main__":
    main()
