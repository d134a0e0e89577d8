"""Background grain of a sampler's images: the share of background pixels (more than 2 px from any stroke) that are not
black, beside the real images' share, and a grid of each row's first samples (docs/schedulers.md, issue 28).

FD in ImageNet features (EfficientNet-Lite0) rose for the EDM Heun sampler and for Karras levels on the shipped MNIST
model while FD in the own classifier's features did not; this measures the one thing the sample grids showed: grey
speckle on the black background. A row is SAMPLER:STEPS, e.g. `heun:10 heun-sigma-min-0.1:10 dpm2m:20`, sampled with
CFG at --guidance_scale, or SAMPLER:STEPS:GUIDER with a guider spec (`dpm2m:20:autoguidance:guidance_scale=3`) for
the guidance methods' rows (issue 24).
"""

import argparse
import re
from pathlib import Path

from common import machine_line, network_calls

from guided_diffusers.evaluation.judge import real_images
from guided_diffusers.evaluation.metrics import background_grain_share
from guided_diffusers.evaluation.sweeps import generate
from guided_diffusers.guiders import guider_from_spec
from guided_diffusers.pipelines import SAMPLERS, GuidedDiffusionPipeline
from guided_diffusers.pipelines.image_utils import latents_to_images, make_grid


def parse_row(text: str) -> tuple[str, int, str | None]:
    sampler, _, rest = text.partition(":")
    steps, _, guider = rest.partition(":")
    if sampler not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"a row is SAMPLER:STEPS[:GUIDER] with a sampler of {sorted(SAMPLERS)} and "
                                         f"steps >= 1; got {text!r}")  # fmt: skip
    if guider:
        try:
            guider_from_spec(guider)  # a misspelt spec is refused here, before any sampling
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(f"row {text!r}: {error}") from None
    return sampler, int(steps), guider or None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--rows", nargs="+", type=parse_row, required=True, help="SAMPLER:STEPS[:GUIDER], e.g. heun:10")
    parser.add_argument("--dataset_name", default="mnist", help="the real images whose share is the reference")
    parser.add_argument("--num_samples", type=int, default=100)
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid_dir", help="save each row's first 20 samples here as SAMPLER-STEPS[-GUIDER].png, the guider spec's "
                        "punctuation as dashes")
    args = parser.parse_args(argv)
    if args.grid_dir:
        Path(args.grid_dir).mkdir(parents=True, exist_ok=True)  # before sampling, not after the first row
    print(machine_line(), flush=True)
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.image_config
    real, _ = real_images(args.dataset_name, "test", args.num_samples, args.seed, config.sample_size, config.in_channels)
    print(f"static clipping, N = {args.num_samples}, seed {args.seed}\n")
    print("| sampler | steps | guidance | network calls | background grain |\n| --- | --- | --- | --- | --- |")
    print(f"| real {args.dataset_name} (test) | | | | {background_grain_share(real):.4f} |", flush=True)
    for sampler, steps, guider in args.rows:
        setting = dict(sampler=sampler, num_inference_steps=steps, guidance_scale=None if guider else args.guidance_scale,
                       classifier_scale=0.0, thresholding="static", eta=0.0, guider=guider)  # fmt: skip
        images, _ = generate(pipe, setting, args.num_samples, args.num_samples, args.seed)
        calls = network_calls(pipe, sampler, steps)
        guidance = guider or f"CFG {args.guidance_scale:g}"
        print(f"| {sampler} | {steps} | {guidance} | {calls} | {background_grain_share(images):.4f} |", flush=True)
        if args.grid_dir:
            grid = make_grid(latents_to_images(images[:20].float(), "np"), rows=2, scale=4)
            name = f"{sampler}-{steps}" + (f"-{re.sub(r'[^A-Za-z0-9_.+]+', '-', guider)}" if guider else "")
            grid.save(Path(args.grid_dir) / f"{name}.png")


if __name__ == "__main__":
    main()
