"""What CLIP guidance costs against classifier-free guidance on a text-to-image pipeline with a `clip_model/` (GLIDE's
comparison at equal cost, issue 27): seconds per image of each setting, timed side by side in one run (interleaved,
best of --repeats), as a ratio to CFG at the full step count, with the UNet and CLIP evaluations each call reports.
CFG at half the steps spends the UNet evaluations CLIP guidance spends at the full count.

    python benchmarks/clip_guidance_cost.py --pipeline ../checkpoints/mnist-text --steps 50 --batch_size 8
"""

import argparse

import torch
from common import best_of_interleaved, machine_line

from guided_diffusers.guiders import ClassifierFreeGuidance, CLIPGuidance, CombinedGuidance
from guided_diffusers.pipelines import TextToImagePipeline

PROMPT = "a 4 to the left of a 9"


def settings(steps: int, clip_scale: float, guidance_scale: float) -> dict:
    """name -> (steps, a guider factory): a fresh guider per call, as a pipeline call takes one."""
    half = max(1, steps // 2)
    cfg = lambda: ClassifierFreeGuidance(guidance_scale=guidance_scale)  # noqa: E731
    clip = lambda: CLIPGuidance(clip_scale=clip_scale)  # noqa: E731
    return {f"conditional model (w = 1), {steps} steps": (steps, lambda: ClassifierFreeGuidance(guidance_scale=1.0)),
            f"CLIP s = {clip_scale:g}, {steps} steps": (steps, clip),
            f"CFG w = {guidance_scale:g}, {steps} steps": (steps, cfg),
            f"CFG w = {guidance_scale:g}, {half} steps": (half, cfg),
            f"CFG w = {guidance_scale:g} + CLIP s = {clip_scale:g}, {steps} steps":
                (steps, lambda: CombinedGuidance([cfg(), clip()]))}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="../checkpoints/mnist-text")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--clip_scale", type=float, default=10.0)
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    if pipe.clip_model is None:
        raise SystemExit(f"{args.pipeline} has no clip_model/: CLIP guidance needs one (training/add_clip_model.py).")
    pipe.set_progress_bar_config(disable=True)
    counts = {}

    def run(name, steps, make_guider):
        def call():
            out = pipe(PROMPT, num_images_per_prompt=args.batch_size, num_inference_steps=steps, guider=make_guider(),
                       generator=torch.Generator().manual_seed(0), output_type="pt")  # fmt: skip
            counts[name] = out.evaluations
        return call

    runs = {name: run(name, *setting) for name, setting in settings(args.steps, args.clip_scale, args.guidance_scale).items()}
    best = best_of_interleaved(runs, args.repeats)
    reference = best[next(name for name in best if name.startswith("CFG") and name.endswith(f"{args.steps} steps"))]
    print(machine_line())
    print(f"{args.pipeline}, {args.batch_size} images per call, best of {args.repeats} interleaved, torch threads "
          f"{torch.get_num_threads()}\n")  # fmt: skip
    print("| setting | UNet evals / image | CLIP evals / image | s / image | vs CFG at full steps |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds in best.items():
        evaluations = counts[name]
        print(f"| {name} | {evaluations['unet']} | {evaluations.get('clip', 0)} | {seconds / args.batch_size:.3f} | "
              f"{seconds / reference:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
