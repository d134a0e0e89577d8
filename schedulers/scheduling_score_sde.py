"""Predictor-corrector sampling of the reverse variance-preserving SDE (Song et al. 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations", Algorithms 2 and 5) on our discrete schedules."""

import torch
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader finds a component's base class by name in the module model_index.json points to
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401

from .base import DiscreteDiffusionScheduler, SeveralEvaluationsPerStep
from .prediction import eps_from_x0
from .validation import check_choice, check_range

PREDICTORS = ("euler_maruyama", "reverse_diffusion")


class GuidedScoreSDEScheduler(SeveralEvaluationsPerStep, DiscreteDiffusionScheduler):
    """The VP SDE dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw has the reverse
    dx = [-1/2 beta(t) x - beta(t) score] dt + sqrt(beta(t)) dw_bar, score = grad log p_t(x) = -eps / sqrt(1 - abar_t).
    Between two visited timesteps s > t of our schedule, the integrated rate is Delta = int beta dt = log(abar_t / abar_s)
    (abar = exp(-int beta)), which is how the continuous SDE maps onto a discrete (and respaced) schedule.

    Predictor, one network evaluation, from level s to the next level t:
    - "euler_maruyama" (Song 2021, Algorithm 2 predictor):  x_t = x_s + Delta (x_s / 2 + score) + sqrt(Delta) z
    - "reverse_diffusion" (sec. 4.2, eq. 47 for VP, with beta_s = 1 - abar_s / abar_t):
                          x_t = (2 - sqrt(1 - beta_s)) x_s + beta_s score + sqrt(beta_s) z
    with z = 0 on the last step (the paper's final denoising: the last step returns the mean).

    Corrector, `corrector_steps` Langevin steps at each level before its predictor step (Algorithm 5), one network
    evaluation each, with alpha_s = 1 - beta_s and the step size set by the signal-to-noise ratio `snr`:
        epsilon = 2 alpha_s (snr ||z|| / ||score||)^2,   x = x + epsilon score + sqrt(2 epsilon) z
    The norms are per sample; the paper's code averages them over the batch, which makes a sample depend on the
    others drawn with it (the two agree for one sample).

    `timesteps` repeats each level corrector_steps + 1 times, one entry per network evaluation, so any denoising
    loop runs it and counts its cost; `order` = corrector_steps + 1 (step k of an image-to-image run is entry
    k x order). x0 is clipped or thresholded as configured and the score taken from it, as our DDPM's mean is.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        predictor: str = "euler_maruyama",
        corrector_steps: int = 0,
        snr: float = 0.16,
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
        check_choice("predictor", predictor, PREDICTORS)
        check_range("corrector_steps", corrector_steps, low=0, integer=True)
        check_range("snr", snr, low=0, low_open=True)
        self._build()

    @property
    def order(self) -> int:
        return self.config.corrector_steps + 1

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None) -> None:
        super().set_timesteps(num_inference_steps, device, timesteps)
        self.levels = self.timesteps  # the distinct visited timesteps; `timesteps` lists one entry per evaluation
        self.timesteps = self.levels.repeat_interleave(self.order)
        self._step_index = None
        self._begin_index = None

    def _stage(self, timestep) -> int:
        """Which evaluation of its level this call is: 0..corrector_steps - 1 correct, corrector_steps predicts."""
        if self.num_inference_steps is None:
            raise ValueError("`num_inference_steps` is not set: call `set_timesteps` before `step`.")
        if self._step_index is None:
            if self._begin_index is not None:
                self._step_index = self._begin_index
            else:
                matches = (self.timesteps == int(timestep)).nonzero().flatten().tolist()
                if not matches:
                    raise ValueError(f"`timestep` {int(timestep)} is not in the schedule set by `set_timesteps`.")
                self._step_index = matches[0]
        if int(self.timesteps[self._step_index]) != int(timestep):
            raise ValueError(f"`timestep` {int(timestep)} is not the one this scheduler expects next "
                             f"({int(self.timesteps[self._step_index])}); call `set_timesteps` to start over.")  # fmt: skip
        return self._step_index % self.order

    # ------------------------------------------------------------------------------------------ the step
    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator: torch.Generator | None = None,
             variance_noise: torch.Tensor | None = None, return_dict: bool = True):  # fmt: skip
        """A Langevin correction at this level, or the predictor step to the next level, as the call's place in
        `timesteps` says."""
        self._check_noise_source(generator, variance_noise, sample)
        stage = self._stage(timestep)
        prediction, _ = self._split_model_output(model_output, sample)
        t = int(timestep)
        previous = self.previous_timestep(t)
        alpha_prod, alpha_prod_prev = self._alpha_prod(t), self._alpha_prod(previous)
        x0, _ = self._denoise(prediction, sample, alpha_prod)
        score = -eps_from_x0(sample, x0, alpha_prod) / (1 - alpha_prod) ** 0.5  # grad log p_t = -eps / sqrt(1 - abar_t)
        beta = 1 - alpha_prod / alpha_prod_prev  # the (respaced) beta of this level
        self._step_index += 1
        if stage < self.config.corrector_steps:
            noise = self._noise(prediction, generator, variance_noise)
            return self._output(self._langevin(sample, score, noise, 1 - beta), x0, return_dict)
        noise = None if previous < 0 else self._noise(prediction, generator, variance_noise)  # z = 0 on the last step
        return self._output(self._predict(sample, score, beta, alpha_prod, alpha_prod_prev, noise), x0, return_dict)

    def _langevin(self, sample, score, noise, alpha) -> torch.Tensor:
        """Algorithm 5's step: epsilon = 2 alpha (snr ||z|| / ||score||)^2, x + epsilon score + sqrt(2 epsilon) z."""
        per_sample = (sample.shape[0], -1)
        ratio = noise.reshape(per_sample).norm(dim=1) / score.reshape(per_sample).norm(dim=1)
        step_size = (2 * alpha * (self.config.snr * ratio) ** 2).reshape(-1, *[1] * (sample.ndim - 1))
        return sample + step_size * score + (2 * step_size) ** 0.5 * noise

    def _predict(self, sample, score, beta, alpha_prod, alpha_prod_prev, noise) -> torch.Tensor:
        if self.config.predictor == "euler_maruyama":
            delta = torch.log(alpha_prod_prev / alpha_prod)  # int beta dt over the step
            mean = sample + delta * (sample / 2 + score)
            return mean if noise is None else mean + delta**0.5 * noise
        mean = (2 - (1 - beta) ** 0.5) * sample + beta * score  # reverse diffusion: x - f + G^2 score
        return mean if noise is None else mean + beta**0.5 * noise
