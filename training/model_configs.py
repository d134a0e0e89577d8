"""UNet configurations: named presets or a JSON file, fitted to the data's resolution, channels and classes."""

import json
from pathlib import Path

from diffusers import UNet2DModel

# tiny: tests (seconds). small: the demo models, sized for 2 CPU cores (no attention: at 7x7 it costs ~70% more
# step time for little gain on MNIST-sized data). base: GPUs, with self-attention at the lowest resolution.
PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2),
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=2, norm_num_groups=16,
                  down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3),
    "base": dict(block_out_channels=(64, 128, 256), layers_per_block=2, norm_num_groups=32,
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=32),
}  # fmt: skip


def unet_config(
    model_config: str, resolution: int, channels: int, num_classes: int = 0, learned_variance: bool = False
) -> dict:
    """A `UNet2DModel` config; class-conditional models get num_classes + 1 embeddings (the last: null class)."""
    if model_config in PRESETS:
        config = dict(PRESETS[model_config])
    elif model_config.endswith(".json") and Path(model_config).is_file():
        config = json.loads(Path(model_config).read_text())
    else:
        raise ValueError(
            f"--model_config must be one of the presets {', '.join(PRESETS)} or an existing .json file; "
            f"got {model_config!r}."
        )
    factor = 2 ** (len(config["down_block_types"]) - 1)
    if resolution % factor:
        raise ValueError(
            f"--resolution {resolution} must be divisible by {factor}, the downsampling factor of "
            f"--model_config {model_config!r} ({len(config['down_block_types'])} resolution levels)."
        )
    config.update(
        sample_size=resolution,
        in_channels=channels,
        out_channels=2 * channels if learned_variance else channels,  # [prediction, variance interpolation]
        num_class_embeds=num_classes + 1 if num_classes else None,
    )
    return config


def build_unet(config: dict) -> UNet2DModel:
    return UNet2DModel(**config)
