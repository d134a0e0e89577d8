"""Diffusers-compatible DDPM, DDIM, DPM-Solver++(2M), EDM (Karras Heun/Euler) and score-SDE predictor-corrector
schedulers with dynamic thresholding, and the schedule math they share."""

from .base import DiscreteDiffusionScheduler, SchedulerStepOutput
from .noise_schedules import BETA_SCHEDULES, make_betas, rescale_zero_terminal_snr
from .prediction import PREDICTION_TYPES, eps_from_x0, model_output_from, noisy_sample, x0_and_eps
from .scheduling_ddim import DDIMInversionOutput, GuidedDDIMScheduler
from .scheduling_ddpm import VARIANCE_TYPES, GuidedDDPMScheduler
from .scheduling_dpmsolver import GuidedDPMSolverMultistepScheduler
from .scheduling_edm import GuidedEDMScheduler
from .scheduling_score_sde import PREDICTORS, GuidedScoreSDEScheduler
from .sigmas import karras_sigmas
from .thresholding import clip_or_threshold, dynamic_threshold, static_clip
from .timesteps import TIMESTEP_SPACINGS

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "PREDICTORS",
    "TIMESTEP_SPACINGS",
    "VARIANCE_TYPES",
    "DDIMInversionOutput",
    "DiscreteDiffusionScheduler",
    "GuidedDDIMScheduler",
    "GuidedDDPMScheduler",
    "GuidedDPMSolverMultistepScheduler",
    "GuidedEDMScheduler",
    "GuidedScoreSDEScheduler",
    "SchedulerStepOutput",
    "clip_or_threshold",
    "dynamic_threshold",
    "eps_from_x0",
    "karras_sigmas",
    "make_betas",
    "model_output_from",
    "noisy_sample",
    "rescale_zero_terminal_snr",
    "static_clip",
    "x0_and_eps",
]
