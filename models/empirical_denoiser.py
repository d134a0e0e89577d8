"""The exact denoiser of a finite image set: what a perfectly trained network computes when the data distribution
is uniform over those images. No training, no approximation, so it serves as an analytic model for tests and
examples (and shows why a perfect fit memorises: every sample lands on a training image)."""

import torch
from diffusers.models.unets.unet_2d import UNet2DOutput


class EmpiricalDenoiser(torch.nn.Module):
    """For data uniform over {x_i} and x_t = a x0 + b eps (a = sqrt(abar_t), b = sqrt(1 - abar_t)):

        E[x0 | x_t] = sum_i w_i x_i,   w = softmax_i(-||x_t - a x_i||^2 / (2 b^2))

    (the "ideal denoiser", Karras et al. 2022, app. B.3), returned as an eps-prediction (x_t - a E[x0|x_t]) / b,
    the way a `UNet2DModel` returns its output. With `class_labels` the sum runs over that class's images only,
    an exact class-conditional model.
    """

    def __init__(self, images: torch.Tensor, alphas_cumprod: torch.Tensor, labels: torch.Tensor | None = None):
        super().__init__()
        flat = images.reshape(len(images), -1).double()
        self.register_buffer("images", flat)
        self.register_buffer("squared_norms", (flat**2).sum(1))
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        self.register_buffer("labels", labels)

    def forward(self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True):
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1, 1)
        alpha_prod = self.alphas_cumprod[timestep].expand(len(sample), 1)
        a, b2 = alpha_prod.sqrt(), 1 - alpha_prod
        x = sample.reshape(len(sample), -1).double()
        # log w_i up to a constant in i: (2 a <x_t, x_i> - a^2 ||x_i||^2) / (2 b^2)
        logits = (2 * a * x @ self.images.T - a**2 * self.squared_norms) / (2 * b2)
        if class_labels is not None:
            if self.labels is None:
                raise ValueError("`class_labels` given, but this denoiser was built without `labels`.")
            other_class = self.labels[None, :] != torch.as_tensor(class_labels, device=sample.device)[:, None]
            logits = logits.masked_fill(other_class, float("-inf"))
        x0 = torch.softmax(logits, dim=1) @ self.images
        eps = ((x - a * x0) / b2.sqrt()).to(sample.dtype).reshape(sample.shape)
        return UNet2DOutput(sample=eps) if return_dict else (eps,)
