"""The size of the guidance update against the unconditional prediction, per step: r = ||D_c - D_u|| / ||D_u|| per
image, the quantity magnitude-aware guidance (MAMBO-G, diffusers' `MagnitudeAwareGuidance`) reads, and the scale
1 + (w - 1) exp(-alpha r) it would use at each --alpha. It says which alpha makes MAG differ from CFG on a model
(issue 24): where alpha r is far below 1, MAG is CFG at w.

    python benchmarks/guidance_update_ratio.py --pipeline checkpoints/mnist --alpha 8 50 200
"""

import argparse
import math

import torch
from common import machine_line
from diffusers.guiders import MagnitudeAwareGuidance

from guided_diffusers.evaluation.sweeps import make_scheduler
from guided_diffusers.pipelines import SAMPLERS, GuidedDiffusionPipeline


def step_ratios(pipe, sampler: str, steps: int, num_images: int, guidance_scale: float, seed: int) -> torch.Tensor:
    """r per (step, image) along MAG's own trajectories at alpha = 0 (CFG at w), class-balanced labels."""
    ratios = []

    class RatioRecorder(MagnitudeAwareGuidance):
        """diffusers' MAG, recording r for every image at every guided step into `ratios` (a pipeline call guides
        with a copy of its guider; the copy shares this class). Predictions arrive per image, flattened
        (`guiders.diffusers_api.combine`)."""

        def forward(self, pred_cond=None, pred_uncond=None):
            if pred_uncond is not None:
                ratios.append((pred_cond - pred_uncond).flatten(1).norm(dim=1) / pred_uncond.flatten(1).norm(dim=1))
            return super().forward(pred_cond, pred_uncond)

    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    labels = [i % pipe.num_classes for i in range(num_images)]
    pipe(batch_size=num_images, class_labels=labels, guider=RatioRecorder(guidance_scale=guidance_scale, alpha=0.0),
         num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="pt")  # fmt: skip
    return torch.stack(ratios)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a class-conditional pipeline folder")
    parser.add_argument("--sampler", default="dpm2m", choices=sorted(SAMPLERS))
    parser.add_argument("--num_inference_steps", type=int, default=20)
    parser.add_argument("--num_images", type=int, default=20)
    parser.add_argument("--guidance_scale", type=float, default=3.0, help="w of the trajectories (CFG)")
    parser.add_argument("--alpha", type=float, nargs="+", default=[8.0], help="MAG's alpha values to tabulate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_inference_steps < 1 or args.num_images < 1 or args.guidance_scale <= 1:
        parser.error("--num_inference_steps and --num_images must be >= 1 and --guidance_scale above 1")
    if any(not math.isfinite(a) or a < 0 for a in args.alpha):
        parser.error(f"--alpha must be finite and >= 0; got {args.alpha}")
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if not pipe.num_classes or pipe.config.null_class_label is None:
        parser.error(f"--pipeline {args.pipeline} is not a class-conditional model with a null label (CFG)")
    ratios = step_ratios(pipe, args.sampler, args.num_inference_steps, args.num_images, args.guidance_scale, args.seed)
    print(machine_line())
    print(f"{args.pipeline}, {args.sampler} {args.num_inference_steps} steps, CFG w = {args.guidance_scale}, "
          f"{args.num_images} images, seed {args.seed}")
    print("| step | r mean | r min | r max | " + " | ".join(f"MAG scale at alpha {a:g}" for a in args.alpha) + " |")
    print("| --- " * (4 + len(args.alpha)) + "|")
    for step, ratio in enumerate(ratios):
        scales = [float((1 + (args.guidance_scale - 1) * torch.exp(-a * ratio)).mean()) for a in args.alpha]
        print(f"| {step} | {ratio.mean():.4f} | {ratio.min():.4f} | {ratio.max():.4f} | "
              + " | ".join(f"{s:.2f}" for s in scales) + " |")
    print(f"all steps: r from {ratios.min():.4f} to {ratios.max():.4f}, mean {ratios.mean():.4f}")


if __name__ == "__main__":
    main()
