"""Sampling cost against its floor: the wall time of a whole sampling run divided by (model evaluations x the time
of one UNet forward at that batch), for our pipeline and for stock `diffusers.DDIMPipeline` on the same UNet, and
the UNet-forward speed options (inference_mode, channels_last, torch.compile) side by side.

    python benchmarks/pipeline_overhead.py --batch_sizes 1 16 --steps 20 --repeats 5
"""

import argparse

import torch
from common import best_of_interleaved, machine_line
from diffusers import DDIMPipeline, DDIMScheduler

from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.model_configs import build_unet, unet_config


def sampling_runs(unet, batch: int, steps: int) -> dict:
    """Whole DDIM sampling runs (eta 0, no clipping, NumPy output) and the floor: the bare UNet calls they make."""
    config = dict(clip_sample=False, set_alpha_to_one=True)
    ours = GuidedDiffusionPipeline(unet, GuidedDDIMScheduler(**config))
    stock = DDIMPipeline(unet, DDIMScheduler(**config))
    for pipe in (ours, stock):
        pipe.set_progress_bar_config(disable=True)
    x = torch.randn(batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    schedule = GuidedDDIMScheduler(**config)
    schedule.set_timesteps(steps)
    timesteps = schedule.timesteps

    @torch.no_grad()
    def floor():
        for t in timesteps:
            unet(x, t)

    return {
        "UNet calls only (floor)": floor,
        "ours (GuidedDiffusionPipeline)": lambda: ours(batch_size=batch, num_inference_steps=steps, output_type="np"),
        "diffusers DDIMPipeline": lambda: stock(batch_size=batch, num_inference_steps=steps, eta=0.0, output_type="np"),
    }


def forward_options(unet, batch: int) -> dict:
    """One UNet forward under each speed option that keeps the output the same."""
    x = torch.randn(batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    t = torch.tensor(500)
    channels_last = build_unet(dict(unet.config)).eval()
    channels_last.load_state_dict(unet.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last)
    x_last = x.to(memory_format=torch.channels_last)
    options = {
        "no_grad (default)": lambda: _no_grad(unet, x, t),
        "inference_mode": lambda: _inference_mode(unet, x, t),
        "channels_last": lambda: _no_grad(channels_last, x_last, t),
    }
    try:
        compiled = torch.compile(unet)
        _no_grad(compiled, x, t)  # compile now, outside the timing
        options["torch.compile"] = lambda: _no_grad(compiled, x, t)
    except Exception as error:  # noqa: BLE001 (no compiler here: report it and go on)
        print(f"torch.compile unavailable: {type(error).__name__}: {str(error).splitlines()[0]}")
    reference = _no_grad(unet, x, t)
    for name, run in options.items():
        difference = (run() - reference).abs().max().item()
        print(f"  {name}: max |difference| from default = {difference:.1e}")
    return options


def _no_grad(unet, x, t):
    with torch.no_grad():
        return unet(x, t).sample


def _inference_mode(unet, x, t):
    with torch.inference_mode():
        return unet(x, t).sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model_config", default="small")
    args = parser.parse_args()
    torch.manual_seed(0)
    unet = build_unet(unet_config(args.model_config, 28, 1)).eval()
    print(machine_line())
    print(f"{args.model_config} unconditional UNet ({sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M), 1x28x28, "
          f"DDIM {args.steps} steps, best of {args.repeats} interleaved repeats")  # fmt: skip
    print("\n| batch | run | s per run | ratio to floor |\n| --- | --- | --- | --- |")
    for batch in args.batch_sizes:
        best = best_of_interleaved(sampling_runs(unet, batch, args.steps), args.repeats)
        floor = best["UNet calls only (floor)"]
        for name, value in best.items():
            print(f"| {batch} | {name} | {value:.4f} | {value / floor:.3f} |")
    print("\nUNet forward speed options (outputs compared with the default):")
    for batch in args.batch_sizes:
        best = best_of_interleaved(forward_options(unet, batch), args.repeats * 4)
        default = best["no_grad (default)"]
        print("\n| batch | option | ms per forward | ratio to default |\n| --- | --- | --- | --- |")
        for name, value in best.items():
            print(f"| {batch} | {name} | {value * 1000:.2f} | {value / default:.3f} |")


if __name__ == "__main__":
    main()
