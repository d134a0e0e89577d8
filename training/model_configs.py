"""UNet configurations: named presets or a JSON file, fitted to the data's resolution, channels and classes."""

import json
from pathlib import Path

from diffusers import UNet2DConditionModel, UNet2DModel

# tiny: tests (seconds). shallow: a cascade's 14x14 base (two levels, 14 -> 7; 0.94M parameters). narrow: a cascade's
# super-resolution stage (16 channels at full size: 1.0 s per 64-image step at 28x28 on one CPU thread against 2.9 s
# for shallow, 0.91M parameters). small: the demo models, sized for 2 CPU cores (no attention: at 7x7 it costs ~70% more
# step time for little gain on MNIST-sized data). base: GPUs, with self-attention at the lowest resolution.
PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=2, norm_num_groups=16,
                  down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3),
    "shallow": dict(block_out_channels=(32, 64), layers_per_block=2, norm_num_groups=16,
                    down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
    "narrow": dict(block_out_channels=(16, 32, 64), layers_per_block=2, norm_num_groups=8,
                   down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3),
    "base": dict(block_out_channels=(64, 128, 256), layers_per_block=2, norm_num_groups=32,
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=32),
}  # fmt: skip


# text-conditional UNet2DConditionModels: cross-attention to the text encoder's token states at the two lowest
# resolutions (14x28 and 7x14 for 28x56 images; "pixel": the lowest only), where "left of" and "right of" can still
# be told apart.
# UNet2DConditionModel reads `attention_head_dim` as the number of heads (diffusers#2011; it refuses
# `num_attention_heads`), so TEXT_HEADS gives it under its real meaning. Many narrow heads (32, of width 2 and 4 at
# 64 and 128 channels) beat a few wide ones (width 32) on held-out two-item prompts, 100% against 80% at w = 3 with
# the same recipe, initial weights and data (README), at 1.3x the step time on latents and 2.4x on pixels
# (benchmarks/text_attention_heads.py)
TEXT_HEADS = {"tiny": 8, "small": 32, "compact": 32, "pixel": 32, "shallow": 32}
TEXT_PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 attention_head_dim=TEXT_HEADS["tiny"],
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=2, norm_num_groups=16,
                  attention_head_dim=TEXT_HEADS["small"],
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    # small with one block per level: 4.6M instead of 6.8M parameters and ~35% less step time on 4x8x16 latents,
    # so the shipped latent text model fits the weight budget and one session of CPU training
    "compact": dict(block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=16,
                    attention_head_dim=TEXT_HEADS["compact"],
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    # compact attending only at the lowest resolution (and the middle block), for 1x28x56 pixels: at 14x28 the 32
    # heads' attention over 392 positions costs more than the rest of a training step on a CPU
    # (benchmarks/text_attention_heads.py); 7x14 is still finer than the latent models' 4x8 and 2x4
    "pixel": dict(block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=16,
                  attention_head_dim=TEXT_HEADS["pixel"],
                  down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
    # a cascade's 14x14 text base: the class base's shallow preset (two levels) attending at 7x7 and in the middle
    "shallow": dict(block_out_channels=(32, 64), layers_per_block=2, norm_num_groups=16,
                    attention_head_dim=TEXT_HEADS["shallow"], down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
}  # fmt: skip

# AutoencoderKLs for latent diffusion (Rombach 2022): each level after the first halves the size, so "small" maps
# 1x32x32 (MNIST padded) to 4x8x8 latents, 4x fewer numbers; "tiny" halves once, for tests
VAE_PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4),
    "small": dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, latent_channels=4),
}

# noise-aware classifiers: the encoder halves of the UNet presets
CLASSIFIER_PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=16,
                 down_block_types=("DownBlock2D",) * 2),
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=2, norm_num_groups=16, attention_head_dim=32,
                  down_block_types=("DownBlock2D",) * 3),
}  # fmt: skip

# noise-aware CLIPs (GLIDE): a classifier-like image tower and a small text tower on frozen token states. "small" is
# 0.14M parameters, so that the guiding models (pixels and latents) and the clean grading model fit beside the other
# shipped weights in the 50 MB budget (0.27 MB each in float16)
CLIP_PRESETS = {
    "tiny": dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                 down_block_types=("DownBlock2D",) * 2, embedding_dim=16, text_width=16, text_heads=2),
    "small": dict(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=16,
                  down_block_types=("DownBlock2D",) * 3, embedding_dim=32, text_width=32, text_heads=2),
}  # fmt: skip


def _base_config(model_config: str, presets: dict, resolution: int) -> dict:
    """A preset or a JSON file, checked against the resolution it will see."""
    if model_config in presets:
        config = dict(presets[model_config])
    elif model_config.endswith(".json") and Path(model_config).is_file():
        config = json.loads(Path(model_config).read_text())
    else:
        raise ValueError(
            f"--model_config must be one of the presets {', '.join(presets)} or an existing .json file; "
            f"got {model_config!r}."
        )
    factor = 2 ** (len(config["down_block_types"]) - 1)
    if resolution % factor:
        raise ValueError(
            f"--resolution {resolution} must be divisible by {factor}, the downsampling factor of "
            f"--model_config {model_config!r} ({len(config['down_block_types'])} resolution levels)."
        )
    return config


def unet_config(
    model_config: str, resolution: int, channels: int, num_classes: int = 0, learned_variance: bool = False
) -> dict:
    """A `UNet2DModel` config; class-conditional models get num_classes + 1 embeddings (the last: null class)."""
    config = _base_config(model_config, PRESETS, resolution)
    config.update(
        sample_size=resolution,
        in_channels=channels,
        out_channels=2 * channels if learned_variance else channels,  # [prediction, variance interpolation]
        num_class_embeds=num_classes + 1 if num_classes else None,
    )
    return config


def super_resolution_unet_config(model_config: str, resolution: int, channels: int, learned_variance: bool = False,
                                 num_classes: int = 0) -> dict:  # fmt: skip
    """A super-resolution UNet config (a cascade's later stage): it reads x_t and the augmented upsampled
    low-resolution image stacked along channels. Without classes a `UNet2DModel` told the augmentation level through
    its class embedding (`class_embed_type="timestep"`, as DeepFloyd IF's stage II is told its noise level); with
    `num_classes` a `UNet2DConditionModel` with num_classes + 1 class embeddings (the last: null class, for label
    dropout and CFG), told the level through `timestep_cond` (as LCM is told its guidance scale) and attending to
    nothing (its middle block has no attention, unlike UNet2DModel's)."""
    config = unet_config(model_config, resolution, channels, learned_variance=learned_variance)
    config.update(in_channels=2 * channels)
    if not num_classes:
        return {**config, "class_embed_type": "timestep"}
    return {**config, "num_class_embeds": num_classes + 1, "time_cond_proj_dim": config["block_out_channels"][0],
            "mid_block_type": "UNetMidBlock2D"}  # fmt: skip


def build_unet(config: dict) -> UNet2DModel | UNet2DConditionModel:
    """The UNet a config describes: a UNet2DConditionModel where it sets `time_cond_proj_dim` (a class-conditioned
    super-resolution stage), else a UNet2DModel."""
    return UNet2DConditionModel(**config) if config.get("time_cond_proj_dim") else UNet2DModel(**config)


def text_unet_config(model_config: str, height: int, width: int, channels: int, cross_attention_dim: int) -> dict:
    """A `UNet2DConditionModel` config for (height, width) images attending to `cross_attention_dim` token states."""
    config = _base_config(model_config, TEXT_PRESETS, height)
    _base_config(model_config, TEXT_PRESETS, width)  # both sides must divide by the downsampling factor
    config.update(sample_size=(height, width), in_channels=channels, out_channels=channels,
                  cross_attention_dim=cross_attention_dim)  # fmt: skip
    return config


def build_text_unet(config: dict) -> UNet2DConditionModel:
    return UNet2DConditionModel(**config)


def vae_config(model_config: str, resolution: int, channels: int) -> dict:
    """An `AutoencoderKL` config for this data (its downsampling factor must divide the resolution)."""
    if model_config not in VAE_PRESETS:
        raise ValueError(f"--vae_config must be one of {', '.join(VAE_PRESETS)}; got {model_config!r}.")
    config = dict(VAE_PRESETS[model_config])
    levels = len(config["block_out_channels"])
    factor = 2 ** (levels - 1)
    if resolution % factor:
        raise ValueError(f"--resolution {resolution} must be divisible by {factor}, the downsampling factor of "
                         f"--vae_config {model_config!r}.")  # fmt: skip
    config.update(in_channels=channels, out_channels=channels, sample_size=resolution,
                  down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels)  # fmt: skip
    return config


def classifier_config(model_config: str, resolution: int, channels: int, num_classes: int = 10,
                      pooling: str = "attention", noise_schedule: dict | None = None) -> dict:  # fmt: skip
    """A `NoiseAwareClassifier` config for this data and noise schedule."""
    config = _base_config(model_config, CLASSIFIER_PRESETS, resolution)
    config.update(sample_size=resolution, in_channels=channels, num_classes=num_classes, pooling=pooling,
                  noise_schedule=noise_schedule)  # fmt: skip
    return config


def clip_config(model_config: str, height: int, width: int, channels: int, text_hidden_size: int, **recorded) -> dict:
    """A `NoiseAwareCLIP` config for (height, width) inputs and token states of width `text_hidden_size`; `recorded`:
    what the model must remember (noise_schedule, noise_free, text_encoder_id, max_length)."""
    config = _base_config(model_config, CLIP_PRESETS, height)
    _base_config(model_config, CLIP_PRESETS, width)
    config.update(sample_size=(height, width), in_channels=channels, text_hidden_size=text_hidden_size, **recorded)
    return config
