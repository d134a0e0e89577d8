"""Classifier-free guidance (Ho & Salimans 2022), as a guider that also reads diffusers' CFG config."""

import math

import torch

from ..schedulers.validation import check_range
from .diffusers_api import register_to_config
from .guider import Guider


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Ho & Salimans 2022, eq. 6 (GLIDE's form): eps = eps_uncond + w (eps_cond - eps_uncond).

    w = 0 is the unconditional model, w = 1 the conditional one, w > 1 extrapolates away from the unconditional.
    Every prediction type is affine in the network output, so the rule applies to eps, x0 and v outputs alike.
    """
    return uncond + guidance_scale * (cond - uncond)


def rescaled(guided: torch.Tensor, cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Lin et al. 2023, eq. 15-16: scale the guided output to the conditional one's standard deviation per image,
    then mix, phi x rescaled + (1 - phi) x guided. Applied to the network output, as diffusers applies it."""
    dims = list(range(1, cond.ndim))
    matched = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return guidance_rescale * matched + (1 - guidance_rescale) * guided


class ClassifierFreeGuidance(Guider):
    """out = uncond + w (cond - uncond); with `use_original_formulation` the paper's cond + w (cond - uncond).
    Its config is diffusers' `ClassifierFreeGuidance` config, so either class loads the other's
    `guider_config.json`. Unlike diffusers', it computes only the half it needs: the unconditional one at w = 0,
    the conditional one at w = 1 (or outside [start, stop), or when disabled)."""

    @register_to_config
    def __init__(self, guidance_scale: float = 7.5, guidance_rescale: float = 0.0, use_original_formulation: bool = False,
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_range("guidance_scale", guidance_scale, low=0)
        check_range("guidance_rescale", guidance_rescale, low=0, high=1)
        super().__init__(start, stop, enabled)
        self.guidance_scale, self.guidance_rescale = guidance_scale, guidance_rescale
        self.use_original_formulation = use_original_formulation

    def needed_predictions(self) -> list[str]:
        if not self.in_window():
            return ["pred_cond"]
        no_uncond = 0.0 if self.use_original_formulation else 1.0  # the scale at which uncond drops out
        if math.isclose(self.guidance_scale, no_uncond):
            return ["pred_cond"]
        if not self.use_original_formulation and self.guidance_scale == 0 and self.guidance_rescale == 0:
            return ["pred_uncond"]  # w = 0 is the unconditional model alone
        return ["pred_cond", "pred_uncond"]

    def forward(self, pred_cond=None, pred_uncond=None):
        if pred_uncond is None:
            return self.output(pred_cond, pred_cond)
        if pred_cond is None:
            return self.output(pred_uncond, None, pred_uncond)
        (cond, variance), (uncond, _) = self.split_output(pred_cond), self.split_output(pred_uncond)
        if self.use_original_formulation:  # cond + w (cond - uncond)
            guided = cond + self.guidance_scale * (cond - uncond)
        else:
            guided = classifier_free_guidance(uncond, cond, self.guidance_scale)
        if self.guidance_rescale > 0:
            guided = rescaled(guided, cond, self.guidance_rescale)
        return self.output(self.joined(guided, variance), pred_cond, pred_uncond)
