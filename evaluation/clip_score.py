"""CLIP score (Hessel et al. 2021, as torchmetrics' CLIPScore): 100 * max(cos(f(x), g(c)), 0) between a sample and
its prompt under a *clean* image-text model, averaged over samples. Our clean model is a `NoiseAwareCLIP` trained at
t = 0 only; a noise-aware one is refused, since those are the models that guide, and a model would grade its own
guidance (the same rule as for classifiers)."""

import torch
import torch.nn.functional as F

from ..pipelines.text_encoding import encode_prompts
from .features import center_crop


def check_grading_model(clip_model) -> None:
    """ValueError unless `clip_model` was trained on clean images only (`noise_free`), the kind that never guides."""
    if not clip_model.config.noise_free:
        raise ValueError("CLIP score needs a clean model (a NoiseAwareCLIP trained with --noise_free): this one reads "
                         "noisy x_t, the kind that guides sampling, and a model must not grade its own guidance.")  # fmt: skip


def as_compositions(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Images in [-1, 1] as the model's canvas: a 28x28 item centred on a black (-1) 28x56 canvas, as one-item
    compositions are drawn; a latent model's bordered 32x64 images cropped to 28x56."""
    if images.shape[-2:] == (height, width):
        return images
    if images.shape[-2] >= height and images.shape[-1] >= width:
        return center_crop(images, height, width)
    pad_h, pad_w = height - images.shape[-2], width - images.shape[-1]
    if pad_h < 0 or pad_w < 0 or pad_h % 2 or pad_w % 2:
        raise ValueError(f"Images of {tuple(images.shape[-2:])} cannot be placed on the model's {height}x{width} canvas.")
    return F.pad(images, (pad_w // 2, pad_w // 2, pad_h // 2, pad_h // 2), value=-1.0)


@torch.no_grad()
def clip_scores(clip_model, tokenizer, text_encoder, images: torch.Tensor, prompts: list[str],
                batch_size: int = 256) -> torch.Tensor:  # fmt: skip
    """100 * max(cos(f(x_i), g(c_i)), 0) for each image (N, C, H, W) in [-1, 1] and its prompt, (N,)."""
    check_grading_model(clip_model)
    if len(images) != len(prompts):
        raise ValueError(f"One prompt per image: got {len(images)} images and {len(prompts)} prompts.")
    size = clip_model.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    device = next(clip_model.parameters()).device
    scores = []
    for start in range(0, len(images), batch_size):
        batch = as_compositions(images[start : start + batch_size], height, width).to(device)
        states, mask = encode_prompts(tokenizer, text_encoder, prompts[start : start + batch_size], clip_model.config.max_length)
        text = clip_model.text_embeds(states.to(device), mask.to(device))
        image = clip_model.image_embeds(batch, torch.zeros(len(batch), dtype=torch.long, device=device))
        scores.append(100 * (image * text).sum(-1).clamp(min=0).cpu())
    return torch.cat(scores)
