"""EDM diffusion core: preconditioning, training noise and loss (edm), Karras schedule and guided Euler/Heun
sampling (sampling), SVD micro-conditioning and conditioning-frame noise augmentation (conditioning)."""

from svd.diffusion.conditioning import (
    MOTION_BUCKET_MAX,
    added_time_ids,
    fps_id,
    micro_condition_embedding,
    motion_bucket,
    noise_augment,
    timestep_embedding,
)
from svd.diffusion.edm import (
    STAGE_NOISE,
    DenoiserConfig,
    append_dims,
    denoise,
    edm_loss,
    loss_weight,
    per_sample_sigma,
    precondition,
    sample_training_sigmas,
    v_target,
)
from svd.diffusion.sampling import guided_denoise, karras_sigmas, linear_frame_guidance, sample

__all__ = [
    "MOTION_BUCKET_MAX",
    "STAGE_NOISE",
    "DenoiserConfig",
    "added_time_ids",
    "append_dims",
    "denoise",
    "edm_loss",
    "fps_id",
    "guided_denoise",
    "karras_sigmas",
    "linear_frame_guidance",
    "loss_weight",
    "micro_condition_embedding",
    "motion_bucket",
    "noise_augment",
    "per_sample_sigma",
    "precondition",
    "sample",
    "sample_training_sigmas",
    "timestep_embedding",
    "v_target",
]
