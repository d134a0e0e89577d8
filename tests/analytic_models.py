"""A UNet stand-in with a closed form: the exact eps-prediction for Gaussian data, for pipeline-level tests."""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.unets.unet_2d import UNet2DOutput

from guided_diffusers.schedulers.sigmas import alpha_prod_at


class GaussianDenoiser(ModelMixin, ConfigMixin):
    """Data x0 ~ N(mu_y, s^2 I), one mean per class y (the last, if `num_class_embeds` is set, serves as the null
    class). With x_t = a x0 + b eps, E[eps | x_t] = b (x_t - a mu_y) / (a^2 s^2 + b^2), linear in x_t, and the
    probability-flow ODE has the closed form x_t = a_t mu + sqrt(a_t^2 s^2 + b_t^2) (x0 - mu) / s."""

    @register_to_config
    def __init__(self, sample_size: int = 4, in_channels: int = 1, num_class_embeds: int | None = None,
                 data_std: float = 0.5, num_train_timesteps: int = 1000, seed: int = 0):  # fmt: skip
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        shape = (num_class_embeds or 1, in_channels, sample_size, sample_size)
        self.register_buffer("means", 0.5 * torch.randn(shape, generator=generator).double())
        betas = torch.linspace(0.0001, 0.02, num_train_timesteps, dtype=torch.float64)  # the default linear schedule
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a dtype and a device

    def forward(self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True):
        # a sigma sampler (EDM Heun) tells a fractional timestep: the level between two training timesteps
        alpha_prod = torch.tensor(alpha_prod_at(self.alphas_cumprod, timestep), dtype=torch.float64)
        a, b = alpha_prod.sqrt(), (1 - alpha_prod).sqrt()
        mean = self.means[0:1] if class_labels is None else self.means[class_labels]
        eps = b * (sample.double() - a * mean) / (alpha_prod * self.config.data_std**2 + b**2)
        eps = eps.to(sample.dtype)
        return UNet2DOutput(sample=eps) if return_dict else (eps,)

    def ode_latents(self, x0: torch.Tensor, timestep: int, class_index: int = 0) -> torch.Tensor:
        """The exact probability-flow ODE solution at `timestep` from data x0 (model range)."""
        alpha_prod = self.alphas_cumprod[timestep]
        a, s, mu = alpha_prod.sqrt(), self.config.data_std, self.means[class_index]
        return (a * mu + (alpha_prod * s**2 + 1 - alpha_prod).sqrt() * (x0.double() - mu) / s).float()
