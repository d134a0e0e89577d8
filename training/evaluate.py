"""Measure what a pipeline samples: FD in two feature spaces, class accuracy, precision/recall and diversity, each
beside the real-data floor at the same N, over a sweep of samplers, steps, guidance and thresholding settings.

    python training/evaluate.py --pipeline checkpoints/mnist --eval_classifier checkpoints/mnist-eval-classifier \
        --dataset_name mnist --num_samples 1000 --samplers ddim --num_inference_steps 50 \
        --guidance_scales 0 1 3 5 --output_dir eval/mnist

Guidance methods are swept with --guiders, one spec per point (see `guided_diffusers.guiders.specs`), e.g.
`--guiders cfg:guidance_scale=3 apg:guidance_scale=5,eta=0 cfg++:guidance_scale=0.4`; each row then also gives the
UNet (and classifier) evaluations per image and the seconds per image, and accuracy-FD and precision-recall plots
draw one curve per method.

Writes results.json, results.md (with the command that made it), a sample grid per setting (samples_<row>.png: a
row per class) and one PNG plot per swept setting to --output_dir.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from guided_diffusers.guiders import Guider, guider_for_call, guider_from_spec
from guided_diffusers.guiders.specs import spec_family
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import SAMPLERS, GuidedDiffusionPipeline, make_scheduler
from guided_diffusers.pipelines.denoising import WEAK, plan
from guided_diffusers.pipelines.samplers import set_distinct_timesteps
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.training.args import recordable, recorded_command
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.features import ClassifierFeatures, EfficientNetLite0Features
from guided_diffusers.training.metrics import (
    class_accuracy, diversity, frechet_distance_of, precision_recall, saturated_share,
)  # fmt: skip
from guided_diffusers.training.sample_cache import SampleCache, sweep_cache, weights_digest

SWEPT = ("sampler", "num_inference_steps", "guider", "guidance_scale", "classifier_scale", "thresholding", "eta")


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default=None, help="where the pipeline samples: cpu, cuda or cuda:<index> "
                        "(default: cuda when there is one). The noise is drawn on the CPU from the seed, so every "
                        "device starts from the same noise; the metrics run on the CPU.")  # fmt: skip


def sampling_device(name: str | None) -> torch.device:
    """The torch.device of --device, checked before any work starts."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # not a device name at all ("gpu", "cuda:x")
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:<index>; got {name!r}.")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {name}: no such CUDA device here ({torch.cuda.device_count()} visible); use cpu.")
    return device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a GuidedDiffusionPipeline folder or Hub id")
    parser.add_argument("--eval_classifier", required=True, help="a clean-data classifier (train_classifier.py --noise_free)")
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--samplers", nargs="+", default=["ddim"], choices=list(SAMPLERS))
    parser.add_argument("--num_inference_steps", nargs="+", type=int, default=[50])
    parser.add_argument("--guidance_scales", nargs="+", type=float, default=[1.0])
    parser.add_argument("--classifier_scales", nargs="+", type=float, default=[0.0])
    parser.add_argument("--guiders", nargs="+", default=None, metavar="SPEC",
                        help="guidance methods to sweep instead of --guidance_scales / --classifier_scales, one "
                             "spec per point: NAME or NAME:key=value,... (NAME: cfg, interval, scheduled, cfg++, apg, "
                             "apg-diffusers, cfg-zero-star, tcfg, mag, fdg, or a guider class name)")  # fmt: skip
    parser.add_argument("--thresholding", nargs="+", default=["none"], choices=["none", "static", "dynamic"])
    parser.add_argument("--eta", nargs="+", type=float, default=[0.0])
    parser.add_argument("--no_efficientnet", action="store_true", help="skip FD (EfficientNet-Lite0)")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--output_dir", required=True, help="results, and every finished sample batch (samples/)")
    parser.add_argument("--resume", action="store_true", help="re-use the sample batches that an interrupted run of "
                        "the same settings and weights left in output_dir/samples")  # fmt: skip
    args = parser.parse_args(argv)
    if args.num_samples < 2 or args.batch_size < 1:
        raise ValueError("--num_samples must be at least 2 and --batch_size at least 1.")
    if args.guiders is not None:
        if args.guidance_scales != [1.0] or args.classifier_scales != [0.0]:
            raise ValueError("Give either --guiders or --guidance_scales / --classifier_scales, not both.")
        for spec in args.guiders:
            guider_from_spec(spec)  # a bad spec fails here, not hours into the sweep
    args.device = str(sampling_device(args.device))  # a string, for results.json
    args.command = recorded_command("python", "training/evaluate.py", argv)
    return args


def settings(args) -> list[dict]:
    """Every combination of the swept values."""
    guidance = [(spec, None, 0.0) for spec in args.guiders] if args.guiders else \
        [("", w, s) for w in args.guidance_scales for s in args.classifier_scales]  # fmt: skip
    values = (args.samplers, args.num_inference_steps, guidance, args.thresholding, args.eta)
    return [dict(sampler=sampler, num_inference_steps=steps, guider=spec, guidance_scale=w, classifier_scale=s,
                 thresholding=thresholding, eta=eta)
            for sampler, steps, (spec, w, s), thresholding, eta in itertools.product(*values)]  # fmt: skip


def check_steps(pipe, settings: list[dict]) -> None:
    """Refuse, before any sampling, a sampler that cannot take its step count (DPM-Solver at 1,000 of 1,000 training
    steps) or its guider (CFG++ with anything but DDIM at eta 0): a sweep may run for hours before it reaches that
    row."""
    for setting in settings:
        try:
            planned_predictions(pipe, setting)
        except ValueError as error:
            raise ValueError(f"sampler {setting['sampler']!r}: {error}") from None


def planned_predictions(pipe, setting: dict) -> list:
    """The predictions each step of a setting will make, as the pipeline plans them (refusing what it cannot do:
    autoguidance without a `weak_unet`, CFG++ with a sampler other than DDIM)."""
    scheduler = make_scheduler(setting["sampler"], pipe.scheduler.config)
    set_distinct_timesteps(scheduler, setting["num_inference_steps"])
    conditional = bool(pipe.num_classes or setting["classifier_scale"] > 0 or setting.get("guider"))
    arguments = guidance_arguments(setting, conditional)
    guider = guider_for_call(arguments.get("guider"), arguments.get("guidance_scale"), arguments.get("classifier_scale"))
    if isinstance(guider, Guider):
        guider.check(scheduler, has_classifier=pipe.classifier is not None, eta=setting["eta"])
    labels = torch.zeros(1, dtype=torch.long, device=pipe.device) if conditional else None
    return plan(guider, pipe.conditioning(labels, 1), scheduler, scheduler.timesteps)


def setting_weights(pipe, setting: dict) -> str:
    """The digest of the weights a setting's samples come from: the pipeline's, and its weak model's only where
    the setting's guider calls it (so adding a weak model to a pipeline keeps the other settings' cached samples)."""
    digest = weights_digest(pipe, exclude=("weak_unet",))
    if any(prediction.name == WEAK for step in planned_predictions(pipe, setting) for prediction in step):
        digest += "+weak:" + weights_digest(pipe, only=("weak_unet",))
    return digest


def generate(pipe, setting: dict, num_samples: int, batch_size: int, seed: int, cache: SampleCache | None = None):
    """Samples in [-1, 1] with labels 0, 1, ..., K-1, 0, 1, ... (class-balanced), or unlabelled. The sampler is
    built from the pipeline's own scheduler config, which is put back afterwards: a sampler built from the previous
    setting's would inherit its config (DPM-Solver's timestep spacing leaked into the next sampler that way). With a
    `cache`, finished batches are kept on disk and, when it resumes, re-used (batch i is seeded with seed + i *
    batch_size either way, so a resumed run has the samples of an uninterrupted one)."""
    loaded = pipe.scheduler
    pipe.scheduler = make_scheduler(setting["sampler"], loaded.config)
    try:
        return sample_balanced(pipe, setting, num_samples, batch_size, seed, cache)
    finally:
        pipe.scheduler = loaded


def sample_balanced(pipe, setting: dict, num_samples: int, batch_size: int, seed: int, cache=None):
    num_classes = pipe.num_classes or (pipe.classifier.config.num_classes if pipe.classifier is not None else 0)
    labels = torch.arange(num_samples) % num_classes if num_classes else None
    images = []
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        batch_labels = labels[start : start + count] if labels is not None else None
        cached = cache.load(start, count) if cache is not None else None
        if cached is not None:
            images.append(cached)
            continue
        conditional = batch_labels is not None and (pipe.num_classes or setting["classifier_scale"] > 0
                                                    or setting.get("guider"))  # fmt: skip
        began = time.perf_counter()
        out = pipe(batch_size=count, class_labels=batch_labels if conditional else None,
                   num_inference_steps=setting["num_inference_steps"], eta=setting["eta"],
                   thresholding=setting["thresholding"], output_type="pt",
                   generator=torch.Generator().manual_seed(seed + start), **guidance_arguments(setting, conditional))  # fmt: skip
        images.append(out.images.cpu() * 2 - 1)
        if cache is not None:
            cache.save(start, images[-1], time.perf_counter() - began, out.evaluations)
    return torch.cat(images), labels


def guidance_arguments(setting: dict, conditional: bool) -> dict:
    """The pipeline's guidance arguments for a setting: its guider, or the shorthand scales (no guidance without
    labels)."""
    if not conditional:
        return dict(guidance_scale=1.0, classifier_scale=setting["classifier_scale"])
    if setting.get("guider"):  # settings made elsewhere (quality_per_step.py) may have no "guider" key
        return dict(guider=guider_from_spec(setting["guider"]))
    return dict(guidance_scale=setting["guidance_scale"], classifier_scale=setting["classifier_scale"])


class Judge:
    """Features of the real test images, computed once, and the metrics of any image set against them."""

    def __init__(self, eval_classifier, real_test: torch.Tensor, use_efficientnet: bool, batch_size: int):
        self.classifier, self.batch_size = ClassifierFeatures(eval_classifier), batch_size
        self.efficientnet = EfficientNetLite0Features() if use_efficientnet else None
        self.real = self.features(real_test)

    def features(self, images: torch.Tensor) -> dict:
        parts = {"own": [], "logits": [], "efficientnet": []}
        for batch in images.split(self.batch_size):
            own, logits = self.classifier(batch)
            parts["own"].append(own)
            parts["logits"].append(logits)
            if self.efficientnet is not None:
                parts["efficientnet"].append(self.efficientnet(batch))
        return {key: torch.cat(value).numpy() for key, value in parts.items() if value}

    def measure(self, images: torch.Tensor, labels) -> dict:
        fake = self.features(images)
        precision, recall = precision_recall(self.real["own"], fake["own"])
        predicted = fake["logits"].argmax(1)
        result = {
            "fd_own": frechet_distance_of(self.real["own"], fake["own"]),
            "precision": precision, "recall": recall,
            # diversity within the class each sample was asked for (or, unlabelled, the class it is seen as)
            "diversity": diversity(fake["own"], labels.numpy() if labels is not None else predicted),
            "saturated": saturated_share(images),
        }  # fmt: skip
        if labels is not None:
            result["accuracy"] = class_accuracy(fake["logits"], labels.numpy())
        if "efficientnet" in fake:
            result["fd_efficientnet"] = frechet_distance_of(self.real["efficientnet"], fake["efficientnet"])
        return result


def real_images(dataset_name: str, split: str, num_samples: int, seed: int, size: int, channels: int):
    """`num_samples` random images of a split, in [-1, 1], with labels."""
    data = to_tensors(load_image_dataset(dataset_name, split=split), size, channels)
    chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num_samples]
    return to_model_range(data.images[chosen]), data.labels[chosen]


def main(argv=None):
    args = parse_args(argv)
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    sweep = settings(args)
    check_steps(pipe, sweep)
    classifier = NoiseAwareClassifier.from_pretrained(args.eval_classifier)
    size, channels = pipe.image_config.sample_size, pipe.image_config.in_channels  # decoded images for a latent model
    test_images, _ = real_images(args.dataset_name, "test", args.num_samples, args.seed, size, channels)
    judge = Judge(classifier, test_images, not args.no_efficientnet, args.batch_size)
    # the floor: real training images measured exactly like samples, at the same N
    train_images, train_labels = real_images(args.dataset_name, "train", args.num_samples, args.seed + 1, size, channels)
    floor = judge.measure(train_images, train_labels)
    rows = []
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for index, setting in enumerate(sweep):
        cache = sweep_cache(out, setting_weights(pipe, setting), setting, args)
        images, labels = generate(pipe, setting, args.num_samples, args.batch_size, args.seed, cache)
        rows.append({**setting, **judge.measure(images, labels), **cache.cost_per_image(args.num_samples)})
        save_sample_grid(out / f"samples_{index}.png", images, labels)
        print(json.dumps(rows[-1]), flush=True)
    write_results(args, rows, floor)


def save_sample_grid(path: Path, images: torch.Tensor, labels, per_class: int = 10) -> None:
    """The first `per_class` samples of each class, a row per class (or the first 100 unlabelled samples)."""
    if labels is None:
        chosen = images[:100]
        rows = max(1, len(chosen) // 10)
    else:
        classes = labels.unique()
        chosen = torch.cat([images[labels == label][:per_class] for label in classes])
        rows = len(classes)
    pixels = ((chosen + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    make_grid(pixels, rows=rows, scale=1).save(path)


METRICS = [("fd_own", "FD (own classifier)"), ("fd_efficientnet", "FD (EfficientNet-Lite0)"), ("accuracy", "accuracy"),
           ("precision", "precision"), ("recall", "recall"), ("diversity", "diversity"), ("saturated", "saturated px")]  # fmt: skip
# FD is only meaningful beside the floor at the same N, so the tables also give it as a multiple of the floor
FD_RATIOS = [("fd_own", "FD (own) / floor"), ("fd_efficientnet", "FD (EffNet) / floor")]
COSTS = [("unet_per_image", "UNet evals / image"), ("weak_unet_per_image", "weak UNet evals / image"),
         ("classifier_per_image", "classifier evals / image"), ("seconds_per_image", "s / image")]  # fmt: skip


def write_results(args, rows: list[dict], floor: dict) -> None:
    out = Path(args.output_dir)  # made by main() before the first sample grid
    arguments = {key: value for key, value in recordable(args).items() if key != "command"}
    (out / "results.json").write_text(json.dumps({"command": args.command, "arguments": arguments,
                                                  "real_data_floor": floor, "rows": rows}, indent=2))  # fmt: skip
    metrics = [(key, name) for key, name in METRICS if key in floor]
    ratios = [(key, name) for key, name in FD_RATIOS if key in floor]
    costs = [(key, name) for key, name in COSTS if any(key in row for row in rows)]
    header = "| " + " | ".join([*SWEPT, *(name for _, name in metrics), *(name for _, name in ratios),
                                *(name for _, name in costs)]) + " |"  # fmt: skip
    lines = [header, "|" + " --- |" * (len(SWEPT) + len(metrics) + len(ratios) + len(costs))]
    lines.append("| real data (train vs test) |" + " |" * (len(SWEPT) - 1) + "".join(f" {floor[k]:.4g} |" for k, _ in metrics)
                 + " 1 |" * len(ratios) + " |" * len(costs))  # fmt: skip
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key in SWEPT) + " |"
                     + "".join(f" {row[k]:.4g} |" if k in row else " - |" for k, _ in metrics)
                     + "".join(f" {row[k] / floor[k]:.3g} |" if k in row else " - |" for k, _ in ratios)
                     + "".join(f" {row[k]:.3g} |" if k in row else " - |" for k, _ in costs))  # fmt: skip
    table = "\n".join(lines)
    (out / "results.md").write_text(f"```bash\n{args.command}\n```\n\nN = {args.num_samples} samples per setting; "
                                    f"the first row is the real-data floor at the same N (real training images "
                                    f"against real test images); sample grids: samples_<row>.png.\n\n{table}\n")  # fmt: skip
    print(table)
    plot_sweeps(out, rows, floor, metrics)
    if any(row.get("guider") for row in rows):
        plot_fronts(out, rows, floor)


def plot_sweeps(out: Path, rows, floor, metrics) -> None:
    """One figure per swept numeric setting: each metric against it, one line per combination of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for axis in ("num_inference_steps", "guidance_scale", "classifier_scale", "eta"):
        if len({row[axis] for row in rows}) < 2:
            continue
        figure, panels = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3))
        others = [key for key in SWEPT if key != axis]
        for group, members in itertools.groupby(sorted(rows, key=lambda r: [str(r[k]) for k in others]),
                                                key=lambda r: tuple(r[k] for k in others)):  # fmt: skip
            members = sorted(members, key=lambda r: r[axis])
            label = ", ".join(f"{k}={v}" for k, v in zip(others, group) if len({r[k] for r in rows}) > 1) or None
            for panel, (key, name) in zip(np.atleast_1d(panels), metrics):
                panel.plot([r[axis] for r in members], [r.get(key, np.nan) for r in members], marker="o", label=label)
        for panel, (key, name) in zip(np.atleast_1d(panels), metrics):
            panel.axhline(floor[key], color="grey", linestyle="--", linewidth=1, label="real data")
            panel.set_title(name)
            panel.set_xlabel(axis)
            if axis == "num_inference_steps":
                panel.set_xscale("log")
        np.atleast_1d(panels)[0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(out / f"sweep_{axis}.png", dpi=110)
        plt.close(figure)


def plot_fronts(out: Path, rows, floor) -> None:
    """Accuracy against FD (own, as a multiple of the floor) and precision against recall, one curve per guidance
    method (its points ordered by FD), one curve per sampler and step count: where each method trades fidelity
    for diversity (fronts.png)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (fidelity, coverage) = plt.subplots(1, 2, figsize=(10, 4))
    key = lambda r: (spec_family(r["guider"] or "scales"), r["sampler"], r["num_inference_steps"])  # noqa: E731
    for (family, sampler, steps), members in itertools.groupby(sorted(rows, key=key), key=key):
        members = sorted(members, key=lambda r: r["fd_own"])
        label = f"{family} ({sampler}, {steps})"
        fidelity.plot([r["fd_own"] / floor["fd_own"] for r in members], [r.get("accuracy", np.nan) for r in members],
                      marker="o", label=label)  # fmt: skip
        coverage.plot([r["recall"] for r in members], [r["precision"] for r in members], marker="o", label=label)
    ratios = [row["fd_own"] / floor["fd_own"] for row in rows]
    wide = max(ratios) >= 10 * min(ratios)  # a log axis only where it spans a decade: else it has no labels
    fidelity.set(xlabel="FD (own) / real-data floor", ylabel="accuracy", xscale="log" if wide else "linear",
                 title="fidelity")  # fmt: skip
    fidelity.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    coverage.set(xlabel="recall", ylabel="precision", title="precision against recall")
    coverage.plot([floor["recall"]], [floor["precision"]], marker="*", color="grey", linestyle="", label="real data")
    coverage.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "fronts.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
