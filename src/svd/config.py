"""Typed parameters: params.yaml, the chosen profile deep-merged over the base, then `--set key=value` overrides.

Every number the project uses lives in params.yaml; this module only checks and types it. Unknown keys are errors,
so a typo in an override fails loudly instead of being ignored.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from svd.errors import ConfigError  # noqa: F401 - defined there so pydantic-free modules can raise it


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    world: str
    orbits: str
    curated: str
    metrics: str
    models: str
    shards: str
    mlflow_uri: str
    mlflow_artifacts: str
    experiment: str


class Weights(Strict):
    clip_model: str
    clip_pretrained: str | None = None
    aesthetic_head: str | None = None
    coca_model: str
    coca_pretrained: str | None = None
    video_captioner: str | None = None
    llm: str | None = None
    craft: str | None = "package"
    vae: str | None = None
    text_model: str = "svd-tiny-text"
    text_pretrained: str | None = None
    unet_image: str | None = None
    image_encoder: str | None = None  # CLIPVisionModelWithProjection folder / SVD pipeline folder / cached hub id
    i2v_pipeline: str | None = None  # stable-video-diffusion-img2vid (diffusers layout): i2v finetunes it
    i2v_xt_pipeline: str | None = None  # stable-video-diffusion-img2vid-xt: i2v_xt finetunes it


class EvalWorld(Strict):
    colours: list[str]
    shapes: list[str]
    directions: list[str]
    videos_per_class: int = Field(ge=1)
    action_frames: int = Field(ge=2)
    action_fps: int = Field(ge=1)
    action_size: int = Field(ge=16)
    orbit_objects: int = Field(ge=1)
    orbit_frames: int = Field(ge=2)
    orbit_size: int = Field(ge=16)
    orbit_elevation: tuple[float, float]


class SoloVideos(Strict):
    videos: int = Field(ge=0)
    seconds: tuple[float, float]
    tones: list[str] = Field(min_length=1)
    centre_spread: float = Field(ge=0, le=0.5)
    size_frac: tuple[float, float]
    speed_frac: tuple[float, float]


class World(Strict):
    videos: int = Field(ge=1)
    sizes: list[tuple[int, int]]
    fps: list[int]
    shots_per_video: tuple[int, int]
    shot_seconds: tuple[float, float]
    short_shot_seconds: tuple[float, float]
    short_shot_prob: float = Field(ge=0, le=1)
    fade_prob: float = Field(ge=0, le=1)
    fade_seconds: tuple[float, float]
    static_prob: float = Field(ge=0, le=1)
    text_prob: float = Field(ge=0, le=1)
    low_quality_prob: float = Field(ge=0, le=1)
    gop_seconds: float = Field(gt=0)
    crf: int = Field(ge=0, le=51)
    broken_inputs: bool
    solo: SoloVideos
    eval: EvalWorld

    @field_validator("sizes")
    @classmethod
    def _even_sizes(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for w, h in v:
            if w % 2 or h % 2 or w < 32 or h < 32:
                raise ValueError(f"video sizes must be even and at least 32 px, got {w}x{h}")
        return v


class OrbitsParams(Strict):
    """svd.world.orbits: training orbits for the multi-view finetune (views and size: world.eval)."""

    objects: int = Field(ge=1)
    elevation: tuple[float, float]
    striped: float = Field(ge=0, le=1)
    source: str | None = None  # an Objaverse-style render folder to read instead of rendering

    @field_validator("elevation")
    @classmethod
    def _elevation_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not -90 <= v[0] <= v[1] <= 90:
            raise ValueError(f"orbits.elevation must be [low, high] within -90..90 degrees, got {list(v)}")
        return v


class CutLevel(Strict):
    detector: Literal["content", "adaptive", "histogram", "hash", "threshold", "colour_histogram"]
    fps: float = Field(ge=0)  # 0 = the video's native rate
    threshold: float = Field(gt=0)
    min_scene_frames: int = Field(ge=1)


class Cuts(Strict):
    short_side: int = Field(ge=16)
    levels: list[CutLevel] = Field(min_length=1)
    merge_tolerance_s: float = Field(ge=0)
    trim_threshold: float = Field(gt=0)
    max_trim_s: float = Field(ge=0)
    min_clip_s: float = Field(gt=0)
    max_clip_s: float = Field(gt=0)
    snap_to_keyframes: bool


class Motion(Strict):
    enabled: bool
    fps: float = Field(gt=0)
    flow_short_side: int = Field(ge=4)
    compute_short_side: int = Field(ge=16)


class CameraMotionParams(Strict):
    """svd.curation.camera: the camera's motion from optical flow at the motion score's sizes (needs curate.motion)."""

    enabled: bool = True
    fps: float = Field(default=4.0, gt=0)  # flow sample rate of the fit: the motion score's fields when equal
    min_pan: float = Field(default=0.05, gt=0)  # short sides per second: slower translation is static
    min_zoom: float = Field(default=0.04, gt=0)  # log-zoom per second: a slower zoom is static
    min_explained: float = Field(default=0.15, ge=0, le=1)  # below this share of flow energy explained: "other"


class Text(Strict):
    enabled: bool
    short_side: int = Field(ge=32)
    text_threshold: float = Field(gt=0, lt=1)
    low_text: float = Field(gt=0, lt=1)
    link_threshold: float = Field(gt=0, lt=1)
    int8: bool = False


class Clip(Strict):
    enabled: bool


class Captions(Strict):
    enabled: bool
    coca: bool
    video: bool
    llm: bool
    max_new_tokens: int = Field(ge=1)


class Filters(Strict):
    motion_bottom: float = Field(ge=0, lt=1)
    aesthetic_bottom: float = Field(ge=0, lt=1)
    clip_score_bottom: float = Field(ge=0, lt=1)
    text_top: float = Field(ge=0, lt=1)
    text_area_max: float = Field(gt=0, le=1)


class Expectations(Strict):
    min_fps: float = Field(gt=0)
    max_fps: float = Field(gt=0)
    max_clip_s: float = Field(gt=0)


class RayEngine(Strict):
    address: str
    cpus_per_worker: float = Field(gt=0)
    gpus_per_worker: float = Field(ge=0)
    max_attempts: int = Field(ge=1)
    video_timeout_s: float = Field(ge=0)  # 0: none


class Curate(Strict):
    engine: Literal["local", "ray"]
    workers: int = Field(ge=1)
    ray: RayEngine
    decode_short_side: int = Field(ge=16)
    cuts: Cuts
    motion: Motion
    camera: CameraMotionParams = CameraMotionParams()
    text: Text
    clip: Clip
    captions: Captions
    filters: Filters
    expectations: Expectations
    write_clips: bool


class Sampler(Strict):
    method: Literal["euler", "heun"]
    sigma_min: float = Field(gt=0)
    sigma_max: float = Field(gt=0)
    rho: float = Field(gt=0)
    steps_14_frames: int = Field(ge=1)
    steps_25_frames: int = Field(ge=1)


class CondAug(Strict):
    log_sigma_mean: float
    log_sigma_std: float = Field(gt=0)
    inference_sigma: float = Field(ge=0)


class MotionBucket(Strict):
    score_at_255: float = Field(gt=0)


class Diffusion(Strict):
    sigma_data: float = Field(gt=0)
    noise: dict[str, tuple[float, float]]
    sampler: Sampler
    guidance: dict[str, tuple[float, float]]
    cond_aug: CondAug
    motion_bucket: MotionBucket


class UNet(Strict):
    in_channels: int = Field(ge=1)
    concat_channels: int = Field(ge=0)
    out_channels: int = Field(ge=1)
    block_out_channels: list[int] = Field(min_length=1)
    cross_attention: list[bool] = Field(min_length=1)
    layers_per_block: int = Field(ge=1)
    attention_head_dim: int = Field(ge=1)
    transformer_layers_per_block: int = Field(ge=1)
    cross_attention_dim: int = Field(ge=1)
    addition_time_embed_dim: int = Field(ge=1)
    num_added_ids: int = Field(ge=1)
    image_class_embedding: bool
    num_frames: int = Field(ge=1)
    sample_size: int = Field(ge=1)


class ImageEncoderParams(Strict):
    """A random CLIP image tower (transformers CLIPVisionConfig) for image-to-video when weights.image_encoder is
    null (svd.models.image_encoder); its input is always 224 px, as diffusers' pipeline feeds it."""

    hidden_size: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    patch_size: int = Field(ge=1)
    projection_dim: int = Field(ge=1)  # = model.unet.cross_attention_dim (one context token of this width)


class Model(Strict):
    unet: UNet
    image_encoder: ImageEncoderParams


Flip = Literal["hflip", "vflip", "reverse"]


class VaeStage(Strict):
    train: bool  # False: load weights.vae (a100: SD 2.1's); True: train `config` here
    config: Literal["tiny"]
    size: tuple[int, int]  # (H, W) frames the VAE trains on
    patch: tuple[int, int] | None = None  # (H, W) random crops of those frames per training image; None = whole
    steps: int = Field(ge=1)
    batch: int = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    frames_per_clip: int = Field(ge=1)
    kl_weight: float = Field(ge=0)
    grad_weight: float = Field(ge=0)
    lowpass_weight: float = Field(ge=0)
    recon_loss: Literal["l1", "mse"]


CameraLabel = Literal["static", "pan_left", "pan_right", "zoom_in", "zoom_out", "other"]


class LoraParams(Strict):
    """A camera-motion LoRA stage (svd.tasks.camera_lora): its adapter and the curated clips it trains on."""

    rank: int = Field(ge=1)
    alpha: float = Field(gt=0)  # peft scales the update by alpha / rank
    camera: list[CameraLabel] = Field(min_length=1)  # the curated clips' `camera_motion` classes it trains on
    min_confidence: float = Field(default=0.0, ge=0, le=1)  # and their `camera_confidence` at least this


class MultiviewStage(Strict):
    """The multi-view stage's own settings (svd.tasks.multiview); views and size: world.eval.orbit_frames / train.mv."""

    motion_bucket: float = Field(ge=0)  # the fixed motion id every orbit is trained and sampled with (ours)
    encoder_from: str | None = None  # the stage whose bundled image tower every arm shares (when weights.image_encoder
    # is null)
    probe_objects: int = Field(default=8, ge=1)  # held-out orbits scored every train.mv probe (convergence curves)


class DiffusionStage(Strict):
    data: Literal["curated", "uncurated", "hq"]  # curated: kept clips; uncurated: every clip (the ablation)
    hq_fraction: float = Field(gt=0, le=1)  # share of the curated set Stage III keeps (svd.data.subset_hq)
    size: tuple[int, int]  # (H, W) pixels; latents are this / the VAE's downsampling
    frames: int = Field(ge=1)  # 1: image stage
    fps: float = Field(gt=0)
    windows_per_clip: int = Field(ge=1)
    augment: list[Flip]
    noise: str  # a preset of diffusion.noise
    steps: int = Field(ge=1)
    batch: int = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    ema: float | None = None
    temporal_lr_scale: float = Field(default=1.0, gt=0)  # temporal layers' lr = lr x this (video stages; ours)
    static_weight: float = Field(default=1.0, ge=0, le=1)  # loss weight of the error's mean over frames (ours; 1: EDM)
    new_inputs_lr_scale: float = Field(default=1.0, gt=0)  # lr x this for the input columns a task adds at zero (ours)
    # image-to-video stages (svd.tasks.image_to_video)
    parent: str | None = None  # the stage whose model it is finetuned from
    trainable: Literal["all", "temporal"] = "all"  # temporal: the temporal layers only (spatial frozen)
    cond_dropout: dict[str, float] | None = None  # image / latent / both: zeroed for guidance (ours)
    guidance: str | None = None  # a preset of diffusion.guidance: per-frame linear guidance of its samples
    sample_steps: int | None = Field(default=None, ge=1)  # EDM Euler steps of its samples (paper: 25 / 30)
    # camera-motion LoRA stages (svd.tasks.camera_lora): the adapter trained on `parent`, an image-to-video model
    lora: LoraParams | None = None
    # the multi-view stage (svd.tasks.multiview)
    multiview: MultiviewStage | None = None


class Stream(Strict):
    """How diffusion stages read their windows (svd.training.stream): cached (all encoded before the first step) or
    streamed through a bounded shuffle buffer and encoded per batch."""

    enabled: bool
    source: Literal["shards", "clips"]  # shards: paths.shards (`svd shard`); clips: the curated clip files
    buffer: int = Field(ge=1)  # windows in the shuffle buffer
    clips_per_unit: int = Field(ge=1)  # source clips: clips per unit of shuffling and of the split over processes


class Shards(Strict):
    samples_per_shard: int = Field(ge=1)


class Train(Strict):
    text_dropout: float = Field(ge=0, lt=1)
    lr_schedule: Literal["constant", "cosine"]
    ckpt_every: int = Field(ge=1)
    log_every: int = Field(ge=1)
    sample_every: int = Field(ge=1)
    probe_every: int = Field(ge=0)
    probe_windows: int = Field(ge=1)
    keep_last: int = Field(ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"]
    gradient_checkpointing: bool
    grad_accumulation: int = Field(ge=1)
    parallel: Literal["ddp", "fsdp"]  # several processes: DDP, or FSDP (svd.training.fsdp)
    stream: Stream
    vae: VaeStage
    image: DiffusionStage
    video: DiffusionStage
    hq: DiffusionStage
    i2v: DiffusionStage
    i2v_xt: DiffusionStage
    lora_horizontal: DiffusionStage
    lora_zoom: DiffusionStage
    lora_static: DiffusionStage
    interp: DiffusionStage
    mv: DiffusionStage


class SampleParams(Strict):
    steps: int = Field(ge=1)
    guidance: float = Field(ge=0)
    seed: int
    eval_prompts: int = Field(ge=1)  # prompts of the world's eval classes scored after each video stage


# Evaluation by the paper's protocols (svd.evaluation); each block is owned by its module.
class FeatureNetParams(Strict):
    """A narrow InceptionI3d trained on the world's action classes (svd.evaluation.i3d.train_feature_net): the
    tiny profile's stand-in for Kinetics-400 I3D weights, which no machine here can download."""

    width: float = Field(default=0.25, gt=0)
    size: int = Field(default=64, ge=8)  # its input size: FVD with this net must use evaluate.fvd.size = this
    frames: int = Field(default=16, ge=1)
    fps: float | None = Field(default=None, gt=0)  # clip rate it trains at (= evaluate.video.fps); null = world's
    steps: int = Field(default=900, ge=1)
    batch: int = Field(default=16, ge=1)
    lr: float = Field(default=2.0e-3, gt=0)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    heldout_per_class: int = Field(default=4, ge=1)
    broken: float = Field(default=0.25, ge=0, lt=1)  # share of training clips broken in time (the order head's
    # negatives); their colour and shape still count, their direction does not
    broken_kinds: list[Literal["shuffled", "jump"]] = ["shuffled"]  # how they are broken (drawn evenly)
    out: str = "models/fvd_i3d"  # `svd evaluate train-features` writes i3d.safetensors here
    threads: int | None = Field(default=None, ge=1)  # torch threads while training it; null = `threads`


class FvdParams(Strict):
    """FVD protocol (svd.evaluation.fvd): I3D weights, feature, frames, crop size."""

    i3d_weights: str | None = None  # i3d_torchscript.pt (StyleGAN-V) or an InceptionI3d state dict; never downloaded
    features: Literal["logits", "pool"] = "logits"  # logits: 400 pre-softmax scores (TF FVD, TorchScript); pool: 1024
    frames: int = Field(default=16, ge=1)
    size: int = Field(default=224, ge=8)
    batch: int = Field(default=8, ge=1)  # videos per I3D forward
    device: str = "auto"  # auto = cuda when available
    feature_net: FeatureNetParams = FeatureNetParams()


class MultiviewParams(Strict):
    """svd.evaluation.multiview: the GSO multi-view protocol (PSNR / LPIPS / CLIP-S over 21-frame orbits)."""

    frames: int = Field(default=21, ge=1)  # frames per orbit the protocol requires (paper: 21)
    gso_root: str | None = None  # folder of GSO renders; null = the world's orbits
    lpips_alexnet: str | None = None  # torchvision AlexNet state dict; null = random backbone
    resize_real: bool = True  # ground truth resized to the generated size when they differ
    alpha_background: int = Field(default=255, ge=0, le=255)  # grey level RGBA renders are composited over
    batch: int = Field(default=21, ge=1)  # frames per LPIPS / CLIP forward pass
    device: str = "auto"  # auto = cuda when available, else cpu
    bootstrap: int = Field(default=1000, ge=0)  # resamples of objects for each mean's 95% interval (0 = none)


class PreferenceParams(Strict):
    """Blind side-by-side votes and Elo (svd.evaluation.preference); defaults match params.yaml."""

    k: float = Field(32.0, gt=0)  # Elo step
    initial: float = 1000.0  # every version's rating before its first game
    bootstrap_rounds: int = Field(1000, ge=0)  # resamples of the votes for median and 95% interval; 0 = none
    seed: int = 0  # bootstrap draws and the vote page's pair choice / left-right order
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    db: str = "metrics/preference.sqlite"  # the votes; human work that cannot be re-run, so kept out of `make clean`
    out: str = "metrics/elo.json"
    gather_root: str = "data/preference"  # `preference-serve --model REF ...` lays the versions' samples out here


class VideoEvalParams(Strict):
    """`svd evaluate video` (svd.evaluation.ucf101): the UCF-101 zero-shot protocol, or the world's action clips.
    Sizes are (H, W): generated at `size`, resized (bilinear, antialiased) to `resize`, centre-cropped to `crop`."""

    ucf101_root: str | None = None  # UCF-101 folder (<Class>/v_*.avi); null = the world's held-aside action clips
    ucf101_split: str | None = None  # split list (ucfTrainTestlist/testlist01.txt) relative to the root; null = all
    n_samples: int = Field(default=64, ge=2)  # generated videos, apportioned over the classes like the real set
    frames: int = Field(default=8, ge=1)
    fps: float = Field(default=4.0, gt=0)  # generated at (and conditioned on) this rate; real clips subsampled
    size: tuple[int, int] = (40, 64)
    resize: tuple[int, int] = (40, 64)
    crop: tuple[int, int] = (40, 40)
    guidance: float = Field(default=7.0, ge=0)
    steps: int = Field(default=25, ge=1)
    seed: int = 0  # sample i uses seed + i, whatever the sharding
    batch: int = Field(default=16, ge=1)  # videos per sampler call; also the unit of sharding and resuming
    crf: int = Field(default=0, ge=0, le=51)  # H.264 quality of the samples; 0 = lossless (reproducible pixels)
    device: str = "auto"
    out_root: str = "data/evaluate"  # samples go to <out_root>/<name>/ unless --out-dir
    real_stats: str = "models/fvd_i3d/real_stats.npz"  # cache of the real set's feature statistics
    bootstrap: int = Field(default=1000, ge=0)  # resamples of each score's interval (0: none), seeded by `seed`

    @field_validator("size", "resize", "crop")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 2:
            raise ValueError(f"sizes must be at least 2 x 2, got {list(v)}")
        return v


class ImageToVideoEvalParams(Strict):
    """The image-to-video checks on the world's held-aside clips (svd.evaluation.image_to_video), run after each
    image-to-video stage. Goals (the issue's): fidelity and scene within `max_gap_db` of the VAE round trip, identity
    in >= `identity_goal` of samples, Spearman rho >= `spearman_goal` over `motion_buckets` buckets with the lowest
    moving at most `low_high_ratio` of the highest, FVD below the still video's beyond the interval."""

    clips_per_class: int = Field(default=1, ge=1)  # held-aside clips per action class (the first of each)
    samples_per_clip: int = Field(default=1, ge=1)  # samples at the default motion bucket per held-aside clip
    motion_clips: int = Field(default=8, ge=1)  # held-aside clips sampled at every bucket of the motion sweep
    motion_buckets: int = Field(default=5, ge=2)  # spread over the 5th-95th percentile of training's buckets
    t2v_clips: int = Field(default=8, ge=0)  # held-aside clips the newest text-to-video model samples for the
    # scene check (its baseline; 0 = none)
    bootstrap: int = Field(default=500, ge=0)  # resamples for every interval (seeded; 0 = none)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 0  # sample i uses seed + i
    max_gap_db: float = 2.0
    identity_goal: float = 0.9
    spearman_goal: float = 0.9
    low_high_ratio: float = 0.25


class CameraLoraEvalParams(Strict):
    """The camera-motion check of each LoRA (svd.evaluation.camera): image-to-video samples from held-aside first
    frames on textured backgrounds (rendered by the world's code from `seed`, a stream no training video draws),
    with the adapter and with the base alone, each labelled by curation's camera annotator."""

    frames: int = Field(default=24, ge=1)  # held-aside first frames (one sample each, per arm)
    seed: int = 0  # the frames' and the samples' seed
    goal: float = Field(default=0.9, gt=0, le=1)  # share of samples that must show the adapter's motion
    bootstrap: int = Field(default=500, ge=0)  # resamples of every share's interval (seeded; 0 = none)
    confidence: float = Field(default=0.95, gt=0, lt=1)


class InterpolationEvalParams(Strict):
    """Frame interpolation on the held-aside clips (svd.evaluation.interpolation): every `gaps` frame kept, the rest
    filled and judged against the VAE round trip in the moving object's region and against the raw frames."""

    gaps: list[int] = [4, 8]  # keep every gap-th frame (multiples of 4: the filled frames land on true frames)
    clips_per_class: int = Field(default=1, ge=1)  # held-aside clips per action class (the first of each)
    goal_db: float = 2.0  # region PSNR above blending's at the first gap (the issue's goal)
    bootstrap: int = Field(default=500, ge=0)
    seed: int = 0


class Evaluate(Strict):
    fvd: FvdParams = FvdParams()
    image_to_video: ImageToVideoEvalParams = ImageToVideoEvalParams()
    camera_lora: CameraLoraEvalParams = CameraLoraEvalParams()
    interpolation: InterpolationEvalParams = InterpolationEvalParams()
    video: VideoEvalParams = VideoEvalParams()
    multiview: MultiviewParams = MultiviewParams()
    preference: PreferenceParams = PreferenceParams()


class RegisterParams(Strict):
    """`svd register` (svd.registry): which evaluation decides whether a new version becomes `champion`."""

    name: str | None = None  # registered model; null = the stage's name (svd-t2v for video/hq)
    metrics: str = "metrics/evaluate_hq.json"  # flat JSON the gate reads (written by `svd evaluate video`)
    metric: str = "fvd"  # the key compared against the champion's recorded value
    mode: Literal["min", "max"] = "min"  # min: lower is better (FVD); max: higher is better (accuracy)
    min_delta: float = Field(default=0.0, ge=0)  # the candidate must beat the champion by more than this
    require: dict[str, float] = {}  # floors: metric key -> least value of its lower bound (<key>_lo), else never
    features: str | None = None  # the evaluation's features.npz: the paired comparison with the champion's
    significance: bool = True  # move only when the paired interval of the difference lies beyond min_delta
    bootstrap: int = Field(default=1000, ge=1)  # resamples of the paired interval


class CurationAblationParams(Strict):
    """`svd ablate curation` (svd.ablation): Stage II from the pipeline's Stage I on curated vs uncurated clips, once
    per training seed, each arm scored by `svd evaluate video`."""

    seeds: list[int] = [0, 1, 2]  # training seeds (at least 3 for a claim about a recipe)
    out: str = "models/ablation/curation"  # seed-S/{video,video-uncurated}/ (+ links to the parents)
    eval_out: str = "data/evaluate/ablation-curation"  # <arm>-seed<S>/: samples, features.npz, report.md
    metrics: str = "metrics/ablation_curation.json"  # the summary DVC compares (+ .csv beside it: the plot)
    bootstrap: int = Field(default=1000, ge=1)  # resamples of each seed's paired interval (curated - uncurated)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct and at least one, got {v}")
        return v


class MultiviewAblationParams(Strict):
    """`svd ablate multiview` (svd.ablation_multiview): the multi-view finetune (train.mv) from the video prior, the
    image prior and random weights, same orbits, steps and seeds, each arm probed on held-out orbits as it trains."""

    arms: dict[str, str | None] = {"video": "i2v_xt", "image": "image", "random": None}  # arm -> train.mv.parent
    seeds: list[int] = [0, 1, 2]  # training seeds (at least 3 for a claim about a recipe)
    steps: int = Field(default=80, ge=1)  # every arm's steps (equal steps: the paper's comparison)
    probe_every: int = Field(default=20, ge=1)  # held-out orbit metrics every this many steps (the curves)
    out: str = "models/ablation/multiview"  # seed-S-<arm>/mv (+ links to the parents)
    metrics: str = "metrics/ablation_multiview.json"  # the summary DVC compares (+ .csv beside it: the curves)
    bootstrap: int = Field(default=1000, ge=1)  # resamples of each seed's paired interval (per held-out object)

    @field_validator("seeds")
    @classmethod
    def _enough_seeds(cls, v: list[int]) -> list[int]:
        if len(v) < 1 or len(set(v)) != len(v):
            raise ValueError("seeds must be distinct and at least one (three for a claim about a recipe)")
        return v


class AblationParams(Strict):
    curation: CurationAblationParams = CurationAblationParams()
    multiview: MultiviewAblationParams = MultiviewAblationParams()


# the `register` block's field shadows BaseModel.register (ABCMeta's, class level only): instances read the field
warnings.filterwarnings("ignore", message='Field name "register" in "Params" shadows', category=UserWarning)


class Params(Strict):
    profile: str
    seed: int
    threads: int = Field(ge=1)
    paths: Paths
    weights: Weights
    world: World
    orbits: OrbitsParams
    curate: Curate
    shards: Shards
    diffusion: Diffusion
    model: Model
    train: Train
    sample: SampleParams
    evaluate: Evaluate = Evaluate()
    register: RegisterParams = RegisterParams()
    ablation: AblationParams = AblationParams()


DEFAULT_PARAMS = Path("params.yaml")


def deep_merge(base: dict, over: dict) -> dict:
    """Recursively merge `over` into a copy of `base`; dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML, so numbers, bools, lists and null work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return key.split("."), value


def apply_override(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown parameter {'.'.join(path)!r}: {'.'.join(path[: i + 1])!r} is not a section")
        node = node[part]
    if path[-1] not in node:
        raise ConfigError(f"unknown parameter {'.'.join(path)!r}")
    node[path[-1]] = value


def load_raw(path: Path | str = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return raw


def resolve(raw: dict, profile: str | None = None, overrides: list[str] | None = None) -> dict:
    """Merge the profile over the base values and apply overrides; returns the plain resolved dict."""
    raw = copy.deepcopy(raw)
    profiles = raw.pop("profiles", {}) or {}
    name = profile or raw.get("profile", "tiny")
    if name not in profiles:
        raise ConfigError(f"unknown profile {name!r}; params.yaml defines: {', '.join(sorted(profiles)) or 'none'}")
    merged = deep_merge(raw, profiles[name] or {})
    merged["profile"] = name
    for item in overrides or []:
        keys, value = parse_override(item)
        if keys == ["profile"]:
            raise ConfigError("choose the profile with --profile, not --set profile=...")
        apply_override(merged, keys, value)
    return merged


def load_params(
    path: Path | str = DEFAULT_PARAMS, profile: str | None = None, overrides: list[str] | None = None
) -> Params:
    merged = resolve(load_raw(path), profile, overrides)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid parameter {where!r}: {first['msg']} ({len(exc.errors())} error(s) in all)"
        ) from None


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b.c': value}, the form MLflow params take."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
