"""Universal guidance's forward guidance (Bansal et al. 2023, "Universal Guidance for Diffusion Models", sec. 3.1):
an ordinary *clean-image* classifier steers sampling through the model's own clean estimate x0_hat(x_t), its
gradient taken through the network, where ADM's classifier guidance needs a classifier trained on noisy x_t."""

import torch

from ..schedulers import x0_and_eps
from ..schedulers.validation import check_choice, check_range
from .classifier import log_likelihood, score_guided
from .diffusers_api import PREDICTIONS, register_to_config
from .guider import Guider


def clean_classifier_gradient(classifier, denoiser, sample: torch.Tensor, alpha_prod: float, prediction_type: str,
                              labels: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """g = grad_x log p_phi(y | x0_hat(x)) at x = x_t, with x0_hat(x) = (x - sqrt(1 - abar_t) eps_theta(x, t)) /
    sqrt(abar_t) and p_phi a classifier of clean images (read at t = 0): one network forward and backward
    (`denoiser(x)`, the prediction at x) and one classifier forward and backward."""
    with torch.inference_mode(False), torch.enable_grad():  # sampling runs in inference mode: see classifier_gradient
        x = sample.clone().requires_grad_(True)
        x0, _ = x0_and_eps(denoiser(x), x, alpha_prod, prediction_type)
        clean = torch.zeros(len(x), dtype=torch.long, device=x.device)
        (gradient,) = torch.autograd.grad(log_likelihood(classifier(x0, clean), labels), x)
    return gradient


class UniversalClassifierGuidance(Guider):
    """Steers towards the pipeline's `class_labels` with its `clean_classifier` at scale s:

        eps' = eps - s sqrt(1 - abar_t) grad_x log p_phi(y | x0_hat(x_t))

    Bansal et al.'s forward guidance, eps' = eps + s(t) grad l(c, f(x0_hat)), with the loss l = -log p_phi(y | .)
    and s(t) = s sqrt(1 - abar_t), which makes it ADM's score form (Algorithm 2) with the noisy classifier's
    gradient replaced. Any scheduler. Alone it guides the `prediction` it reads x0_hat from: "pred_cond" (the
    class-conditional model) or "pred_uncond" (the unconditional one, as ADM guides its unconditional model); after
    another guider in a `CombinedGuidance` it corrects that guider's output, its gradient still taken through
    `prediction`. Each guided step costs one more network forward *and backward* ("unet_gradient") and one clean
    classifier forward and backward ("clean_classifier"). The guiding classifier must not be the one that
    evaluates the samples (it would grade its own adversarial examples): the shipped ones are separate models."""

    _input_predictions = ["pred_cond", "pred_uncond"]
    needs_clean_classifier = True

    @register_to_config
    def __init__(self, classifier_scale: float = 1.0, prediction: str = "pred_cond", start: float = 0.0,
                 stop: float = 1.0, enabled: bool = True):  # fmt: skip
        check_range("classifier_scale", classifier_scale, low=0)
        check_choice("prediction", prediction, PREDICTIONS)
        super().__init__(start, stop, enabled)
        self.classifier_scale, self.prediction = classifier_scale, prediction

    def needed_predictions(self) -> list[str]:
        return [self.prediction]

    def forward(self, pred_cond=None, pred_uncond=None):
        guided = pred_cond if self.prediction == "pred_cond" else pred_uncond
        return self.output(self.correct(guided), pred_cond, pred_uncond)

    def correct(self, output: torch.Tensor) -> torch.Tensor:
        if not (self.in_window() and self.classifier_scale > 0):
            return output
        context = self.context
        if context.denoiser is None or context.clean_classifier is None:
            raise ValueError("UniversalClassifierGuidance needs a loop that passes the differentiable network and "
                             "the pipeline's `clean_classifier` (the pipelines' `denoise` does).")  # fmt: skip
        denoiser = lambda x: context.split(context.denoiser(x, self.prediction))[0]  # noqa: E731
        gradient = clean_classifier_gradient(context.clean_classifier, denoiser,
                                             context.sample, context.alpha_prod, context.prediction_type,
                                             context.class_labels)  # fmt: skip
        context.counts["unet_gradient"] += 1
        context.counts["clean_classifier"] += 1
        return score_guided(context, output, gradient, self.classifier_scale)
