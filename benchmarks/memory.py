"""Peak resident memory of sampling, with and without guidance: each mode runs in a fresh process, which reports
its RSS once the models are built and its peak RSS (ru_maxrss) after sampling.

    python benchmarks/memory.py --batch_size 64 --steps 10
"""

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from common import machine_line

MODES = {
    "unguided (w = 1)": dict(guidance_scale=1.0),
    "CFG (w = 3)": dict(guidance_scale=3.0),
    "classifier guidance (s = 1)": dict(guidance_scale=0.0, classifier_scale=1.0),
    "CFG + classifier": dict(guidance_scale=3.0, classifier_scale=1.0),
}


def rss_mib() -> float:
    """Current resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(mode: str, batch: int, steps: int) -> None:
    from guided_diffusers.models import NoiseAwareClassifier, schedule_of
    from guided_diffusers.pipelines import GuidedDiffusionPipeline
    from guided_diffusers.schedulers import GuidedDDIMScheduler
    from guided_diffusers.training.model_configs import build_unet, classifier_config, unet_config

    torch.manual_seed(0)
    scheduler = GuidedDDIMScheduler()
    unet = build_unet(unet_config("small", 28, 1, num_classes=10)).eval()
    classifier = NoiseAwareClassifier(**classifier_config("small", 28, 1, 10, "attention", schedule_of(scheduler.config)))
    pipe = GuidedDiffusionPipeline(unet, scheduler, classifier=classifier.eval(), null_class_label=10)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(batch) % 10
    pipe(batch_size=1, class_labels=labels[:1], num_inference_steps=1, output_type="pt")  # allocator warm-up
    before = rss_mib()
    pipe(batch_size=batch, class_labels=labels, num_inference_steps=steps, output_type="pt", **MODES[mode])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"models_loaded_mib": before, "peak_mib": peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.batch_size, args.steps)
    print(machine_line())
    print(f"small UNet + small classifier, batch {args.batch_size}, DDIM {args.steps} steps, one fresh process per mode")
    print("\n| mode | RSS with models loaded (MiB) | peak RSS (MiB) | peak - loaded (MiB) |\n| --- | --- | --- | --- |")
    for mode in MODES:
        command = [sys.executable, __file__, "--child", mode, "--batch_size", str(args.batch_size), "--steps", str(args.steps)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        loaded, peak = result["models_loaded_mib"], result["peak_mib"]
        print(f"| {mode} | {loaded:.0f} | {peak:.0f} | {peak - loaded:.0f} |")


if __name__ == "__main__":
    main()
