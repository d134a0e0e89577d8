"""Adaptive projected guidance, APG (Sadat et al. 2024, "Eliminating oversaturation and artifacts of high guidance
scales in diffusion models"), in the space of the network's output or, as the authors recommend, of x0."""

import torch

from ..schedulers.validation import check_choice, check_range
from .diffusers_api import register_to_config
from .guider import Guider

SPACES = ("x0", "output")


def projected_update(difference, cond, eta: float, norm_threshold: float, running=None):
    """APG's update from D_c - D_u (Algorithm 1): with momentum, the running average Delta <- diff + beta Delta
    (`running` holds it); its norm capped at r, Delta <- Delta min(1, r / ||Delta||); then split into the parts
    parallel and orthogonal to D_c, the parallel one weighted by eta. Norms per image, in float64 as the authors
    compute the projection."""
    dims = list(range(1, difference.ndim))
    if running is not None:
        difference = running.update(difference)
    if norm_threshold > 0:
        norm = difference.norm(p=2, dim=dims, keepdim=True)
        difference = difference * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
    unit = torch.nn.functional.normalize(cond.double(), dim=dims)
    parallel = (difference.double() * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = difference.double() - parallel
    return (orthogonal + eta * parallel).to(difference.dtype)


class RunningAverage:
    """Negative momentum over steps: Delta_t = diff_t + beta Delta_{t-1} (beta < 0 pushes against past updates)."""

    def __init__(self, momentum: float):
        self.momentum, self.average = momentum, 0

    def update(self, value):
        self.average = value + self.momentum * self.average
        return self.average


class AdaptiveProjectedGuidance(Guider):
    """D = D_c + (w - 1) update(D_c - D_u) (Algorithm 1), `space="x0"` applying it to the clean estimates
    x0(D_c), x0(D_u) and handing the sampler the output whose x0 is the guided one (the paper's choice for eps- and
    v-prediction models), `space="output"` to the network's outputs as they are. eta = 1, no threshold and no
    momentum is CFG at w. In "output" space it equals diffusers' `AdaptiveProjectedGuidance(guidance_scale=w - 1,
    use_original_formulation=True)`; diffusers' default formulation, D_u + w update, is not the paper's."""

    @register_to_config
    def __init__(self, guidance_scale: float = 5.0, eta: float = 0.0, norm_threshold: float = 15.0,
                 momentum: float = 0.0, space: str = "x0", start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_range("guidance_scale", guidance_scale, low=1)
        check_range("eta", eta, low=0, high=1)
        check_range("norm_threshold", norm_threshold, low=0)
        check_range("momentum", momentum, low=-1, high=0)
        check_choice("space", space, SPACES)
        super().__init__(start, stop, enabled)
        self.guidance_scale, self.eta, self.norm_threshold = guidance_scale, eta, norm_threshold
        self.momentum, self.space = momentum, space
        self._running = RunningAverage(momentum) if momentum else None  # a fresh one per call: guiders are copied

    def needed_predictions(self) -> list[str]:
        return ["pred_cond", "pred_uncond"] if self.in_window() and self.guidance_scale != 1 else ["pred_cond"]

    def forward(self, pred_cond=None, pred_uncond=None):
        if pred_uncond is None:
            return self.output(pred_cond, pred_cond)
        if self.space == "output":
            update = projected_update(pred_cond - pred_uncond, pred_cond, self.eta, self.norm_threshold, self._running)
            return self.output(pred_cond + (self.guidance_scale - 1) * update, pred_cond, pred_uncond)
        context = self.context
        (cond, variance), (uncond, _) = context.split(pred_cond), context.split(pred_uncond)
        x0_cond, _ = context.x0_and_eps(cond)
        x0_uncond, _ = context.x0_and_eps(uncond)
        update = projected_update(x0_cond - x0_uncond, x0_cond, self.eta, self.norm_threshold, self._running)
        guided = context.prediction_for_x0(x0_cond + (self.guidance_scale - 1) * update)
        return self.output(self.joined(guided, variance), pred_cond, pred_uncond)
