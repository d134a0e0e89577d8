"""Classifier guidance (Dhariwal & Nichol 2021, "ADM"): a noise-aware classifier's gradient steers the sampler, in
either of the paper's two forms."""

import torch

from ..schedulers import model_output_from, x0_and_eps
from ..schedulers.validation import check_choice, check_range
from .diffusers_api import PREDICTIONS, register_to_config
from .guider import Guider

FORMS = ("auto", "mean", "score")


def classifier_gradient(classifier, sample: torch.Tensor, timestep, labels: torch.Tensor) -> torch.Tensor:
    """g = grad_x log p_phi(y | x_t, t), one classifier forward and backward (Dhariwal & Nichol 2021, sec. 4.1).
    `classifier(x, t)` returns logits, or an output with `.logits`."""
    # sampling runs under inference_mode (measured fastest); autograd may save any input for backward, and only
    # ordinary tensors, copies made outside that mode, can be saved
    with torch.inference_mode(False), torch.enable_grad():
        x = sample.clone().requires_grad_(True)
        timestep = timestep.clone() if torch.is_tensor(timestep) else timestep
        (gradient,) = torch.autograd.grad(log_likelihood(classifier(x, timestep), labels), x)
    return gradient


def log_likelihood(output, labels: torch.Tensor) -> torch.Tensor:
    """sum_i log p(y_i | x_i) from a classifier's logits (or an output with `.logits`)."""
    logits = output.logits if hasattr(output, "logits") else output
    return torch.log_softmax(logits.float(), dim=-1).gather(1, labels.clone()[:, None]).sum()


def guide_mean(prev_sample: torch.Tensor, variance, gradient: torch.Tensor, scale: float) -> torch.Tensor:
    """ADM Algorithm 1 (DDPM): x_{t-1} ~ N(mu + s Sigma g, Sigma). Adding s Sigma g to a sample already drawn
    from N(mu, Sigma) gives exactly that distribution."""
    return prev_sample + scale * variance * gradient


def guide_score(model_output, sample, alpha_prod, gradient, scale: float, prediction_type: str) -> torch.Tensor:
    """ADM Algorithm 2 (DDIM and any eps-based sampler): eps' = eps - s sqrt(1 - abar_t) g, i.e. the score
    grad log p(x_t) = -eps / sqrt(1 - abar_t) plus s grad log p(y | x_t). Returned in the model's own
    parameterisation, with x0 re-derived from x_t and eps', so any scheduler can step with it."""
    _, eps = x0_and_eps(model_output, sample, alpha_prod, prediction_type)
    guided_eps = eps - scale * (1 - alpha_prod) ** 0.5 * gradient
    guided_x0 = (sample - (1 - alpha_prod) ** 0.5 * guided_eps) / alpha_prod**0.5
    return model_output_from(guided_x0, guided_eps, alpha_prod, prediction_type)


def score_guided(context, output: torch.Tensor, gradient: torch.Tensor, scale: float) -> torch.Tensor:
    """`guide_score` on a network output at the step of `context`, its learned variance (if any) kept."""
    prediction, variance = context.split(output)
    guided = guide_score(prediction, context.sample, context.alpha_prod, gradient, scale, context.prediction_type)
    return guided if variance is None else torch.cat([guided, variance], dim=1)


def has_mean_shift(scheduler) -> bool:
    """Our DDPM exposes its reverse-step standard deviation `noise_std(t, predicted_variance)`, Sigma_t^(1/2)."""
    return hasattr(scheduler, "noise_std")


class GradientGuidance(Guider):
    """ADM's two ways of adding s grad_x log p(c | x_t) to a sampler, for any differentiable log-likelihood: a
    subclass records its scale (`scale`) and says what the gradient is (`gradient()`, counting its evaluations).

    `form`: "mean" shifts the DDPM posterior mean by s Sigma g after the step (Algorithm 1; needs our DDPM
    scheduler, which knows Sigma); "score" corrects eps before the step (Algorithm 2; any scheduler); "auto" picks
    "mean" for our DDPM and "score" otherwise. Alone it guides `prediction`: "pred_cond" or "pred_uncond"; after
    another guider in a `CombinedGuidance` it corrects that guider's output (ADM's CFG + classifier)."""

    _input_predictions = ["pred_cond", "pred_uncond"]

    def _set_form(self, scale: float, form: str, prediction: str, scale_name: str) -> None:
        check_range(scale_name, scale, low=0)
        check_choice("form", form, FORMS)
        check_choice("prediction", prediction, PREDICTIONS)
        self.scale, self.form, self.prediction = scale, form, prediction
        self._gradient = None  # computed before the step, used after it by the mean form

    def gradient(self, context) -> torch.Tensor:
        raise NotImplementedError

    def needed_predictions(self) -> list[str]:
        return [self.prediction]

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        if self.form == "mean" and not has_mean_shift(scheduler):
            raise ValueError(f"{type(self).__name__}(form='mean') needs a scheduler that knows its step variance "
                             f"(our GuidedDDPMScheduler); {type(scheduler).__name__} does not. Use form='score'.")  # fmt: skip

    def active(self) -> bool:
        return self.in_window() and self.scale > 0

    def forward(self, pred_cond=None, pred_uncond=None):
        guided = pred_cond if self.prediction == "pred_cond" else pred_uncond
        return self.output(self.correct(guided), pred_cond, pred_uncond)

    def correct(self, output: torch.Tensor) -> torch.Tensor:
        self._gradient = None
        if not self.active():
            return output
        context = self.context
        gradient = self.gradient(context)
        if self.form == "mean" or self.form == "auto" and has_mean_shift(context.scheduler):
            self._gradient = gradient
            return output
        return score_guided(context, output, gradient, self.scale)

    def after_step(self, prev_sample: torch.Tensor, output: torch.Tensor, pred_original_sample=None) -> torch.Tensor:
        if self._gradient is None:
            return prev_sample
        _, predicted_variance = self.context.split(output)
        variance = self.context.scheduler.noise_std(self.context.timestep, predicted_variance) ** 2
        return guide_mean(prev_sample, variance, self._gradient, self.scale)


class ClassifierGuidance(GradientGuidance):
    """Steers towards the pipeline's `class_labels` with its noise-aware `classifier` at scale s
    (`classifier_scale`): g = grad_x log p_phi(y | x_t, t), in either of ADM's forms (GradientGuidance). Alone on
    "pred_uncond" it is ADM's setting, the same as `from_scales(0, s)`; each guided step costs one classifier
    forward and backward ("classifier")."""

    needs_classifier = True

    @register_to_config
    def __init__(self, classifier_scale: float = 1.0, form: str = "auto", prediction: str = "pred_cond",
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        self._set_form(classifier_scale, form, prediction, "classifier_scale")
        super().__init__(start, stop, enabled)
        self.classifier_scale = classifier_scale

    def check(self, scheduler, has_classifier: bool, eta: float = 0.0) -> None:
        if not has_classifier:
            raise ValueError("`classifier_scale` > 0 needs a `classifier` (classifier guidance, ClassifierGuidance); "
                             "this pipeline has none.")  # fmt: skip
        super().check(scheduler, has_classifier, eta)

    def gradient(self, context) -> torch.Tensor:
        context.counts["classifier"] += 1
        return classifier_gradient(context.classifier, context.sample, context.timestep, context.class_labels)
