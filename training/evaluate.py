"""Measure what a pipeline samples: FD in two feature spaces, class accuracy, precision/recall and diversity, each
beside the real-data floor at the same N, over a sweep of samplers, steps, guidance and thresholding settings.

    python training/evaluate.py --pipeline checkpoints/mnist --eval_classifier checkpoints/mnist-eval-classifier \
        --dataset_name mnist --num_samples 1000 --samplers ddim --num_inference_steps 50 \
        --guidance_scales 0 1 3 5 --output_dir eval/mnist

Guidance methods are swept with --guiders, one spec per point (see `guided_diffusers.guiders.specs`), e.g.
`--guiders cfg:guidance_scale=3 apg:guidance_scale=5,eta=0 cfg++:guidance_scale=0.4`; each row then also gives the
UNet (and classifier) evaluations per image and the seconds per image, and accuracy-FD and precision-recall plots
draw one curve per method. results.md then ends with each method's best point at an accuracy goal and the best
point at each cost (`guided_diffusers.evaluation.method_table`).

Writes results.json, results.md (with the command that made it), a sample grid per setting (samples_<row>.png: a
row per class) and one PNG plot per swept setting to --output_dir, the results after every finished setting.

A sweep too long for one sitting runs in parts (e.g. a subset of the --guiders per run, each with its own
--output_dir) that `--combine RUN_DIR [RUN_DIR ...] --output_dir DIR` then joins into one table and plots, refusing
runs of another model, evaluation classifier, dataset, seed, N or batch size.
"""

import argparse
import itertools
import json
import shutil
from pathlib import Path

import numpy as np

from guided_diffusers.evaluation.judge import Judge, real_images
from guided_diffusers.evaluation.method_table import accuracy_goal, best_points_markdown
from guided_diffusers.evaluation.reports import combined_rows, load_reports, save_sample_grid, sources_of
from guided_diffusers.evaluation.sample_cache import sweep_cache
from guided_diffusers.evaluation.sweeps import (
    add_device_argument, check_steps, generate, sampling_device, setting_weights,
)  # fmt: skip
from guided_diffusers.guiders import guider_from_spec
from guided_diffusers.guiders.specs import spec_family
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import SAMPLERS, GuidedDiffusionPipeline
from guided_diffusers.training.args import recordable, recorded_command

# what runs must share for their rows to share a table: the same samples per setting, judged against the same floor
SAME_IN_COMBINED_RUNS = ("pipeline", "eval_classifier", "dataset_name", "num_samples", "batch_size", "seed",
                         "no_efficientnet")
SWEPT = ("sampler", "num_inference_steps", "guider", "guidance_scale", "classifier_scale", "thresholding", "eta")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", help="a GuidedDiffusionPipeline folder or Hub id (required unless --combine)")
    parser.add_argument("--eval_classifier", help="a clean-data classifier (train_classifier.py --noise_free; required "
                        "unless --combine)")  # fmt: skip
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
    parser.add_argument("--combine", nargs="+", metavar="RUN_DIR", help="no sampling: one table and plots in "
                        "--output_dir from the rows of finished runs of the same model, seed, N and batch size (a sweep "
                        "run in parts, e.g. a subset of --guiders per sitting)")  # fmt: skip
    args = parser.parse_args(argv)
    args.command = recorded_command("python", "training/evaluate.py", argv)
    if args.combine:
        if Path(args.output_dir).resolve() in {Path(run_dir).resolve() for run_dir in args.combine}:
            parser.error("--output_dir must not be one of the --combine runs: their results.json would be overwritten.")
        return args
    if args.pipeline is None or args.eval_classifier is None:
        parser.error("--pipeline and --eval_classifier are required (unless --combine).")
    if args.num_samples < 2 or args.batch_size < 1:
        raise ValueError("--num_samples must be at least 2 and --batch_size at least 1.")
    if args.guiders is not None:
        if args.guidance_scales != [1.0] or args.classifier_scales != [0.0]:
            raise ValueError("Give either --guiders or --guidance_scales / --classifier_scales, not both.")
        for spec in args.guiders:
            guider_from_spec(spec)  # a bad spec fails here, not hours into the sweep
    args.device = str(sampling_device(args.device))  # a string, for results.json
    return args


def settings(args) -> list[dict]:
    """Every combination of the swept values."""
    guidance = [(spec, None, 0.0) for spec in args.guiders] if args.guiders else \
        [("", w, s) for w in args.guidance_scales for s in args.classifier_scales]  # fmt: skip
    values = (args.samplers, args.num_inference_steps, guidance, args.thresholding, args.eta)
    return [dict(sampler=sampler, num_inference_steps=steps, guider=spec, guidance_scale=w, classifier_scale=s,
                 thresholding=thresholding, eta=eta)
            for sampler, steps, (spec, w, s), thresholding, eta in itertools.product(*values)]  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    if args.combine:
        return combine(args.combine, Path(args.output_dir), args.command)
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
    arguments = {key: value for key, value in recordable(args).items() if key != "command"}
    intro = f"```bash\n{args.command}\n```\n\n{sample_note(args.num_samples)}"
    for index, setting in enumerate(sweep):
        cache = sweep_cache(out, setting_weights(pipe, setting), setting, args)
        images, labels = generate(pipe, setting, args.num_samples, args.batch_size, args.seed, cache)
        measures = cache.measured(judge.fingerprint, args.num_samples, lambda: judge.measure(images, labels))
        rows.append({**setting, **measures, **cache.cost_per_image(args.num_samples)})
        save_sample_grid(out / f"samples_{index}.png", images, labels)
        print(json.dumps(rows[-1]), flush=True)
        # after every row, so that a sweep stopped part-way still leaves its finished rows to --combine
        write_results(out, {"command": args.command, "arguments": arguments}, rows, floor, intro)
    print(results_table(rows, floor))


def combine(run_dirs: list[str], out: Path, command: str) -> None:
    """One table and the plots from the rows of several finished runs (their sample grids copied along, renumbered):
    a run of another model, evaluation classifier, dataset, seed, N or batch size is refused (its rows drew other
    samples or met another floor), as is a setting that two runs hold."""
    reports = load_reports(run_dirs)
    rows = combined_rows(run_dirs, reports, lambda report: report["arguments"], SAME_IN_COMBINED_RUNS,
                         lambda row: tuple(row[key] for key in SWEPT))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    index = 0
    for run_dir, report in zip(run_dirs, reports):
        for row_index in range(len(report["rows"])):
            grid = Path(run_dir) / f"samples_{row_index}.png"
            if grid.is_file():
                shutil.copyfile(grid, out / f"samples_{index}.png")
            index += 1
    runs = "\n".join(f"- `{run_dir}`: `{report.get('command')}`" if "command" in report else f"- `{run_dir}` (combined)"
                     for run_dir, report in zip(run_dirs, reports))  # fmt: skip
    arguments = reports[0]["arguments"]
    intro = f"```bash\n{command}\n```\n\nCombined from these runs:\n\n{runs}\n\n{sample_note(arguments['num_samples'])}"
    record = {"command": command, "sources": sources_of(run_dirs, reports), "arguments": arguments}
    write_results(out, record, rows, reports[0]["real_data_floor"], intro)
    print(results_table(rows, reports[0]["real_data_floor"]))


METRICS = [("fd_own", "FD (own classifier)"), ("fd_efficientnet", "FD (EfficientNet-Lite0)"), ("accuracy", "accuracy"),
           ("precision", "precision"), ("recall", "recall"), ("diversity", "diversity"), ("saturated", "saturated px")]  # fmt: skip
# FD is only meaningful beside the floor at the same N, so the tables also give it as a multiple of the floor
FD_RATIOS = [("fd_own", "FD (own) / floor"), ("fd_efficientnet", "FD (EffNet) / floor")]
COSTS = [("unet_per_image", "UNet evals / image"), ("weak_unet_per_image", "weak UNet evals / image"),
         ("unet_gradient_per_image", "UNet forward+backward / image"),
         ("classifier_per_image", "classifier evals / image"),
         ("clean_classifier_per_image", "clean classifier evals / image"), ("seconds_per_image", "s / image")]  # fmt: skip


def write_results(out: Path, record: dict, rows: list[dict], floor: dict, intro: str) -> None:
    """results.json (`record` + floor + rows), results.md (`intro` + the table) and the plots."""
    report = {**record, "real_data_floor": floor, "rows": rows}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    best = best_points_markdown(report)  # a guider sweep: each method's best point, and the best at equal cost
    (out / "results.md").write_text(f"{intro}\n\n{results_table(rows, floor)}\n" + (f"\n{best}" if best else ""))
    plot_sweeps(out, rows, floor, [(key, name) for key, name in METRICS if key in floor])
    if any(row.get("guider") for row in rows):
        plot_fronts(out, rows, floor, accuracy_goal(report))


def sample_note(num_samples: int) -> str:
    return (f"N = {num_samples} samples per setting; the first row is the real-data floor at the same N (real "
            "training images against real test images); sample grids: samples_<row>.png.")  # fmt: skip


def results_table(rows: list[dict], floor: dict) -> str:
    """A row per setting: the swept values, the metrics, FD as a multiple of the floor, and the costs measured."""
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
    return "\n".join(lines)


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


def nondominated(points: list[tuple[float, float]], lower_x_is_better: bool) -> list[tuple[float, float]]:
    """The Pareto front of (x, y) points, y higher better and x lower (or higher) better, ordered by x: the points
    no other point beats or equals in both with one strictly better."""
    sign = 1 if lower_x_is_better else -1
    beats = lambda a, b: sign * a[0] <= sign * b[0] and a[1] >= b[1] and a != b  # noqa: E731
    return sorted({p for p in points if not any(beats(q, p) for q in points)})


FRONT_MARKERS = "osD^vPX<>ph*"


def plot_fronts(out: Path, rows, floor, goal: float) -> None:
    """Accuracy against FD as a multiple of the floor, in each feature space measured (own classifier,
    EfficientNet-Lite0), and precision against recall, one style per guidance method and sampler/step count: every
    point a marker, the method's Pareto front a line through its points that no other of its points beats (less FD
    and more accuracy; more precision and more recall). The second row holds only the points at the accuracy goal,
    where the methods are compared, so that a far point elsewhere cannot squash them (fronts.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = [(key, name) for key, name in (("fd_own", "own"), ("fd_efficientnet", "EfficientNet-Lite0"))
              if key in floor and all(key in row for row in rows)]  # fmt: skip
    figure, panels = plt.subplots(2, len(spaces) + 1, figsize=(5 * (len(spaces) + 1) + 2.5, 9), squeeze=False)
    at_goal = [row for row in rows if row.get("accuracy", 0.0) >= goal]
    styles = front_styles(sorted({front_curve(row) for row in rows}))  # the same in both rows
    for panel_row, shown, scope in [(panels[0], rows, "all points"), (panels[1], at_goal, f"accuracy >= {goal:.1%}")]:
        draw_fronts(panel_row, shown, floor, spaces, styles, scope)
    panels[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    figure.savefig(out / "fronts.png", dpi=110)
    plt.close(figure)


def front_styles(curves: list) -> dict:
    """curve -> its colour and marker, a distinct pair for each of up to 144 curves: the 13th curve takes the first
    colour again but the next marker (colour and marker both cycling with i would repeat the first pair)."""
    import matplotlib

    colours = [*matplotlib.colormaps["tab10"].colors, "black", "gold"]
    return {curve: dict(color=colours[i % len(colours)], marker=FRONT_MARKERS[(i + i // len(colours)) % len(FRONT_MARKERS)])
            for i, curve in enumerate(curves)}  # fmt: skip


def front_curve(row: dict) -> tuple:
    """The curve a point belongs to: its method, sampler and step count."""
    return spec_family(row["guider"] or "scales"), row["sampler"], row["num_inference_steps"]


def draw_fronts(panel_row, rows, floor, spaces, styles: dict, scope: str) -> None:
    """One row of fronts.png: a fidelity panel per feature space, then precision against recall."""
    import matplotlib.ticker

    *fidelity_panels, coverage = panel_row
    for (family, sampler, steps), members in itertools.groupby(sorted(rows, key=front_curve), key=front_curve):
        members = list(members)
        style = styles[(family, sampler, steps)]
        curves = [(panel, [(r[fd] / floor[fd], r.get("accuracy", np.nan)) for r in members], True)
                  for panel, (fd, _) in zip(fidelity_panels, spaces)]  # fmt: skip
        curves.append((coverage, [(r["recall"], r["precision"]) for r in members], False))
        for panel, points, lower_x_is_better in curves:
            panel.plot(*zip(*points), linestyle="", alpha=0.5, **style)
            panel.plot(*zip(*nondominated(points, lower_x_is_better)), label=f"{family} ({sampler}, {steps})", **style)
    for panel, (fd, name) in zip(fidelity_panels, spaces):
        ratios = [row[fd] / floor[fd] for row in rows] or [1.0]
        panel.set(xlabel=f"FD ({name}) / real-data floor", ylabel="accuracy", title=f"fidelity ({name} features), {scope}")
        if max(ratios) >= 4 * min(ratios):  # a far point would squash the rest on a linear axis
            panel.set_xscale("log")
            panel.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 3, 5)))  # labels inside a decade
            panel.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        panel.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    coverage.set(xlabel="recall", ylabel="precision", title=f"precision against recall, {scope}")
    coverage.plot([floor["recall"]], [floor["precision"]], marker="*", markersize=12, color="black", linestyle="",
                  label="real data")  # fmt: skip

if __name__ == "__main__":
    main()
