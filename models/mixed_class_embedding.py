"""Conditioning a class-conditional UNet on a mixture of classes: e = sum_k w_k E[k], a weighted sum of rows of its
class-embedding table, e.g. the linear interpolation (1 - lambda) E[a] + lambda E[b] between two classes."""

import copy

import torch
from torch import nn


class MixedClassEmbedding(nn.Module):
    """Reads class *weights* (batch, num_embeddings) instead of indices: weights @ E. One-hot rows give exactly the
    embedding of that class, so the endpoints of an interpolation are the ordinary classes."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, class_weights: torch.Tensor) -> torch.Tensor:
        return class_weights.to(self.embedding.weight.dtype) @ self.embedding.weight


def with_mixed_class_embedding(unet: nn.Module) -> nn.Module:
    """A view of `unet` that shares every parameter but takes `class_labels` as (batch, num_class_embeds) weights.

    The view is a shallow copy with its own module table, so the UNet itself is never modified: other threads
    sampling from it at the same time (the app serves concurrent requests) keep their ordinary embedding."""
    if not isinstance(getattr(unet, "class_embedding", None), nn.Embedding):
        raise ValueError("Mixing classes needs a UNet with a class-embedding table (`num_class_embeds` set and "
                         "`class_embed_type` None).")  # fmt: skip
    view = copy.copy(unet)
    object.__setattr__(view, "_modules", dict(unet._modules))  # its own table; the parameters stay shared
    view._modules["class_embedding"] = MixedClassEmbedding(unet.class_embedding)
    return view
