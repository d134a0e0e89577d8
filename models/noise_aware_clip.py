"""A noise-aware contrastive image-text model, GLIDE's "noise-aware CLIP" (Nichol et al. 2022, sec. 2.4 and
appendix): an image tower f(x_t, t) that reads noised images (or latents) at a timestep of the diffusion schedule, a
text tower g(c) on a frozen language model's token states, and a learnt temperature, so that
log p(c | x_t) ~ f(x_t, t) . g(c) / tau, the term whose gradient CLIP guidance adds to the score.

Trained with t = 0 only (`noise_free=True`) it is a clean model: what CLIP score grades samples with. The guiding and
the grading model must be different weights, as for classifiers (a model would grade its own guidance).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .noise_aware_classifier import NoiseAwareClassifier
from .safetensors_only import SafetensorsOnly

MAX_LOGIT_SCALE = 100.0  # CLIP clips exp(t) at 100 so that the softmax cannot become arbitrarily sharp


@dataclass
class CLIPOutput(BaseOutput):
    logits_per_image: torch.Tensor  # (images, texts): exp(t) cos(f_i, g_j)
    image_embeds: torch.Tensor  # (images, E), unit norm
    text_embeds: torch.Tensor  # (texts, E), unit norm


class TextTower(nn.Module):
    """The frozen encoder's token states (B, L, D) -> an embedding: a learnt projection to `width`, a small
    transformer that lets the tokens combine before pooling, the mean of the non-padding tokens, and a linear map
    into the joint space. It adds no positions: word order ("a 4 to the left of a 9" against "a 9 to the left of a
    4") reaches it through the encoder's contextual states, which the encoder's own positions shaped."""

    def __init__(self, hidden_size: int, width: int, layers: int, heads: int, embedding_dim: int):
        super().__init__()
        self.token_projection = nn.Linear(hidden_size, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        self.norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embedding_dim)

    def forward(self, token_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones(token_states.shape[:2], device=token_states.device)
        keep = attention_mask.bool()
        hidden = self.token_projection(token_states.to(self.token_projection.weight.dtype))
        if self.transformer is not None:
            hidden = self.transformer(hidden, src_key_padding_mask=~keep)
        weights = keep[..., None].to(hidden.dtype)
        pooled = (self.norm(hidden) * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.projection(pooled)


class NoiseAwareCLIP(SafetensorsOnly, ModelMixin, ConfigMixin):
    """`image_tower`: a NoiseAwareClassifier (the encoder half of a UNet with its timestep embedding, pooled) whose
    linear head maps into the `embedding_dim` joint space; `text_tower`: a TextTower on the token states of the frozen
    `text_encoder_id` (cut at `max_length` tokens; a Hub id or folder, as pipelines record it). `noise_schedule` (as a classifier's) is the schedule x_t was drawn
    from in training; `noise_free` marks a model trained on clean images only (t = 0)."""

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple = (28, 56),
        in_channels: int = 1,
        embedding_dim: int = 64,
        block_out_channels: tuple = (16, 32, 64),
        layers_per_block: int = 1,
        down_block_types: tuple = ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        norm_num_groups: int = 8,
        attention_head_dim: int = 16,
        text_hidden_size: int = 384,
        text_width: int = 64,
        text_layers: int = 1,
        text_heads: int = 4,
        text_encoder_id: str | None = None,
        max_length: int = 24,
        noise_schedule: dict | None = None,
        noise_free: bool = False,
    ):
        super().__init__()
        if embedding_dim < 1 or text_width % max(text_heads, 1):
            raise ValueError(f"`embedding_dim` must be positive and `text_width` ({text_width}) divisible by "
                             f"`text_heads` ({text_heads}).")  # fmt: skip
        self.image_tower = NoiseAwareClassifier(
            sample_size=sample_size, in_channels=in_channels, num_classes=embedding_dim,
            block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            down_block_types=down_block_types, norm_num_groups=norm_num_groups, pooling="attention",
            attention_head_dim=attention_head_dim, noise_schedule=noise_schedule,
        )  # fmt: skip
        self.text_tower = TextTower(text_hidden_size, text_width, text_layers, text_heads, embedding_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature 0.07

    def image_embeds(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """f(x_t, t) / |f(x_t, t)|, (B, E); differentiable in `sample` (CLIP guidance takes its gradient)."""
        return F.normalize(self.image_tower(sample, timestep).logits.float(), dim=-1)

    def text_embeds(self, token_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """g(c) / |g(c)|, (B, E), from the frozen encoder's token states (B, L, D) and padding mask (B, L)."""
        return F.normalize(self.text_tower(token_states, attention_mask).float(), dim=-1)

    @property
    def temperature_inverse(self) -> torch.Tensor:
        """1 / tau = exp(t), clipped at MAX_LOGIT_SCALE."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def log_similarity(self, sample: torch.Tensor, timestep, text_embeds: torch.Tensor) -> torch.Tensor:
        """f(x_t, t) . g(c) / tau for each row's own caption, (B,): GLIDE's stand-in for log p(c | x_t) up to a
        term constant in x_t."""
        return self.temperature_inverse * (self.image_embeds(sample, timestep) * text_embeds).sum(-1)

    def forward(self, sample: torch.Tensor, timestep, token_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None, return_dict: bool = True):  # fmt: skip
        image, text = self.image_embeds(sample, timestep), self.text_embeds(token_states, attention_mask)
        logits = self.temperature_inverse * image @ text.T  # exp(t) cos(f_i, g_j)
        return CLIPOutput(logits, image, text) if return_dict else (logits, image, text)

    def check_schedule(self, scheduler_config) -> None:
        """ValueError if `scheduler_config` noises x_t differently from this model's training schedule."""
        if self.config.noise_free:
            return
        try:
            self.image_tower.check_schedule(scheduler_config)
        except ValueError as error:
            raise ValueError(str(error).replace("`classifier`", "`clip_model`")) from None

    def check_text_encoder(self, text_encoder_id: str | None) -> None:
        """ValueError unless the prompts are encoded by the frozen encoder this model was trained on (where it
        records one: the training script always does)."""
        if self.config.text_encoder_id is not None and text_encoder_id != self.config.text_encoder_id:
            raise ValueError(f"`clip_model` reads the token states of {self.config.text_encoder_id!r}; the prompts "
                             f"are encoded by {text_encoder_id!r}.")  # fmt: skip


def contrastive_loss(logits_per_image: torch.Tensor, content: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric loss (Radford et al. 2021, fig. 3): (CE over texts per image + CE over images per text) / 2,
    for a square batch of matching pairs. `content` (B,) says what each pair depicts: captions that describe the
    same content (two images of a 7, "a handwritten 7" and "the digit seven") are not negatives of each other, so the
    target spreads uniformly over every pair of equal content. With all contents distinct (or None) this is
    exactly CLIP's loss with the diagonal as target."""
    size = len(logits_per_image)
    if logits_per_image.shape != (size, size):
        raise ValueError(f"`logits_per_image` must be square (a batch of matching pairs); got {tuple(logits_per_image.shape)}.")
    if content is None:
        content = torch.arange(size, device=logits_per_image.device)
    same = (content[:, None] == content[None, :]).float()
    target = same / same.sum(1, keepdim=True)  # symmetric, so it serves both directions
    logits = logits_per_image.float()
    per_image = -(target * logits.log_softmax(1)).sum(1).mean()
    per_text = -(target * logits.T.log_softmax(1)).sum(1).mean()
    return (per_image + per_text) / 2
