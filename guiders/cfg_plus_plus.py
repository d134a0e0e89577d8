"""CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained classifier free guidance for diffusion models")."""

import torch

from ..schedulers.validation import check_range
from .classifier_free import classifier_free_guidance
from .diffusers_api import register_to_config
from .guider import Guider

DDIM_SCHEDULERS = ("GuidedDDIMScheduler", "DDIMScheduler")


class CFGPlusPlus(Guider):
    """Guidance inside the manifold: the guided noise eps_w = eps_u + lambda (eps_c - eps_u), lambda in [0, 1], gives
    the clean estimate, but the re-noising uses the *unconditional* noise (Algorithm 1, DDIM):

        x0_w = (x_t - sqrt(1 - abar_t) eps_w) / sqrt(abar_t),   x_{t-1} = sqrt(abar_{t-1}) x0_w + sqrt(1 - abar_{t-1}) eps_u

    The scheduler's DDIM step computes x0_w (clipped or thresholded as configured); `after_step` replaces its
    re-noising term. lambda = 0 is the unconditional model; the paper's lambda ~ 0.2-1.0 corresponds to CFG's
    w ~ 2-12 (its sec. 4). DDIM with eta = 0 only (its update is the paper's); outside [start, stop) the
    conditional model with plain DDIM."""

    changes_step = True

    @register_to_config
    def __init__(self, guidance_scale: float = 0.6, start: float = 0.0, stop: float = 1.0, enabled: bool = True):
        check_range("guidance_scale", guidance_scale, low=0, high=1)
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self._uncond = None  # this step's unconditional prediction, for the re-noising

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        if type(scheduler).__name__ not in DDIM_SCHEDULERS or eta != 0:
            raise ValueError(f"CFGPlusPlus is CFG++'s DDIM update (eta = 0): use GuidedDDIMScheduler or diffusers' "
                             f"DDIMScheduler with eta=0; got {type(scheduler).__name__} with eta={eta}.")  # fmt: skip

    def needed_predictions(self) -> list[str]:
        if not self.in_window():
            return ["pred_cond"]
        return ["pred_uncond"] if self.guidance_scale == 0 else ["pred_cond", "pred_uncond"]

    def forward(self, pred_cond=None, pred_uncond=None):
        self._uncond = pred_uncond if pred_cond is not None else None  # with one prediction there is nothing to swap
        if pred_uncond is None or pred_cond is None:
            only = pred_cond if pred_cond is not None else pred_uncond
            return self.output(only, pred_cond, pred_uncond)
        # eps_w = eps_u + lambda (eps_c - eps_u): CFG's own combination, at lambda
        return self.output(classifier_free_guidance(pred_uncond, pred_cond, self.guidance_scale), pred_cond, pred_uncond)

    def after_step(self, prev_sample: torch.Tensor, output: torch.Tensor, pred_original_sample=None) -> torch.Tensor:
        if self._uncond is None:
            return prev_sample
        context = self.context
        _, eps_uncond = context.x0_and_eps(context.split(self._uncond)[0])
        alpha_prev = context.alpha_prod_prev
        # x_{t-1} = sqrt(abar_{t-1}) x0_w + sqrt(1 - abar_{t-1}) eps_u  (Algorithm 1, line 6)
        return alpha_prev**0.5 * pred_original_sample + (1 - alpha_prev) ** 0.5 * eps_uncond
