"""Guidance rules, each the paper's equation on model outputs, applied by the sampling loop to any scheduler."""

import torch


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Ho & Salimans 2022, eq. 6 (GLIDE's form): eps = eps_uncond + w (eps_cond - eps_uncond).

    w = 0 is the unconditional model, w = 1 the conditional one, w > 1 extrapolates away from the unconditional.
    Every prediction type is affine in the network output, so the rule applies to eps, x0 and v outputs alike.
    """
    return uncond + guidance_scale * (cond - uncond)
