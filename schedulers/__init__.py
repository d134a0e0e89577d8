"""Diffusers-compatible DDPM, DDIM and DPM-Solver++(2M) schedulers with dynamic thresholding, and the schedule math
they share."""

from .base import DiscreteDiffusionScheduler, SchedulerStepOutput
from .noise_schedules import BETA_SCHEDULES, make_betas, rescale_zero_terminal_snr
from .prediction import PREDICTION_TYPES, eps_from_x0, model_output_from, noisy_sample, x0_and_eps
from .scheduling_ddim import DDIMInversionOutput, GuidedDDIMScheduler
from .scheduling_ddpm import VARIANCE_TYPES, GuidedDDPMScheduler
from .scheduling_dpmsolver import GuidedDPMSolverMultistepScheduler
from .thresholding import clip_or_threshold, dynamic_threshold, static_clip
from .timesteps import TIMESTEP_SPACINGS

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "VARIANCE_TYPES",
    "DDIMInversionOutput",
    "DiscreteDiffusionScheduler",
    "GuidedDDIMScheduler",
    "GuidedDDPMScheduler",
    "GuidedDPMSolverMultistepScheduler",
    "SchedulerStepOutput",
    "clip_or_threshold",
    "dynamic_threshold",
    "eps_from_x0",
    "make_betas",
    "model_output_from",
    "noisy_sample",
    "rescale_zero_terminal_snr",
    "static_clip",
    "x0_and_eps",
]
