"""Measure a text-to-image pipeline on held-out prompts: prompt alignment (the class of a one-item prompt; both
positions of a two-item prompt) under the evaluation classifier, FD and the share of saturated pixels, against the
guidance scale, with static clipping and dynamic thresholding side by side.

    python training/evaluate_text_to_image.py --pipeline checkpoints/mnist-text \
        --eval_classifier checkpoints/mnist-eval-classifier --dataset_name mnist --output_dir eval/mnist-text

GLIDE's comparison of CFG and CLIP guidance: `--guiders` (guider specs, e.g. "cfg:guidance_scale=3",
"clip:clip_scale=10", "cfg:guidance_scale=3&clip:clip_scale=10") in place of `--guidance_scales`, `--guiding_clip`
the noise-aware CLIP that guides, `--clip_model` the clean one whose CLIP score grades (never the same model); every
row counts its UNet and CLIP evaluations per image.

Each 28x56 image is read as items: the centre 28x28 of a one-item image, the two halves of a two-item image;
FD (own classifier) compares those items with real held-out test images (`--no_efficientnet` skips the
EfficientNet-Lite0 one). Writes results.json, results.md, alignment.png and a sample grid per row (samples_<row>.png,
a row per prompt).
"""

import argparse
import itertools
import json
import time
from collections import Counter
from pathlib import Path

import torch

from guided_diffusers.evaluation.clip_score import check_grading_model, clip_scores
from guided_diffusers.guiders import guider_from_spec
from guided_diffusers.models import NoiseAwareClassifier, NoiseAwareCLIP
from guided_diffusers.pipelines import TextCascadePipeline, TextToImagePipeline, pipeline_class
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.pipelines.samplers import SAMPLERS, make_scheduler, sampler_label
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
    parser.add_argument("--one_item_prompts", action="store_true",
                        help="only the one-item prompts (always, for a pipeline of items alone, such as a text cascade)")
    parser.add_argument("--augmentation_level", type=float, default=0.2, help="a text cascade's, at sampling")
    parser.add_argument("--super_resolution_steps", type=int, default=None,
                        help="a text cascade's stage steps (default --num_inference_steps), with --sampler too")
    parser.add_argument("--guidance_scales", nargs="+", type=float, default=[1.0, 3.0, 5.0, 10.0, 15.0])
    parser.add_argument("--guiders", nargs="+", default=None,
                        help="guider specs, one row each (times --thresholding), in place of --guidance_scales")
    parser.add_argument("--guiding_clip", default=None, help="a noise-aware NoiseAwareCLIP for CLIP guidance")
    parser.add_argument("--clip_model", default=None, help="a clean NoiseAwareCLIP (--noise_free) for CLIP score")
    parser.add_argument("--thresholding", nargs="+", default=["static", "dynamic"], choices=["none", "static", "dynamic"])
    parser.add_argument("--dynamic_thresholding_ratios", nargs="+", type=float, default=None,
                        help="percentiles p of |x0| for the dynamic rows, one row each (default: the scheduler's)")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--sampler", default="ddpm", choices=list(SAMPLERS),
                        help="the sampler (default ddpm: the shipped folders' own scheduler, which every published "
                             "text-to-image row used)")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--no_efficientnet", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    args.super_resolution_steps = args.super_resolution_steps or args.num_inference_steps
    if min(args.images_per_prompt, args.batch_size, args.num_inference_steps, args.super_resolution_steps) < 1:
        parser.error("--images_per_prompt, --batch_size, --num_inference_steps and --super_resolution_steps must be >= 1")
    if not 0 <= args.augmentation_level <= 1:
        parser.error(f"--augmentation_level must lie in [0, 1]; got {args.augmentation_level}")
    if args.dynamic_thresholding_ratios is not None:
        if "dynamic" not in args.thresholding:
            parser.error("--dynamic_thresholding_ratios needs 'dynamic' among --thresholding")
        if not all(0 < ratio <= 1 for ratio in args.dynamic_thresholding_ratios):
            parser.error(f"--dynamic_thresholding_ratios must lie in (0, 1]; got {args.dynamic_thresholding_ratios}")
    for spec in args.guiders or []:
        try:
            guider_from_spec(spec)  # a bad spec fails here, not an hour into the sweep
        except (ValueError, TypeError) as error:
            parser.error(f"--guiders {spec!r}: {error}")
    if args.clip_model is not None and args.clip_model == args.guiding_clip:
        parser.error("--clip_model must not be --guiding_clip: a model would grade its own guidance")
    args.device = str(sampling_device(args.device))  # a string, for results.json
    return args


def items(images: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """28x56 images (or with a black border, as latent models make them) -> their items (N_items, C, 28, 28) and
    which image each came from; square images (a text cascade's) are one item each."""
    if images.shape[-1] == images.shape[-2]:
        return center_crop(images, 28, 28), torch.arange(len(images))
    images = center_crop(images, 28, 56)
    crops, owners = [], []
    for index, image in enumerate(images):
        parts = [image[..., 14:42]] if right[index] == NO_ITEM else [image[..., :28], image[..., 28:]]
        crops += parts
        owners += [index] * len(parts)
    return torch.stack(crops), torch.tensor(owners)


def item_count(prompts, images_per_prompt: int) -> int:
    """How many items (digits) the images of `prompts` hold: one per one-item image, two per two-item image."""
    return images_per_prompt * sum(1 if right == NO_ITEM else 2 for _, _, right in prompts)


def generate(pipe, prompts, setting, args) -> tuple[torch.Tensor, dict]:
    """`images_per_prompt` images per prompt, in [-1, 1], batch by batch with fixed seeds; and the cost per image:
    network evaluations per image by kind ("unet", "clip", ...) and seconds."""
    texts = [text for text, _, _ in prompts for _ in range(args.images_per_prompt)]
    if "guider" in setting:
        guidance = {"guider": guider_from_spec(setting["guider"])}
    else:
        guidance = {"guidance_scale": setting["guidance_scale"]}
    if isinstance(pipe, TextCascadePipeline):  # the stage's options; the base has no dynamic-ratio argument
        guidance.update(augmentation_level=args.augmentation_level, super_resolution_steps=args.super_resolution_steps,
                        super_resolution_thresholding=setting["thresholding"])  # fmt: skip
    else:
        guidance["dynamic_thresholding_ratio"] = setting.get("dynamic_thresholding_ratio")
    images, evaluations, started = [], Counter(), time.perf_counter()
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        out = pipe(batch, thresholding=setting["thresholding"], **guidance, num_inference_steps=args.num_inference_steps,
                   output_type="pt", generator=torch.Generator().manual_seed(args.seed + start))  # fmt: skip
        images.append(out.images.cpu() * 2 - 1)
        evaluations.update({kind: count * len(batch) for kind, count in out.evaluations.items()})  # per batch -> images
    kinds = ("unet", "clip", "super_resolution_unet")
    cost = {f"{kind}_evals": count / len(texts) for kind, count in evaluations.items() if kind in kinds}
    return torch.cat(images), {**cost, "seconds_per_image": (time.perf_counter() - started) / len(texts)}


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
    result.update(single_alignment=aligned[single].mean().item() if single.any() else None,
                  pair_alignment=aligned[~single].mean().item() if (~single).any() else None,
                  saturated=saturated_share(images))  # fmt: skip
    if templates is not None:
        image_templates = [template for template in templates for _ in range(images_per_prompt)]
        result["alignment_by_template"] = {
            template: aligned[[t == template for t in image_templates]].mean().item() for template in dict.fromkeys(templates)
        }
    return result


def main(argv=None):
    args = parse_args(argv)
    components = {} if args.guiding_clip is None else {"clip_model": NoiseAwareCLIP.from_pretrained(args.guiding_clip)}
    pipe = text_pipeline(args, components)
    pipe.scheduler = make_scheduler(args.sampler, pipe.scheduler.config)
    if isinstance(pipe, TextCascadePipeline):
        pipe.super_resolution_scheduler = make_scheduler(args.sampler, pipe.super_resolution_scheduler.config)
    args.sampler_label = sampler_label(pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    grader = None if args.clip_model is None else NoiseAwareCLIP.from_pretrained(args.clip_model).eval()
    if grader is not None:
        check_grading_model(grader)
    prompts = evaluation_prompts(args.dataset_name, args.prompt_split)
    templates = evaluation_templates(args.dataset_name, args.prompt_split)
    if args.one_item_prompts:
        kept = [i for i, (_, _, right) in enumerate(prompts) if right == NO_ITEM]
        prompts, templates = [prompts[i] for i in kept], [templates[i] for i in kept]
    count = len(prompts) * args.images_per_prompt
    real, _ = real_images(args.dataset_name, "test", count, args.seed, 28, 1)
    judge = Judge(NoiseAwareClassifier.from_pretrained(args.eval_classifier), real, not args.no_efficientnet, args.batch_size)
    # the floor at the samples' N: FD is measured on their items (two per two-item image), not on the images
    floor_images = item_count(prompts, args.images_per_prompt)
    train, train_labels = real_images(args.dataset_name, "train", floor_images, args.seed + 1, 28, 1)
    floor = judge.measure(train, train_labels)
    rows = []
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    for index, setting in enumerate(settings(args)):
        images, cost = generate(pipe, prompts, setting, args)
        rows.append({**setting, **measure(judge, images, prompts, args.images_per_prompt, templates), **cost})
        if grader is not None:
            texts = [text for text, _, _ in prompts for _ in range(args.images_per_prompt)]
            rows[-1]["clip_score"] = clip_scores(grader, pipe.tokenizer, pipe.text_encoder, images, texts).mean().item()
        save_grid(images, prompts, args.images_per_prompt, Path(args.output_dir, f"samples_{index}.png"))
        print(json.dumps(rows[-1]), flush=True)
    write_results(args, rows, floor, len(prompts), floor_images)


def text_pipeline(args, components: dict):
    """The --pipeline folder: a TextToImagePipeline, or a TextCascadePipeline (items alone: one-item prompts only)."""
    cls = pipeline_class(args.pipeline)
    if cls not in (TextToImagePipeline, TextCascadePipeline):
        raise ValueError(f"--pipeline {args.pipeline!r} is a {cls.__name__}; this evaluation takes a text-to-image "
                         "pipeline or a text cascade.")  # fmt: skip
    if cls is TextCascadePipeline:
        if components:
            raise ValueError("--guiding_clip: a text cascade takes no CLIP guidance.")
        args.one_item_prompts = True
    return cls.from_pretrained(args.pipeline, **components).to(args.device)


def settings(args) -> list[dict]:
    """The rows: each guidance scale (or guider spec) x thresholding, a dynamic one once per
    --dynamic_thresholding_ratios."""
    if args.guiders:
        return [{"guider": spec, "thresholding": mode} for spec, mode in itertools.product(args.guiders, args.thresholding)]
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
           ("clip_score", "CLIP score"), ("fd_own", "FD (own classifier)"), ("fd_efficientnet", "FD (EfficientNet-Lite0)"),
           ("saturated", "saturated px")]  # fmt: skip
COST = [("unet_evals", "UNet evals / image"), ("super_resolution_unet_evals", "SR UNet evals / image"),
        ("clip_evals", "CLIP evals / image"), ("seconds_per_image", "s / image")]


def guidance_label(row: dict) -> str:
    return row["guider"] if "guider" in row else f"{row['guidance_scale']:g}"


def cell(key: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if "alignment" in key else f"{value:.4g}"


def write_results(args, rows, floor, num_prompts: int, floor_images: int) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"command": vars(args), "hardware": hardware(), "real_data_floor": floor,
                                                  "floor_images": floor_images, "rows": rows}, indent=2))  # fmt: skip
    metrics = [(key, name) for key, name in METRICS if rows[0].get(key) is not None]
    columns = metrics + [(key, name) for key, name in COST if rows[0].get(key) is not None]
    lines = ["| guidance | thresholding | " + " | ".join(name for _, name in columns) + " |",
             "| --- | --- |" + " --- |" * len(columns),
             "| real data (train vs test) | - | " + " | ".join(cell(key, floor.get(key)) for key, _ in columns) + " |"]  # fmt: skip
    for row in rows:
        lines.append(f"| {guidance_label(row)} | {thresholding_label(row)} | "
                     + " | ".join(cell(key, row.get(key)) for key, _ in columns) + " |")  # fmt: skip
    table = "\n".join(lines)
    (out / "results.md").write_text(f"{num_prompts} {args.prompt_split} prompts x {args.images_per_prompt} images, "
                                    f"{args.sampler_label} {args.num_inference_steps} steps. FD: the images' "
                                    f"{floor_images} items (digits) against {num_prompts * args.images_per_prompt} real test images; "
                                    f"the floor: {floor_images} real training images against the same."
                                    f"\n\n{table}\n\n{template_table(rows)}")  # fmt: skip
    print(table)
    plot(out, rows, metrics)


def template_table(rows) -> str:
    """Alignment by prompt template (a column per row of the main table): which wordings the model reads."""
    if "alignment_by_template" not in rows[0]:
        return ""
    lines = ["Alignment by template (one-item: the class right; two-item: both positions right):", "",
             "| template | " + " | ".join(f"{guidance_label(row)}, {thresholding_label(row)}" for row in rows) + " |",
             "| --- |" + " --- |" * len(rows)]  # fmt: skip
    for template in rows[0]["alignment_by_template"]:
        lines.append(f"| `{template}` | " + " | ".join(f"{row['alignment_by_template'][template]:.1%}" for row in rows) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, rows, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "guider" in rows[0]:
        return plot_fronts(out, rows, [(k, n) for k, n in metrics if k in ("single_alignment", "pair_alignment", "clip_score")])
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


def plot_fronts(out: Path, rows, metrics) -> None:
    """Guider rows: each alignment measure against FD (own), one curve per method (spec family) and thresholding,
    ordered by FD: GLIDE's fidelity-alignment trade-off."""
    import matplotlib.pyplot as plt

    from guided_diffusers.guiders.specs import spec_family

    figure, panels = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for label in dict.fromkeys(f"{spec_family(row['guider'])}, {thresholding_label(row)}" for row in rows):
        members = sorted((row for row in rows if f"{spec_family(row['guider'])}, {thresholding_label(row)}" == label),
                         key=lambda row: row["fd_own"])  # fmt: skip
        for panel, (key, name) in zip(panels[0], metrics):
            panel.plot([r["fd_own"] for r in members], [r[key] for r in members], marker="o", label=label)
            panel.set(title=name, xlabel="FD (own classifier)")
    panels[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "alignment.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
