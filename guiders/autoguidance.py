"""Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself"): guide the
conditional model away from a weaker model of the same data and conditioning, instead of away from the
unconditional model."""

import math

import torch

from ..schedulers.validation import check_range
from .diffusers_api import register_to_config
from .guider import Guider, check_sigma_interval


def autoguidance(weak: torch.Tensor, good: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Karras 2024, eq. 2: D_w(x; c) = D_0(x; c) + w (D_1(x; c) - D_0(x; c)), D_1 the good model, D_0 the weak one,
    both conditional. Affine in the network output, so it applies to eps, x0 and v outputs alike."""
    return weak + guidance_scale * (good - weak)


class WeakModelGuidance(Guider):
    """Autoguidance with a genuinely weaker network: the pipeline's `weak_unet`, a smaller and/or shorter-trained
    conditional UNet of the same data (sec. 3: the two models' errors point the same way, and guiding away from the
    weak one removes the good one's, without CFG's pull towards the class mode). It needs the conditional
    prediction of both models ("pred_cond", "pred_weak"); the unconditional one is never computed. w = 1 is the good
    model alone (no weak pass). `sigma_lo` / `sigma_hi` limit the guidance to noise levels in (sigma_lo, sigma_hi]
    (the good model alone elsewhere, no weak pass), as the guidance interval does for CFG: on the shipped MNIST
    model, w = 3 at every level leaves grey grain in the background, which stopping below sigma = 0.6 removes
    (docs/guiders.md). diffusers' `AutoGuidance` instead approximates the weak model by dropping layers of the good
    one, and compares against the unconditional inputs."""

    _input_predictions = ["pred_cond", "pred_weak"]

    @register_to_config
    def __init__(self, guidance_scale: float = 2.0, sigma_lo: float = 0.0, sigma_hi: float | None = None,
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_range("guidance_scale", guidance_scale, low=0)
        sigma_hi = math.inf if sigma_hi is None else sigma_hi  # None in the config: no upper bound
        check_sigma_interval(sigma_lo, sigma_hi)
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.sigma_lo, self.sigma_hi = sigma_lo, sigma_hi

    def needed_predictions(self) -> list[str]:
        idle = not self.in_window() or self.outside_sigma_interval(self.sigma_lo, self.sigma_hi)
        if idle or math.isclose(self.guidance_scale, 1.0):
            return ["pred_cond"]
        return ["pred_cond", "pred_weak"]

    def forward(self, pred_cond=None, pred_uncond=None, pred_weak=None):
        if pred_weak is None:
            return self.output(pred_cond, pred_cond)
        (cond, variance), (weak, _) = self.split_output(pred_cond), self.split_output(pred_weak)
        return self.output(self.joined(autoguidance(weak, cond, self.guidance_scale), variance), pred_cond)
