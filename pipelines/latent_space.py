"""Latent diffusion's two maps (Rombach 2022), shared by the pipelines: images x in [-1, 1] <-> what the UNet
diffuses, z = E(x).mean * scaling_factor and x = D(z / scaling_factor); the identity without a VAE. The scaling
factor (measured by train_vae.py) gives z unit variance, like the noise it is mixed with."""

import torch


def to_latents(vae, images: torch.Tensor) -> torch.Tensor:
    if vae is None:
        return images
    return vae.encode(images.to(vae.dtype)).latent_dist.mean * vae.config.scaling_factor


def from_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    if vae is None:
        return latents
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
