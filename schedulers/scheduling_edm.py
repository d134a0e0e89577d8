"""The EDM sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Algorithm 2): Heun's second-order method on the probability-flow ODE at Karras noise levels, with optional
stochastic churn; `solver_order=1` is its Euler variant (k-diffusion's `sample_euler`)."""

import math

import numpy as np
import torch
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader finds a component's base class by name in the module model_index.json points to
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .base import DiscreteDiffusionScheduler, SeveralEvaluationsPerStep
from .prediction import x0_from_sigma_sample
from .sigmas import karras_sigmas, timestep_for_sigma, training_sigmas
from .thresholding import clip_or_threshold
from .timesteps import UNIFORM_SPACINGS, check_step_count, checked_custom_timesteps
from .validation import check_choice, check_range


class GuidedEDMScheduler(SeveralEvaluationsPerStep, DiscreteDiffusionScheduler):
    """Karras 2022, Algorithm 2, on a discrete VP-trained model. It steps the variance-exploding sample
    x = x0 + sigma eps = x_t / sqrt(abar_t) (`scale_model_input` hands the network x_t back) with the ODE
    dx / dsigma = (x - D(x; sigma)) / sigma, D the denoised x0 (clipped or thresholded as configured):

        churn:   sigma^_i = sigma_i (1 + gamma_i),  gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= sigma_i <= S_tmax
                 x^_i = x_i + sqrt(sigma^_i^2 - sigma_i^2) S_noise z
        Euler:   d = (x^_i - D(x^_i; sigma^_i)) / sigma^_i,       x_{i+1} = x^_i + (sigma_{i+1} - sigma^_i) d
        Heun:    d' = (x_{i+1} - D(x_{i+1}; sigma_{i+1})) / sigma_{i+1},  x_{i+1} = x^_i + (sigma_{i+1} - sigma^_i) (d + d') / 2

    with no Heun correction on the last step (sigma_N = 0). Levels: Karras's (`use_karras_sigmas`, eq. 5, from the
    schedule's sigma_max to sigma_min unless `sigma_max` / `sigma_min` say otherwise), or the schedule's own at
    `timestep_spacing`. Each level is told to the network as its fractional training timestep (log-sigma
    interpolation, as diffusers does; a churned level above the schedule's sigma_max is told as T - 1).

    `timesteps` lists one entry per network evaluation: N for Euler, 2N - 1 for Heun. With S_churn = 0 it equals
    diffusers' HeunDiscreteScheduler (order 2) and EulerDiscreteScheduler (order 1) step for step. With churn, the
    network is evaluated at the churned level sigma^_i on the churned x^_i, as Algorithm 2 says; diffusers' Euler
    evaluates it at sigma_i on x_i and only then adds the churn, and its Heun has none. The churn noise of level
    i + 1 is drawn at the end of step i (the next evaluation must see x^_{i+1}), and the initial noise is drawn
    at sigma^_0 (`init_noise_sigma`).
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        prediction_type: str = "epsilon",
        solver_order: int = 2,
        use_karras_sigmas: bool = True,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        rho: float = 7.0,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float | None = None,
        s_noise: float = 1.0,
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
        check_choice("timestep_spacing", timestep_spacing, UNIFORM_SPACINGS)
        if not isinstance(use_karras_sigmas, bool):
            raise ValueError(f"`use_karras_sigmas` must be true or false (a boolean); got {use_karras_sigmas!r}.")
        check_range("rho", rho, low=0, low_open=True)
        for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if value is not None:
                check_range(name, value, low=0, low_open=True)
        if sigma_min is not None and sigma_max is not None and sigma_min >= sigma_max:
            raise ValueError(f"`sigma_min` must be below `sigma_max`; got sigma_min={sigma_min}, sigma_max={sigma_max}.")
        check_range("s_churn", s_churn, low=0)
        check_range("s_tmin", s_tmin, low=0)
        if s_tmax is not None:
            check_range("s_tmax", s_tmax, low=s_tmin, allow_inf=True)
        check_range("s_noise", s_noise, low=0)
        self._build()
        if rescale_betas_zero_snr:
            raise ValueError("`rescale_betas_zero_snr=True` gives sigma = inf at t = T - 1, where a sigma sampler "
                             "cannot start; use GuidedDDIMScheduler or GuidedDPMSolverMultistepScheduler.")  # fmt: skip
        self.set_timesteps(num_train_timesteps)

    @property
    def order(self) -> int:
        return self.config.solver_order

    # ------------------------------------------------------------------------------------------ levels
    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None) -> None:
        """N noise levels from `num_inference_steps` (Karras or `timestep_spacing`), or the levels of custom
        training `timesteps` (not with Karras levels), then one network evaluation per entry of `self.timesteps`."""
        config = self.config
        T = config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of `num_inference_steps` or `timesteps` to `set_timesteps`.")
        if timesteps is not None and config.use_karras_sigmas:
            raise ValueError("Custom `timesteps` set their own levels; they cannot be used with `use_karras_sigmas`.")
        train_sigmas = training_sigmas(self.alphas_cumprod)
        if timesteps is not None:
            spaced = checked_custom_timesteps(timesteps, T).astype(np.float32)
        else:
            spaced = self._uniform_float_timesteps(num_inference_steps)
        sigmas = np.interp(spaced, np.arange(T), train_sigmas)
        if config.use_karras_sigmas:
            low = config.sigma_min if config.sigma_min is not None else sigmas[-1].item()
            high = config.sigma_max if config.sigma_max is not None else sigmas[0].item()
            if config.sigma_min is not None and high <= low:  # one level: the schedule's sigma at t = 0 (diffusers')
                raise ValueError(f"`num_inference_steps`={len(sigmas)} makes the highest level {high:.4g}, not above "
                                 f"`sigma_min`={low:g}; ask for at least 2 steps.")  # fmt: skip
            sigmas = karras_sigmas(len(sigmas), low, high, config.rho)
            spaced = timestep_for_sigma(sigmas, np.log(train_sigmas))
        self._set_levels(sigmas.astype(np.float32), spaced.astype(np.float32), np.log(train_sigmas), device)

    def _uniform_float_timesteps(self, n: int) -> np.ndarray:
        """diffusers' Euler/Heun timesteps for `timestep_spacing` (float32, not rounded for linspace)."""
        config = self.config
        T = config.num_train_timesteps
        check_step_count(n, T)
        if config.timestep_spacing == "linspace":
            return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
        if config.timestep_spacing == "leading":
            return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float32) + config.steps_offset
        return np.arange(T, 0, -T / n).round().astype(np.float32) - 1

    def _set_levels(self, sigmas: np.ndarray, spaced: np.ndarray, log_train_sigmas: np.ndarray, device) -> None:
        """The churned levels and the evaluation plan: (level, told timestep, which step, first or second stage)."""
        config = self.config
        n = len(sigmas)
        top = math.inf if config.s_tmax is None else config.s_tmax
        gamma = min(config.s_churn / n, 2**0.5 - 1)
        churned = np.array([gamma if config.s_tmin <= s <= top else 0.0 for s in sigmas.tolist()])
        hats = (sigmas * (churned + 1)).astype(np.float32)  # sigma^_i = sigma_i (1 + gamma_i)
        told = np.where(churned > 0, timestep_for_sigma(hats, log_train_sigmas), spaced).astype(np.float32)
        plan = []  # (level, timestep, i, stage): stage 1 evaluates at sigma^_i, stage 2 at sigma_{i+1}
        for i in range(n):
            plan.append((hats[i], told[i], i, 1))
            if config.solver_order == 2 and i + 1 < n:
                plan.append((sigmas[i + 1], spaced[i + 1], i, 2))
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))  # sigma_0..sigma_N = 0
        self.sigma_hats = torch.from_numpy(hats)
        self.levels = torch.tensor([level for level, *_ in plan], dtype=torch.float32)
        self.timesteps = torch.tensor([t for _, t, *_ in plan], dtype=torch.float32, device=device)
        self._plan = [(i, stage) for *_, i, stage in plan]
        self.num_inference_steps = n
        self._step_index = None
        self._begin_index = None
        self._first_stage = None  # (x^_i, d, sigma_{i+1} - sigma^_i) between Heun's two evaluations

    @property
    def init_noise_sigma(self) -> float:
        # diffusers' rule: the top level for linspace and trailing, sqrt(sigma^2 + 1) (x_T ~ N(0, I) in VP form) otherwise
        top = self.levels.max()
        return top if self.config.timestep_spacing in ("linspace", "trailing") else (top**2 + 1) ** 0.5

    def _init_step_index(self, timestep) -> None:
        if self._begin_index is not None:
            self._step_index = self._begin_index
            return
        matches = (self.timesteps == torch.as_tensor(timestep, dtype=self.timesteps.dtype)).nonzero().flatten().tolist()
        first_stages = [index for index in matches if self._plan[index][1] == 1]
        if not first_stages:
            raise ValueError(f"`timestep` {float(timestep)} does not start a step of the schedule set by "
                             f"`set_timesteps`.")  # fmt: skip
        self._step_index = first_stages[0]

    def _level(self, timestep) -> torch.Tensor:
        if self._step_index is None:
            self._init_step_index(timestep)
        return self.levels[self._step_index]

    def previous_timestep(self, timestep):
        raise ValueError("GuidedEDMScheduler steps between noise levels (`levels`), not training timesteps; a guider "
                         "that needs the next timestep (CFG++) cannot run on it.")  # fmt: skip

    # ------------------------------------------------------------------------------------ forward process
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """x_t = x / sqrt(sigma^2 + 1): the VP sample the network was trained on."""
        return sample / (self._level(timestep) ** 2 + 1) ** 0.5

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """x = x0 + sigma eps at the level of each timestep of the schedule (image-to-image's starting point)."""
        timesteps = torch.as_tensor(timesteps).flatten().to(self.timesteps.dtype)
        if self._begin_index is not None:
            indices = [self._begin_index] * len(timesteps)
        else:
            indices = []
            for t in timesteps.tolist():
                matches = (self.timesteps == t).nonzero().flatten().tolist()
                if not matches:
                    raise ValueError(f"`timesteps` must come from the schedule set by `set_timesteps`; got {t}.")
                indices.append(matches[0])
        sigma = self.levels[indices].to(original_samples.device, original_samples.dtype)
        return original_samples + sigma.reshape(-1, *[1] * (original_samples.ndim - 1)) * noise

    # ------------------------------------------------------------------------------------------ the step
    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator: torch.Generator | None = None,
             return_dict: bool = True):  # fmt: skip
        """One network evaluation's part of Algorithm 2: Euler to sigma_{i+1} (stage 1), or Heun's correction
        (stage 2); then the churn noise that raises x_{i+1} to sigma^_{i+1}."""
        level = self._level(timestep)
        i, stage = self._plan[self._step_index]
        prediction, _ = self._split_model_output(model_output, sample)
        x0 = clip_or_threshold(x0_from_sigma_sample(prediction, sample, level, self.config.prediction_type), self.config)
        derivative = (sample - x0) / level  # d = (x - D(x; sigma)) / sigma
        if stage == 1:
            dt = self.sigmas[i + 1] - level
            if self.config.solver_order == 2 and self.sigmas[i + 1] > 0:
                self._first_stage = (sample, derivative, dt)
                prev_sample = sample + derivative * dt
            else:
                prev_sample = self._churn(sample + derivative * dt, i + 1, generator)
        else:
            start, first_derivative, dt = self._first_stage
            self._first_stage = None
            # x_{i+1} = x^_i + (sigma_{i+1} - sigma^_i) (d + d') / 2
            prev_sample = self._churn(start + (first_derivative + derivative) / 2 * dt, i + 1, generator)
        self._step_index += 1
        return self._output(prev_sample, x0, return_dict)

    def _churn(self, sample: torch.Tensor, i: int, generator) -> torch.Tensor:
        """x^_i = x_i + sqrt(sigma^_i^2 - sigma_i^2) S_noise z, where level i is churned."""
        if i >= len(self.sigma_hats) or self.sigma_hats[i] == self.sigmas[i]:
            return sample
        std = (self.sigma_hats[i] ** 2 - self.sigmas[i] ** 2) ** 0.5 * self.config.s_noise
        return sample + std * self._noise(sample, generator, None)
