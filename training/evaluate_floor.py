"""The real-data floor's spread: how much FD, precision and recall of real training images against real test images
change from one draw of N images to another. Every sweep divides its FD by one such draw (training/evaluate.py,
seed s: test images drawn with s, training images with s + 1); this says how far a ratio to the floor can move
with the draw alone.

    python training/evaluate_floor.py --eval_classifier checkpoints/mnist-eval-classifier --dataset_name mnist \
        --num_samples 1000 --seeds 0 1 2 3 4 5 6 7 --output_dir eval/mnist-floor-spread

Writes results.json and results.md (a row per seed, then mean, standard deviation, min and max of each metric).
"""

import argparse
import json
import statistics
from pathlib import Path

from guided_diffusers.evaluation.judge import Judge, real_images
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.training.args import recorded_command
from guided_diffusers.training.folder_components import write_atomically

METRICS = {"fd_own": "FD (own classifier)", "fd_efficientnet": "FD (EfficientNet-Lite0)", "accuracy": "accuracy",
           "precision": "precision", "recall": "recall"}  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval_classifier", required=True, help="the clean-data classifier the sweeps judge with")
    parser.add_argument("--dataset_name", default="mnist")
    parser.add_argument("--num_samples", type=int, default=1000, help="N per draw, as in the sweeps")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="the sweeps' --seed values")
    parser.add_argument("--resolution", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--no_efficientnet", action="store_true", help="skip FD (EfficientNet-Lite0)")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.num_samples < 2 or args.batch_size < 1 or args.resolution < 1 or args.channels not in (1, 3):
        parser.error("--num_samples must be >= 2, --batch_size and --resolution >= 1, --channels 1 or 3")
    if len(set(args.seeds)) != len(args.seeds) or len(args.seeds) < 2 or min(args.seeds) < 0:
        parser.error(f"--seeds must be at least two different seeds >= 0; got {args.seeds}")
    args.command = recorded_command("python", "training/evaluate_floor.py", argv)
    return args


def floor_at(classifier, args, seed: int) -> dict:
    """One draw's floor, as training/evaluate.py measures it for --seed `seed`."""
    shape = (args.resolution, args.channels)
    test_images, _ = real_images(args.dataset_name, "test", args.num_samples, seed, *shape)
    judge = Judge(classifier, test_images, not args.no_efficientnet, args.batch_size)
    train_images, train_labels = real_images(args.dataset_name, "train", args.num_samples, seed + 1, *shape)
    measured = judge.measure(train_images, train_labels)
    return {"seed": seed, **{key: measured[key] for key in METRICS if key in measured}}


def summary(rows: list[dict]) -> dict:
    """Mean, standard deviation (n - 1), min and max of each metric over the draws."""
    columns = [key for key in METRICS if key in rows[0]]
    values = {key: [row[key] for row in rows] for key in columns}
    return {name: {key: fn(values[key]) for key in columns}
            for name, fn in (("mean", statistics.mean), ("sd", statistics.stdev), ("min", min), ("max", max))}  # fmt: skip


def markdown(args, rows: list[dict], stats: dict) -> str:
    columns = [key for key in METRICS if key in rows[0]]
    lines = [f"```bash\n{args.command}\n```\n",
             f"Real training images (seed s + 1) against real test images (seed s), N = {args.num_samples} each.\n",
             "| seed | " + " | ".join(METRICS[key] for key in columns) + " |",
             "| --- " * (len(columns) + 1) + "|"]  # fmt: skip
    lines += [f"| {row['seed']} | " + " | ".join(f"{row[key]:.4g}" for key in columns) + " |" for row in rows]
    lines += [f"| **{name}** | " + " | ".join(f"{value:.4g}" for value in stats[name].values()) + " |" for name in stats]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    classifier = NoiseAwareClassifier.from_pretrained(args.eval_classifier)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        rows.append(floor_at(classifier, args, seed))
        print(json.dumps(rows[-1]), flush=True)
    stats = summary(rows)
    write_atomically(out / "results.json", json.dumps({"command": args.command, "rows": rows, "summary": stats}, indent=1))
    write_atomically(out / "results.md", markdown(args, rows, stats))
    print(markdown(args, rows, stats))


if __name__ == "__main__":
    main()
