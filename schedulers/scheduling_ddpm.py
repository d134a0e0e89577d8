"""Ancestral DDPM sampling (Ho 2020, Algorithm 2) with the variances of improved DDPM (Nichol & Dhariwal 2021)."""

import torch
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader finds a component's base class by name in the module model_index.json points to
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .base import DiscreteDiffusionScheduler
from .validation import check_choice

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
LEARNED_VARIANCE_TYPES = ("learned", "learned_range")


class GuidedDDPMScheduler(DiscreteDiffusionScheduler):
    """DDPM, config-compatible with diffusers' `DDPMScheduler` and equal to it step for step, except where
    diffusers departs from the papers (each case is tested against the closed form):

    - `learned`: the network's variance channels are log Sigma (improved DDPM, sec. 3.1), so sigma = exp(v / 2);
      diffusers reads them as Sigma itself.
    - `fixed_large_log`: sigma = exp(log(beta_t) / 2) = sqrt(beta_t); diffusers takes sqrt(log beta_t), a NaN.
    - The last step returns the posterior mean with no noise (Algorithm 2: z = 0 at the final step); diffusers
      adds noise whenever t > 0, which matters when the schedule ends above t = 0 (e.g. `trailing` spacing).

    With `num_inference_steps` < T the chain is respaced (improved DDPM, sec. 4): beta_t = 1 - abar_t / abar_prev
    between consecutive visited timesteps.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        self._build()
        self.variance_type = variance_type

    def noise_std(self, timestep, predicted_variance: torch.Tensor | None = None):
        """sigma_t of the reverse step from `timestep`: a scalar tensor, or one value per element when learned.

        beta_tilde = (1 - abar_prev) / (1 - abar_t) * beta_t is the posterior variance (Ho 2020, eq. 7);
        fixed_small uses beta_tilde, fixed_large beta_t (Ho 2020, sec. 3.2); learned_range interpolates their logs,
        log Sigma = v log beta_t + (1 - v) log beta_tilde with v = (output + 1) / 2 (improved DDPM, eq. 15).
        """
        t = int(timestep)
        alpha_prod_t, alpha_prod_prev = self._alpha_prod(t), self._alpha_prod(self.previous_timestep(t))
        beta_t = 1 - alpha_prod_t / alpha_prod_prev
        beta_tilde = ((1 - alpha_prod_prev) / (1 - alpha_prod_t) * beta_t).clamp(min=1e-20)  # log(0) guard
        kind = self.config.variance_type
        if kind == "fixed_small":
            return beta_tilde**0.5
        if kind == "fixed_small_log":  # the _log variants differ only in arithmetic (kept for config compatibility)
            return torch.exp(0.5 * torch.log(beta_tilde))
        if kind == "fixed_large":
            return beta_t**0.5
        if kind == "fixed_large_log":
            return torch.exp(0.5 * torch.log(beta_t))
        if predicted_variance is None:
            raise ValueError(
                f"`variance_type`={kind!r} needs the network's variance channels: pass a `model_output` with twice "
                "the channels of `sample`, or pass `predicted_variance`."
            )
        if kind == "learned":
            return torch.exp(0.5 * predicted_variance)
        fraction = (predicted_variance + 1) / 2
        return torch.exp(0.5 * (fraction * torch.log(beta_t) + (1 - fraction) * torch.log(beta_tilde)))

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """x_t -> x_{t_prev} ~ N(mu(x_t, x0), sigma_t^2 I) with x0 predicted by the network."""
        self._check_noise_source(generator, variance_noise, sample)
        prediction, predicted_variance = self._split_model_output(model_output, sample)
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        alpha_prod_t, alpha_prod_prev = self._alpha_prod(t), self._alpha_prod(prev_t)
        alpha_t = alpha_prod_t / alpha_prod_prev
        beta_t = 1 - alpha_t
        x0, _ = self._denoise(prediction, sample, alpha_prod_t)

        # posterior mean (Ho 2020, eq. 7):
        # mu = sqrt(abar_prev) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t
        x0_coeff = alpha_prod_prev**0.5 * beta_t / (1 - alpha_prod_t)
        sample_coeff = alpha_t**0.5 * (1 - alpha_prod_prev) / (1 - alpha_prod_t)
        prev_sample = x0_coeff * x0 + sample_coeff * sample
        if prev_t >= 0:  # Algorithm 2: z = 0 on the final step
            std = self.noise_std(t, predicted_variance)
            prev_sample = prev_sample + std * self._noise(prediction, generator, variance_noise)

        return self._output(prev_sample, x0, return_dict)
