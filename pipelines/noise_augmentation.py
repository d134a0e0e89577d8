"""The low-resolution conditioning of a super-resolution stage in a cascade (Ho et al. 2021, "Cascaded Diffusion
Models"; Saharia et al. 2022, Imagen): how training pairs are made from real images (area downsampling), how the
low-resolution image reaches the stage's size (bilinear upsampling, as DeepFloyd IF's stage II), and Gaussian
noise-conditioning augmentation at a level a in [0, 1], which training draws at random and sampling fixes.

The augmentation is a variance-preserving forward process in continuous time on the upsampled image, the cosine
schedule without offset (Nichol & Dhariwal 2021): z_a = cos(pi a / 2) x + sin(pi a / 2) eps, so a = 0 is the clean
image and a = 1 pure noise. A `UNet2DModel` stage is told a through its class embedding
(`class_embed_type="timestep"`), as DeepFloyd IF tells its stage II the noise level, scaled by LEVEL_TO_EMBEDDING
into the range of its timesteps. A class-conditioned stage (a `UNet2DConditionModel`, whose class embedding holds
the classes) is told a through its timestep embedding instead: `timestep_cond`, a sinusoidal embedding of the same a * LEVEL_TO_EMBEDDING, projected and added to the
timestep's, as LCM tells its UNet the guidance scale. `stage_inputs` gives either UNet what it reads.
"""

import math

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

LEVEL_TO_EMBEDDING = 1000  # a in [0, 1] enters the sinusoidal embedding as a * 1000, like a timestep of 1000


def area_downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): each low-resolution pixel the mean of the block of pixels it covers."""
    return F.interpolate(images, size=(size, size), mode="area")


def upsample(low_resolution: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, size, size), bilinear: the conditioning image at the super-resolution stage's size."""
    return F.interpolate(low_resolution, size=(size, size), mode="bilinear", align_corners=False)


def augmentation_scales(levels: torch.Tensor):
    """(alpha_a, sigma_a) = (cos(pi a / 2), sin(pi a / 2)) for levels a in [0, 1]: alpha^2 + sigma^2 = 1."""
    angle = levels.double() * (math.pi / 2)
    return angle.cos().float(), angle.sin().float()


def augment(condition: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise-conditioning augmentation, z_a = alpha_a x + sigma_a eps, one level per sample (a = 0 returns x)."""
    alpha, sigma = (scale.to(condition.device).view(-1, 1, 1, 1) for scale in augmentation_scales(levels))
    return alpha * condition + sigma * noise


def level_embedding_input(levels: torch.Tensor) -> torch.Tensor:
    """What the UNet's `class_labels` receive for levels a: a * LEVEL_TO_EMBEDDING (float)."""
    return levels.float() * LEVEL_TO_EMBEDDING


def level_timestep_condition(levels: torch.Tensor, dim: int) -> torch.Tensor:
    """A class-conditioned stage's `timestep_cond` for levels a: the sinusoidal embedding of a * LEVEL_TO_EMBEDDING
    (dim features, as the UNet embeds its timesteps), which the UNet projects and adds to the timestep's."""
    return get_timestep_embedding(level_embedding_input(levels), dim, flip_sin_to_cos=True, downscale_freq_shift=0)


def stage_inputs(unet_config, levels: torch.Tensor, class_labels: torch.Tensor | None = None) -> dict:
    """The keyword arguments that tell a super-resolution UNet (by its config) the augmentation levels and, for a
    class-conditioned stage, the class labels (its null class for the unconditional prediction)."""
    dim = getattr(unet_config, "time_cond_proj_dim", None)
    if dim:  # UNet2DConditionModel: classes in its class embedding, a in its timestep embedding
        return dict(encoder_hidden_states=None, class_labels=class_labels,
                    timestep_cond=level_timestep_condition(levels, dim))  # fmt: skip
    return dict(class_labels=level_embedding_input(levels))  # UNet2DModel: a in its class embedding


def low_resolution_condition(low_resolution: torch.Tensor, size: int, levels: torch.Tensor, noise: torch.Tensor):
    """The image a super-resolution UNet reads beside x_t (concatenated along channels) for low-resolution images in
    [-1, 1]: the upsampled image, noise-augmented to the levels."""
    return augment(upsample(low_resolution, size), levels, noise)
