"""Sampling runs under `torch.inference_mode`, measured faster than `no_grad` (benchmarks/pipeline_overhead.py).
Inference tensors cannot be modified in place or recorded by autograd outside that mode, so whatever leaves a
pipeline is first made an ordinary tensor again: callers can use outputs as they use diffusers' outputs."""

import torch


def ordinary(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of `tensor` that is not an inference tensor (one copy of the outputs; nothing per step)."""
    with torch.inference_mode(False):
        return tensor.clone()
