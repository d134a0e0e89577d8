"""Models: the noise-aware classifier, the noise-aware CLIP and other networks, as diffusers ModelMixins, and analytic models."""

from .empirical_denoiser import EmpiricalDenoiser
from .mixed_class_embedding import MixedClassEmbedding, with_mixed_class_embedding
from .noise_aware_classifier import ClassifierOutput, NoiseAwareClassifier, schedule_of
from .noise_aware_clip import CLIPOutput, NoiseAwareCLIP, contrastive_loss

__all__ = [
    "ClassifierOutput",
    "CLIPOutput",
    "EmpiricalDenoiser",
    "MixedClassEmbedding",
    "NoiseAwareCLIP",
    "NoiseAwareClassifier",
    "contrastive_loss",
    "schedule_of",
    "with_mixed_class_embedding",
]
