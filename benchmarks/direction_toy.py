"""How many Stage II steps does the tiny video UNet need to bind a direction word to motion?

A learnability probe, not a speed benchmark: training data is synthetic latents (one blob moving 0.5 latent pixels
per frame on a flat background, 8 x 8x12 latents like Stage II's), captioned "a red circle moving <direction>" and
embedded by the project's text tower. The UNet is inflated from the Stage I model in models/image (or random with
--init random) and trained with the project's EDM step (`make_step`, the video_tiny noise preset, the temporal lr
scale). Every --every steps it samples 32 videos (4 directions, EDM Euler, guidance 4) and reports the share whose
blob moves the captioned way, and the relative loss gap when the direction word is swapped (word_gaps).

--start centre: every clip starts at the centre, so the word fixes the whole video (the easy anchor); with --render,
the object's middle frame sits at the frame's centre (+- 1/16 of the frame). Rendered and centred (2026-12-07, 4
colours x 2 shapes, 64 prompts): random tones and the preset noise 0.14 / 0.19 after 250 / 500 steps; one grey tone
and --noise 1.0 0.8: 0.375 / 0.36 (docs/direction.md, issue 21).
--start random: random start positions, so the word fixes only the motion (as in the world's data).

Measured 2026-12-01 on 2 cores (README, "Training stages"): centre 0.47 / 1.0 after 200 / 400 steps; random
0.19 / 0.31 / 0.34 / 0.72 after 300 / 600 / 900 / 1,200 steps (about 1.1 s per step). Windows seen, not steps, set
the pace: --batch 8 gives 0.25 / 0.22 / 0.25 after 400 / 800 / 1,200 steps (word gap at sigma 5: 0.1% / 0.5% / 1.8%,
as batch 16 at half the steps). Noise drawn where the word matters (--noise 1.0 0.8, ln sigma ~ N(1.0, 0.8^2),
against the preset's N(0.5, 1.4^2)) binds sooner: 0.22 / 0.47 / 0.41 after 300 / 600 / 900 steps, the gap at sigma
5 30% at 600 steps (the preset: 2.4%). A finite set slows it: --fixed 2240 (as many windows as Stage II has, drawn
once) with that noise gives 0.375 and a 6% gap at sigma 5 after 600 steps. More appearances slow it most: --colours 4
(4 colour words, each blob in its own channels) with that noise gives 0.28 and a 0.1% gap after 600 steps; with
--shared (the colours differ by their values in channels 0-1, as VAE latents share channels) 0.31 and 1.4%, and
after 1,200 steps 0.69 and a 70% gap at sigma 2 (four appearances need about twice the windows of one, not four).

--render replaces the blobs by world objects: the world's renderer draws one object (colours and shapes: the first
--colours / --shapes of the world's eval set) on a solid background with a static camera, sized, placed and sped as
the world's shots are (8 frames at 4 fps, 48 x 32 px), and models/vae encodes it; samples are decoded and scored by
the world evaluator at the pipeline's sampler settings (guidance 7). It is the rung between the blob toy and the
world (benchmarks/direction_world.py): real latents and appearances, none of the world's clutter. On a random tone
per window (noise N(1.0, 0.8), 64 prompts): 0.22 / 0.39 after 600 / 1,200 steps (colour 1.0 / 0.97; --seed 1: 0.47
after 1,200), so slower than one tone (0.50 after 600), not blocked; --grid shows the order it learns in: after 600
steps the tone flickers in some samples and the object jumps between places, after 1,200 most samples keep their
tone and one object moving smoothly, in a direction that follows the word in only some. Diagnostics:
--static-weight 0.1 (edm_loss's weight on the error's mean over frames): 0.28 / 0.34 / 0.47 after 300 / 600 / 1,200
(plain: 0.16 / 0.25 / 0.39, 0.47 on seed 1): no clear gain; --flatten-tone (each window's
latent mean per channel moved to grey's, the tone's effect on the object's latent kept): 0.06 / 0.25.

    python benchmarks/direction_toy.py --start random --steps 600 --every 300 --noise 1.0 0.8 --colours 4 --shared

    python benchmarks/direction_toy.py --start random --steps 1200 --every 300

    python benchmarks/direction_toy.py --render --steps 600 --every 300 --noise 1.0 0.8

    python benchmarks/direction_toy.py --render --steps 1200 --every 600 --noise 1.0 0.8 --prompts 64 --grid /tmp/toy
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
FRAMES, CHANNELS, HEIGHT, WIDTH = 8, 8, 8, 12
SPEED = 0.5  # latent pixels per frame
TOY_COLOURS = ("red", "green", "blue", "yellow")
SHARED_PATTERNS = ((2.0, -1.5), (-1.5, 2.0), (2.0, 2.0), (-2.0, -1.5))  # (channel 0, channel 1) per colour


def blob_batch(n: int, generator: torch.Generator, centre: bool, colours: int = 1, shared: bool = False) -> dict:
    """n windows of a Gaussian blob moving SPEED per frame. Colour k (of `colours`, at most 4) is +2 in channel 2k and
    -1.5 in channel 2k+1, or with `shared` SHARED_PATTERNS[k] in channels 0 and 1 (as VAE latents share channels);
    text_index = 1 + 4 * colour + direction (colour 0, "red", is +2 / -1.5 in channels 0 / 1 either way: index 1-4)."""
    yy, xx = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    direction = torch.randint(0, 4, (n,), generator=generator)
    colour = torch.randint(0, colours, (n,), generator=generator) if colours > 1 else torch.zeros(n, dtype=torch.long)
    x0 = torch.zeros(n, FRAMES, CHANNELS, HEIGHT, WIDTH)
    for i in range(n):
        dx, dy = list(DIRECTIONS.values())[int(direction[i])]
        cx = 2 + torch.rand(1, generator=generator).item() * (WIDTH - 4)
        cy = 2 + torch.rand(1, generator=generator).item() * (HEIGHT - 4)
        if centre:
            cx, cy = WIDTH / 2, HEIGHT / 2
        # the window's middle frame sits at (cx, cy), clamped so the blob stays inside the frame
        x_first = min(max(cx - dx * SPEED * (FRAMES - 1) / 2, 1.5), WIDTH - 2.5)
        y_first = min(max(cy - dy * SPEED * (FRAMES - 1) / 2, 1.5), HEIGHT - 2.5)
        for t in range(FRAMES):
            px, py = x_first + dx * SPEED * t, y_first + dy * SPEED * t
            blob = torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 2.0)
            k = int(colour[i])
            a, b = SHARED_PATTERNS[k] if shared else (2.0, -1.5)
            c = 0 if shared else 2 * k
            x0[i, t, c], x0[i, t, c + 1] = a * blob, b * blob
    return {
        "latents": x0,
        "text_index": 4 * colour + direction + 1,
        "fps_id": torch.full((n,), 3),
        "motion_bucket": torch.full((n,), 60),
    }


def moved(z: torch.Tensor) -> list[str]:
    """The dominant direction of channel 0's centroid from the first to the last frame, per video (N, T, C, h, w)."""
    yy, xx = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    out = []
    for video in z:
        mass = video[:, 0].clamp_min(0)
        total = mass.sum((1, 2)).clamp_min(1e-6)
        cx, cy = (mass * xx).sum((1, 2)) / total, (mass * yy).sum((1, 2)) / total
        dx, dy = float(cx[-1] - cx[0]), float(cy[-1] - cy[0])
        out.append(("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up"))
    return out


def rendered_batch(
    n: int,
    rng,
    appearances: list[tuple[str, str]],
    vae,
    tone: str | None = None,
    flat_mean: torch.Tensor | None = None,
    centre: bool = False,
) -> dict:
    """n windows of one world object (an (colour, shape) of `appearances`) on a solid background, static camera,
    placed and sped as the world does it (8 frames at 4 fps, 48 x 32 px), rendered by the world's renderer and
    encoded by the pipeline's VAE; text_index = 1 + 4 * appearance + direction. `tone`: one background tone for all
    (a BG_COLOURS name) instead of a random one far from the object's colour. `flat_mean` (C,): each window's latent
    mean per channel replaced by it (--flatten-tone: the tone's offset gone, its effect on the object's latent kept).
    centre: the object's middle frame sits at the frame's centre, +- 1/16 of the frame (--start centre)."""
    import dataclasses

    from svd.models.vae import encode
    from svd.world.render import ShotRenderer
    from svd.world.scene import BG_COLOURS, BackgroundSpec, CameraSpec, ShotSpec, distinct, sample_objects_and_camera

    frames, index = [], []
    for _ in range(n):
        a, d = int(rng.integers(len(appearances))), int(rng.integers(4))
        colour, shape = appearances[a]
        tones = [tone] if tone else [b for b in BG_COLOURS if distinct(colour, BackgroundSpec("solid", (b,)))]
        background = BackgroundSpec("solid", (tones[int(rng.integers(len(tones)))],))
        objects, _ = sample_objects_and_camera(
            rng, WIDTH * 4, HEIGHT * 4, 4.0, FRAMES, 0, 0, [colour], [shape], [list(DIRECTIONS)[d]], "static"
        )
        if centre:  # speeds fit a centred track: the sampler caps them at 0.9 x room / span
            o = objects[0]
            (dx, dy), t_mid = DIRECTIONS[o.direction], (FRAMES - 1) / 2 / 4.0
            jx, jy = rng.uniform(-1, 1, 2) * np.array([WIDTH * 4, HEIGHT * 4]) / 16
            x0 = WIDTH * 2 + jx - dx * o.speed * t_mid
            y0 = HEIGHT * 2 + jy - dy * o.speed * t_mid
            objects = (dataclasses.replace(o, x0=float(x0), y0=float(y0)),)
        spec = ShotSpec(
            width=WIDTH * 4,
            height=HEIGHT * 4,
            fps=4.0,
            n_frames=FRAMES,
            pre=0,
            post=0,
            background=background,
            objects=objects,
            camera=CameraSpec("static", 0.0),
            static=False,
        )
        renderer = ShotRenderer(spec)
        frames.append(torch.from_numpy(np.stack([renderer.base(k) for k in range(FRAMES)])))
        index.append(1 + 4 * a + d)
    video = torch.stack(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # (n, T, 3, H, W) in [-1, 1]
    with torch.no_grad():
        latents = encode(vae, video, chunk=128).float()
    if flat_mean is not None:
        latents = latents - latents.mean((1, 3, 4), keepdim=True) + flat_mean.view(1, 1, -1, 1, 1)
    return {
        "latents": latents,
        "text_index": torch.tensor(index),
        "fps_id": torch.full((n,), 3),
        "motion_bucket": torch.full((n,), 60),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", choices=["centre", "random"], default="random")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--every", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--noise",
        type=float,
        nargs=2,
        metavar=("P_MEAN", "P_STD"),
        default=None,
        help="ln sigma ~ N(P_MEAN, P_STD^2) instead of the Stage II preset",
    )
    ap.add_argument(
        "--fixed",
        type=int,
        default=0,
        help="train on this many windows drawn once (a finite set like the world's) instead of fresh ones",
    )
    ap.add_argument(
        "--colours",
        type=int,
        choices=[1, 2, 3, 4],
        default=1,
        help="colour words in the captions (each owns latent channels unless --shared): more appearances",
    )
    ap.add_argument(
        "--shared",
        action="store_true",
        help="colours differ by their values in channels 0-1 instead of owning channels",
    )
    ap.add_argument(
        "--render",
        action="store_true",
        help="world objects instead of blobs: rendered by the world's renderer (solid background, static "
        "camera, the world's sizes and speeds) and encoded by models/vae; --colours and --shapes take "
        "the first of the world's eval colours and shapes; scored by the world evaluator on decodes",
    )
    ap.add_argument("--shapes", type=int, choices=[1, 2], default=1, help="with --render: shapes in the captions")
    ap.add_argument(
        "--tone", default=None, help="with --render: one background tone (e.g. grey) instead of random ones"
    )
    ap.add_argument(
        "--flatten-tone",
        action="store_true",
        help="with --render: move every window's latent mean per channel to a grey frame's (a diagnostic)",
    )
    ap.add_argument("--prompts", type=int, default=32, help="samples per report (cycling through the captions)")
    ap.add_argument("--grid", default=None, help="with --render: write each report's samples to GRID-stepN.png")
    ap.add_argument(
        "--static-weight",
        type=float,
        default=1.0,
        help="weight of the error's mean over frames in the loss (edm_loss static_weight; 1 = plain EDM)",
    )
    ap.add_argument("--init", choices=["stage1", "random"], default="stage1")
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed (temporal init, noise, the window stream); the held-out windows stay fixed",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import UNet2DConditionModel

    from svd.config import load_params
    from svd.diffusion.edm import DenoiserConfig
    from svd.diffusion.sampling import karras_sigmas, sample
    from svd.evaluation.caption_sensitivity import word_gaps
    from svd.evaluation.world import evaluate_videos
    from svd.models.inflate import inflate_image_unet
    from svd.models.unet import build_video_unet, video_unet_config
    from svd.tasks.text_to_video import TASK as TEXT_TO_VIDEO
    from svd.tasks.text_to_video import generate, make_step, time_ids
    from svd.training.denoiser import unet_call
    from svd.training.loop import StepRandom
    from svd.training.stages import load_frozen_vae, param_groups, vae_source
    from svd.world.scene import BG_COLOURS, COLOURS

    if args.render and args.shared:
        ap.error("--render draws the world's own colours: no --shared")
    if (args.flatten_tone or args.grid) and not args.render:
        ap.error("--flatten-tone and --grid need --render")
    if args.prompts < 1:
        ap.error("--prompts must be >= 1")
    if args.tone is not None and (not args.render or args.tone not in BG_COLOURS):
        ap.error(f"--tone needs --render and one of: {', '.join(BG_COLOURS)}")
    params = load_params()
    text = TEXT_TO_VIDEO.load_context(params, "image")

    if args.render:
        ev = params.world.eval
        appearances = [(c, s) for c in ev.colours[: args.colours] for s in ev.shapes[: args.shapes]]
        vae = load_frozen_vae(vae_source(params))[0]
        render_rng = np.random.default_rng(args.seed)
        flat_mean = None
        if args.flatten_tone:  # a grey frame's latent mean per channel, encoded once
            from svd.models.vae import encode

            grey = torch.tensor(BG_COLOURS["grey"], dtype=torch.float32) / 127.5 - 1.0
            with torch.no_grad():
                frame = grey.view(1, 3, 1, 1).expand(1, 3, HEIGHT * 4, WIDTH * 4)
                flat_mean = encode(vae, frame).float().mean((0, 2, 3))
    else:
        appearances = [(c, "circle") for c in TOY_COLOURS[: args.colours]]
    captions = [f"a {c} {s} moving {d}" for c, s in appearances for d in DIRECTIONS]
    table = torch.cat([text.encode([""]), text.encode(captions)]).float()
    cfg = video_unet_config(params.model.unet.model_dump())
    torch.manual_seed(args.seed)
    if args.init == "stage1":
        unet = inflate_image_unet(
            UNet2DConditionModel.from_pretrained(f"{params.paths.models}/image/unet"), cfg, seed=args.seed
        )
    else:
        unet = build_video_unet(cfg)
    optimizer = torch.optim.AdamW(param_groups(unet, args.lr, params.train.video.temporal_lr_scale), weight_decay=0.0)
    p_mean, p_std = args.noise or params.diffusion.noise[params.train.video.noise]
    step = make_step(
        DenoiserConfig(1.0, p_mean, p_std),
        table,
        video=True,
        text_dropout=params.train.text_dropout,
        static_weight=args.static_weight,
    )
    generator = torch.Generator().manual_seed(args.seed)
    centre = args.start == "centre"

    def report(at: int, loss: float) -> None:
        unet.eval()
        n = args.prompts
        index = torch.arange(n) % (4 if not args.render else len(captions)) + 1
        if args.render:  # the world's sampler settings and evaluator, on decoded videos
            videos = generate(
                unet,
                vae,
                text,
                [captions[int(i) - 1] for i in index],
                latent_size=(HEIGHT, WIDTH),
                num_frames=FRAMES,
                steps=params.sample.steps,
                guidance=params.sample.guidance,
                seed=1,
                fps=4.0,
                motion_bucket=60,
            )
            if args.grid:  # one row per sample, frames left to right
                from PIL import Image

                rows = [np.concatenate(list(v), axis=1) for v in videos]
                Image.fromarray(np.concatenate(rows, axis=0)).save(f"{args.grid}-step{at}.png")
            scores = evaluate_videos(list(videos), [captions[int(i) - 1] for i in index], 4.0)
            accuracy, colour = scores["direction_accuracy"], f", colour {scores['colour_accuracy']:.3f}"
        else:
            micro = time_ids(torch.full((n,), 3), torch.full((n,), 60))
            cond = {"context": table[index], "added_time_ids": micro}
            uncond = {"context": table[torch.zeros(n, dtype=torch.long)], "added_time_ids": micro}
            with torch.no_grad():
                z = sample(
                    unet_call(unet),
                    (n, FRAMES, CHANNELS, HEIGHT, WIDTH),
                    karras_sigmas(25, 0.002, 80.0, 7.0),
                    cond,
                    uncond,
                    4.0,
                    noise=torch.randn(n, FRAMES, CHANNELS, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1)),
                )
            accuracy = sum(got == captions[int(i) - 1].split()[-1] for got, i in zip(moved(z), index)) / n
            colour = ""
        gaps = word_gaps(
            unet_call(unet),
            text.encode,
            held["latents"],
            [captions[int(i) - 1] for i in held["text_index"]],
            colours=list(COLOURS),
            sigmas=[1, 2, 5, 10],
            added_time_ids=time_ids(held["fps_id"], held["motion_bucket"]),
        )
        gap = [round(g, 3) for g in gaps["relative_gap"]["direction_swapped"]]
        print(
            f"step {at}: loss {loss:.4f}, direction {accuracy:.3f}{colour}, word gap at sigma 1/2/5/10 {gap}",
            flush=True,
        )
        unet.train()

    def windows(n: int, seed: int | None = None) -> dict:
        """n training windows, from the run's stream (seed None) or from their own seeded one (held-out, bank)."""
        if args.render:
            return rendered_batch(
                n,
                render_rng if seed is None else np.random.default_rng(seed),
                appearances,
                vae,
                args.tone,
                flat_mean,
                centre,
            )
        return blob_batch(
            n, generator if seed is None else torch.Generator().manual_seed(seed), centre, args.colours, args.shared
        )

    bank = windows(args.fixed, 1234) if args.fixed else None
    held = windows(32, 7)  # the held-out windows of every report (rendered and encoded once)

    def next_batch() -> dict:
        if bank is None:
            return windows(args.batch)
        pick = torch.randint(0, args.fixed, (args.batch,), generator=generator)
        return {k: v[pick] for k, v in bank.items()}

    unet.train()
    for i in range(1, args.steps + 1):
        loss = step(unet, next_batch(), StepRandom.of(generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i % args.every == 0 or i == args.steps:
            report(i, float(loss.detach()))


if __name__ == "__main__":
    main()
