"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling", Algorithm 2): a second-order
multistep solver of the diffusion ODE in data prediction, built for guided sampling at 10-25 steps."""

import torch
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader finds a component's base class by name in the module model_index.json points to
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .base import DiscreteDiffusionScheduler
from .prediction import x0_and_eps_from_scales
from .thresholding import clip_or_threshold
from .timesteps import solver_timesteps
from .validation import check_choice


class GuidedDPMSolverMultistepScheduler(DiscreteDiffusionScheduler):
    """DPM-Solver++(2M), config-compatible with diffusers' `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
    solver_order=2)` and equal to it step for step (its defaults: midpoint solver type, final sigma zero, first-order
    final step). With alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), h = lambda_t - lambda_s and the data
    prediction x0 of the current step (clipped or thresholded as the config asks: DPM-Solver++ thresholds the data
    prediction, which is why it is the solver for guided sampling, sec. 4):

        first step (DDIM):   x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s
        later steps (2M):    D = x0_s + (x0_s - x0_{s'}) / (2 r),  r = (lambda_s - lambda_{s'}) / h
                             x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D

    where s' is the step before s. The last step lands on x0 itself (sigma = 0). One network evaluation per step.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        clip_sample: bool = False,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        check_choice("solver_order", solver_order, (1, 2))
        self._build()
        self._last = None  # (timestep, x0) of the previous step, for the second-order correction

    def _uniform_timesteps(self, num_inference_steps: int):
        config = self.config
        return solver_timesteps(num_inference_steps, config.num_train_timesteps, config.timestep_spacing, config.steps_offset)

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None) -> None:
        super().set_timesteps(num_inference_steps, device, timesteps)
        self._last = None  # a new solve starts first-order

    def _scales(self, timestep: int):
        """(alpha_t, sigma_t, lambda_t = log(alpha_t / sigma_t)) with diffusers' float32 arithmetic: it goes through
        the VE sigma sqrt((1 - abar) / abar), and at abar ~ 1e-9 (cosine, t = 999) x0 = (x - sigma eps) / alpha
        magnifies any other rounding by 1 / alpha ~ 2e4."""
        if timestep < 0:  # the clean end: alpha = 1, sigma = 0
            return torch.tensor(1.0), torch.tensor(0.0), None
        alpha_prod = self.alphas_cumprod[timestep]
        ve_sigma = ((1 - alpha_prod) / alpha_prod) ** 0.5
        alpha = 1 / (ve_sigma**2 + 1) ** 0.5
        sigma = ve_sigma * alpha
        return alpha, sigma, torch.log(alpha) - torch.log(sigma)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        """x_s -> x_t, t the next timestep of the schedule (Lu 2022b, Algorithm 2)."""
        if self.num_inference_steps is None:
            raise ValueError("`num_inference_steps` is not set: call `set_timesteps` before `step`.")
        prediction, _ = self._split_model_output(model_output, sample)
        s = int(timestep)
        alpha_s, sigma_s, _ = self._scales(s)
        x0, _ = x0_and_eps_from_scales(prediction, sample, alpha_s, sigma_s, self.config.prediction_type)
        x0 = clip_or_threshold(x0, self.config)
        previous = self._last if self._last is not None and self.previous_timestep(self._last[0]) == s else None
        self._last = (s, x0)
        return self._output(self.update(sample, x0, s, previous), x0, return_dict)

    def update(self, sample: torch.Tensor, x0: torch.Tensor, timestep, previous=None) -> torch.Tensor:
        """The solver's x_s -> x_t for the data prediction `x0` at s = `timestep`, t the next timestep; `previous`
        = (s', x0_{s'}) of the step before s gives the second-order correction, None the first-order (DDIM) step.
        `step` calls it with its own history; CFG++ with another sample and history (guiders/cfg_plus_plus.py)."""
        s = int(timestep)
        t = self.previous_timestep(s)
        if t < 0:  # sigma_t = 0: the first-order update is x0 itself
            return x0
        alpha_s, sigma_s, lambda_s = self._scales(s)
        alpha_t, sigma_t, lambda_t = self._scales(t)
        h = lambda_t - lambda_s
        data = x0
        if self.config.solver_order == 2 and previous is not None:
            timestep_before, x0_before = previous
            r = (lambda_s - self._scales(int(timestep_before))[2]) / h
            data = x0 + 0.5 * ((1.0 / r) * (x0 - x0_before))  # midpoint: D0 + D1 / 2, D1 = (x0_s - x0_{s'}) / r
        return (sigma_t / sigma_s) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * data
