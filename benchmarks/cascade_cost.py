"""Cost of a cascade (Ho et al. 2021) against the single-stage model of the same data, side by side in one run:
forward FLOPs per image of each UNet (counted by torch's FlopCounterMode, so the same on any machine), training cost
(a training step's FLOPs and seconds at the recipes' batch, times the optimizer steps each model's card records) and
sampling cost per image at the same settings (network evaluations, FLOPs, seconds).

    python benchmarks/cascade_cost.py --cascade ../checkpoints/mnist-cascade --single_stage ../checkpoints/mnist
"""

import argparse
import copy
import re

import torch
from common import best_of_interleaved, machine_line, repeated, unet_training_step
from torch.utils.flop_counter import FlopCounterMode

from guided_diffusers.pipelines import CascadePipeline, GuidedDiffusionPipeline, make_scheduler
from guided_diffusers.pipelines.noise_augmentation import stage_inputs
from guided_diffusers.training.model_card import read_model_card, sections


def trained_steps(section: str) -> int:
    """Optimizer steps from a card's training section ("- steps: N optimizer steps of B images ...")."""
    return int(re.search(r"- steps: (\d+) optimizer steps", section).group(1))


def conditioning(unet, batch: int, stage: bool) -> dict:
    """What each UNet reads besides x_t: a class label, or (the super-resolution stage) the augmentation level (and
    the class, for a class-conditioned stage)."""
    if stage:
        labels = torch.zeros(batch, dtype=torch.long) if getattr(unet.config, "num_class_embeds", None) else None
        return stage_inputs(unet.config, torch.full((batch,), 0.2), labels)
    return {"class_labels": torch.zeros(batch, dtype=torch.long)} if unet.config.num_class_embeds else {}


def inputs(unet, batch: int) -> torch.Tensor:
    config = unet.config
    return torch.randn(batch, config.in_channels, config.sample_size, config.sample_size)


def flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def forward_flops(unet, stage: bool) -> int:
    """FLOPs of one network evaluation on one image."""
    with torch.no_grad():
        return flops(lambda: unet(inputs(unet, 1), torch.tensor([500]), **conditioning(unet, 1, stage)))


def training_step(unet, batch: int, stage: bool):
    """A training step's closure on a copy of `unet` (in training mode): the loaded pipelines sample afterwards with
    their shipped weights, not with weights the timed optimizer steps moved."""
    trained = copy.deepcopy(unet).train()
    return unet_training_step(trained, inputs(trained, batch), **conditioning(trained, batch, stage))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cascade", required=True)
    parser.add_argument("--single_stage", required=True)
    parser.add_argument("--batch_size", type=int, default=64, help="the training recipes' batch")
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=20, help="sampling steps of every stage (DPM-Solver++(2M))")
    parser.add_argument("--sampling_batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cascade, single = CascadePipeline.from_pretrained(args.cascade), GuidedDiffusionPipeline.from_pretrained(args.single_stage)
    cascade_card, single_card = (sections(read_model_card(folder)[1]) for folder in (args.cascade, args.single_stage))
    # name: (UNet, is the super-resolution stage, optimizer steps it was trained for)
    unets = {"single-stage UNet": (single.unet, False, trained_steps(single_card["Training"])),
             "cascade base UNet": (cascade.unet, False, trained_steps(cascade_card["Training"])),
             "cascade super-resolution UNet": (cascade.super_resolution_unet, True,
                                               trained_steps(cascade_card["Super-resolution stage"]))}  # fmt: skip
    print(machine_line())
    print(f"training batch {args.batch_size}; sampling: CFG {args.guidance_scale:g}, DPM-Solver++(2M) {args.steps} steps "
          f"per stage, static clipping, batch {args.sampling_batch}; best of {args.repeats} interleaved repeats")  # fmt: skip

    train = best_of_interleaved({name: repeated(training_step(unet, args.batch_size, stage), 2)
                                 for name, (unet, stage, _) in unets.items()}, args.repeats)  # fmt: skip
    print("\n| UNet | params (M) | resolution | forward GFLOPs / image | training step GFLOPs | training step s "
          "| steps trained | training PFLOPs | training hours at this step time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    forward = {}
    for name, (unet, stage, steps) in unets.items():
        forward[name] = forward_flops(unet, stage)
        step_flops = flops(training_step(unet, args.batch_size, stage))
        step_seconds = train[name] / 2
        print(f"| {name} | {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} | {unet.config.sample_size} | "
              f"{forward[name] / 1e9:.4g} | {step_flops / 1e9:.1f} | {step_seconds:.3f} | {steps} | "
              f"{step_flops * steps / 1e15:.2f} | {step_seconds * steps / 3600:.2f} |")  # fmt: skip

    labels = torch.arange(args.sampling_batch) % cascade.num_classes
    common = dict(class_labels=labels, guidance_scale=args.guidance_scale, num_inference_steps=args.steps,
                  thresholding="static", output_type="pt")  # fmt: skip
    single.scheduler = make_scheduler("dpm2m", single.scheduler.config)
    outputs = {}
    runs = {"single stage": lambda: outputs.__setitem__("single stage", single(**common, generator=torch.manual_seed(0))),
            "cascade": lambda: outputs.__setitem__("cascade", cascade(**common, sampler="dpm2m",
                                                                      super_resolution_steps=args.steps,
                                                                      super_resolution_sampler="dpm2m",
                                                                      generator=torch.manual_seed(0)))}  # fmt: skip
    for pipe in (single, cascade):
        pipe.set_progress_bar_config(disable=True)
    sample = best_of_interleaved(runs, args.repeats)
    evaluations = {"single stage": {"single-stage UNet": outputs["single stage"].evaluations["unet"]},
                   "cascade": {"cascade base UNet": outputs["cascade"].evaluations["unet"],
                               "cascade super-resolution UNet": outputs["cascade"].evaluations["super_resolution_unet"]}}  # fmt: skip
    print("\n| sampler of | UNet evaluations / image | GFLOPs / image | s / image | FLOPs ratio to single stage "
          "| time ratio to single stage |")
    print("| --- | --- | --- | --- | --- | --- |")
    cost = {name: sum(count * forward[unet] for unet, count in counts.items()) for name, counts in evaluations.items()}
    for name, counts in evaluations.items():
        print(f"| {name} | {' + '.join(str(c) for c in counts.values())} | {cost[name] / 1e9:.4g} | "
              f"{sample[name] / args.sampling_batch:.4f} | {cost[name] / cost['single stage']:.2f} | "
              f"{sample[name] / sample['single stage']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
