"""Measure a text-to-image pipeline on held-out prompts: prompt alignment (the class of a one-item prompt; both
positions of a two-item prompt) under the evaluation classifier, FD and the share of saturated pixels, against the
guidance scale, with static clipping and dynamic thresholding side by side.

    python training/evaluate_text_to_image.py --pipeline checkpoints/mnist-text \
        --eval_classifier checkpoints/mnist-eval-classifier --dataset_name mnist --output_dir eval/mnist-text

Each 28x56 image is read as items: the centre 28x28 of a one-item image, the two halves of a two-item image;
FD (own classifier) compares those items with real held-out test images (`--no_efficientnet` skips the
EfficientNet-Lite0 one). Writes results.json, results.md, alignment.png and a sample grid per row (samples_<row>.png,
a row per prompt).
"""

import argparse
import itertools
import json
from pathlib import Path

import torch

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import TextToImagePipeline
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.training.captions import NO_ITEM, evaluation_prompts, evaluation_templates
from guided_diffusers.evaluation.judge import Judge, real_images
from guided_diffusers.evaluation.sweeps import add_device_argument, sampling_device
from guided_diffusers.evaluation.features import center_crop
from guided_diffusers.evaluation.metrics import saturated_share
from guided_diffusers.training.model_card import hardware


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--eval_classifier", required=True)
    parser.add_argument("--dataset_name", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--prompt_split", default="held_out", choices=["train", "held_out"])
    parser.add_argument("--images_per_prompt", type=int, default=4)
    parser.add_argument("--guidance_scales", nargs="+", type=float, default=[1.0, 3.0, 5.0, 10.0, 15.0])
    parser.add_argument("--thresholding", nargs="+", default=["static", "dynamic"], choices=["none", "static", "dynamic"])
    parser.add_argument("--dynamic_thresholding_ratios", nargs="+", type=float, default=None,
                        help="percentiles p of |x0| for the dynamic rows, one row each (default: the scheduler's)")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--no_efficientnet", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.images_per_prompt < 1 or args.batch_size < 1 or args.num_inference_steps < 1:
        parser.error("--images_per_prompt, --batch_size and --num_inference_steps must be >= 1")
    if args.dynamic_thresholding_ratios is not None:
        if "dynamic" not in args.thresholding:
            parser.error("--dynamic_thresholding_ratios needs 'dynamic' among --thresholding")
        if not all(0 < ratio <= 1 for ratio in args.dynamic_thresholding_ratios):
            parser.error(f"--dynamic_thresholding_ratios must lie in (0, 1]; got {args.dynamic_thresholding_ratios}")
    args.device = str(sampling_device(args.device))  # a string, for results.json
    return args


def items(images: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """28x56 images (or with a black border, as latent models make them) -> their items (N_items, C, 28, 28) and
    which image each came from."""
    images = center_crop(images, 28, 56)
    crops, owners = [], []
    for index, image in enumerate(images):
        parts = [image[..., 14:42]] if right[index] == NO_ITEM else [image[..., :28], image[..., 28:]]
        crops += parts
        owners += [index] * len(parts)
    return torch.stack(crops), torch.tensor(owners)


def generate(pipe, prompts, setting, args) -> torch.Tensor:
    """`images_per_prompt` images per prompt, in [-1, 1], batch by batch with fixed seeds."""
    texts = [text for text, _, _ in prompts for _ in range(args.images_per_prompt)]
    images = []
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        out = pipe(batch, guidance_scale=setting["guidance_scale"], thresholding=setting["thresholding"],
                   dynamic_thresholding_ratio=setting.get("dynamic_thresholding_ratio"),
                   num_inference_steps=args.num_inference_steps, output_type="pt",
                   generator=torch.Generator().manual_seed(args.seed + start))  # fmt: skip
        images.append(out.images.cpu() * 2 - 1)
    return torch.cat(images)


def measure(judge: Judge, images: torch.Tensor, prompts, images_per_prompt: int, templates=None) -> dict:
    """The judge's metrics of the items, alignment (a one-item image: its class right; a two-item image: both right),
    the saturated share and, given each prompt's template, the alignment per template."""
    left = torch.tensor([l for _, l, _ in prompts]).repeat_interleave(images_per_prompt)  # noqa: E741
    right = torch.tensor([r for _, _, r in prompts]).repeat_interleave(images_per_prompt)
    crops, owners = items(images, right)
    wanted = torch.stack([left, right], 1)
    position = torch.cat([torch.zeros(1, dtype=torch.long), (owners[1:] == owners[:-1]).long()])  # 0 left/single, 1 right
    labels = wanted[owners, position]
    result = judge.measure(crops, labels)
    predicted = torch.as_tensor(judge.features(crops)["logits"]).argmax(1)
    correct = (predicted == labels).float()
    per_image = torch.zeros(len(images)).index_add_(0, owners, correct) / torch.bincount(owners, minlength=len(images))
    single = right == NO_ITEM
    aligned = torch.where(single, per_image, (per_image == 1).float())  # the one class right, or both positions
    result.update(single_alignment=aligned[single].mean().item(), pair_alignment=aligned[~single].mean().item(),
                  saturated=saturated_share(images))  # fmt: skip
    if templates is not None:
        image_templates = [template for template in templates for _ in range(images_per_prompt)]
        result["alignment_by_template"] = {
            template: aligned[[t == template for t in image_templates]].mean().item() for template in dict.fromkeys(templates)
        }
    return result


def main(argv=None):
    args = parse_args(argv)
    pipe = TextToImagePipeline.from_pretrained(args.pipeline).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    prompts = evaluation_prompts(args.dataset_name, args.prompt_split)
    templates = evaluation_templates(args.dataset_name, args.prompt_split)
    count = len(prompts) * args.images_per_prompt
    real, _ = real_images(args.dataset_name, "test", count, args.seed, 28, 1)
    judge = Judge(NoiseAwareClassifier.from_pretrained(args.eval_classifier), real, not args.no_efficientnet, args.batch_size)
    train, train_labels = real_images(args.dataset_name, "train", count, args.seed + 1, 28, 1)
    floor = judge.measure(train, train_labels)
    rows = []
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    for index, setting in enumerate(settings(args)):
        images = generate(pipe, prompts, setting, args)
        rows.append({**setting, **measure(judge, images, prompts, args.images_per_prompt, templates)})
        save_grid(images, prompts, args.images_per_prompt, Path(args.output_dir, f"samples_{index}.png"))
        print(json.dumps(rows[-1]), flush=True)
    write_results(args, rows, floor, len(prompts))


def settings(args) -> list[dict]:
    """The rows: each guidance scale x thresholding, a dynamic one once per --dynamic_thresholding_ratios."""
    rows = []
    for scale, mode in itertools.product(args.guidance_scales, args.thresholding):
        ratios = args.dynamic_thresholding_ratios if mode == "dynamic" and args.dynamic_thresholding_ratios else [None]
        rows += [{"guidance_scale": scale, "thresholding": mode}
                 | ({} if ratio is None else {"dynamic_thresholding_ratio": ratio}) for ratio in ratios]  # fmt: skip
    return rows


def thresholding_label(row: dict) -> str:
    ratio = row.get("dynamic_thresholding_ratio")
    return row["thresholding"] if ratio is None else f"{row['thresholding']} (p = {ratio:g})"


def save_grid(images: torch.Tensor, prompts, images_per_prompt: int, path: Path, count: int = 20) -> None:
    """A row per prompt: the first count/2 one-item prompts (each class once), an even spread of the two-item ones."""
    singles = [i for i, (_, _, right) in enumerate(prompts) if right == NO_ITEM][: count // 2]
    pairs = [i for i, (_, _, right) in enumerate(prompts) if right != NO_ITEM]
    chosen = singles + pairs[:: max(len(pairs) // (count - len(singles)), 1)][: count - len(singles)]
    picked = torch.cat([images[i * images_per_prompt : (i + 1) * images_per_prompt] for i in chosen])
    pixels = ((picked.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    make_grid(pixels, rows=len(chosen), scale=2).save(path)


METRICS = [("single_alignment", "one-item alignment"), ("pair_alignment", "two-item alignment (both right)"),
           ("fd_own", "FD (own classifier)"), ("fd_efficientnet", "FD (EfficientNet-Lite0)"), ("saturated", "saturated px")]  # fmt: skip


def write_results(args, rows, floor, num_prompts: int) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"command": vars(args), "hardware": hardware(), "real_data_floor": floor,
                                                  "rows": rows}, indent=2))  # fmt: skip
    metrics = [(key, name) for key, name in METRICS if key in rows[0]]
    lines = ["| guidance | thresholding | " + " | ".join(name for _, name in metrics) + " |",
             "| --- | --- |" + " --- |" * len(metrics),
             "| real data (train vs test) | - | - | - | " + " | ".join(f"{floor[k]:.4g}" for k, _ in metrics[2:] if k in floor)
             + " |"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['guidance_scale']:g} | {thresholding_label(row)} | " + " | ".join(
            f"{row[key]:.1%}" if "alignment" in key else f"{row[key]:.4g}" for key, _ in metrics) + " |")  # fmt: skip
    table = "\n".join(lines)
    (out / "results.md").write_text(f"{num_prompts} {args.prompt_split} prompts x {args.images_per_prompt} images, "
                                    f"DDIM {args.num_inference_steps} steps.\n\n{table}\n\n{template_table(rows)}")  # fmt: skip
    print(table)
    plot(out, rows, metrics)


def template_table(rows) -> str:
    """Alignment by prompt template (a column per row of the main table): which wordings the model reads."""
    if "alignment_by_template" not in rows[0]:
        return ""
    lines = ["Alignment by template (one-item: the class right; two-item: both positions right):", "",
             "| template | " + " | ".join(f"w = {row['guidance_scale']:g}, {thresholding_label(row)}" for row in rows) + " |",
             "| --- |" + " --- |" * len(rows)]  # fmt: skip
    for template in rows[0]["alignment_by_template"]:
        lines.append(f"| `{template}` | " + " | ".join(f"{row['alignment_by_template'][template]:.1%}" for row in rows) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, rows, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3), squeeze=False)
    for mode in sorted({thresholding_label(row) for row in rows}):
        members = sorted((row for row in rows if thresholding_label(row) == mode), key=lambda row: row["guidance_scale"])
        for panel, (key, name) in zip(panels[0], metrics):
            panel.plot([r["guidance_scale"] for r in members], [r[key] for r in members], marker="o", label=mode)
            panel.set(title=name, xlabel="guidance scale w")
    panels[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "alignment.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
