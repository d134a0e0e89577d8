"""Time per `step()` of our DDPM/DDIM schedulers against diffusers' DDPMScheduler/DDIMScheduler on the same
inputs, batch 1 and 64, thresholding off and on, measured alternately in one run. Target: ratio <= 1.0.

    python benchmarks/scheduler_overhead.py --repeats 5 --steps 200
"""

import argparse
import time

import torch
from common import machine_line, median
from diffusers import DDIMScheduler, DDPMScheduler

from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler

PAIRS = {"DDPM": (GuidedDDPMScheduler, DDPMScheduler), "DDIM": (GuidedDDIMScheduler, DDIMScheduler)}


def seconds_per_step(scheduler, model_output, sample, steps: int) -> float:
    scheduler.set_timesteps(50)
    timesteps = scheduler.timesteps.tolist()
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in range(steps):
        scheduler.step(model_output, timesteps[i % len(timesteps)], sample, generator=generator)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(machine_line())
    print(f"median of {args.repeats} alternating repeats of {args.steps} steps, 3x32x32 images")
    print(f"{'scheduler':<10} {'batch':>5} {'threshold':>9} {'ours us':>9} {'diffusers us':>13} {'ratio':>6}")
    for name, (ours_class, theirs_class) in PAIRS.items():
        for batch in (1, 64):
            for thresholding in (False, True):
                ours, theirs = ours_class(thresholding=thresholding), theirs_class(thresholding=thresholding)
                sample = torch.randn(batch, 3, 32, 32)
                model_output = torch.randn(batch, 3, 32, 32)
                times = {"ours": [], "theirs": []}
                for repeat in range(args.repeats):  # alternate which goes first: no order bias (caches, clocks)
                    order = [("ours", ours), ("theirs", theirs)][:: 1 if repeat % 2 == 0 else -1]
                    for key, scheduler in order:
                        times[key].append(seconds_per_step(scheduler, model_output, sample, args.steps))
                a, b = median(times["ours"]) * 1e6, median(times["theirs"]) * 1e6
                print(f"{name:<10} {batch:>5} {'dynamic' if thresholding else 'off':>9} {a:>9.1f} {b:>13.1f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
