"""Cost of the text UNet's attention layout, side by side in one run: a training step (forward, backward, AdamW) of
each text preset as `TEXT_PRESETS` builds it (TEXT_HEADS heads per attention layer: 32, of width 2 and 4 at 64 and
128 channels) and of the same UNet with heads of width 32 (2 and 4 heads), on pixels (1x28x56) and latents (4x8x16).
The many narrow heads align two-item prompts better (README); this is what they cost, and what attending at 14x28
costs (compact) against attending at 7x14 only (pixel).

    python benchmarks/text_attention_heads.py --model_config compact pixel --batch_size 64 --steps 2 --repeats 3
"""

import argparse

import torch
from common import best_of_interleaved, machine_line, repeated, unet_training_step

from guided_diffusers.training.model_configs import build_text_unet, text_unet_config

TOKENS, TOKEN_WIDTH = 16, 384  # MiniLM's hidden size; a two-item caption is well under 16 tokens


def layouts(model_config: str, height: int, width: int, channels: int) -> dict:
    config = text_unet_config(model_config, height, width, channels, TOKEN_WIDTH)
    # UNet2DConditionModel reads attention_head_dim as the number of heads (diffusers#2011)
    wide_heads = tuple(max(level_channels // 32, 1) for level_channels in config["block_out_channels"])
    return {model_config: config, f"{model_config}, heads of width 32": dict(config, attention_head_dim=wide_heads)}


def heads_and_widths(unet) -> tuple[list[int], list[int]]:
    attentions = [module for name, module in unet.named_modules() if name.endswith("attn1")]
    return sorted({a.heads for a in attentions}), sorted({a.inner_dim // a.heads for a in attentions})


def training_step(unet, batch: int):
    height, width = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, height, width)
    return unet_training_step(unet, x, encoder_hidden_states=torch.randn(batch, TOKENS, TOKEN_WIDTH))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config", nargs="+", default=["compact"], help="text presets; ratios are to the first")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    print(f"{', '.join(args.model_config)} text UNets, {TOKENS} context tokens of width {TOKEN_WIDTH}, batch {args.batch_size}; "
          f"best of {args.repeats} interleaved repeats")  # fmt: skip
    print(f"\n| input | layout | heads | head widths | params (M) | s / training step | time / {args.model_config[0]}'s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for input_name, size in {"pixels 1x28x56": (28, 56, 1), "latents 4x8x16": (8, 16, 4)}.items():
        torch.manual_seed(0)
        configs = {name: config for preset in args.model_config for name, config in layouts(preset, *size).items()}
        unets = {name: build_text_unet(config) for name, config in configs.items()}
        times = best_of_interleaved({name: repeated(training_step(unet, args.batch_size), args.steps)
                                     for name, unet in unets.items()}, args.repeats)  # fmt: skip
        preset = times[args.model_config[0]]
        for name, unet in unets.items():
            params = sum(p.numel() for p in unet.parameters()) / 1e6
            heads, widths = heads_and_widths(unet)
            print(f"| {input_name} | {name} | {heads} | {widths} | {params:.2f} | {times[name] / args.steps:.3f} | "
                  f"{times[name] / preset:.2f}x |")


if __name__ == "__main__":
    main()
