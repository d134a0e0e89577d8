"""Models: the noise-aware classifier and other networks, as diffusers ModelMixins, and analytic models."""

from .empirical_denoiser import EmpiricalDenoiser

__all__ = ["EmpiricalDenoiser"]
