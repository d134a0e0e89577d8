"""Assemble a shipped model folder from finished runs: the pipeline of a train_unet.py run, the noise-aware
classifier of a train_classifier.py run as its `classifier/` component, one model card telling both stories, and
optionally the evaluations of evaluate.py (each a section with its table, plots and sample grids). A
train_text_to_image.py run (no classifier) assembles the same way, with evaluate_text_to_image.py's evaluations.
With --super_resolution_run (a train_super_resolution.py run) the folder is a CascadePipeline: the --unet_run is its
low-resolution base, the run its super-resolution stage, and evaluate_cascade.py's evaluations its sections.

    python training/assemble_checkpoint.py --unet_run runs/mnist --classifier_run runs/mnist-classifier \
        --evaluation eval/mnist-cfg eval/mnist-classifier-guidance --fp16 --output_dir checkpoints/mnist

With --fp16 the weights are stored in half precision (half the size); diffusers loads them back into float32
models, so sampling runs in float32 either way, and the card says how much the rounding moves samples: the same
seeds through the float32 runs and the stored folder (CFG 3 and classifier guidance; a cascade's stages both at
--check_steps). Checkpoints, logs and
intermediate samples are left behind.
"""

import argparse
import copy
import shutil
from pathlib import Path

import torch

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import (
    CascadePipeline, SuperResolutionPipeline, TextToImagePipeline, load_pipeline, pipeline_class,
)  # fmt: skip
from guided_diffusers.pipelines.samplers import default_thresholding, sampler_label
from guided_diffusers.evaluation.reports import evaluation_section_text
from guided_diffusers.training.text_samples import grid_prompts, sample_grid, samples_section, usage_section
from guided_diffusers.training.demo_defaults import DEMO_KEY, measured_defaults
from guided_diffusers.training.model_card import read_model_card, sections, write_card_metadata, write_model_card


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unet_run", required=True, help="output folder of train_unet.py or train_text_to_image.py")
    parser.add_argument("--classifier_run", default=None, help="output folder of train_classifier.py")
    parser.add_argument("--super_resolution_run", default=None,
                        help="output folder of train_super_resolution.py: the folder becomes a CascadePipeline, the "
                             "--unet_run its low-resolution base")  # fmt: skip
    parser.add_argument("--evaluation", nargs="+", default=[], help="output folders of evaluate.py (results.md)")
    parser.add_argument("--summary", default=None, help="a markdown file: the card's summary of the results")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16")
    parser.add_argument("--classifier_scale", type=float, default=10.0,
                        help="the classifier-guidance scale of the card's example and the fp16 check (the best measured)")
    parser.add_argument("--check_steps", type=int, default=50, help="steps (of the folder's scheduler) of the fp16 check")
    parser.add_argument("--demo_guidance_sweep", default=None,
                        help="the --evaluation folder name whose CFG sweep sets the demo's guidance scale "
                             "(training/demo_defaults.py); without it the card records no demo defaults")
    parser.add_argument("--demo_thresholding_sweep", default=None, help="the --evaluation comparing thresholding")
    parser.add_argument("--demo_sampler", default="dpm2m", help="the sampler the demo starts from")
    parser.add_argument("--demo_steps", type=int, default=20, help="the demo's default number of steps")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    for flag, folder in [("unet_run", args.unet_run), ("classifier_run", args.classifier_run),
                         ("super_resolution_run", args.super_resolution_run),
                         *(("evaluation", folder) for folder in args.evaluation)]:  # fmt: skip
        if folder is not None and not (Path(folder) / ("results.md" if flag == "evaluation" else "README.md")).is_file():
            raise ValueError(f"--{flag} {folder!r} is not a finished {flag.replace('_', ' ')} folder.")
    if args.classifier_run is not None and pipeline_class(args.unet_run) is TextToImagePipeline:
        raise ValueError(f"--classifier_run: {args.unet_run!r} is a text-to-image run, which takes no classifier.")
    if args.super_resolution_run is not None and pipeline_class(args.unet_run) is TextToImagePipeline:
        raise ValueError(f"--super_resolution_run: {args.unet_run!r} is a text-to-image run; cascades here have a "
                         "class-conditional (or unconditional) base.")  # fmt: skip
    if args.summary is not None and not Path(args.summary).is_file():
        raise ValueError(f"--summary {args.summary!r} is not a file.")
    return args


def evaluation_section(folder: Path, copy_to: Path, grid_rows: str = "class") -> str:
    """An evaluation folder's section of the card, its plots and sample grids copied next to the card."""
    copy_to.mkdir(parents=True, exist_ok=True)
    for png in sorted(folder.glob("*.png")):
        shutil.copy(png, copy_to / png.name)
    return evaluation_section_text(folder, copy_to.relative_to(copy_to.parents[1]), grid_rows)


def check_inputs(pipe, dataset: str, classifier_scale: float) -> tuple[dict, dict]:
    """The storage check's 64 samples (class-balanced labels, or 16 held-out prompts x 4) and its guidance modes:
    CFG with the model's default thresholding (none for latents: it bounds pixels), classifier guidance alone."""
    thresholding = default_thresholding(pipe)
    if isinstance(pipe, TextToImagePipeline):
        inputs = dict(prompt=grid_prompts(dataset, 16), num_images_per_prompt=4)
        return inputs, {f"CFG 5, {thresholding} thresholding": dict(guidance_scale=5.0, thresholding=thresholding)}
    labels = torch.arange(64) % pipe.num_classes if pipe.num_classes else None
    modes = {f"CFG 3, {thresholding} thresholding": dict(guidance_scale=3.0 if labels is not None else 1.0,
                                                         thresholding=thresholding)}
    if pipe.classifier is not None and labels is not None:
        modes[f"classifier guidance {classifier_scale:g} alone"] = dict(guidance_scale=0.0, classifier_scale=classifier_scale)
    return dict(batch_size=64, class_labels=labels), modes


def storage_effect(full, stored, dataset: str, args) -> str:
    """How far float16 storage moves samples: the same 64 seeds through both, with the folder's scheduler."""
    for pipe in (full, stored):
        pipe.set_progress_bar_config(disable=True)
    inputs, modes = check_inputs(full, dataset, args.classifier_scale)
    lines = ["Weights stored in float16 (diffusers loads them into float32 models, so sampling runs in float32). "
             f"What the rounding does to samples: the same 64 seeds, {sampler_label(full.scheduler)} {args.check_steps} steps, through the "
             "float32 runs and this folder (pixels in [0, 1]):", "",
             "| sampling | max abs pixel difference | mean abs pixel difference |", "| --- | --- | --- |"]  # fmt: skip
    if isinstance(full, CascadePipeline):  # both stages take the check's step count
        inputs["super_resolution_steps"] = args.check_steps
    for name, guidance in modes.items():
        images = [pipe(**inputs, num_inference_steps=args.check_steps, output_type="pt",
                       generator=torch.Generator().manual_seed(0), **guidance).images for pipe in (full, stored)]  # fmt: skip
        difference = (images[0] - images[1]).abs()
        lines.append(f"| {name} | {difference.max().item():.2e} | {difference.mean().item():.2e} |")
    return "\n".join(lines)


def text_samples(pipe, out: Path, dataset: str, card: dict) -> None:
    """Re-render a text-to-image run's grid with the model's default thresholding; its card says which."""
    grid, prompts, thresholding = sample_grid(pipe, dataset, 20, 3.0, 50, seed=0)
    grid.save(out / "samples.png")
    card["Samples"] = samples_section(prompts, 3.0, 50, thresholding, sampler_label(pipe.scheduler))
    card["Usage"] = usage_section(thresholding)


def with_super_resolution_stage(pipe, run: str, card: dict, out: Path) -> CascadePipeline:
    """The base `pipe` and a train_super_resolution.py run as one CascadePipeline; the stage's card joins `card`."""
    stage = SuperResolutionPipeline.from_pretrained(run)
    cascade = CascadePipeline(pipe.unet, pipe.scheduler, stage.unet, stage.scheduler, pipe.config.null_class_label,
                              pipe.config.class_names, pipe.classifier, pipe.weak_unet, pipe.clean_classifier)  # fmt: skip
    cascade.set_progress_bar_config(disable=True)
    stage_card = sections(read_model_card(run)[1])
    shutil.copy(Path(run) / "samples.png", out / "super_resolution_samples.png")
    card["Super-resolution stage"] = "\n\n".join(
        [stage_card["Model"], "Training:\n\n" + stage_card["Training"],
         stage_card["Samples"].replace("(samples.png)", "(super_resolution_samples.png)")])  # fmt: skip
    card["Usage"] = ("```python\nfrom guided_diffusers.pipelines import CascadePipeline\n"
                     "pipe = CascadePipeline.from_pretrained(\"path/or/repo_id\")\n"
                     "out = pipe(class_labels=[3, 7], guidance_scale=3.0, num_inference_steps=20, augmentation_level=0.2,\n"
                     "           super_resolution_steps=20)\n"
                     "out.images, out.low_resolution_images, out.upsampled_images\n```")  # fmt: skip
    return cascade


def main(argv=None):
    args = parse_args(argv)
    pipe = load_pipeline(args.unet_run)
    pipe.set_progress_bar_config(disable=True)
    text = isinstance(pipe, TextToImagePipeline)
    metadata, unet_body = read_model_card(args.unet_run)
    dataset = metadata["datasets"][0]
    card = sections(unet_body)
    if args.classifier_run is not None:
        classifier = NoiseAwareClassifier.from_pretrained(args.classifier_run)
        classifier.check_schedule(pipe.scheduler.config)  # never ship a classifier for another schedule
        pipe.register_modules(classifier=classifier)
        classifier_card = sections(read_model_card(args.classifier_run)[1])
        card["Noise-aware classifier (classifier guidance)"] = "\n\n".join(
            [classifier_card["Model"], "```python\nimages = pipe(batch_size=4, class_labels=[3], guidance_scale=0.0, "
             f"classifier_scale={args.classifier_scale:g}).images\n```", "Training:\n\n" + classifier_card["Training"],
             "Held-out accuracy by timestep:\n\n" + classifier_card["Held-out accuracy by timestep"]])  # fmt: skip
        metadata["tags"] = sorted(set(metadata["tags"]) | {"classifier-guidance"})
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.super_resolution_run is not None:
        pipe = with_super_resolution_stage(pipe, args.super_resolution_run, card, out)
    # a float16 copy is stored; `pipe` stays the float32 original that the storage check compares against
    (copy.deepcopy(pipe).to(torch.float16) if args.fp16 else pipe).save_pretrained(out)
    accuracy = None if args.classifier_run is None else Path(args.classifier_run) / "accuracy_by_timestep.json"
    if accuracy is not None and accuracy.is_file():  # the classifier's measured accuracy travels with it
        shutil.copy(accuracy, out / "classifier")
    if text:
        text_samples(pipe, out, dataset, card)
    else:
        shutil.copy(Path(args.unet_run) / "samples.png", out / "samples.png")
    if args.summary is not None:
        card = {"Summary": Path(args.summary).read_text(), **card}
    for folder in map(Path, args.evaluation):
        card[f"Evaluation: {folder.name}"] = evaluation_section(folder, out / "evaluation" / folder.name,
                                                                "prompt" if text else "class")
    card["Storage"] = storage_effect(pipe, load_pipeline(str(out)), dataset, args) \
        if args.fp16 else "Weights stored in float32."  # fmt: skip
    kind = "latent diffusion" if getattr(pipe, "vae", None) is not None else "diffusion"
    kind = f"cascaded {kind}" if isinstance(pipe, CascadePipeline) else kind
    task = "text-to-image" if text else "class-conditional"
    title = f"guided-diffusers {dataset}: {task} {kind}" + ("" if text else " with guidance")
    write_model_card(out, title=title, metadata=metadata, sections=card)
    if args.demo_guidance_sweep is not None:  # measured from the card just written: its evaluation sections
        metadata[DEMO_KEY] = measured_defaults(read_model_card(out)[1], args.demo_guidance_sweep,
                                               args.demo_thresholding_sweep, args.demo_sampler, args.demo_steps)  # fmt: skip
        write_card_metadata(out, metadata)
    print(f"wrote {out}: {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
