"""Guidance rules, each the paper's equation on model outputs, applied by the sampling loop to any scheduler."""

import torch

from ..schedulers import model_output_from, x0_and_eps


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Ho & Salimans 2022, eq. 6 (GLIDE's form): eps = eps_uncond + w (eps_cond - eps_uncond).

    w = 0 is the unconditional model, w = 1 the conditional one, w > 1 extrapolates away from the unconditional.
    Every prediction type is affine in the network output, so the rule applies to eps, x0 and v outputs alike.
    """
    return uncond + guidance_scale * (cond - uncond)


def classifier_gradient(classifier, sample: torch.Tensor, timestep, labels: torch.Tensor) -> torch.Tensor:
    """g = grad_x log p_phi(y | x_t, t), one classifier forward and backward (Dhariwal & Nichol 2021, sec. 4.1).
    `classifier(x, t)` returns logits, or an output with `.logits`."""
    # sampling runs under inference_mode (measured fastest); autograd may save any input for backward, and only
    # ordinary tensors, copies made outside that mode, can be saved
    with torch.inference_mode(False), torch.enable_grad():
        x = sample.clone().requires_grad_(True)
        timestep = timestep.clone() if torch.is_tensor(timestep) else timestep
        output = classifier(x, timestep)
        logits = output.logits if hasattr(output, "logits") else output
        log_prob = torch.log_softmax(logits.float(), dim=-1).gather(1, labels.clone()[:, None]).sum()
        (gradient,) = torch.autograd.grad(log_prob, x)
    return gradient


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
