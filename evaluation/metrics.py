"""Sample-quality metrics on feature vectors (NumPy, float64): Frechet distance, k-NN precision/recall,
within-class diversity, class accuracy; the share of saturated pixels; and PSNR and SSIM of images against references
(super-resolution). Feature extractors live in features.py."""

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_fit(features: np.ndarray):
    """(mean, covariance) of an (N, D) feature matrix, the Gaussian the Frechet distance compares."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) (Dowson & Landau 1982), the distance behind FID.
    The matrix square roots come from symmetric eigendecompositions, so no complex parts arise."""

    def sqrt_psd(matrix):
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T

    root1 = sqrt_psd(np.atleast_2d(cov1))
    cross = np.linalg.eigvalsh(root1 @ np.atleast_2d(cov2) @ root1).clip(min=0)
    trace = np.trace(np.atleast_2d(cov1)) + np.trace(np.atleast_2d(cov2)) - 2 * np.sqrt(cross).sum()
    return float(((np.asarray(mean1) - np.asarray(mean2)) ** 2).sum() + trace)


def frechet_distance_of(features1, features2) -> float:
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(squared.clip(min=0))


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point."""
    distances = _pairwise_distances(features, features)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): the real manifold is the union of balls around
    real points with radius the distance to their k-th nearest real neighbour; precision is the share of fake points
    inside it; recall the share of real points inside the fake manifold, built the same way."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    fake_to_real = _pairwise_distances(fake, real)
    precision = (fake_to_real <= _knn_radii(real, k)[None, :]).any(1).mean()
    recall = (fake_to_real.T <= _knn_radii(fake, k)[None, :]).any(1).mean()
    return float(precision), float(recall)


def diversity(features, labels=None) -> float:
    """Mean pairwise feature distance within each class (all samples as one class when `labels` is None),
    averaged over classes: lower means the samples of a class look more alike."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.zeros(len(features), dtype=int) if labels is None else np.asarray(labels)
    means = []
    for label in np.unique(labels):
        group = features[labels == label]
        if len(group) > 1:
            distances = _pairwise_distances(group, group)
            means.append(distances.sum() / (len(group) * (len(group) - 1)))
    return float(np.mean(means))


def class_accuracy(logits, labels) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


SATURATED = 0.99  # |x| above this, on [-1, 1], counts as a saturated pixel


def saturated_share(images) -> float:
    """The share of pixels at the ends of [-1, 1] (|x| > 0.99): what thresholding and high guidance push up."""
    return float((images.abs() > SATURATED).float().mean())


GRAIN_STROKE = 0.5  # a pixel above half brightness (on [0, 1]) is part of a stroke
GRAIN_MARGIN = 2  # pixels this close to a stroke are its anti-aliased edge, not background
GRAIN_BLACK = 0.02  # a background pixel brighter than this (on [0, 1]) is grain; MNIST's own background is exactly 0


def background_grain_share(images) -> float:
    """The share of background pixels (farther than GRAIN_MARGIN from any stroke pixel) brighter than GRAIN_BLACK,
    for [-1, 1] images of bright strokes on a dark background (MNIST): the grey speckle that ImageNet features see
    and a digit classifier's features barely do."""
    brightness = (images.clamp(-1, 1) + 1) / 2
    strokes = (brightness > GRAIN_STROKE).float()
    near_stroke = F.max_pool2d(strokes, 2 * GRAIN_MARGIN + 1, stride=1, padding=GRAIN_MARGIN) > 0
    return float((brightness[~near_stroke] > GRAIN_BLACK).float().mean())


def psnr(images, references) -> float:
    """Peak signal-to-noise ratio in dB of images against references in [-1, 1] (peak-to-peak 2), per image, then
    averaged: 10 log10(2^2 / MSE)."""
    squared_error = ((images.double() - references.double()) ** 2).flatten(1).mean(1).clamp(min=1e-12)
    return float((10 * torch.log10(4.0 / squared_error)).mean())


def ssim(images, references, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004, eq. 13) of (N, C, H, W) images against references in [-1, 1]: local
    means, variances and covariance under an 11x11 Gaussian window (sigma 1.5) over the valid region,
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with the dynamic range L = 2, averaged over pixels, channels and images."""
    x, y = images.double(), references.double()
    channels = x.shape[1]
    taps = torch.exp(-((torch.arange(window, dtype=torch.float64) - (window - 1) / 2) ** 2) / (2 * sigma**2))
    kernel = torch.outer(taps, taps) / taps.sum() ** 2
    kernel = kernel.expand(channels, 1, window, window)

    def local_mean(z):
        return torch.nn.functional.conv2d(z, kernel, groups=channels)

    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x, var_y = local_mean(x * x) - mean_x**2, local_mean(y * y) - mean_y**2
    covariance = local_mean(x * y) - mean_x * mean_y
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())
