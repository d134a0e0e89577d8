"""Models: the noise-aware classifier and other networks, as diffusers ModelMixins, and analytic models."""

from .empirical_denoiser import EmpiricalDenoiser
from .noise_aware_classifier import ClassifierOutput, NoiseAwareClassifier, schedule_of

__all__ = ["ClassifierOutput", "EmpiricalDenoiser", "NoiseAwareClassifier", "schedule_of"]
