"""Add autoguidance's weak model to a shipped pipeline folder: the UNet of a train_unet.py run (the weak-unet
recipe of scripts/train_shipped_models.sh) becomes the folder's `weak_unet/` component, and the model card gets a
section saying how it was trained and what float16 storage does to autoguided samples.

    python training/add_weak_unet.py --pipeline checkpoints/mnist --weak_unet_run runs/mnist-weak --fp16

The folder then loads with it: `GuidedDiffusionPipeline.from_pretrained("checkpoints/mnist")` has a `weak_unet`,
and `guider=WeakModelGuidance(guidance_scale=2)` samples with autoguidance (Karras et al. 2024). Re-running replaces
the weak model and its card section; the rest of the folder is left byte for byte.
"""

import argparse
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import UNet2DModel

from guided_diffusers.guiders import WeakModelGuidance
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.pipelines.pipeline_guided import check_weak_unet
from guided_diffusers.schedulers.validation import check_range
from guided_diffusers.training.model_card import read_model_card, write_model_card

HEADING = "Weak model (autoguidance)"
SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a shipped GuidedDiffusionPipeline folder (with a model card)")
    parser.add_argument("--weak_unet_run", required=True, help="output folder of train_unet.py: the weak model")
    parser.add_argument("--fp16", action="store_true", help="store the weak model's weights in float16")
    parser.add_argument("--guidance_scale", type=float, default=2.0, help="autoguidance scale of the card's example and check")
    parser.add_argument("--check_steps", type=int, default=50, help="DDIM steps of the float16 storage check")
    args = parser.parse_args(argv)
    for flag, folder, needed in [("pipeline", args.pipeline, "model_index.json"), ("pipeline", args.pipeline, "README.md"),
                                 ("weak_unet_run", args.weak_unet_run, "unet/config.json"),
                                 ("weak_unet_run", args.weak_unet_run, "README.md")]:  # fmt: skip
        if not (Path(folder) / needed).is_file():
            raise ValueError(f"--{flag} {folder!r} has no {needed}: it is not a finished {flag.replace('_', ' ')} folder.")
    check_range("--guidance_scale", args.guidance_scale, low=0)
    check_range("--check_steps", args.check_steps, low=1, integer=True)
    return args


def check_schedule(pipeline_folder: Path, run: Path) -> None:
    """Autoguidance mixes the two models' predictions at one x_t: they must be trained on the same noise schedule."""
    ours = json.loads((pipeline_folder / "scheduler" / "scheduler_config.json").read_text())
    theirs = json.loads((run / "scheduler" / "scheduler_config.json").read_text())
    for key in SCHEDULE_KEYS:
        if ours.get(key) != theirs.get(key):
            raise ValueError(f"--weak_unet_run was trained with {key} = {theirs.get(key)!r}, the pipeline's UNet with "
                             f"{ours.get(key)!r}: autoguidance needs one noise schedule.")  # fmt: skip


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".partial") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def store_weak_unet(weak: UNet2DModel, folder: Path, fp16: bool) -> None:
    """`folder/weak_unet/` written beside a partial copy first, then swapped in; model_index.json names it."""
    partial = folder / "weak_unet.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (copy.deepcopy(weak).to(torch.float16) if fp16 else weak).save_pretrained(partial, safe_serialization=True)
    shutil.rmtree(folder / "weak_unet", ignore_errors=True)
    os.replace(partial, folder / "weak_unet")
    index = json.loads((folder / "model_index.json").read_text())
    index["weak_unet"] = ["diffusers", "UNet2DModel"]
    write_atomically(folder / "model_index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")


def storage_effect(full: GuidedDiffusionPipeline, stored: GuidedDiffusionPipeline, args) -> str:
    """How far float16 storage of the weak model moves autoguided samples: the same 64 seeds through both."""
    labels = torch.arange(64) % full.num_classes
    images = [pipe(batch_size=64, class_labels=labels, guider=WeakModelGuidance(guidance_scale=args.guidance_scale),
                   num_inference_steps=args.check_steps, output_type="pt", generator=torch.Generator().manual_seed(0)).images
              for pipe in (full, stored)]  # fmt: skip
    difference = (images[0] - images[1]).abs()
    return (f"Stored in {'float16' if args.fp16 else 'float32'}. What that does to autoguided samples (w = "
            f"{args.guidance_scale:g}, the same 64 seeds, DDIM {args.check_steps} steps, the weak model in float32 "
            f"against this folder's): max abs pixel difference {difference.max().item():.2e}, mean "
            f"{difference.mean().item():.2e} (pixels in [0, 1]).")  # fmt: skip


def card_section(run: Path, storage: str, args) -> str:
    _, body = read_model_card(run)
    parts = dict(chunk.partition("\n")[::2] for chunk in body.split("\n## ")[1:])
    usage = ("```python\nfrom guided_diffusers.guiders import WeakModelGuidance\n"
             f"images = pipe(batch_size=4, class_labels=[3], guider=WeakModelGuidance(guidance_scale={args.guidance_scale:g})).images\n```")  # fmt: skip
    return "\n\n".join([
        "`weak_unet/`: a deliberately weaker model of the same data, conditioning and noise schedule, for "
        "autoguidance (Karras et al. 2024): D = D_weak + w (D - D_weak), both conditional, so the unconditional "
        "prediction is never computed. " + parts["Model"].strip(), usage, "Training:\n\n" + parts["Training"].strip(),
        "Samples of the weak model alone (DDIM 50 steps, a row per class):\n\n![weak model samples](weak_unet_samples.png)",
        storage])  # fmt: skip


def add_section(folder: Path, text: str) -> None:
    """The card's section under HEADING, replaced if there is one, else placed before "Storage" (or at the end)."""
    metadata, body = read_model_card(folder)
    title, *chunks = body.split("\n## ")
    sections = dict(chunk.partition("\n")[::2] for chunk in chunks)
    sections = {heading.strip(): content for heading, content in sections.items()}
    sections.pop(HEADING, None)
    ordered = list(sections.items())
    at = next((i for i, (heading, _) in enumerate(ordered) if heading == "Storage"), len(ordered))
    ordered.insert(at, (HEADING, text))
    metadata["tags"] = sorted(set(metadata.get("tags", [])) | {"autoguidance"})
    write_model_card(folder, title=title.strip().removeprefix("# "), metadata=metadata, sections=dict(ordered))


def main(argv=None):
    args = parse_args(argv)
    folder, run = Path(args.pipeline), Path(args.weak_unet_run)
    check_schedule(folder, run)
    weak = UNet2DModel.from_pretrained(run / "unet")
    full = GuidedDiffusionPipeline.from_pretrained(folder)
    check_weak_unet(weak, full.unet)
    full.register_modules(weak_unet=weak)
    store_weak_unet(weak, folder, args.fp16)
    stored = GuidedDiffusionPipeline.from_pretrained(folder)
    for pipe in (full, stored):
        pipe.set_progress_bar_config(disable=True)
    if (run / "samples.png").is_file():
        shutil.copy(run / "samples.png", folder / "weak_unet_samples.png")
    add_section(folder, card_section(run, storage_effect(full, stored, args), args))
    size = sum(f.stat().st_size for f in (folder / "weak_unet").rglob("*") if f.is_file()) / 1e6
    print(f"added {folder / 'weak_unet'} ({size:.2f} MB)")


if __name__ == "__main__":
    main()
