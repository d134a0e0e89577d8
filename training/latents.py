"""Latent diffusion's training data (Rombach 2022): images encoded once by a frozen `AutoencoderKL`, kept as the
posterior's mean and standard deviation, so that every step draws z ~ q(z | x) = N(mean, std^2) as Stable
Diffusion's training does, then scales it by the VAE's `scaling_factor` to unit variance."""

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL

from ..models.safetensors_only import safetensors_kwargs
from .data import to_model_range


@dataclass
class LatentCache:
    mean: torch.Tensor  # (N, c, h, w)
    std: torch.Tensor
    scaling_factor: float

    def sample(self, indices, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of these images: (mean + std * eps) * scaling_factor, eps from the step's generator."""
        mean, std = self.mean[indices], self.std[indices]
        return (mean + std * torch.randn(mean.shape, generator=generator)) * self.scaling_factor


def load_vae(path: str) -> AutoencoderKL:
    """A trained autoencoder (train_vae.py output), frozen, in eval mode."""
    return AutoencoderKL.from_pretrained(path, **safetensors_kwargs(path, {})).eval().requires_grad_(False)


def latent_size(vae_config, resolution: int) -> tuple[int, int]:
    """(channels, size) of the latents of `resolution` x `resolution` images."""
    return vae_config["latent_channels"], resolution // 2 ** (len(vae_config["block_out_channels"]) - 1)


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images_uint8: torch.Tensor, batch_size: int = 256) -> LatentCache:
    """Encode every image once (uint8 (N, C, H, W))."""
    means, stds = [], []
    for batch in images_uint8.split(batch_size):
        posterior = vae.encode(to_model_range(batch)).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return LatentCache(torch.cat(means), torch.cat(stds), float(vae.config.scaling_factor))


def encode_compositions(vae, captioned, chunk: int = 512):
    """Every composition of a (finite, seeded) `CaptionedPairs` encoded once: its posterior mean and std."""
    parts = [encode_images(vae, torch.from_numpy(captioned.batch(range(start, min(start + chunk, len(captioned))))[0]))
             for start in range(0, len(captioned), chunk)]  # fmt: skip
    return LatentCache(torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts]), parts[0].scaling_factor)
