"""The frozen text encoder's token states of every caption a run can see, computed once before training, so that
steps only look them up (the encoder is most of the cost of a step otherwise)."""

import torch

from ..pipelines.text_encoding import encode_prompts


def caption_cache(tokenizer, text_encoder, captions: list[str], max_length: int, device, chunk: int = 256):
    """{caption: row}, token states (V, L, D) and masks (V, L) of every caption, computed once."""
    text_encoder.to(device)
    states, masks = [], []
    for start in range(0, len(captions), chunk):
        state, mask = encode_prompts(tokenizer, text_encoder, captions[start : start + chunk], max_length)
        states.append(state.cpu())
        masks.append(mask.cpu())
    return {caption: row for row, caption in enumerate(captions)}, torch.cat(states), torch.cat(masks)
