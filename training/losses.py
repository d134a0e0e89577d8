"""Diffusion training losses: the simple loss in any parameterisation, min-SNR weighting, and the improved-DDPM
variational-bound term for learned variances."""

import math

import torch

from ..schedulers import model_output_from, x0_and_eps
from .data import to_model_range


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def min_snr_weight(alpha_prod: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma (Hang et al. 2023): weight the x0-space error by min(SNR, gamma), SNR = abar / (1 - abar).
    As a weight on the MSE of the network's own target that is min(SNR, gamma) / SNR for eps,
    min(SNR, gamma) / (SNR + 1) for v, and min(SNR, gamma) for x0."""
    snr = alpha_prod / (1 - alpha_prod)
    clipped = snr.clamp(max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x, mean, log_scale):
    """log-probability of 8-bit data x in [-1, 1] under a Gaussian discretised into 256 bins (Ho 2020, sec. 3.3),
    with the standard-normal CDF approximated as in the DDPM code."""

    def cdf(v):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))

    centred, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus, cdf_minus = cdf(inv_std * (centred + 1 / 255)), cdf(inv_std * (centred - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1 - cdf_minus).clamp(min=1e-12))
    log_mid = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_mid))


def variational_bound_terms(x0_pred, x0, x_t, timesteps, interpolation, alphas_cumprod):
    """L_t of the variational bound in bits per dimension, one per sample (improved DDPM, sec. 3.1): the KL from
    the posterior q(x_{t-1} | x_t, x0) to the model p(x_{t-1} | x_t) for t > 0, the decoder NLL at t = 0.
    The model mean comes from a detached x0 prediction, so this term trains only the variance (L_hybrid)."""
    abar_t = alphas_cumprod[timesteps]
    abar_prev = torch.where(timesteps > 0, alphas_cumprod[(timesteps - 1).clamp(min=0)], torch.ones_like(abar_t))
    beta_t = 1 - abar_t / abar_prev
    shape = (-1,) + (1,) * (x0.ndim - 1)
    abar_t, abar_prev, beta_t = (v.reshape(shape) for v in (abar_t, abar_prev, beta_t))
    # posterior (Ho 2020, eq. 7); its log variance clipped at t = 0, where it is 0, to the value at t = 1
    x0_coeff, xt_coeff = abar_prev.sqrt() * beta_t / (1 - abar_t), (1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t)
    posterior_variance = (1 - abar_prev) / (1 - abar_t) * beta_t
    first = (1 - alphas_cumprod[0]) / (1 - alphas_cumprod[1]) * (1 - alphas_cumprod[1] / alphas_cumprod[0])
    posterior_log_variance = torch.log(torch.where(posterior_variance > 0, posterior_variance, first))
    true_mean = x0_coeff * x0 + xt_coeff * x_t
    model_mean = x0_coeff * x0_pred.detach() + xt_coeff * x_t
    # improved DDPM, eq. 15: log Sigma = v log beta_t + (1 - v) log beta_tilde_t, v = (output + 1) / 2
    fraction = (interpolation + 1) / 2
    model_log_variance = fraction * torch.log(beta_t) + (1 - fraction) * posterior_log_variance
    kl = _per_sample_mean(normal_kl(true_mean, posterior_log_variance, model_mean, model_log_variance))
    nll = -_per_sample_mean(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance))
    return torch.where(timesteps == 0, nll, kl) / math.log(2.0)


def diffusion_loss(model_output, x0, noise, x_t, timesteps, noise_scheduler, snr_gamma=None, vlb_weight=0.001):
    """The simple loss ||f(x_t, t) - target||^2 with the target of the scheduler's prediction type (eps, x0 or v),
    optionally min-SNR weighted; with 2C output channels, plus vlb_weight * L_vlb (L_hybrid of improved DDPM)."""
    config = noise_scheduler.config
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(x0.device)
    alpha_prod = alphas_cumprod[timesteps]
    prediction, interpolation = model_output.float(), None
    if model_output.shape[1] == 2 * x0.shape[1]:
        prediction, interpolation = prediction.chunk(2, dim=1)
    target = model_output_from(x0, noise, alpha_prod, config.prediction_type)
    loss = _per_sample_mean((prediction - target) ** 2)
    if snr_gamma is not None:
        loss = loss * min_snr_weight(alpha_prod, snr_gamma, config.prediction_type)
    if interpolation is not None:
        x0_pred, _ = x0_and_eps(prediction, x_t, alpha_prod, config.prediction_type)
        # scaled by T / 1000 as in the improved-DDPM code, so that lambda means the same for any T
        vlb = variational_bound_terms(x0_pred, x0, x_t, timesteps, interpolation, alphas_cumprod)
        loss = loss + vlb_weight * vlb * (config.num_train_timesteps / 1000)
    return loss.mean()


def training_draw(data, indices, noise_scheduler, generator, random_flip: bool, latents=None):
    """One micro-batch's (x0, eps, t) for the forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho 2020,
    eq. 4), t ~ U{0, ..., T-1}: x0 the images in [-1, 1] (optionally flipped), or with `latents` (a LatentCache)
    their scaled latents drawn from the VAE's posterior. Drawn in this order from `generator`, so a resumed run
    repeats it."""
    if latents is None:
        x0 = to_model_range(data.images[indices], random_flip, generator)
    else:
        x0 = latents.sample(indices, generator)
    noise = torch.randn(x0.shape, generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
    return x0, noise, timesteps


def dropped_labels(data, indices, null_class: int, dropout: float, generator) -> torch.Tensor:
    """The micro-batch's class labels, each replaced by the null class with probability `dropout` (label dropout,
    which teaches the unconditional prediction that classifier-free guidance needs; Ho & Salimans 2022)."""
    drop = torch.rand(len(indices), generator=generator) < dropout
    return torch.where(drop, null_class, data.labels[indices])


def make_loss(noise_scheduler, data, args, device, latents=None):
    """compute_loss(model, indices, generator) for one micro-batch: x_t = q_sample(x0, t), labels dropped to the
    null class with probability --label_dropout, then the diffusion loss. With `latents` (a LatentCache), x0 is the
    scaled latent of the images, drawn from the VAE's posterior."""
    null_class = len(data.class_names) if args.class_conditional else None

    def compute_loss(model, indices, generator):
        x0, noise, timesteps = training_draw(data, indices, noise_scheduler, generator, args.random_flip, latents)
        labels = None if null_class is None else dropped_labels(data, indices, null_class, args.label_dropout, generator)
        labels = None if labels is None else labels.to(device)
        x0, noise, timesteps = x0.to(device), noise.to(device), timesteps.to(device)
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)
        output = model(x_t, timesteps, class_labels=labels).sample
        return diffusion_loss(output, x0, noise, x_t, timesteps, noise_scheduler, args.snr_gamma, args.vlb_weight)

    return compute_loss
