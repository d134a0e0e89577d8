"""CLIP guidance (Nichol et al. 2022, GLIDE, sec. 2.4): a noise-aware image-text model steers sampling towards a
prompt like a classifier towards a class, with an open vocabulary,

    log p(c | x_t) ~ f(x_t, t) . g(c) / tau,   g = grad_x [exp(t) f(x_t, t) . g(c)]

(f, g the unit image and text embeddings, exp(t) = 1 / tau the model's learnt inverse temperature; GLIDE's
`cond_fn`), added to the score in either of ADM's forms."""

import torch

from .classifier import GradientGuidance
from .diffusers_api import register_to_config


def clip_gradient(clip_model, sample: torch.Tensor, timestep, text_embeds: torch.Tensor) -> torch.Tensor:
    """g = grad_x sum_i exp(t) f(x_i, t) . g(c_i): one image-tower forward and backward (`text_embeds` (B, E), the
    prompts' unit text embeddings, computed once per sampling call)."""
    # sampling runs in inference mode: as for classifier_gradient, inputs are copied outside it
    with torch.inference_mode(False), torch.enable_grad():
        x = sample.clone().requires_grad_(True)
        timestep = timestep.clone() if torch.is_tensor(timestep) else timestep
        similarity = clip_model.log_similarity(x, timestep, text_embeds.clone()).sum()
        (gradient,) = torch.autograd.grad(similarity, x)
    return gradient


class CLIPGuidance(GradientGuidance):
    """Steers towards the call's prompt with the pipeline's noise-aware `clip_model` at scale s (`clip_scale`), in
    either of ADM's forms (`form`, as ClassifierGuidance). Alone it guides `prediction`: "pred_cond" (a text model's
    conditional branch; a class model called without `class_labels`, whose prediction is then its null class's: an
    open-vocabulary prompt steering the unconditional model) or "pred_uncond" (a text model's empty caption); after ClassifierFreeGuidance in a CombinedGuidance it
    corrects CFG's output (CFG + CLIP guidance). Each guided step costs one image-tower forward and backward
    ("clip"). The guiding model must never be the one that scores the samples (CLIP score uses a clean model of
    other weights)."""

    needs_clip = True

    @register_to_config
    def __init__(self, clip_scale: float = 1.0, form: str = "auto", prediction: str = "pred_cond",
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True):  # fmt: skip
        self._set_form(clip_scale, form, prediction, "clip_scale")
        super().__init__(start, stop, enabled)
        self.clip_scale = clip_scale

    def gradient(self, context) -> torch.Tensor:
        if context.clip_model is None or context.clip_text_embeds is None:
            raise ValueError("CLIPGuidance needs a loop that passes the pipeline's `clip_model` and the prompts' "
                             "text embeddings (the pipelines' `denoise` does).")  # fmt: skip
        context.counts["clip"] += 1
        return clip_gradient(context.clip_model, context.sample, context.timestep, context.clip_text_embeds)
