"""DDIM sampling (Song 2021) and its deterministic inversion."""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader finds a component's base class by name in the module model_index.json points to
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401
from diffusers.utils import BaseOutput

from .base import DiscreteDiffusionScheduler
from .prediction import eps_from_x0, x0_and_eps
from .validation import check_range


@dataclass
class DDIMInversionOutput(BaseOutput):
    """`next_sample`: x_t, one step noisier than the input; `pred_original_sample`: the x0 it passes through."""

    next_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class GuidedDDIMScheduler(DiscreteDiffusionScheduler):
    """DDIM, config-compatible with diffusers' `DDIMScheduler` and equal to it step for step for `leading` spacing
    (and `trailing` when T is a multiple of the step count). Unlike diffusers, which always steps to
    t - T // num_inference_steps, each step lands on the actual next timestep of the schedule, so `linspace`,
    `trailing` and custom timesteps sample the chain they name. Also takes the `sigmoid` beta schedule and custom
    `timesteps`, and has `inversion_step` (Song 2021, sec. 4.3).
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ):
        self._build()
        if not set_alpha_to_one:  # the last step lands on abar_0 instead of x0 itself, as in the DDIM paper's code
            self.final_alpha_cumprod = self.alphas_cumprod[0]

    def _levels(self, timestep):
        """(t, abar_t, abar_prev) for a step from `timestep`; DDIM always needs a schedule."""
        if self.num_inference_steps is None:
            raise ValueError("`num_inference_steps` is not set: call `set_timesteps` before `step`.")
        t = int(timestep)
        previous = self.previous_timestep(t)  # first: it refuses a timestep outside the schedule
        return t, self._alpha_prod(t), self._alpha_prod(previous)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """x_t -> x_{t_prev} by DDIM's generalised reverse process (Song 2021, eq. 12)."""
        check_range("eta", eta, low=0)
        self._check_noise_source(generator, variance_noise, sample)
        # a learned-variance network's variance channels go unused: eta sets DDIM's variance
        prediction, _ = self._split_model_output(model_output, sample)
        t, alpha_prod_t, alpha_prod_prev = self._levels(timestep)
        x0, eps = self._denoise(prediction, sample, alpha_prod_t)
        if use_clipped_model_output:  # re-derive eps from the clipped x0, as in the DDIM paper's code
            eps = eps_from_x0(sample, x0, alpha_prod_t)

        # eq. 12: x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma_t^2) eps + sigma_t z
        if eta == 0:  # deterministic DDIM: sigma_t = 0 (the same numbers, without the variance's scalar ops)
            return self._output(alpha_prod_prev**0.5 * x0 + (1 - alpha_prod_prev) ** 0.5 * eps, x0, return_dict)
        # eq. 16: sigma_t = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
        variance = (1 - alpha_prod_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_prev)
        std = eta * variance**0.5
        direction_coeff = (1 - alpha_prod_prev - std**2).clamp(min=0) ** 0.5
        prev_sample = alpha_prod_prev**0.5 * x0 + direction_coeff * eps
        prev_sample = prev_sample + std * self._noise(prediction, generator, variance_noise)
        return self._output(prev_sample, x0, return_dict)

    def inversion_step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
                       model_input: torch.Tensor | None = None, return_dict: bool = True):  # fmt: skip
        """DDIM inversion (Song 2021, sec. 4.3): from x at the level of `previous_timestep(timestep)` up to the level
        of `timestep`, the exact inverse of `step(eta=0)` for the same eps and no clipping:

            x0  = (x_prev - sqrt(1 - abar_prev) eps) / sqrt(abar_prev)
            x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps

        The true eps(x_t, t) is unknown before x_t is; the usual estimate is the network applied to (`sample`,
        `timestep`). `model_input` is the x the network saw, if not `sample` (a fixed-point iteration evaluates it at
        a guess of x_t; x0- and v-predictions need it to give eps). Loop over `reversed(scheduler.timesteps)` from a
        clean x0.
        """
        prediction, _ = self._split_model_output(model_output, sample)
        t, alpha_prod_t, alpha_prod_prev = self._levels(timestep)
        seen = sample if model_input is None else model_input
        _, eps = x0_and_eps(prediction, seen, alpha_prod_t, self.config.prediction_type)
        x0 = (sample - (1 - alpha_prod_prev) ** 0.5 * eps) / alpha_prod_prev**0.5
        next_sample = alpha_prod_t**0.5 * x0 + (1 - alpha_prod_t) ** 0.5 * eps
        if not return_dict:
            return next_sample, x0
        return DDIMInversionOutput(next_sample=next_sample, pred_original_sample=x0)
