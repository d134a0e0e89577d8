"""Beta schedules beta_1..beta_T and the constants derived from them, computed once per scheduler.

Float32 throughout, built exactly as diffusers builds them, so that `alphas_cumprod` agree bit for bit.
"""

import math

import torch

from .validation import check_choice

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): abar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), s = 0.008,
    beta_t = min(1 - abar(t) / abar(t-1), max_beta)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    steps = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed"), Algorithm 1: shift and
    scale sqrt(abar) so that sqrt(abar_T) = 0 (zero terminal SNR) while sqrt(abar_1) is unchanged."""
    sqrt_abar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * (first / (first - last))
    abar = sqrt_abar**2
    alphas = torch.cat([abar[0:1], abar[1:] / abar[:-1]])
    return 1 - alphas


def make_betas(
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    beta_schedule: str,
    trained_betas=None,
    rescale_betas_zero_snr: bool = False,
) -> torch.Tensor:
    """beta_1..beta_T as a float32 tensor of length `num_train_timesteps`."""
    if trained_betas is not None:
        betas = torch.tensor(trained_betas, dtype=torch.float32)
        if betas.ndim != 1 or len(betas) != num_train_timesteps:
            raise ValueError(
                f"`trained_betas` must be a 1-D sequence of `num_train_timesteps`={num_train_timesteps} values; "
                f"got shape {tuple(betas.shape)}."
            )
    else:
        check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
        T = num_train_timesteps
        if beta_schedule == "linear":  # Ho 2020, sec. 4: beta from 1e-4 to 0.02
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":  # latent diffusion: linear in sqrt(beta)
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = cosine_betas(T)
        else:  # sigmoid (GeoDiff, Xu 2022): a sigmoid over [-6, 6] scaled into [beta_start, beta_end]
            betas = torch.sigmoid(torch.linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start
    if not ((betas > 0) & (betas <= 1)).all():  # written so that NaN (which compares false) fails too
        raise ValueError("every beta must be a number in (0, 1]; check `beta_start`, `beta_end` or `trained_betas` "
                         f"(got values from {betas.min().item()} to {betas.max().item()}).")
    return rescale_zero_terminal_snr(betas) if rescale_betas_zero_snr else betas
