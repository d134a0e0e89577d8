"""Classifier-free guidance whose scale follows the noise level (Wang et al. 2024, "Analysis of classifier-free
guidance weight schedulers")."""

import math

from ..schedulers.validation import check_choice, check_range
from .classifier_free import ClassifierFreeGuidance
from .diffusers_api import register_to_config

SCHEDULES = ("constant", "linear", "cosine")


def scheduled_scale(guidance_scale: float, schedule: str, t: float) -> float:
    """w(t) for t in [0, 1], 1 the noisiest end (Wang et al. 2024, sec. 3, increasing schedules, each with mean w
    over t): constant w; linear 2 w (1 - t); cosine w (cos(pi t) + 1)."""
    if schedule == "linear":
        return 2 * guidance_scale * (1 - t)
    if schedule == "cosine":
        return guidance_scale * (math.cos(math.pi * t) + 1)
    return guidance_scale


class ScheduledCFG(ClassifierFreeGuidance):
    """CFG at w(t), t the position of the step's noise level between `sigma_min` (t = 0) and `sigma_max` (t = 1)
    in log sigma, sigma = sqrt((1 - abar) / abar): the same w at the same noise for every sampler and step count,
    where the paper's t is a fraction of the steps. Unset, sigma_min and sigma_max are the model's own schedule's
    ends (its first and last training timesteps). Low guidance at high noise keeps variety; high guidance at low
    noise keeps fidelity. Where w(t) is 1 (or 0), one half of the batch is computed."""

    @register_to_config
    def __init__(self, guidance_scale: float = 3.0, schedule: str = "linear", sigma_min: float | None = None,
                 sigma_max: float | None = None, guidance_rescale: float = 0.0, use_original_formulation: bool = False,
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_choice("schedule", schedule, SCHEDULES)
        for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if value is not None:
                check_range(name, value, low=0, low_open=True)
        if sigma_min is not None and sigma_max is not None and not sigma_min < sigma_max:
            raise ValueError(f"`sigma_min` must be below `sigma_max`; got {sigma_min} and {sigma_max}.")
        super().__init__(guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
                         use_original_formulation=use_original_formulation, start=start, stop=stop, enabled=enabled)
        self.schedule, self.sigma_min, self.sigma_max = schedule, sigma_min, sigma_max
        self.base_scale = guidance_scale

    def position(self) -> float:
        """t in [0, 1] of this step's sigma on the log scale between sigma_min and sigma_max."""
        abar = self.context.scheduler.alphas_cumprod
        low = self.sigma_min or float(((1 - abar[0]) / abar[0]) ** 0.5)
        high = self.sigma_max or float(((1 - abar[-1]) / abar[-1]) ** 0.5)
        t = (math.log(self.context.sigma) - math.log(low)) / (math.log(high) - math.log(low))
        return min(max(t, 0.0), 1.0)

    def needed_predictions(self) -> list[str]:
        if self.context is not None:  # the scale of this step; without a context (a cost estimate), the base one
            self.guidance_scale = scheduled_scale(self.base_scale, self.schedule, self.position())
        return super().needed_predictions()
