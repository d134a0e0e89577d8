"""Keeping the predicted x0 in the data range: static clipping and Imagen's dynamic thresholding.

Both schedulers, the guidance code and the app call these; nobody re-derives them.
"""

import torch

from .validation import check_range


def static_clip(x0: torch.Tensor, clip_range: float = 1.0) -> torch.Tensor:
    """Static thresholding (Saharia 2022, sec. 3.3): clip x0 to [-clip_range, clip_range]."""
    return x0.clamp(-clip_range, clip_range)


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Dynamic thresholding (Saharia 2022, sec. 3.3), per sample:
    s = quantile_ratio(|x0|), s = clamp(s, 1, max_value), x0 = clamp(x0, -s, s) / s.

    With s clamped from below by 1 this is static clipping whenever few pixels leave [-1, 1]; when many do (high
    guidance), saturated pixels are pushed inwards instead of piling up at +-1.
    """
    check_range("dynamic_thresholding_ratio", ratio, 0, 1, low_open=True)
    check_range("sample_max_value", max_value, low=1, allow_inf=True)
    dtype = x0.dtype
    # quantile needs float32/64 (and clamp has no CPU half kernel)
    flat = x0.reshape(x0.shape[0], -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (flat.clamp(-s, s) / s).reshape(x0.shape).to(dtype)


def clip_or_threshold(x0: torch.Tensor, config) -> torch.Tensor:
    """Apply what a scheduler config asks for: dynamic thresholding, else static clipping, else nothing."""
    if config.thresholding:
        return dynamic_threshold(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
    if config.clip_sample:
        return static_clip(x0, config.clip_sample_range)
    return x0
