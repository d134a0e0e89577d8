"""What a guider of ours may read at one denoising step, beyond the predictions diffusers' guiders get.

diffusers' guiders see only the model outputs and a step fraction. Methods that work in x0 space, over an interval
of noise levels, or with the sampler (CFG++, classifier guidance's mean shift) also need x_t, the noise level and
the conversions between the network's parameterisation and (x0, eps); those are written once, in
`schedulers/prediction.py`, and reached through this object.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..schedulers.prediction import eps_from_x0, model_output_from, x0_and_eps
from ..schedulers.sigmas import alpha_prod_at


@dataclass
class StepContext:
    """One step of one sampling call. `sample` is x_t as the network reads it (after `scale_model_input`), None
    while a pipeline plans which predictions each step needs. `counts` tallies network evaluations for the call
    ("unet": one per prediction and image batch, "classifier": one forward and backward). `denoiser(x, inputs)` makes
    the prediction on a conditioning ("pred_cond", "pred_uncond") at an x of the guider's choosing, for guiders that
    differentiate through the network (universal guidance); `clean_classifier` is the pipeline's classifier of clean
    images; `clip_model` the pipeline's noise-aware CLIP and `clip_text_embeds` its embeddings of the call's prompts
    (CLIP guidance)."""

    step: int
    num_inference_steps: int
    timestep: torch.Tensor | int
    scheduler: object
    sample: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None
    classifier: torch.nn.Module | None = None
    counts: Counter = field(default_factory=Counter)
    clean_classifier: torch.nn.Module | None = None
    denoiser: Callable[..., torch.Tensor] | None = None  # (x, inputs="pred_cond") -> the output at (x, t), differentiable
    clip_model: torch.nn.Module | None = None
    clip_text_embeds: torch.Tensor | None = None  # (B, E): the prompts' unit text embeddings under clip_model

    @cached_property
    def alpha_prod(self) -> float:
        """abar_t, the signal fraction of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho 2020, eq. 4); at a
        fractional timestep (the sigma samplers: our EDM, diffusers' Euler and Heun) the level it stands for."""
        return alpha_prod_at(self.scheduler.alphas_cumprod, self.timestep)

    @cached_property
    def alpha_prod_prev(self) -> float:
        """abar of the level this step lands on: the scheduler's next timestep, past the last one its
        `final_alpha_cumprod` (1 unless configured otherwise). Ours (and diffusers' DDPM) say which timestep that is;
        diffusers' DDIM steps from t to t - T / N."""
        scheduler = self.scheduler
        if hasattr(scheduler, "previous_timestep"):
            previous = int(scheduler.previous_timestep(self.timestep))
        else:
            previous = int(self.timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        return float(scheduler.alphas_cumprod[previous]) if previous >= 0 else float(scheduler.final_alpha_cumprod)

    @property
    def noise_std(self) -> float:
        """sigma_t = sqrt(1 - abar_t), the noise scale of x_t."""
        return (1 - self.alpha_prod) ** 0.5

    @property
    def sigma(self) -> float:
        """The noise-to-signal ratio sqrt((1 - abar_t) / abar_t): EDM's and k-diffusion's sigma for the same x_t
        (Karras 2022, x_t / sqrt(abar_t) = x0 + sigma eps); the same number for every sampler and step count."""
        return ((1 - self.alpha_prod) / self.alpha_prod) ** 0.5

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    def split(self, output: torch.Tensor):
        """(prediction, learned variance or None): a learned-variance network outputs 2C channels."""
        channels = self.sample.shape[1]
        if output.shape[1] == channels:
            return output, None
        return output[:, :channels], output[:, channels:]

    def x0_and_eps(self, prediction: torch.Tensor):
        """The (x0, eps) that a prediction (C channels, the network's parameterisation) implies at x_t."""
        return x0_and_eps(prediction, self.sample, self.alpha_prod, self.prediction_type)

    def prediction_from(self, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The prediction in the network's parameterisation that gives (x0, eps)."""
        return model_output_from(x0, eps, self.alpha_prod, self.prediction_type)

    def prediction_for_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """The prediction whose clean estimate at x_t is `x0` (its noise is the one x_t and x0 imply)."""
        return self.prediction_from(x0, eps_from_x0(self.sample, x0, self.alpha_prod))
