"""Quality per model evaluation: FD (own classifier and EfficientNet-Lite0), class accuracy, precision / recall and
the saturated share against the number of network calls for our DDPM, DDIM (eta 0 and 1; uniform and Karras levels),
DPM-Solver++(2M) (uniform and Karras levels), EDM Heun and Euler, the reverse SDE (Euler-Maruyama, reverse
diffusion) and predictor-corrector, and diffusers' DDIM and DPM-Solver++(2M), on the same UNet, each beside the real-data floor at
the same N, with a plot of FD against network calls.

    python benchmarks/quality_per_step.py --pipeline checkpoints/mnist \
        --eval_classifier checkpoints/mnist-eval-classifier --num_samples 500 --output_dir eval/quality-per-step

A sampler's cost is its network calls per image, one per entry of its timesteps: N for most, 2N - 1 for Heun,
2N for predictor-corrector (each call evaluates CFG's two branches as one batch). `--steps` sets N for every
sampler; `--budgets` instead gives each sampler the most steps whose calls fit each budget, so that rows compare at
equal cost.

Rows run separately (1,000 steps take hours per row on a CPU) are drawn into one table and plot by
`--combine RUN_DIR [RUN_DIR ...] --output_dir DIR`, which refuses runs of another model, seed, N or setting.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

from common import machine_line, network_calls

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.evaluation.judge import Judge, real_images
from guided_diffusers.evaluation.reports import combined_rows, load_reports, sources_of
from guided_diffusers.evaluation.sweeps import add_device_argument, check_steps, generate, sampling_device
from guided_diffusers.evaluation.sample_cache import sweep_cache, weights_digest

# name for --samplers: (label, sampler in pipelines.SAMPLERS, eta)
SAMPLER_VARIANTS = {
    "ddpm": ("ours DDPM", "ddpm", 0.0),
    "ddim": ("ours DDIM eta=0", "ddim", 0.0),
    "ddim-eta1": ("ours DDIM eta=1", "ddim", 1.0),
    "dpm2m": ("ours DPM-Solver++ (2M)", "dpm2m", 0.0),
    "diffusers-ddim": ("diffusers DDIM eta=0", "diffusers-ddim", 0.0),
    "dpm++": ("diffusers DPM-Solver++ (2M)", "dpm++", 0.0),
    "ddim-karras": ("ours DDIM, Karras levels", "ddim-karras", 0.0),
    "dpm2m-karras": ("ours DPM-Solver++ (2M), Karras levels", "dpm2m-karras", 0.0),
    "heun": ("ours EDM Heun", "heun", 0.0),
    "heun-sigma-min-0.1": ("ours EDM Heun, sigma_min 0.1", "heun-sigma-min-0.1", 0.0),
    "euler": ("ours EDM Euler", "euler", 0.0),
    "sde": ("ours reverse SDE (Euler-Maruyama)", "sde", 0.0),
    "reverse-diffusion": ("ours reverse SDE (reverse diffusion)", "reverse-diffusion", 0.0),
    "pc": ("ours SDE predictor-corrector", "pc", 0.0),
}
FD_METRICS = [("fd_own", "FD (own classifier)"), ("fd_efficientnet", "FD (EfficientNet-Lite0)")]
TABLE_METRICS = [*FD_METRICS, ("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                 ("saturated", "saturated px")]
# what runs must share for their rows to share a table: the same samples per row, judged against the same floor
SAME_IN_COMBINED_RUNS = ("pipeline", "eval_classifier", "dataset_name", "num_samples", "batch_size", "seed",
                         "guidance_scale", "thresholding", "no_efficientnet")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", help="required unless --replot or --combine")
    parser.add_argument("--eval_classifier", help="required unless --replot or --combine")
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_samples", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=100)
    cost = parser.add_mutually_exclusive_group()
    cost.add_argument("--steps", nargs="+", type=int, default=[10, 20, 50, 100, 250, 1000], help="N for every sampler")
    cost.add_argument("--budgets", nargs="+", type=int, help="network calls per image: each sampler gets the most "
                      "steps whose calls fit each budget (Heun 2N - 1, predictor-corrector 2N)")  # fmt: skip
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLER_VARIANTS), choices=list(SAMPLER_VARIANTS))
    parser.add_argument("--thresholding", default="static", choices=["none", "static", "dynamic"])
    parser.add_argument("--no_efficientnet", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--output_dir", required=True, help="results, and every finished sample batch (samples/)")
    parser.add_argument("--resume", action="store_true", help="re-use the sample batches that an interrupted run of "
                        "the same settings and weights left in output_dir/samples (1,000 steps take hours per row on "
                        "a CPU)")  # fmt: skip
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from output_dir/results.json")
    parser.add_argument("--combine", nargs="+", metavar="RUN_DIR", help="no sampling: one table and plot in "
                        "output_dir from the rows of these finished runs (same model, seed, N and setting)")  # fmt: skip
    args = parser.parse_args(argv)
    sampling = not (args.replot or args.combine)
    if sampling and (args.pipeline is None or args.eval_classifier is None):
        parser.error("--pipeline and --eval_classifier are required (unless --replot or --combine).")
    if sampling:
        args.device = str(sampling_device(args.device))  # a string, for results.json
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        return replot(args.output_dir)
    if args.combine:
        return combine(args.combine, args.output_dir)
    print(machine_line(), flush=True)
    pipe = GuidedDiffusionPipeline.from_pretrained(args.pipeline).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    costs = [(steps, None) for steps in args.steps] if args.budgets is None else None
    runs = [(label, dict(sampler=sampler, num_inference_steps=steps, guidance_scale=args.guidance_scale,
                         classifier_scale=0.0, thresholding=args.thresholding, eta=eta), budget)
            for label, sampler, eta in (SAMPLER_VARIANTS[name] for name in args.samplers)
            for steps, budget in (costs or [(steps_within(pipe, sampler, b), b) for b in args.budgets])]  # fmt: skip
    check_steps(pipe, [setting for _, setting, _ in runs])
    config = pipe.image_config  # the decoded images' size for a latent model
    test, _ = real_images(args.dataset_name, "test", args.num_samples, args.seed, config.sample_size, config.in_channels)
    judge = Judge(NoiseAwareClassifier.from_pretrained(args.eval_classifier), test, not args.no_efficientnet, args.batch_size)
    train, train_labels = real_images(args.dataset_name, "train", args.num_samples, args.seed + 1, config.sample_size,
                                      config.in_channels)  # fmt: skip
    floor = judge.measure(train, train_labels)
    weights = weights_digest(pipe)
    rows = []
    for label, setting, budget in runs:
        cache = sweep_cache(args.output_dir, weights, setting, args)
        images, labels = generate(pipe, setting, args.num_samples, args.batch_size, args.seed, cache)
        # the time the samples took, also when some batches come from an interrupted run
        rows.append({"sampler": label, "steps": setting["num_inference_steps"],
                     "network_calls": network_calls(pipe, setting["sampler"], setting["num_inference_steps"]),
                     **({} if budget is None else {"budget": budget}),
                     "seconds_per_image": cache.seconds / args.num_samples,
                     **cache.measured(judge.fingerprint, args.num_samples, lambda: judge.measure(images, labels))})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_results(args, rows, floor)


def steps_within(pipe, sampler: str, budget: int) -> int:
    """The most steps of `sampler` whose network calls per image fit in `budget`."""
    fitting = []
    for steps in range(1, budget + 1):
        try:
            calls = network_calls(pipe, sampler, steps)
        except ValueError:  # more steps than the sampler can take (DPM-Solver at T of T), or fewer (one Karras
            if fitting:     # level from a raised sigma_min)
                break
            continue
        if calls <= budget:
            fitting.append(steps)
    if not fitting:
        raise SystemExit(f"--budgets: {sampler} needs more than {budget} network calls for one step.")
    return fitting[-1]


def write_results(args, rows, floor) -> None:
    machine = machine_line()
    header = f"```bash\n{command_line()}\n```\n\n{machine}\n\n{setting_line(vars(args))}"
    write_report(Path(args.output_dir), {"command": vars(args), "machine": machine}, header, rows, floor)


def command_line() -> str:
    return shlex.join(["python", "benchmarks/quality_per_step.py", *sys.argv[1:]])  # as run from the repository root


def setting_line(command: dict) -> str:
    return f"N = {command['num_samples']}, CFG w = {command['guidance_scale']}, thresholding {command['thresholding']}."


def write_report(out: Path, record: dict, header: str, rows, floor) -> None:
    """results.json (`record` + floor + rows), results.md (`header` + table) and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**record, "real_data_floor": floor, "rows": rows}, indent=2))
    metrics = [(key, name) for key, name in TABLE_METRICS if key in floor]
    lines = ["| sampler | steps | network calls | " + " | ".join(name for _, name in metrics) + " | s / image |",
             "| --- | --- | --- |" + " --- |" * (len(metrics) + 1),
             "| real data (train vs test) | - | - | " + " | ".join(f"{floor[key]:.4g}" for key, _ in metrics) + " | - |"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['sampler']} | {row['steps']} | {calls_of(row)} | "
                     + " | ".join(f"{row[key]:.4g}" for key, _ in metrics) + f" | {row['seconds_per_image']:.3f} |")  # fmt: skip
    table = "\n".join(lines + best_at_each_budget(rows))
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    print(table)
    plot(out, rows, floor, [m for m in FD_METRICS if m[0] in floor])


def best_at_each_budget(rows) -> list[str]:
    """Lines naming, for each budget of a --budgets run, the sampler with the lowest FD in each feature space."""
    lines = []
    for budget in sorted({row["budget"] for row in rows if "budget" in row}):
        members = [row for row in rows if row.get("budget") == budget]
        best = [f"{name}: {min(members, key=lambda row: row[key])['sampler']}" for key, name in FD_METRICS
                if all(key in row for row in members)]  # fmt: skip
        lines.append(f"\nBest within {budget} network calls: " + "; ".join(best) + ".")
    return lines


def calls_of(row: dict) -> int:
    """A row's network calls per image; rows written before they were recorded ran one call per step."""
    return row.get("network_calls", row["steps"])


def combine(run_dirs: list[str], output_dir: str) -> None:
    """One table and plot from the rows of several finished runs, e.g. 1,000 steps run apart from 10-250: any other
    model, seed, N, batch size, guidance scale or thresholding is refused, as is a (sampler, steps) row run twice."""
    reports = load_reports(run_dirs)
    first = command_of(reports[0])
    rows = combined_rows(run_dirs, reports, command_of, SAME_IN_COMBINED_RUNS, lambda row: (row["sampler"], row["steps"]))
    order = [label for label, _, _ in SAMPLER_VARIANTS.values()]
    rows.sort(key=lambda row: (order.index(row["sampler"]), row["steps"]))
    sources = sources_of(run_dirs, reports)
    machines = "; ".join(dict.fromkeys(source["machine"] for source in sources))
    print(f"{machines} (recorded with the rows)")
    runs = "\n".join(f"- `{run_dir}`: {', '.join(dict.fromkeys(r['sampler'] for r in report['rows']))} at "
                     f"{', '.join(map(str, sorted({r['steps'] for r in report['rows']})))} steps{run_command(run_dir)}"
                     for run_dir, report in zip(run_dirs, reports))  # fmt: skip
    header = f"```bash\n{command_line()}\n```\n\nCombined from these runs ({machines}):\n\n{runs}\n\n{setting_line(first)}"
    write_report(Path(output_dir), {"sources": sources, "machine": machines}, header, rows, reports[0]["real_data_floor"])


def command_of(report: dict) -> dict:
    """A run's command; for an earlier combination (which can be combined again, e.g. with a later budget), its
    first source's, which its other sources shared in every key that matters."""
    return report["command"] if "command" in report else report["sources"][0]["command"]


def plot(out: Path, rows, floor, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    # samplers with the same maths give the same curve (ours vs diffusers' DDIM; DDPM vs DDIM eta=1): distinct
    # markers and dashes keep the overlapped ones visible
    styles = [("o", "-", 7), ("s", "--", 9), ("^", ":", 5), ("D", "-.", 9), ("v", "-", 6), ("P", "--", 8),
              ("X", ":", 7), ("*", "-.", 9), ("<", "-", 6), (">", "--", 6), ("h", ":", 7), ("p", "-.", 7)]
    labels = list(dict.fromkeys(row["sampler"] for row in rows))  # the samplers of this run, in run order
    for panel, (key, name) in zip(panels[0], metrics):
        for label, (marker, dashes, size) in zip(labels, styles):
            members = [row for row in rows if row["sampler"] == label]
            panel.plot([calls_of(r) for r in members], [r[key] for r in members], marker=marker, linestyle=dashes,
                       markersize=size, markerfacecolor="none", label=label)  # fmt: skip
        panel.axhline(floor[key], color="grey", linestyle="--", linewidth=1, label="real data")
        panel.set(xscale="log", yscale="log", xlabel="network calls per image", title=name)
    panels[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "fd_vs_steps.png", dpi=110)
    plt.close(figure)


def run_command(run_dir) -> str:
    """`: <the command line>` from the run's results.md, where it wrote one."""
    report = (Path(run_dir) / "results.md").read_text()
    return f": `{report.split('```bash')[1].split('```')[0].strip()}`" if report.startswith("```bash") else ""


def replot(output_dir: str) -> None:
    """Redraw fd_vs_steps.png from a finished run's results.json (no sampling)."""
    report = json.loads((Path(output_dir) / "results.json").read_text())
    floor = report["real_data_floor"]
    plot(Path(output_dir), report["rows"], floor, [m for m in FD_METRICS if m[0] in floor])
    print(f"{report['machine']} (recorded with the numbers)\nredrew {Path(output_dir) / 'fd_vs_steps.png'}")


if __name__ == "__main__":
    main()
