"""Add CLIP guidance's noise-aware image-text model to a shipped pipeline folder: a train_clip.py run (the clip-latent
or clip-items recipe of scripts/train_shipped_models.sh) becomes the folder's `clip_model/` component, and the model
card gets a section saying how it was trained, its held-out retrieval by noise level, and what float16 storage does
to CLIP-guided samples.

    python training/add_clip_model.py --pipeline checkpoints/mnist-text --clip_run runs/mnist-clip-latent --fp16
    python training/add_clip_model.py --pipeline checkpoints/mnist --clip_run runs/mnist-clip-items --fp16

The folder then loads with it (`TextToImagePipeline` or `GuidedDiffusionPipeline.from_pretrained(folder)` has a
`clip_model`), and `guider=CLIPGuidance(clip_scale=s)` steers towards the prompt (GLIDE). A clean model (trained with
--noise_free) is refused: it grades samples (CLIP score) and must never be the one that guided them. Re-running
replaces the component and its card section; the rest of the folder is left byte for byte.
"""

import argparse
import json
from pathlib import Path

import torch

from guided_diffusers.guiders import CLIPGuidance
from guided_diffusers.models import NoiseAwareCLIP
from guided_diffusers.pipelines import GuidedDiffusionPipeline, TextToImagePipeline
from guided_diffusers.pipelines.samplers import sampler_label
from guided_diffusers.training.captions import retrieval_candidates
from guided_diffusers.training.folder_components import add_folder_arguments, add_section, check_folder_arguments
from guided_diffusers.training.folder_components import report_size, run_sections, store_component

HEADING = "CLIP model (CLIP guidance)"
LIBRARY = ["guided_diffusers.models.noise_aware_clip", "NoiseAwareCLIP"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_arguments(parser, "clip_run", "output folder of train_clip.py (noise-aware)", "clip_scale", 30.0,
                         "CLIP model")  # fmt: skip
    parser.add_argument("--dataset_name", default="mnist", choices=["mnist", "fashion_mnist"],
                        help="whose held-out captions prompt the storage check")  # fmt: skip
    args = parser.parse_args(argv)
    check_folder_arguments(args, "clip_run", ("config.json", "README.md"), "clip_scale")
    return args


def load_pipeline(folder: Path):
    """The folder's pipeline, text-to-image or class-conditional, by its model_index.json."""
    kind = json.loads((folder / "model_index.json").read_text())["_class_name"]
    cls = TextToImagePipeline if kind == "TextToImagePipeline" else GuidedDiffusionPipeline
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def guided_samples(pipe, prompts: list[str], scale: float, steps: int) -> torch.Tensor:
    """64 CLIP-guided samples for the prompts (cycled), from fixed seeds, `steps` of the folder's scheduler."""
    prompts = [prompts[i % len(prompts)] for i in range(64)]
    guider = CLIPGuidance(clip_scale=scale)
    generator = torch.Generator().manual_seed(0)
    options = dict(guider=guider, num_inference_steps=steps, output_type="pt", generator=generator)
    if isinstance(pipe, TextToImagePipeline):
        return pipe(prompt=prompts, thresholding="none", **options).images
    return pipe(batch_size=64, prompt=prompts, **options).images


def storage_effect(full, stored, prompts: list[str], args) -> str:
    images = [guided_samples(pipe, prompts, args.clip_scale, args.check_steps) for pipe in (full, stored)]
    difference = (images[0] - images[1]).abs()
    return (f"Stored in {'float16' if args.fp16 else 'float32'}. What that does to CLIP-guided samples at s = "
            f"{args.clip_scale:g} (the same 64 seeds and held-out prompts, {sampler_label(full.scheduler)} {args.check_steps} steps, the model in "
            f"float32 against this folder's): max abs pixel difference {difference.max().item():.2e}, mean "
            f"{difference.mean().item():.2e} (pixels in [0, 1]).")  # fmt: skip


def card_section(sections: dict, storage: str, args, text_model: bool) -> str:
    call = "pipe(prompt=\"a 4 to the left of a 9\"" if text_model else "pipe(batch_size=4, prompt=\"a handwritten seven\""
    usage = ("```python\nfrom guided_diffusers.guiders import CLIPGuidance\n"
             f"images = {call}, guider=CLIPGuidance(clip_scale={args.clip_scale:g})).images\n```")  # fmt: skip
    steered = ("the text model's prediction (its conditional branch; `prediction=\"pred_uncond\"` for the empty "
               "caption's; after CFG in a list for CFG + CLIP)" if text_model else
               "the unconditional model (no `class_labels`: the null class), an open-vocabulary prompt in place of a class")  # fmt: skip
    return "\n\n".join([
        "`clip_model/`: a noise-aware image-text model for CLIP guidance (GLIDE, Nichol et al. 2022): "
        "eps' = eps - s sqrt(1 - abar_t) grad_x exp(t) f(x_t, t) . g(prompt), one image-tower forward and backward "
        f"per step, steering {steered}. It reads x_t at every noise level of this pipeline's schedule. CLIP score "
        "is graded by a separate clean model, never this one.", usage,
        "Training:\n\n" + sections["Training"].strip(),
        "Held-out retrieval (the share of held-out images whose most similar caption, among every content in the "
        "held-out wordings, describes them):\n\n" + sections["Held-out retrieval"].split("\n\n", 1)[-1].strip(),
        storage])  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    folder, run = Path(args.pipeline), Path(args.clip_run)
    sections = run_sections(run)
    clip = NoiseAwareCLIP.from_pretrained(run).eval()
    if clip.config.noise_free:
        raise ValueError(f"--clip_run {str(run)!r} was trained on clean images only (--noise_free): it grades samples "
                         f"(CLIP score) and must not guide them; guidance needs a noise-aware run.")  # fmt: skip
    full = load_pipeline(folder)
    full.register_modules(clip_model=clip)
    text_model = isinstance(full, TextToImagePipeline)
    prompts = [caption for caption, _, _ in retrieval_candidates(args.dataset_name, "held_out", pairs=text_model)]
    guided_samples(full, prompts, args.clip_scale, 1)  # refuses a model that does not fit, before anything is written
    store_component(clip, folder, "clip_model", LIBRARY, args.fp16)
    storage = storage_effect(full, load_pipeline(folder), prompts, args)
    add_section(folder, HEADING, card_section(sections, storage, args, text_model), "clip-guidance")
    report_size(folder, "clip_model")


if __name__ == "__main__":
    main()
