"""How well DDIM inversion reconstructs real held-out images: invert, sample back with the same settings, and
measure the mean squared error (images in [-1, 1]) against the number of steps, with and without guidance.

    python training/evaluate_inversion.py --pipeline checkpoints/mnist --dataset_name mnist \
        --output_dir eval/mnist-inversion

`--guidance_scales`: 0 is the unconditional model (null class, labels unused), 1 the class-conditional model,
> 1 classifier-free guidance; inversion and reconstruction use the same scale. `--cfg_plus_plus_scales` adds rows
for CFG++ (Chung et al. 2024) at each lambda in [0, 1], inverted as the authors' code does (x0 from eps_u, re-noised
with the guided eps) and reconstructed by CFG++'s DDIM: the paper's claim that guided inversion then stays
invertible where CFG's does not. `--fixed_point_iterations` k > 0
re-evaluates eps k more times per inversion step (see `InversionMixin.invert`). Writes results.json, results.md
and reconstruction_error.png.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from guided_diffusers.guiders import CFGPlusPlus
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.evaluation.judge import real_images
from guided_diffusers.training.model_card import hardware


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a GuidedDiffusionPipeline folder or Hub id")
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_images", type=int, default=200, help="held-out test images")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--num_inference_steps", nargs="+", type=int, default=[10, 20, 50, 100, 250])
    parser.add_argument("--guidance_scales", nargs="+", type=float, default=[0.0, 1.0, 3.0])
    parser.add_argument("--cfg_plus_plus_scales", nargs="*", type=float, default=[],
                        help="CFG++ lambdas in [0, 1], each a row beside the CFG ones")
    parser.add_argument("--fixed_point_iterations", nargs="+", type=int, default=[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.batch_size < 1 or min(args.num_inference_steps) < 1:
        parser.error("--num_images, --batch_size and --num_inference_steps must be >= 1")
    if min(args.guidance_scales) < 0 or min(args.fixed_point_iterations) < 0:
        parser.error("--guidance_scales and --fixed_point_iterations must be >= 0")
    if any(not 0 <= scale <= 1 for scale in args.cfg_plus_plus_scales):
        parser.error(f"--cfg_plus_plus_scales must lie in [0, 1] (CFG++'s lambda); got {args.cfg_plus_plus_scales}")
    return args


def guidance(method: str, scale: float, labels) -> dict:
    """The invert / reconstruct arguments of one setting: CFG at w (0: the unconditional model), or CFG++ at lambda."""
    if method == "cfg++":
        return dict(class_labels=labels, guider=CFGPlusPlus(guidance_scale=scale))
    return dict(class_labels=None, guidance_scale=1.0) if scale == 0 else dict(class_labels=labels, guidance_scale=scale)


def reconstruction_error(pipe, images, labels, steps: int, method: str, scale: float, iterations: int) -> torch.Tensor:
    """Per-image MSE (model range) of invert -> reconstruct with one guidance setting."""
    latents = pipe.invert((images + 1) / 2, num_inference_steps=steps, fixed_point_iterations=iterations,
                          **guidance(method, scale, labels)).latents  # fmt: skip
    rebuilt = pipe.reconstruct(latents, num_inference_steps=steps, **guidance(method, scale, labels)) * 2 - 1
    return (rebuilt - images).pow(2).flatten(1).mean(1)


def main(argv=None):
    args = parse_args(argv)
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.unet.config
    images, labels = real_images(args.dataset_name, "test", args.num_images, args.seed, config.sample_size, config.in_channels)
    settings = [("cfg", scale) for scale in args.guidance_scales] + [("cfg++", scale) for scale in args.cfg_plus_plus_scales]
    if not pipe.num_classes or pipe.config.null_class_label is None:  # guidance needs both branches
        settings = [("cfg", 1.0)]
    rows = []
    for steps, (method, scale), iterations in itertools.product(args.num_inference_steps, settings,
                                                                args.fixed_point_iterations):  # fmt: skip
        start = time.perf_counter()
        errors = torch.cat([reconstruction_error(pipe, images[i : i + args.batch_size], labels[i : i + args.batch_size],
                                                 steps, method, scale, iterations)
                            for i in range(0, len(images), args.batch_size)])  # fmt: skip
        rows.append({"num_inference_steps": steps, "method": method, "guidance_scale": scale,
                     "fixed_point_iterations": iterations, "mse": errors.mean().item(),
                     "mse_median": errors.median().item(), "mse_max": errors.max().item(),
                     "seconds_per_image": (time.perf_counter() - start) / len(images)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_results(args, rows)


def setting_name(row: dict) -> str:
    if row.get("method") == "cfg++":
        return f"CFG++ lambda = {row['guidance_scale']:g}"
    return "unconditional" if row["guidance_scale"] == 0 else f"w = {row['guidance_scale']:g}"


def write_results(args, rows: list[dict]) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"command": vars(args), "hardware": hardware(), "rows": rows}, indent=2))
    lines = ["| steps | guidance | fixed-point iterations | MSE (mean) | MSE (median) | MSE (max) | s / image |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['num_inference_steps']} | {setting_name(row)} | {row['fixed_point_iterations']} | {row['mse']:.2e} | "
                     f"{row['mse_median']:.2e} | {row['mse_max']:.2e} | {row['seconds_per_image']:.3f} |")  # fmt: skip
    table = "\n".join(lines)
    (out / "results.md").write_text(f"DDIM invert -> reconstruct on {args.num_images} held-out {args.dataset_name} test "
                                    f"images; MSE with images in [-1, 1].\n\n{table}\n")  # fmt: skip
    print(table)
    plot(out, rows)


def plot(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    key = lambda row: (row.get("method", "cfg"), row["guidance_scale"], row["fixed_point_iterations"])  # noqa: E731
    for (_, _, iterations), members in itertools.groupby(sorted(rows, key=key), key=key):
        members = sorted(members, key=lambda row: row["num_inference_steps"])
        label = setting_name(members[0]) + (f", {iterations} fixed-point" if iterations else "")
        axis.plot([r["num_inference_steps"] for r in members], [r["mse"] for r in members], marker="o", label=label)
    axis.axhline(1e-3, color="grey", linestyle="--", linewidth=1, label="target 1e-3")
    axis.set(xscale="log", yscale="log", xlabel="DDIM steps", ylabel="reconstruction MSE", title="DDIM inversion")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "reconstruction_error.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
