"""CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained classifier free guidance for diffusion models")."""

import torch

from ..schedulers.thresholding import clip_or_threshold
from ..schedulers.validation import check_range
from .classifier_free import classifier_free_guidance
from .diffusers_api import register_to_config
from .guider import Guider

DDIM_SCHEDULERS = ("GuidedDDIMScheduler", "DDIMScheduler")
MULTISTEP_SCHEDULERS = ("GuidedDPMSolverMultistepScheduler",)


def equivalent_cfg_scale(guidance_scale: float, alpha_prod: float, alpha_prod_prev: float) -> float:
    """The CFG scale w whose plain DDIM step (eta = 0, no clipping) from x_t lands where CFG++'s step at lambda =
    `guidance_scale` does. Both steps are x_{t-1} = a x_t + b eps_u + c (eps_c - eps_u) with the same a and b; matching
    c (CFG: w sqrt(abar_{t-1}) (sigma_{t-1} - sigma_t); CFG++: -lambda sqrt(abar_{t-1}) sigma_t) gives

        w = lambda sigma_t / (sigma_t - sigma_{t-1}),   sigma = sqrt((1 - abar) / abar)

    w = lambda / (1 - sigma_{t-1} / sigma_t): a fixed lambda guides harder where a step shrinks sigma by a smaller
    factor (more steps; on uniform timesteps the high-noise steps), and is lambda itself on a last step that lands on
    sigma = 0."""
    sigma, sigma_prev = ((1 - alpha_prod) / alpha_prod) ** 0.5, ((1 - alpha_prod_prev) / alpha_prod_prev) ** 0.5
    return guidance_scale * sigma / (sigma - sigma_prev)


class CFGPlusPlus(Guider):
    """Guidance inside the manifold: the guided noise eps_w = eps_u + lambda (eps_c - eps_u), lambda in [0, 1], gives
    the clean estimate, but the re-noising uses the *unconditional* noise (Algorithm 1, DDIM):

        x0_w = (x_t - sqrt(1 - abar_t) eps_w) / sqrt(abar_t),   x_{t-1} = sqrt(abar_{t-1}) x0_w + sqrt(1 - abar_{t-1}) eps_u

    That is the sampler's step taken from x~_t = alpha_t x0_w + sigma_t eps_u instead of x_t, which is how it extends
    to DPM-Solver++(2M): its step from x~_t with data prediction x0_w, and the second-order correction against the
    previous step's *unconditional* x0 (the authors' `dpm++_2m_cfg++` and ComfyUI's `sample_dpmpp_2m_cfg_pp`):

        x_t = (sigma_t / sigma_s) x~_s - alpha_t (e^{-h} - 1) (x0_w + (x0_w - x0_u,prev) / (2 r))

    The scheduler's step computes x0_w (clipped or thresholded as configured); `after_step` replaces its update.
    lambda = 0 is the unconditional model; the paper's lambda ~ 0.2-1.0 corresponds to CFG's w ~ 2-12 (its sec. 4).
    In DDIM each CFG++ step is exactly a plain CFG step at a scale of its own, which falls along the trajectory and
    grows with the step count (`equivalent_cfg_scale`).
    DDIM with eta = 0 (the paper's update) or our DPM-Solver++; outside [start, stop) the conditional model with the
    plain sampler step. Inversion (`after_inversion_step`) runs Algorithm 1 backwards, as the authors' code does."""

    changes_step = True
    inverts_step = True

    @register_to_config
    def __init__(self, guidance_scale: float = 0.6, start: float = 0.0, stop: float = 1.0, enabled: bool = True):
        check_range("guidance_scale", guidance_scale, low=0, high=1)
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self._uncond = None  # this step's unconditional prediction, for the re-noising
        self._history = None  # (timestep, x0) the next multistep correction reads: x0_u after a CFG++ step

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        name = type(scheduler).__name__
        if not (name in DDIM_SCHEDULERS and eta == 0 or name in MULTISTEP_SCHEDULERS):
            raise ValueError(f"CFGPlusPlus is CFG++'s DDIM update (eta = 0) or its DPM-Solver++(2M) update: use "
                             f"GuidedDDIMScheduler or diffusers' DDIMScheduler with eta=0, or "
                             f"GuidedDPMSolverMultistepScheduler; got {name} with eta={eta}.")  # fmt: skip

    def needed_predictions(self) -> list[str]:
        if not self.in_window():
            return ["pred_cond"]
        return ["pred_uncond"] if self.guidance_scale == 0 else ["pred_cond", "pred_uncond"]

    def forward(self, pred_cond=None, pred_uncond=None):
        if self.context is not None and self.context.step == 0:
            self._history = None  # a new sampling call
        self._uncond = pred_uncond if pred_cond is not None else None  # with one prediction there is nothing to swap
        if pred_uncond is None or pred_cond is None:
            only = pred_cond if pred_cond is not None else pred_uncond
            return self.output(only, pred_cond, pred_uncond)
        # eps_w = eps_u + lambda (eps_c - eps_u): CFG's own combination, at lambda
        (cond, variance), (uncond, _) = self.split_output(pred_cond), self.split_output(pred_uncond)
        return self.output(self.joined(classifier_free_guidance(uncond, cond, self.guidance_scale), variance), pred_cond,
                           pred_uncond)  # fmt: skip

    def after_step(self, prev_sample: torch.Tensor, output: torch.Tensor, pred_original_sample=None) -> torch.Tensor:
        context = self.context
        scheduler = context.scheduler
        multistep = type(scheduler).__name__ in MULTISTEP_SCHEDULERS
        if self._uncond is None:
            if multistep:
                self._history = (int(context.timestep), pred_original_sample)
            return prev_sample
        x0_uncond, eps_uncond = context.x0_and_eps(context.split(self._uncond)[0])
        if not multistep:
            alpha_prev = context.alpha_prod_prev
            # x_{t-1} = sqrt(abar_{t-1}) x0_w + sqrt(1 - abar_{t-1}) eps_u  (Algorithm 1, line 6)
            return alpha_prev**0.5 * pred_original_sample + (1 - alpha_prev) ** 0.5 * eps_uncond
        s = int(context.timestep)
        # x~_s = alpha_s x0_w + sigma_s eps_u: the point the unconditional model maps to x0_w
        on_manifold = context.alpha_prod**0.5 * pred_original_sample + context.noise_std * eps_uncond
        previous = self._history if self._history and scheduler.previous_timestep(self._history[0]) == s else None
        self._history = (s, clip_or_threshold(x0_uncond, scheduler.config))
        return scheduler.update(on_manifold, pred_original_sample, s, previous)

    def after_inversion_step(self, next_sample: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if self._uncond is None:
            return next_sample
        context = self.context
        _, eps_guided = context.x0_and_eps(context.split(output)[0])
        _, eps_uncond = context.x0_and_eps(context.split(self._uncond)[0])
        alpha, alpha_prev = context.alpha_prod, context.alpha_prod_prev
        # Algorithm 1 backwards (the authors' inversion): x0_u = (x_{t-1} - sqrt(1 - abar_{t-1}) eps_u) / sqrt(abar_{t-1}),
        # x_t = sqrt(abar_t) x0_u + sqrt(1 - abar_t) eps_w; DDIM inversion used eps_w in both, so add the difference
        return next_sample + (alpha / alpha_prev) ** 0.5 * (1 - alpha_prev) ** 0.5 * (eps_guided - eps_uncond)
