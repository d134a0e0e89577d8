"""The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4)."""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from diffusers.utils import BaseOutput
from torch import nn

from .safetensors_only import SafetensorsOnly

SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "trained_betas",
                 "rescale_betas_zero_snr")  # fmt: skip


@dataclass
class ClassifierOutput(BaseOutput):
    logits: torch.Tensor


class AttentionPool2d(nn.Module):
    """ADM's attention pooling: the mean of the feature map, with learnt positions, attends over all positions;
    its output token is the image summary (guided-diffusion `AttentionPool2d`)."""

    def __init__(self, channels: int, positions: int, head_dim: int):
        super().__init__()
        self.position = nn.Parameter(torch.randn(positions + 1, channels) / channels**0.5)
        self.attention = nn.MultiheadAttention(channels, max(channels // head_dim, 1), batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = features.flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self.position
        summary, _ = self.attention(tokens[:, :1], tokens, tokens, need_weights=False)
        return summary[:, 0]


class NoiseAwareClassifier(SafetensorsOnly, ModelMixin, ConfigMixin):
    """The encoder half of a UNet (same sinusoidal timestep embedding, ResNet down blocks, middle block), pooled
    (attention or mean) to logits over `num_classes`; `sample_size` is an int (square) or (height, width).
    Trained on x_t = q_sample(x0, t), it gives the gradient
    grad_x log p(y | x_t, t) that classifier guidance adds to the diffusion model's score.

    `noise_schedule` records the schedule it was trained with (the keys of SCHEDULE_KEYS), so that pipelines can
    refuse to guide a diffusion model whose x_t it has never seen.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple = 28,
        in_channels: int = 1,
        num_classes: int = 10,
        block_out_channels: tuple = (32, 64, 128),
        layers_per_block: int = 2,
        down_block_types: tuple = ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        norm_num_groups: int = 16,
        pooling: str = "attention",
        attention_head_dim: int = 32,
        noise_schedule: dict | None = None,
    ):
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError(f"`pooling` must be 'attention' or 'mean'; got {pooling!r}.")
        if len(down_block_types) != len(block_out_channels):
            raise ValueError("`down_block_types` and `block_out_channels` must have the same length.")
        time_dim = block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_dim)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        channels_in = block_out_channels[0]
        self.down_blocks = nn.ModuleList()
        for index, (block_type, channels) in enumerate(zip(down_block_types, block_out_channels)):
            self.down_blocks.append(
                get_down_block(block_type, num_layers=layers_per_block, in_channels=channels_in,
                               out_channels=channels, temb_channels=time_dim,
                               add_downsample=index < len(block_out_channels) - 1, resnet_eps=1e-5,
                               resnet_act_fn="silu", resnet_groups=norm_num_groups,
                               attention_head_dim=attention_head_dim, downsample_padding=1)  # fmt: skip
            )
            channels_in = channels
        self.mid_block = UNetMidBlock2D(in_channels=channels_in, temb_channels=time_dim, resnet_eps=1e-5,
                                        resnet_groups=norm_num_groups, attention_head_dim=attention_head_dim)  # fmt: skip
        self.norm_out = nn.Sequential(nn.GroupNorm(norm_num_groups, channels_in), nn.SiLU())
        height, width = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
        factor = 2 ** (len(block_out_channels) - 1)
        positions = (height // factor) * (width // factor)
        self.pool = AttentionPool2d(channels_in, positions, attention_head_dim) if pooling == "attention" else None
        self.head = nn.Linear(channels_in, num_classes)

    def features(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """The pooled image summary the logits are read from (also a feature space for sample metrics)."""
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(len(sample))
        emb = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        hidden = self.conv_in(sample)
        for block in self.down_blocks:
            hidden, _ = block(hidden_states=hidden, temb=emb)
        hidden = self.norm_out(self.mid_block(hidden, emb))
        return self.pool(hidden) if self.pool is not None else hidden.mean((2, 3))

    def forward(self, sample: torch.Tensor, timestep, return_dict: bool = True):
        logits = self.head(self.features(sample, timestep))
        return ClassifierOutput(logits=logits) if return_dict else (logits,)

    def check_schedule(self, scheduler_config) -> None:
        """Raise ValueError if `scheduler_config` noises x_t differently from the schedule this was trained on."""
        expected = self.config.noise_schedule
        if not expected:
            return
        differing = {key: (expected.get(key), scheduler_config.get(key)) for key in SCHEDULE_KEYS
                     if key in expected and expected.get(key) != scheduler_config.get(key)}  # fmt: skip
        if differing:
            details = ", ".join(f"{key}: classifier {a!r} vs scheduler {b!r}" for key, (a, b) in differing.items())
            raise ValueError(f"`classifier` was trained on another noise schedule than the scheduler's ({details}).")


def schedule_of(scheduler_config) -> dict:
    """The part of a scheduler config that defines x_t, as stored in a classifier's `noise_schedule`."""
    return {key: scheduler_config.get(key) for key in SCHEDULE_KEYS}
