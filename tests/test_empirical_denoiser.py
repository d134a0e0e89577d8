"""The exact denoiser of a finite set against Bayes' rule computed directly, and its class conditioning."""

import math

import torch

from guided_diffusers.models import EmpiricalDenoiser
from guided_diffusers.schedulers import GuidedDDIMScheduler


def test_posterior_mean_matches_bayes_rule_for_two_images():
    images = torch.stack([torch.full((1, 2, 2), -0.5), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])])
    alphas_cumprod = GuidedDDIMScheduler().alphas_cumprod
    model = EmpiricalDenoiser(images, alphas_cumprod)
    x_t, t = torch.tensor([[[[0.3, -0.2], [0.1, 0.4]]]]), 300
    abar = alphas_cumprod[t].double().item()
    a, b = math.sqrt(abar), math.sqrt(1 - abar)
    # p(x_i | x_t) ∝ N(x_t; a x_i, b^2 I), uniform prior
    densities = torch.stack([torch.exp(-((x_t.double() - a * image) ** 2).sum() / (2 * b**2)) for image in images])
    x0 = (densities[:, None, None, None] * images.double()).sum(0) / densities.sum()
    expected_eps = (x_t.double() - a * x0) / b
    torch.testing.assert_close(model(x_t, t).sample.double(), expected_eps, atol=1e-6, rtol=1e-6)


def test_class_labels_restrict_the_posterior_to_that_class():
    images = torch.stack([torch.full((1, 2, 2), -1.0), torch.full((1, 2, 2), 1.0)])
    alphas_cumprod = GuidedDDIMScheduler().alphas_cumprod
    model = EmpiricalDenoiser(images, alphas_cumprod, labels=torch.tensor([0, 1]))
    x_t, t = torch.zeros(2, 1, 2, 2), 999
    abar = alphas_cumprod[t].item()
    eps = model(x_t, t, class_labels=torch.tensor([0, 1])).sample
    x0 = (x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    torch.testing.assert_close(x0, images, atol=1e-4, rtol=0)
