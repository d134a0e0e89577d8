"""The CFG scale that each CFG++ DDIM step equals (`equivalent_cfg_scale`), per unit of lambda, on a pipeline's own
noise schedule: read a CFG++ lambda as the CFG scales it amounts to at a given step count.

    python examples/cfg_plus_plus_scales.py --pipeline checkpoints/mnist --num_inference_steps 20 50
"""

import argparse

import numpy as np

from guided_diffusers.guiders.cfg_plus_plus import equivalent_cfg_scale
from guided_diffusers.pipelines import make_scheduler
from guided_diffusers.schedulers import GuidedDDPMScheduler


def scales_per_lambda(scheduler_config, steps: int) -> np.ndarray:
    """w / lambda at each DDIM step (eta = 0) of `steps`, first to last."""
    scheduler = make_scheduler("ddim", scheduler_config)
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    abar = scheduler.alphas_cumprod
    landing = [float(abar[t]) for t in timesteps[1:]] + [float(scheduler.final_alpha_cumprod)]
    return np.array([equivalent_cfg_scale(1.0, float(abar[t]), prev) for t, prev in zip(timesteps, landing)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a pipeline folder or Hub id (its scheduler/ is read)")
    parser.add_argument("--num_inference_steps", nargs="+", type=int, default=[20, 50])
    args = parser.parse_args(argv)
    config = GuidedDDPMScheduler.from_pretrained(args.pipeline, subfolder="scheduler").config
    print("| DDIM steps | w / lambda: first step | median | second-to-last | last |\n| --- | --- | --- | --- | --- |")
    for steps in args.num_inference_steps:
        w = scales_per_lambda(config, steps)
        print(f"| {steps} | {w[0]:.2f} | {np.median(w):.2f} | {w[-2]:.2f} | {w[-1]:.2f} |")


if __name__ == "__main__":
    main()
