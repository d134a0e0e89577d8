"""Training losses against closed forms."""

import math

import pytest
import torch

from guided_diffusers.schedulers import GuidedDDPMScheduler, model_output_from
from guided_diffusers.training.losses import (
    diffusion_loss,
    discretized_gaussian_log_likelihood,
    min_snr_weight,
    normal_kl,
    variational_bound_terms,
)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_perfect_prediction_has_zero_loss_and_an_error_has_its_squared_size(prediction_type):
    scheduler = GuidedDDPMScheduler(prediction_type=prediction_type)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 1, 8, 8, generator=generator), torch.randn(4, 1, 8, 8, generator=generator)
    timesteps = torch.tensor([0, 10, 500, 999])
    x_t = scheduler.add_noise(x0, noise, timesteps)
    target = model_output_from(x0, noise, scheduler.alphas_cumprod[timesteps], prediction_type)
    assert diffusion_loss(target, x0, noise, x_t, timesteps, scheduler).item() == pytest.approx(0, abs=1e-10)
    assert diffusion_loss(target + 0.5, x0, noise, x_t, timesteps, scheduler).item() == pytest.approx(0.25)


def test_min_snr_weights_follow_hang_2023():
    alpha_prod = torch.tensor([0.99, 0.5, 0.01])  # SNR 99, 1, ~0.0101
    snr = alpha_prod / (1 - alpha_prod)
    torch.testing.assert_close(min_snr_weight(alpha_prod, 5.0, "epsilon"), torch.tensor([5 / 99, 1.0, 1.0]))
    torch.testing.assert_close(min_snr_weight(alpha_prod, 5.0, "v_prediction"), snr.clamp(max=5) / (snr + 1))
    torch.testing.assert_close(min_snr_weight(alpha_prod, 5.0, "sample"), snr.clamp(max=5))


def test_normal_kl_closed_form():
    assert normal_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0)).item() == 0
    # KL(N(0, 1) || N(1, e^2)) = log(e) + (1 + 1) / (2 e^2) - 1/2
    value = normal_kl(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0), torch.tensor(2.0)).item()
    assert value == pytest.approx(1 + 2 / (2 * math.e**2) - 0.5)


def test_discretized_likelihood_sums_to_one_over_the_256_bins():
    bins = torch.linspace(-1, 1, 256)
    log_p = discretized_gaussian_log_likelihood(bins, torch.tensor(0.1), torch.tensor(math.log(0.3)))
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-3)


def test_vlb_term_vanishes_when_the_model_matches_the_posterior():
    scheduler = GuidedDDPMScheduler(variance_type="learned_range")
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 1, 4, 4, generator=generator), torch.randn(3, 1, 4, 4, generator=generator)
    timesteps = torch.tensor([5, 300, 999])
    x_t = scheduler.add_noise(x0, noise, timesteps)
    at_posterior = -torch.ones_like(x0)  # v = -1: log Sigma = log beta_tilde, the posterior's own variance
    terms = variational_bound_terms(x0, x0, x_t, timesteps, at_posterior, scheduler.alphas_cumprod)
    torch.testing.assert_close(terms, torch.zeros(3), atol=1e-5, rtol=0)
    assert (variational_bound_terms(x0 + 0.3, x0, x_t, timesteps, at_posterior, scheduler.alphas_cumprod) > 0).all()
