"""Training-step and sampling overhead of our code against bare loops on the same UNet, in the same run.

Anchor (training): a bare diffusers step: sigma ~ log-normal, noise, the preconditioned UNet forward, MSE against
the v target, backward, AdamW, zero_grad; batches sliced from an in-memory tensor. Ours: `svd.training.loop.train`
with `svd.tasks.text_to_video.make_step` over `LatentItems` (data loader, accelerate, text dropout, grad clipping,
loss bookkeeping, the progress bar off), timed from its own per-window samples/s after a warm-up window, so the one
checkpoint it writes at the end is not counted. Goal: ours / bare >= 0.90 (overhead under 10%).

Anchor (sampling): a bare Euler loop over Karras sigmas calling the UNet twice per step (classifier-free guidance).
Ours: `svd.tasks.text_to_video.generate` with the VAE decode switched off (the bare loop has none).

On a CUDA machine, `--a100` also times the a100 profile's video UNet (1.5B) at 14 x 320 x 576 in bf16: forward +
backward step time, peak memory, and model FLOP utilisation from torch's FLOP counter against --peak-tflops.

    .venv/bin/python benchmarks/train_step.py [--steps 30] [--batch 16] [--threads 2] [--a100]

On the lent GPU (python3 3.12 with torch, accelerate, safetensors, pyyaml, pandas; see benchmarks/direction_gpu.py for
the wheel routine), add to the wheels it lacks: pydantic==2.14.4 pydantic_core==2.50.5 (cp312 manylinux)
annotated_types typing_inspection, besides diffusers / huggingface_hub / importlib_metadata.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from svd.config import load_params  # noqa: E402
from svd.diffusion.edm import DenoiserConfig, v_target  # noqa: E402
from svd.diffusion.sampling import karras_sigmas  # noqa: E402
from svd.models.unet import build_video_unet, video_unet_config  # noqa: E402
from svd.tasks.text_to_video import generate, make_step  # noqa: E402
from svd.training.latents import LatentItems, LatentSet  # noqa: E402
from svd.training.loop import train  # noqa: E402


def synthetic(n: int, frames: int, channels: int, hw: tuple[int, int], ctx: tuple[int, int]) -> LatentSet:
    g = torch.Generator().manual_seed(0)
    return LatentSet(
        latents=torch.randn(n, frames, channels, *hw, generator=g),
        text=torch.randn(8, *ctx, generator=g),
        text_index=torch.randint(1, 8, (n,), generator=g),
        captions=[""] * n,
        fps_id=torch.full((n,), 3),
        motion_bucket=torch.full((n,), 60),
        clip_ids=[""] * n,
    )


def bare_train(unet, data: LatentSet, steps: int, batch: int, p_mean: float, p_std: float) -> float:
    """samples/s of the bare loop (after 2 warm-up steps)."""
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    n = data.latents.shape[0]
    start = None
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        i = (step * batch) % (n - batch + 1)
        x0 = data.latents[i : i + batch]
        ctx = data.text[data.text_index[i : i + batch]]
        ids = torch.stack([data.fps_id[i : i + batch].float(), data.motion_bucket[i : i + batch].float()], 1)
        sigma = torch.exp(p_mean + p_std * torch.randn(batch, generator=g))
        eps = torch.randn(x0.shape, generator=g)
        s = sigma.reshape(-1, 1, 1, 1, 1)
        out = unet((x0 + s * eps) / torch.sqrt(s * s + 1), 0.25 * sigma.log(), ctx, added_time_ids=ids).sample
        loss = torch.nn.functional.mse_loss(out, v_target(x0, eps, sigma))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch / (time.perf_counter() - start)


def ours_train(unet, data: LatentSet, steps: int, batch: int, p_mean: float, p_std: float, ckpt: Path) -> float:
    """samples/s of svd.training.loop.train, from its logged windows after the first (warm-up) one."""
    windows: list[float] = []
    step_fn = make_step(DenoiserConfig(1.0, p_mean, p_std), data.text, video=True, text_dropout=0.15)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    from svd.data.clips import collate

    log_every = max(1, steps // 4)
    train(
        step_fn,
        unet,
        opt,
        LatentItems(data),
        max_steps=steps + log_every,
        ckpt_dir=ckpt,
        ckpt_every=10**9,
        log_every=log_every,
        logger=lambda m, s: windows.append(m["samples_per_s"]),
        resume=False,
        batch_size=batch,
        collate_fn=collate,
        progress=False,
    )
    return sum(windows[1:]) / len(windows[1:])


@torch.no_grad()
def bare_sample(unet, ctx, unctx, ids, shape, steps: int, guidance: float) -> float:
    sigmas = karras_sigmas(steps).float()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * torch.sqrt(sigmas[0] ** 2 + 1)
    start = time.perf_counter()
    for i in range(steps):
        s, nxt = sigmas[i], sigmas[i + 1]
        c_in, c_noise = 1 / torch.sqrt(s * s + 1), (0.25 * s.log()).expand(shape[0])
        f_c = unet(x * c_in, c_noise, ctx, added_time_ids=ids).sample
        f_u = unet(x * c_in, c_noise, unctx, added_time_ids=ids).sample
        f = f_u + guidance * (f_c - f_u)
        denoised = x / (s * s + 1) - s / torch.sqrt(s * s + 1) * f
        x = x + (nxt - s) * (x - denoised) / s
    return time.perf_counter() - start


class _NoDecode:
    """A stand-in VAE whose decode is the identity on the first 3 channels (sampling timed without decoding)."""

    config = type("C", (), {"scaling_factor": 1.0, "block_out_channels": [1]})()

    def parameters(self):
        yield torch.zeros(1)

    def decode(self, z, **_):
        return type("D", (), {"sample": z[:, :3]})()


class _Text:
    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return self.table[: len(texts)] if texts[0] else self.table[: len(texts)] * 0


def a100_gpu(peak_tflops: float) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from svd.models.unet import A100_VIDEO_UNET

    unet = build_video_unet(copy.deepcopy(A100_VIDEO_UNET), device="cuda").to(torch.bfloat16)
    unet.enable_gradient_checkpointing()
    x = torch.randn(1, 14, 8, 40, 72, device="cuda", dtype=torch.bfloat16)
    ctx = torch.randn(1, 1, 1024, device="cuda", dtype=torch.bfloat16)
    ids = torch.tensor([[6.0, 127.0, 0.02]], device="cuda", dtype=torch.bfloat16)

    def step():
        out = unet(x, torch.tensor([0.5], device="cuda"), ctx, added_time_ids=ids).sample
        out.float().pow(2).mean().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    n = 5
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - start) / n
    mem = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"a100 video UNet, 14 x 320 x 576, bf16, batch 1, gradient checkpointing: {dt * 1000:.0f} ms/step, "
        f"peak {mem:.1f} GiB, {flops / 1e12:.2f} TFLOP/step, MFU {flops / dt / 1e12 / peak_tflops:.1%} "
        f"of {peak_tflops:.0f} TFLOP/s ({torch.cuda.get_device_name()})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--a100", action="store_true", help="also time the a100 video UNet on CUDA")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM 989, A100 312)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    cfg = params.train.video
    unet_cfg = video_unet_config(params.model.unet.model_dump())
    hw = (cfg.size[0] // 4, cfg.size[1] // 4)
    data = synthetic(256, cfg.frames, unet_cfg["in_channels"], hw, (32, unet_cfg["cross_attention_dim"]))
    p_mean, p_std = params.diffusion.noise[cfg.noise]
    print(
        f"tiny video UNet, batch {args.batch} x {cfg.frames} frames x {hw[0]}x{hw[1]} latents, "
        f"{args.threads} threads, {args.steps} steps each"
    )

    torch.manual_seed(0)
    base = build_video_unet(unet_cfg)
    bare = bare_train(copy.deepcopy(base), data, args.steps, args.batch, p_mean, p_std)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ours = ours_train(copy.deepcopy(base), data, args.steps, args.batch, p_mean, p_std, Path(tmp))
    bare2 = bare_train(copy.deepcopy(base), data, args.steps, args.batch, p_mean, p_std)  # drift check
    anchor = (bare + bare2) / 2
    print(f"train  bare diffusers step: {bare:.1f} / {bare2:.1f} samples/s (anchor {anchor:.1f})")
    print(f"train  ours (loop + step):  {ours:.1f} samples/s  -> ours/bare = {ours / anchor:.3f} (goal >= 0.90)")

    unet = base.eval()
    n = 16
    table = data.text[1:2].expand(n, -1, -1).contiguous()
    ids = torch.tensor([[3.0, 60.0]]).expand(n, -1)
    shape = (n, cfg.frames, unet_cfg["in_channels"], *hw)
    t_bare = bare_sample(unet, table, table * 0, ids, shape, args.sample_steps, 7.0)
    start = time.perf_counter()
    generate(
        unet,
        _NoDecode(),
        _Text(table),
        ["p"] * n,
        latent_size=hw,
        num_frames=cfg.frames,
        steps=args.sample_steps,
        guidance=7.0,
        seed=0,
        fps=4.0,
        motion_bucket=60.0,
    )
    t_ours = time.perf_counter() - start
    print(f"sample bare Euler loop: {t_bare:.2f} s for {n} videos x {args.sample_steps} steps (CFG)")
    print(f"sample ours (generate): {t_ours:.2f} s  -> ours/bare time = {t_ours / t_bare:.3f}")

    if args.a100:
        if not torch.cuda.is_available():
            print("a100: no CUDA device here; skipped")
        else:
            a100_gpu(args.peak_tflops)


if __name__ == "__main__":
    main()
