"""Models: the noise-aware classifier and other networks, as diffusers ModelMixins, and analytic models."""

from .empirical_denoiser import EmpiricalDenoiser
from .mixed_class_embedding import MixedClassEmbedding, with_mixed_class_embedding
from .noise_aware_classifier import ClassifierOutput, NoiseAwareClassifier, schedule_of

__all__ = [
    "ClassifierOutput",
    "EmpiricalDenoiser",
    "MixedClassEmbedding",
    "NoiseAwareClassifier",
    "schedule_of",
    "with_mixed_class_embedding",
]
