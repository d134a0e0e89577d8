"""What CLIP guidance (`guiders.CLIPGuidance`) needs from a pipeline call: the noise-aware CLIP, checked against
what the pipeline denoises, and its unit embeddings of the call's prompts, one row per image."""

import torch

from ..schedulers.validation import check_range
from .text_encoding import encode_prompts


def checked_prompts(prompt, batch_size: int) -> list[str]:
    """One prompt per image: a string, or a list of 1 or `batch_size` non-empty strings."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else []
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"CLIP guidance needs `prompt`, a non-empty string or a list of them; got {prompt!r}.")
    if len(prompts) not in (1, batch_size):
        raise ValueError(f"`prompt` must be one string or {batch_size} (one per image); got {len(prompts)}.")
    return prompts * batch_size if len(prompts) == 1 else prompts


def check_clip_model(clip_model, sample_shape: tuple, scheduler_config, text_encoder_id: str | None) -> None:
    """ValueError, naming the mismatch, unless `clip_model` is a noise-aware CLIP that reads what the UNet denoises
    (`sample_shape`: channels, height, width), on the scheduler's noise schedule, with prompts encoded by the same
    frozen encoder."""
    if clip_model is None:
        raise ValueError("CLIP guidance (CLIPGuidance) needs a `clip_model`, a noise-aware NoiseAwareCLIP; this "
                         "pipeline has none. Load one with it: `from_pretrained(path, clip_model="
                         "NoiseAwareCLIP.from_pretrained(clip_path))`.")  # fmt: skip
    config = clip_model.config
    if config.noise_free:
        raise ValueError("`clip_model` was trained on clean images only (noise_free): it grades samples (CLIP "
                         "score); guidance needs a noise-aware one that reads x_t.")  # fmt: skip
    size = config.sample_size
    reads = (config.in_channels, *((size, size) if isinstance(size, int) else size))
    if tuple(reads) != tuple(sample_shape):
        raise ValueError(f"`clip_model` reads {'x'.join(map(str, reads))} inputs; the UNet denoises "
                         f"{'x'.join(map(str, sample_shape))}.")  # fmt: skip
    clip_model.check_schedule(scheduler_config)
    clip_model.check_text_encoder(text_encoder_id)


@torch.no_grad()
def clip_text_embeds(clip_model, tokenizer, text_encoder, prompts: list[str], images_per_prompt: int = 1) -> torch.Tensor:
    """g(c) / |g(c)| of each prompt under `clip_model` (its token budget, the padding masked), repeated for each
    of its images: (len(prompts) * images_per_prompt, E)."""
    check_range("images_per_prompt", images_per_prompt, low=1, integer=True)
    states, mask = encode_prompts(tokenizer, text_encoder, prompts, clip_model.config.max_length)
    device = next(clip_model.parameters()).device
    embeds = clip_model.text_embeds(states.to(device), mask.to(device))
    return embeds.repeat_interleave(images_per_prompt, 0)
