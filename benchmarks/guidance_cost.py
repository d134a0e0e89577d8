"""Per-step cost of each guidance mode, as a ratio to one plain UNet forward at the same batch size, measured
side by side in one run, with the network evaluations each call reports. CFG should cost one batched UNet call
(2x the batch); classifier guidance one UNet call plus one classifier forward and backward; diffusers' guiders
(APG, CFG-Zero*, TCFG), run by the same loop, what CFG costs plus their own arithmetic.

    python benchmarks/guidance_cost.py --batch_size 16 --steps 10 --repeats 3
"""

import argparse
import inspect
import time

import torch
from common import machine_line, median

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.model_configs import build_unet, classifier_config, unet_config


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    scheduler = GuidedDDIMScheduler()
    unet = build_unet(unet_config("small", 28, 1, num_classes=10)).eval()
    classifier = NoiseAwareClassifier(**classifier_config("small", 28, 1, 10, "attention", schedule_of(scheduler.config))).eval()
    pipe = GuidedDiffusionPipeline(unet, scheduler, classifier=classifier, null_class_label=10)
    pipe.set_progress_bar_config(disable=True)
    batch, labels = args.batch_size, torch.arange(args.batch_size) % 10
    x = torch.randn(batch, 1, 28, 28)

    pipe.scheduler.set_timesteps(args.steps)

    @torch.no_grad()
    def bare_unet():
        """The floor: the same UNet calls a plain sampling loop makes, nothing else."""
        for t in pipe.scheduler.timesteps:
            unet(x, t, class_labels=labels)

    modes = {
        "conditional (w = 1)": dict(guidance_scale=1.0),
        "CFG (w = 3)": dict(guidance_scale=3.0),
        "classifier guidance (s = 1)": dict(guidance_scale=0.0, classifier_scale=1.0),
        "CFG + classifier": dict(guidance_scale=3.0, classifier_scale=1.0),
    }
    expected = {"conditional (w = 1)": "1 UNet", "CFG (w = 3)": "1 UNet at 2x batch",
                "classifier guidance (s = 1)": "1 UNet + classifier fwd/bwd", "CFG + classifier": "both"}  # fmt: skip
    if guiders_available():  # the same script runs on code from before guiders/ existed, for a before/after ratio
        from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeZeroStarGuidance, TangentialClassifierFreeGuidance

        modes.update({"APG (w = 3, diffusers)": dict(guider=AdaptiveProjectedGuidance(guidance_scale=3.0)),
                      "CFG-Zero* (w = 3, diffusers)": dict(guider=ClassifierFreeZeroStarGuidance(guidance_scale=3.0)),
                      "TCFG (w = 3, diffusers)": dict(guider=TangentialClassifierFreeGuidance(guidance_scale=3.0))})  # fmt: skip
        expected.update({name: "1 UNet at 2x batch + its arithmetic" for name in modes if "diffusers" in name})
    runs = {name: (lambda kwargs=kwargs: pipe(batch_size=batch, class_labels=labels, num_inference_steps=args.steps,
                                              output_type="pt", **kwargs)) for name, kwargs in modes.items()}  # fmt: skip
    bare_unet()  # warm-up
    evaluations = {name: getattr(run(), "evaluations", None) for name, run in runs.items()}
    per_step = {name: [] for name in modes}
    floor = []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every mode alike
        for name, run in runs.items():
            base, seconds = timed(bare_unet, 1), timed(run, 1)
            floor.append(base / args.steps)
            per_step[name].append(seconds / args.steps)
    print(machine_line())
    print(f"small UNet ({sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M), small classifier "
          f"({sum(p.numel() for p in classifier.parameters()) / 1e6:.2f}M), batch {batch}, DDIM {args.steps} steps, "
          f"median of {args.repeats} interleaved runs")  # fmt: skip
    print(f"one UNet forward (bare loop): {median(floor) * 1000:.1f} ms")
    print(f"{'mode':<30} {'ms/step':>8} {'x UNet forward':>15} {'evaluations (unet/calls/classifier)':>36}  expected cost")
    for name in modes:
        counted = evaluations[name]
        counts = "n/a" if counted is None else "/".join(str(counted.get(k, 0)) for k in ("unet", "unet_calls", "classifier"))
        ratio = median(per_step[name]) / median(floor)  # a ratio of medians: steadier than the median of ratios
        print(f"{name:<30} {median(per_step[name]) * 1000:>8.1f} {ratio:>15.2f} {counts:>36}  {expected[name]}")


def guiders_available() -> bool:
    """Whether the pipelines take `guider=` (they did not before guiders/ existed)."""
    return "guider" in inspect.signature(GuidedDiffusionPipeline.__call__).parameters


if __name__ == "__main__":
    main()
