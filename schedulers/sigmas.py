"""Noise levels as EDM's sigma (Karras et al. 2022) on our discrete variance-preserving schedules.

A VP sample x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, divided by sqrt(abar_t), is x0 + sigma_t eps with
sigma_t = sqrt((1 - abar_t) / abar_t): the same noise level in the variance-exploding form that EDM, k-diffusion and
diffusers' Euler/Heun schedulers step in. A level between two training timesteps maps to a fractional timestep by
linear interpolation in log sigma (diffusers' `_sigma_to_t`, k-diffusion's `DiscreteSchedule.sigma_to_t`), and back.
"""

import numpy as np
import torch

from .timesteps import check_step_count
from .validation import check_range


def training_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1, computed in float32 as diffusers computes it."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).numpy()


def karras_sigmas(num_levels: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """Karras 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..N-1, descending from sigma_max to sigma_min (rho = 7 spends more of the steps at low noise)."""
    check_range("rho", rho, low=0, low_open=True)
    check_range("sigma_min", sigma_min, low=0, low_open=True)
    check_range("sigma_max", sigma_max, low=sigma_min)
    ramp = np.linspace(0, 1, num_levels)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def timestep_for_sigma(sigmas, log_training_sigmas: np.ndarray) -> np.ndarray:
    """The fractional training timestep of each level: linear in log sigma between the two training timesteps whose
    levels enclose it, clamped to [0, T - 1] (diffusers' `_sigma_to_t`, the same arithmetic)."""
    sigmas = np.asarray(sigmas)
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    distances = log_sigma - log_training_sigmas[:, np.newaxis]
    low = np.cumsum(distances >= 0, axis=0).argmax(axis=0).clip(max=log_training_sigmas.shape[0] - 2)
    high = low + 1
    weight = np.clip((log_training_sigmas[low] - log_sigma) / (log_training_sigmas[low] - log_training_sigmas[high]), 0, 1)
    return ((1 - weight) * low + weight * high).reshape(sigmas.shape)


def alpha_prod_at(alphas_cumprod: torch.Tensor, timestep) -> float:
    """abar at a training timestep, or at a fractional one (a sigma sampler's level between two of them) through the
    inverse of `timestep_for_sigma`: log sigma interpolated, abar = 1 / (1 + sigma^2)."""
    t = float(timestep)
    if t == int(t):
        return float(alphas_cumprod[int(t)])
    log_sigmas = np.log(training_sigmas(alphas_cumprod).astype(np.float64))
    sigma = float(np.exp(np.interp(t, np.arange(len(log_sigmas)), log_sigmas)))
    return 1.0 / (1.0 + sigma**2)


def karras_timesteps(num_inference_steps: int, alphas_cumprod: torch.Tensor, rho: float = 7.0) -> np.ndarray:
    """Karras levels from the schedule's own sigma_max (t = T - 1) down to sigma_min (t = 0), each rounded to the
    nearest training timestep, as diffusers' DPMSolverMultistepScheduler(use_karras_sigmas=True) rounds them. Unlike
    diffusers, which then steps between the unrounded levels while telling the network the rounded ones, a sampler of
    ours steps between the levels of the timesteps it visits; where rounding lands two levels on one timestep (at
    ~100 steps of a linear schedule, near t = 0) that timestep is visited once, so the count can be lower than asked."""
    check_step_count(num_inference_steps, len(alphas_cumprod))
    sigmas = training_sigmas(alphas_cumprod)
    if not np.isfinite(sigmas).all():
        raise ValueError("Karras spacing needs a finite sigma at every timestep; a zero-terminal-SNR schedule "
                         "(`rescale_betas_zero_snr=True`) has sigma = inf at t = T - 1.")  # fmt: skip
    levels = karras_sigmas(num_inference_steps, sigmas[0].item(), sigmas[-1].item(), rho)
    timesteps = timestep_for_sigma(levels, np.log(sigmas)).round().astype(np.int64)
    return np.unique(timesteps)[::-1].copy()
