"""Sample-quality metrics against closed forms and toy sets whose answers are known."""

import math

import numpy as np
import pytest
import torch

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.evaluation.features import ClassifierFeatures
from guided_diffusers.evaluation.metrics import (
    background_grain_share,
    class_accuracy,
    diversity,
    frechet_distance,
    frechet_distance_of,
    gaussian_fit,
    precision_recall,
    psnr,
    ssim,
)
from guided_diffusers.training.model_configs import classifier_config


def random_covariance(dimension, seed):
    a = np.random.default_rng(seed).normal(size=(dimension, dimension))
    return a @ a.T + 0.1 * np.eye(dimension)


def test_fd_of_identical_gaussians_is_zero():
    mean, cov = np.arange(5.0), random_covariance(5, 0)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-9)


def test_fd_of_shifted_gaussians_is_the_squared_shift():
    mean, cov, shift = np.zeros(6), random_covariance(6, 1), np.array([1.0, -2.0, 0.5, 0, 0, 3.0])
    assert frechet_distance(mean, cov, mean + shift, cov) == pytest.approx((shift**2).sum(), rel=1e-9)


def test_fd_of_commuting_covariances_is_the_hellinger_like_closed_form():
    """For diagonal covariances FD = ||m1 - m2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 1.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(np.zeros(3), np.diag(a), np.array([1.0, 0, 0]), np.diag(b)) == pytest.approx(expected)


def test_fd_of_large_samples_from_one_gaussian_is_near_zero():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4))
    assert frechet_distance_of(x, y) < 0.01 < frechet_distance_of(x, y + 0.2)


def test_gaussian_fit_is_mean_and_unbiased_covariance():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mean, cov = gaussian_fit(features)
    np.testing.assert_allclose(mean, [1, 1])
    np.testing.assert_allclose(cov, np.eye(2) * 4 / 3)


def test_precision_recall_on_separable_toy_sets():
    rng = np.random.default_rng(3)
    real = rng.uniform(0, 2, size=(400, 1))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # fakes cover only the left half of the real data: all realistic, half the real data missed
    precision, recall = precision_recall(real, rng.uniform(0, 1, size=(400, 1)))
    assert precision > 0.97 and 0.4 < recall < 0.6


def test_diversity_is_the_mean_within_class_distance():
    features = np.array([[0.0], [2.0], [10.0], [10.5]])
    assert diversity(features, labels=[0, 0, 1, 1]) == pytest.approx((2.0 + 0.5) / 2)
    assert diversity(features) == pytest.approx(np.mean([2, 10, 10.5, 8, 8.5, 0.5]))


def test_class_accuracy():
    assert class_accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), [0, 1, 1]) == pytest.approx(2 / 3)


def test_efficientnet_features_separate_real_digits_from_noise():
    from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
    from guided_diffusers.evaluation.features import EfficientNetLite0Features

    digits = to_model_range(to_tensors(load_image_dataset("mnist", split="test", max_samples=96), 28, 1).images)
    noise = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = EfficientNetLite0Features()
    real_a, real_b, fake = net(digits[:48]).numpy(), net(digits[48:]).numpy(), net(noise).numpy()
    assert real_a.shape == (48, 1280)
    assert frechet_distance_of(real_a, real_b) < 0.5 * frechet_distance_of(real_a, fake)


def test_classifier_features_read_padded_images_as_the_originals():
    """A 32px image that is a 28px image with a 2px black border (how `fit_image` pads for a VAE) gets the features
    of the 28px image: the judge reads the centre crop."""
    torch.manual_seed(0)
    judge = ClassifierFeatures(NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")))
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), value=-1.0)
    for got, want in zip(judge(padded), judge(images)):
        torch.testing.assert_close(got, want)


def test_psnr_is_ten_log10_of_peak_squared_over_mse():
    references = torch.zeros(2, 1, 4, 4)
    images = references + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)  # MSE 0.01 and 0.04
    expected = (10 * math.log10(4 / 0.01) + 10 * math.log10(4 / 0.04)) / 2
    assert psnr(images, references) == pytest.approx(expected, rel=1e-6)  # 0.1 and 0.2 in float32


def test_ssim_equals_the_paper_written_out_window_by_window():
    """Wang et al. 2004, eq. 13, one 11x11 window at a time with explicit sums: the oracle for the convolutions."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 13, 14, generator=generator) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(-1, 1)
    taps = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    weights = torch.tensor([[a * b for b in taps] for a in taps], dtype=torch.float64)
    weights /= weights.sum()
    c1, c2, values = 0.02**2, 0.06**2, []
    for n in range(2):
        for top in range(13 - 10):
            for left in range(14 - 10):
                a = x[n, 0, top : top + 11, left : left + 11].double()
                b = y[n, 0, top : top + 11, left : left + 11].double()
                mu_a, mu_b = (weights * a).sum(), (weights * b).sum()
                var_a, var_b = (weights * (a - mu_a) ** 2).sum(), (weights * (b - mu_b) ** 2).sum()
                cov = (weights * (a - mu_a) * (b - mu_b)).sum()
                values.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    assert ssim(x, y) == pytest.approx(float(torch.stack(values).mean()), abs=1e-9)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12) and ssim(x, y) < 0.9


def test_background_grain_counts_grey_background_pixels_away_from_the_strokes_only():
    images = -torch.ones(2, 1, 28, 28)  # black, on [-1, 1]
    images[:, :, 10:18, 13:15] = 1.0  # a stroke: it and every pixel within 2 px of it is not background
    images[:, :, 11:17, 12] = 0.0  # its grey anti-aliased edge, inside that margin: not grain
    images[0, 0, 0, :4] = -0.8  # four grey pixels (0.1 on [0, 1]) in the background of the first image
    images[1, 0, 27, 27] = -0.97  # 0.015 on [0, 1]: below the grain level, still black
    background = 2 * 28 * 28 - 2 * (8 + 4) * (2 + 4)  # the stroke's 8 x 2 box grown by 2 px each way
    assert background_grain_share(images) == pytest.approx(4 / background)
    assert background_grain_share(-torch.ones(1, 1, 28, 28)) == 0.0
