"""Measure a cascade (base at low resolution -> super-resolution, issue 26) three ways, each beside its real-data
floor at the same N:

1. Generation: the cascade's samples (class accuracy, FD in two feature spaces, precision / recall, network
   evaluations and seconds per image) over guidance scales and augmentation levels, for the cascade's own
   super-resolution stage and any other stage swapped in (--super_resolution: the no-augmentation ablation), and a
   single-stage model of the full size sampled with the same settings (--single_stage).
2. Super-resolution of real held-out low-resolution images (area-downsampled test images): PSNR and SSIM against
   the real high-resolution image, FD and accuracy, for each stage and level, against bicubic and bilinear upsampling.
3. Both against the augmentation level: augmentation_levels.png.

    python training/evaluate_cascade.py --cascade checkpoints/mnist-cascade \
        --eval_classifier checkpoints/mnist-eval-classifier --dataset_name mnist --single_stage checkpoints/mnist \
        --super_resolution runs/mnist-super-resolution-no-augmentation --guidance_scales 1 3 \
        --augmentation_levels 0 0.1 0.2 0.4 --output_dir eval/mnist-cascade

Every sample batch is kept under --output_dir/samples, so an interrupted run continues with --resume.
"""

import argparse
import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from guided_diffusers.evaluation.judge import Judge, real_images
from guided_diffusers.evaluation.metrics import psnr, ssim
from guided_diffusers.evaluation.reports import save_sample_grid
from guided_diffusers.evaluation.sample_cache import SampleCache, weights_digest
from guided_diffusers.evaluation.sweeps import add_device_argument, generate, sampling_device, setting_weights
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import (
    SAMPLERS, CascadePipeline, GuidedDiffusionPipeline, SuperResolutionPipeline, make_scheduler,
)  # fmt: skip
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.pipelines.noise_augmentation import area_downsample, upsample
from guided_diffusers.training.args import recordable, recorded_command
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors

GENERATION = ("pipeline", "guidance_scale", "augmentation_level", "super_resolution_guidance_scale")
METRICS = [("fd_own", "FD (own)"), ("fd_efficientnet", "FD (EffNet)"), ("accuracy", "accuracy"),
           ("precision", "precision"), ("recall", "recall")]  # fmt: skip
COSTS = [("unet_per_image", "base UNet evals / image"), ("super_resolution_unet_per_image", "SR UNet evals / image"),
         ("seconds_per_image", "s / image")]  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cascade", required=True, help="a CascadePipeline folder or Hub id")
    parser.add_argument("--super_resolution", nargs="*", default=[], help="other SuperResolutionPipeline folders to "
                        "swap in for the cascade's stage (the ablation)")  # fmt: skip
    parser.add_argument("--single_stage", default=None, help="a GuidedDiffusionPipeline of the full size, to compare")
    parser.add_argument("--eval_classifier", required=True)
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--sampler", default="dpm2m", choices=list(SAMPLERS), help="both stages' sampler")
    parser.add_argument("--num_inference_steps", type=int, default=20, help="the base's (and the single stage's)")
    parser.add_argument("--super_resolution_steps", type=int, default=20)
    parser.add_argument("--single_stage_steps", nargs="+", type=int, default=None,
                        help="the single stage's step counts (default: the base's), e.g. also the count whose FLOPs "
                             "equal the cascade's (benchmarks/cascade_cost.py)")  # fmt: skip
    parser.add_argument("--guidance_scales", nargs="+", type=float, default=[3.0], help="CFG scales of the base")
    parser.add_argument("--augmentation_levels", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.4])
    parser.add_argument("--super_resolution_guidance_scales", nargs="+", type=float, default=[1.0],
                        help="CFG scales of a class-conditioned super-resolution stage (a plain stage: 1 only)")
    parser.add_argument("--thresholding", default="static", choices=["none", "static", "dynamic"])
    parser.add_argument("--no_efficientnet", action="store_true")
    parser.add_argument("--no_generation", action="store_true", help="only the super-resolution of real images")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    args.single_stage_steps = args.single_stage_steps or [args.num_inference_steps]
    steps = [args.num_inference_steps, args.super_resolution_steps, *args.single_stage_steps]
    if args.num_samples < 2 or args.batch_size < 1 or min(steps) < 1:
        raise ValueError("--num_samples must be at least 2, and --batch_size and the step counts at least 1.")
    for level in args.augmentation_levels:
        if not 0 <= level <= 1:
            raise ValueError(f"--augmentation_levels must lie in [0, 1]; got {level}.")
    args.device = str(sampling_device(args.device))
    args.command = recorded_command("python", "training/evaluate_cascade.py", argv)
    return args


def stages(args, cascade: CascadePipeline) -> dict:
    """label -> the cascade with that super-resolution stage: its own, and each --super_resolution folder's."""
    found = {"cascade": cascade}
    for folder in args.super_resolution:
        stage = SuperResolutionPipeline.from_pretrained(folder).to(args.device)
        swapped = CascadePipeline(**{**cascade.components, "super_resolution_unet": stage.unet,
                                     "super_resolution_scheduler": stage.scheduler},
                                  null_class_label=cascade.config.null_class_label, class_names=cascade.config.class_names)  # fmt: skip
        swapped.set_progress_bar_config(disable=True)
        found[f"cascade, SR {Path(folder).name}"] = swapped
    return found


def generation_settings(args, label: str, conditioned: bool = False) -> list[dict]:
    """A sweep point per guidance scale and (for a cascade) augmentation level and, for a `conditioned` (class-
    conditioned) stage, stage CFG scale; or (for the single stage) step count, in the shape `generate` takes."""
    if label == "single-stage":  # other step counts (equal cost to the cascade) are labelled with theirs
        points = [(f"single-stage, {steps} steps" if steps != args.num_inference_steps else label, steps, None)
                  for steps in args.single_stage_steps]  # fmt: skip
        return [setting(args, name, steps, w, None, None) for w in args.guidance_scales for name, steps, _ in points]
    stage_scales = args.super_resolution_guidance_scales if conditioned else [None]
    return [setting(args, label, args.num_inference_steps, w, level, stage_w) for w in args.guidance_scales
            for level in args.augmentation_levels for stage_w in stage_scales]  # fmt: skip


def setting(args, name: str, steps: int, w: float, level: float | None, stage_w: float | None) -> dict:
    """One sweep point; a cascade's (level given) passes its super-resolution arguments to the pipeline as options,
    with the stage's CFG scale where the stage is class-conditioned (stage_w given)."""
    options = {} if level is None else dict(augmentation_level=level, super_resolution_steps=args.super_resolution_steps,
                                            super_resolution_sampler=args.sampler)  # fmt: skip
    if stage_w is not None:
        options["super_resolution_guidance_scale"] = stage_w
    return dict(pipeline=name, sampler=args.sampler, num_inference_steps=steps, guider="", guidance_scale=w,
                classifier_scale=0.0, thresholding=args.thresholding, eta=0.0, augmentation_level=level,
                super_resolution_guidance_scale=stage_w, options=options)  # fmt: skip


def is_class_conditioned(pipe) -> bool:
    """Whether a cascade's super-resolution stage is told the class (and so takes CFG)."""
    return isinstance(pipe, CascadePipeline) and pipe.super_resolution.num_classes > 0


def measure_generation(args, pipelines: dict, judge: Judge, out: Path) -> list[dict]:
    rows = []
    for label, pipe in pipelines.items():
        for setting in generation_settings(args, label, is_class_conditioned(pipe)):
            key = dict(weights=setting_weights(pipe, setting), setting=setting, seed=args.seed,
                       batch_size=args.batch_size, device=args.device)  # fmt: skip
            cache = SampleCache(out / "samples", key, args.resume)
            images, labels = generate(pipe, setting, args.num_samples, args.batch_size, args.seed, cache)
            measures = cache.measured(judge.fingerprint, args.num_samples, lambda: judge.measure(images, labels))
            row = {**{k: setting[k] for k in GENERATION}, **measures, **cache.cost_per_image(args.num_samples)}
            save_sample_grid(out / f"samples_{len(rows)}.png", images, labels)  # a row per class, by table row
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def held_out_split(args, size: int, channels: int):
    """Disjoint halves of a permutation of the test split: the judge's reference images and the images whose
    low-resolution versions are super-resolved (so that no output is compared with its own original)."""
    data = to_tensors(load_image_dataset(args.dataset_name, split="test"), size, channels)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    if len(order) < 2 * args.num_samples:
        raise ValueError(f"--num_samples {args.num_samples}: the test split has {len(order)} images, fewer than 2 x N.")
    reference, inputs = order[: args.num_samples], order[args.num_samples : 2 * args.num_samples]
    return (to_model_range(data.images[reference]), data.labels[reference],
            to_model_range(data.images[inputs]), data.labels[inputs])  # fmt: skip


def measure_real_super_resolution(args, pipelines: dict, judge: Judge, real, labels, out: Path) -> list[dict]:
    """Each method on the area-downsampled held-out images: PSNR / SSIM against the originals, FD and accuracy."""
    low_size = next(iter(pipelines.values())).unet.config.sample_size
    low = area_downsample(real, low_size)
    inputs = hash_of(low)  # part of every stage's cache key, hashed once
    size = real.shape[-1]
    methods = {"bicubic": lambda: F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1),
               "bilinear": lambda: upsample(low, size)}  # fmt: skip
    for label, pipe in pipelines.items():
        for level in args.augmentation_levels:
            for stage_w in args.super_resolution_guidance_scales if is_class_conditioned(pipe) else [None]:
                name = label.replace("cascade", "SR") + ("" if stage_w is None else f", CFG {stage_w:g}") + f" @ {level}"
                methods[name] = lambda pipe=pipe, level=level, stage_w=stage_w: super_resolve(
                    args, pipe, low, inputs, level, out, labels, stage_w)  # fmt: skip
    rows, grid_rows = [], [upsample(low[:10], size)]
    for method, make in methods.items():
        images = make()
        row = {"method": method, "psnr": psnr(images, real), "ssim": ssim(images, real),
               **judge.measure(images, labels)}  # fmt: skip
        rows.append(row)
        grid_rows.append(images[:10])
        print(json.dumps(row), flush=True)
    grid_rows.append(real[:10])
    pixels = ((torch.cat(grid_rows) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    make_grid(pixels, rows=len(grid_rows), scale=2).save(out / "real_super_resolution.png")
    return rows


def super_resolve(args, cascade: CascadePipeline, low: torch.Tensor, inputs: str, level: float, out: Path,
                  labels: torch.Tensor, stage_w: float | None = None) -> torch.Tensor:  # fmt: skip
    """The stage's output for every low-resolution image, batch i seeded with seed + i * batch_size (cached); a
    class-conditioned stage (stage_w given) is told each image's true label and guided at CFG scale stage_w."""
    stage = cascade.super_resolution  # a view: setting its scheduler leaves the cascade's own untouched
    stage.scheduler = make_scheduler(args.sampler, cascade.super_resolution_scheduler.config)
    key = dict(weights=weights_digest(cascade, only=("super_resolution_unet",)), level=level, sampler=args.sampler,
               steps=args.super_resolution_steps, seed=args.seed, batch_size=args.batch_size, device=args.device,
               inputs=inputs)  # fmt: skip
    if stage_w is not None:  # a key of its own; a plain stage's key stays as it was (its cached samples stay valid)
        key["super_resolution_guidance_scale"] = stage_w
    cache = SampleCache(out / "samples", {**key, "setting": {"sampler": args.sampler, "num_inference_steps":
                                                             args.super_resolution_steps, "guidance_scale": f"sr{level}"}},
                        args.resume)  # fmt: skip
    batches = []
    for start in range(0, len(low), args.batch_size):
        batch = low[start : start + args.batch_size]
        cached = cache.load(start, len(batch))
        if cached is None:
            told = {} if stage_w is None else dict(class_labels=labels[start : start + len(batch)], guidance_scale=stage_w)
            steps = stage.iterate(batch, level, args.super_resolution_steps, thresholding=args.thresholding,
                                  generator=torch.Generator().manual_seed(args.seed + start), **told)  # fmt: skip
            for _, _, final, _ in steps:
                pass
            cached = final.clamp(-1, 1).cpu()
            cache.save(start, cached, 0.0)
        batches.append(cached)
    return torch.cat(batches)


def hash_of(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def main(argv=None):
    args = parse_args(argv)
    cascade = CascadePipeline.from_pretrained(args.cascade).to(args.device)
    cascade.set_progress_bar_config(disable=True)
    pipelines = stages(args, cascade)
    config = cascade.super_resolution_unet.config
    size, channels = config.sample_size, config.in_channels // 2
    reference, reference_labels, held_out, held_out_labels = held_out_split(args, size, channels)
    judge = Judge(NoiseAwareClassifier.from_pretrained(args.eval_classifier), reference, not args.no_efficientnet,
                  args.batch_size)  # fmt: skip
    train_images, train_labels = real_images(args.dataset_name, "train", args.num_samples, args.seed + 1, size, channels)
    floors = {"real training images": judge.measure(train_images, train_labels),
              "real held-out images (the originals)": judge.measure(held_out, held_out_labels)}  # fmt: skip
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    generation = []
    if not args.no_generation:
        compared = dict(pipelines)
        if args.single_stage is not None:
            single = GuidedDiffusionPipeline.from_pretrained(args.single_stage).to(args.device)
            single.set_progress_bar_config(disable=True)
            compared["single-stage"] = single
        generation = measure_generation(args, compared, judge, out)
    real = measure_real_super_resolution(args, pipelines, judge, held_out, held_out_labels, out)
    write_results(args, out, floors, generation, real)


def write_results(args, out: Path, floors: dict, generation: list, real: list) -> None:
    arguments = {key: value for key, value in recordable(args).items() if key != "command"}
    (out / "results.json").write_text(json.dumps({"command": args.command, "arguments": arguments, "floors": floors,
                                                  "generation": generation, "real_super_resolution": real}, indent=2))  # fmt: skip
    metrics = [(key, name) for key, name in METRICS if key in floors["real training images"]]
    sections = [f"```bash\n{args.command}\n```\n\nN = {args.num_samples} images per row; FD against {args.num_samples} "
                f"real test images; {args.sampler}, base {args.num_inference_steps} steps, super-resolution "
                f"{args.super_resolution_steps} steps, thresholding {args.thresholding}."]  # fmt: skip
    if generation:
        costs = [(key, name) for key, name in COSTS if any(key in row for row in generation)]
        sections.append("### Generation\n\n" + table(["pipeline", "CFG scale", "augmentation level", "SR CFG scale"], GENERATION,
                                                     generation, floors["real training images"], metrics, costs))  # fmt: skip
    real_metrics = [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), *metrics]
    sections.append("### Super-resolution of real held-out low-resolution images\n\n"
                    + table(["method"], ("method",), real, floors["real held-out images (the originals)"], real_metrics, [],
                            floor_name="the originals (real held-out images)"))  # fmt: skip
    (out / "results.md").write_text("\n\n".join(sections) + "\n")
    print((out / "results.md").read_text())
    plot_levels(out, generation, real, floors)


def table(headers, keys, rows, floor, metrics, costs, floor_name="real data (train vs test)") -> str:
    names = [*headers, *(name for _, name in metrics), *(name for _, name in costs)]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    lines.append(f"| {floor_name} |" + " |" * (len(keys) - 1)
                 + "".join(f" {floor[k]:.4g} |" if k in floor else " |" for k, _ in metrics) + " |" * len(costs))  # fmt: skip
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(k) is None else str(row[k]) for k in keys) + " |"
                     + "".join(f" {row[k]:.4g} |" if k in row else " - |" for k, _ in metrics)
                     + "".join(f" {row[k]:.3g} |" if k in row else " - |" for k, _ in costs))  # fmt: skip
    return "\n".join(lines)


def plot_levels(out: Path, generation: list, real: list, floors: dict) -> None:
    """FD (own) of the final images against the augmentation level, one line per stage: on the base's samples
    (one per CFG scale) and on real low-resolution images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (sampled, held_out) = plt.subplots(1, 2, figsize=(10, 4))
    def line(r):  # a line per stage, base CFG scale and (class-conditioned stages) stage CFG scale
        stage_w = r.get("super_resolution_guidance_scale")
        return r["pipeline"], r["guidance_scale"], -1 if stage_w is None else stage_w

    for key in sorted({line(r) for r in generation if r["augmentation_level"] is not None}):
        members = sorted((r for r in generation if line(r) == key), key=lambda r: r["augmentation_level"])
        label, w, stage_w = key
        sampled.plot([r["augmentation_level"] for r in members], [r["fd_own"] for r in members], marker="o",
                     label=f"{label}, CFG {w}" + ("" if stage_w == -1 else f", SR CFG {stage_w:g}"))  # fmt: skip
    sampled.axhline(floors["real training images"]["fd_own"], color="grey", linestyle="--", label="real data")
    for stage in sorted({r["method"].rsplit(" @ ", 1)[0] for r in real if " @ " in r["method"]}):
        members = [r for r in real if r["method"].startswith(stage + " @ ")]
        held_out.plot([float(r["method"].rsplit(" @ ", 1)[1]) for r in members], [r["fd_own"] for r in members],
                      marker="o", label=stage)  # fmt: skip
    for r in real:
        if " @ " not in r["method"]:
            held_out.axhline(r["fd_own"], linestyle=":", linewidth=1, label=r["method"],
                             color="black" if r["method"] == "bicubic" else "tab:brown")  # fmt: skip
    sampled.set(xlabel="augmentation level at sampling", ylabel="FD (own classifier)", title="on the base's samples")
    held_out.set(xlabel="augmentation level at sampling", ylabel="FD (own classifier)",
                 title="on real held-out low-resolution images")  # fmt: skip
    for panel in (sampled, held_out):
        panel.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "augmentation_levels.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
