"""Conversions between what a network predicts and (x0, eps), for the three parameterisations.

With x_t = a x0 + b eps, a = sqrt(abar_t), b = sqrt(1 - abar_t) (Ho 2020, eq. 4):
- "epsilon": the network predicts eps (Ho 2020);
- "sample": it predicts x0;
- "v_prediction": it predicts v = a eps - b x0 (Salimans & Ho 2022, sec. 4), so x0 = a x_t - b v, eps = a v + b x_t.
Every conversion is affine in the network output, which is why guidance rules can combine outputs linearly.
`alpha_prod` is abar_t: a float or scalar tensor for one timestep, or a tensor with one value per sample.
"""

import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _coefficients(alpha_prod, like: torch.Tensor):
    """(sqrt(abar), sqrt(1 - abar)), broadcastable against `like` (one value per sample when abar is a tensor)."""
    if isinstance(alpha_prod, torch.Tensor) and alpha_prod.ndim > 0:
        alpha_prod = alpha_prod.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
    return alpha_prod**0.5, (1 - alpha_prod) ** 0.5


def x0_and_eps(model_output: torch.Tensor, sample: torch.Tensor, alpha_prod, prediction_type: str):
    """The network's (x0, eps) at noise level abar_t for the input `sample` = x_t."""
    a, b = _coefficients(alpha_prod, sample)
    return x0_and_eps_from_scales(model_output, sample, a, b, prediction_type)


def x0_and_eps_from_scales(model_output: torch.Tensor, sample: torch.Tensor, a, b, prediction_type: str):
    """(x0, eps) for x_t = a x0 + b eps with the scales given (a solver may compute them its own way)."""
    if prediction_type == "epsilon":
        return (sample - b * model_output) / a, model_output
    if prediction_type == "sample":
        return model_output, (sample - a * model_output) / b
    if prediction_type == "v_prediction":
        return a * sample - b * model_output, a * model_output + b * sample
    raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}; got {prediction_type!r}.")


def eps_from_x0(sample: torch.Tensor, x0: torch.Tensor, alpha_prod) -> torch.Tensor:
    """eps = (x_t - a x0) / b: the noise implied by x_t and a (possibly clipped) x0."""
    a, b = _coefficients(alpha_prod, sample)
    return (sample - a * x0) / b


def model_output_from(x0: torch.Tensor, eps: torch.Tensor, alpha_prod, prediction_type: str) -> torch.Tensor:
    """The network output that would give (x0, eps); also the training target for clean x0 and noise eps."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        a, b = _coefficients(alpha_prod, x0)
        return a * eps - b * x0
    raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}; got {prediction_type!r}.")


def noisy_sample(x0: torch.Tensor, eps: torch.Tensor, alpha_prod) -> torch.Tensor:
    """The forward marginal q(x_t | x0) = N(a x0, b^2 I), sampled as x_t = a x0 + b eps (Ho 2020, eq. 4)."""
    a, b = _coefficients(alpha_prod, x0)
    return a * x0 + b * eps


def x0_from_sigma_sample(model_output: torch.Tensor, sample: torch.Tensor, sigma, prediction_type: str) -> torch.Tensor:
    """x0 from a network output at the variance-exploding sample x = x0 + sigma eps = x_t / sqrt(abar_t), with
    sigma = sqrt((1 - abar_t) / abar_t) (Karras 2022), computed as diffusers' Euler and Heun schedulers compute it:
    - "epsilon": x0 = x - sigma eps;
    - "v_prediction": x0 = a x_t - b v with x_t = x / sqrt(sigma^2 + 1), a = 1 / sqrt(sigma^2 + 1), b = sigma a;
    - "sample": the output itself."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}; got {prediction_type!r}.")
