"""Classifier-free guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024, "Applying guidance in
a limited interval improves sample and distribution quality in diffusion models")."""

from .classifier_free import ClassifierFreeGuidance
from .diffusers_api import register_to_config
from .guider import check_sigma_interval


class GuidanceIntervalCFG(ClassifierFreeGuidance):
    """CFG at scale w only while sigma_lo < sigma <= sigma_hi (sec. 3: guidance is harmful at high noise, where it
    pulls samples towards the class mode and costs variety, and unnecessary at low noise); the conditional model
    elsewhere, where the unconditional half is not computed. sigma = sqrt((1 - abar_t) / abar_t), the same number
    for every sampler and step count, unlike diffusers' step-fraction `start` / `stop`. The defaults are the paper's
    for EDM2-S on ImageNet-512 (Table 1: (0.28, 5.42]); tune them per model."""

    @register_to_config
    def __init__(self, guidance_scale: float = 2.0, sigma_lo: float = 0.28, sigma_hi: float = 5.42,
                 guidance_rescale: float = 0.0, use_original_formulation: bool = False, start: float = 0.0,
                 stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_sigma_interval(sigma_lo, sigma_hi)
        # by keyword: diffusers' config decorator counts positional arguments as defaults
        super().__init__(guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
                         use_original_formulation=use_original_formulation, start=start, stop=stop, enabled=enabled)
        self.sigma_lo, self.sigma_hi = sigma_lo, sigma_hi

    def needed_predictions(self) -> list[str]:
        outside = self.outside_sigma_interval(self.sigma_lo, self.sigma_hi)
        return ["pred_cond"] if outside else super().needed_predictions()
