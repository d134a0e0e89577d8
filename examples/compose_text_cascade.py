"""Compose Imagen's cascade from parts: a 14x14 text base (`scripts/train_shipped_models.sh mnist
low-resolution-text`, a TextToImagePipeline of one item alone) and the super-resolution stage of an existing cascade
folder (or a train_super_resolution.py run), saved as one TextCascadePipeline folder; then a row of samples, one
per digit, as base -> upsampled -> super-resolved.

    python examples/compose_text_cascade.py --base runs/mnist-text-14 --stage checkpoints/mnist-cascade \
        --output_dir runs/mnist-text-cascade
"""

import argparse
from pathlib import Path

import torch

from guided_diffusers.pipelines import (
    CascadePipeline, SuperResolutionPipeline, TextCascadePipeline, TextToImagePipeline, load_pipeline,
)  # fmt: skip
from guided_diffusers.pipelines.image_utils import make_grid

PROMPTS = [f"a handwritten {digit}" for digit in range(10)]


def stage_of(folder: str) -> SuperResolutionPipeline:
    """The super-resolution stage of a cascade folder, or a stage folder itself."""
    pipe = load_pipeline(folder)
    if isinstance(pipe, CascadePipeline):
        return pipe.super_resolution
    if not isinstance(pipe, SuperResolutionPipeline):
        raise ValueError(f"--stage {folder!r} is a {type(pipe).__name__}; give a cascade or a super-resolution stage.")
    return pipe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="a text-to-image folder of square images (the low resolution)")
    parser.add_argument("--stage", required=True, help="a CascadePipeline or SuperResolutionPipeline folder")
    parser.add_argument("--guidance_scale", type=float, default=3.0, help="CFG of the base, for the sample row")
    parser.add_argument("--num_inference_steps", type=int, default=20, help="each stage's DPM-Solver++ steps")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    base = load_pipeline(args.base)
    if not isinstance(base, TextToImagePipeline):
        raise ValueError(f"--base {args.base!r} is a {type(base).__name__}; give a text-to-image folder.")
    stage = stage_of(args.stage)
    cascade = TextCascadePipeline(base.tokenizer, base.text_encoder, base.unet, base.scheduler, stage.unet,
                                  stage.scheduler, **base.text_options())  # fmt: skip
    cascade.save_pretrained(args.output_dir)
    cascade.set_progress_bar_config(disable=True)
    out = cascade(PROMPTS, guidance_scale=args.guidance_scale, num_inference_steps=args.num_inference_steps,
                  super_resolution_steps=args.num_inference_steps, sampler="dpm2m", super_resolution_sampler="dpm2m",
                  thresholding="static", super_resolution_thresholding="static", output_type="pt",
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    rows = torch.cat([out.upsampled_images, out.images])  # the base's images upsampled, then super-resolved
    make_grid(rows.permute(0, 2, 3, 1).numpy(), rows=2, scale=2).save(Path(args.output_dir) / "samples.png")
    print(f"wrote {args.output_dir}: {type(cascade).__name__}, base {base.unet.config.sample_size} -> "
          f"{stage.unet.config.sample_size}px; evaluations per image {out.evaluations}")


if __name__ == "__main__":
    main()
