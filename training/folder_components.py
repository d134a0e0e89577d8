"""Adding an optional component to a shipped pipeline folder (autoguidance's `weak_unet/`, universal guidance's
`clean_classifier/`): the component written beside the folder and swapped in, `model_index.json` naming it, the model
card's section about it placed once, and the measured effect of its float16 storage on guided samples."""

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..pipelines.samplers import sampler_label
from ..schedulers.validation import check_range
from .model_card import read_model_card, write_model_card


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".partial") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def store_component(model, folder: Path, name: str, library: list[str], fp16: bool) -> None:
    """`folder/<name>/` written beside a partial copy first, then swapped in; model_index.json names its class."""
    partial = folder / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (copy.deepcopy(model).to(torch.float16) if fp16 else model).save_pretrained(partial, safe_serialization=True)
    shutil.rmtree(folder / name, ignore_errors=True)
    os.replace(partial, folder / name)
    index = json.loads((folder / "model_index.json").read_text())
    index[name] = library
    write_atomically(folder / "model_index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")


def store_and_measure(full, folder: Path, name: str, model, library: list[str], guider, what: str, args) -> str:
    """Add `model` to the pipeline `full` (loaded from `folder`) and store it as `folder/<name>/`; the card's sentence
    on what its storage (`args.fp16`) does to samples guided by `guider` (`args.check_steps` steps of the folder's own
    scheduler)."""
    full.register_modules(**{name: model})
    store_component(model, folder, name, library, args.fp16)
    stored = type(full).from_pretrained(folder)
    for pipe in (full, stored):
        pipe.set_progress_bar_config(disable=True)
    return storage_effect(full, stored, guider, what, args.fp16, args.check_steps)


def report_size(folder: Path, name: str) -> None:
    size = sum(f.stat().st_size for f in (folder / name).rglob("*") if f.is_file()) / 1e6
    print(f"added {folder / name} ({size:.2f} MB)")


def storage_effect(full, stored, guider, what: str, fp16: bool, steps: int) -> str:
    """How far float16 storage of a component moves guided samples: the same 64 seeds through the pipeline with
    the float32 component (`full`) and with the folder's (`stored`)."""
    labels = torch.arange(64) % full.num_classes
    images = [pipe(batch_size=64, class_labels=labels, guider=guider, num_inference_steps=steps, output_type="pt",
                   generator=torch.Generator().manual_seed(0)).images for pipe in (full, stored)]  # fmt: skip
    difference = (images[0] - images[1]).abs()
    return (f"Stored in {'float16' if fp16 else 'float32'}. What that does to {what} (the same 64 seeds, "
            f"{sampler_label(full.scheduler)} {steps} steps, the component in float32 against this folder's): max abs pixel difference "
            f"{difference.max().item():.2e}, mean {difference.mean().item():.2e} (pixels in [0, 1]).")  # fmt: skip


def run_sections(run: Path) -> dict:
    """The sections of a training run's model card, by heading."""
    _, body = read_model_card(run)
    return {heading.strip(): text for heading, text in (chunk.partition("\n")[::2] for chunk in body.split("\n## ")[1:])}


def add_section(folder: Path, heading: str, text: str, tag: str) -> None:
    """The card's section under `heading`, replaced if there is one, else placed before "Storage" (or at the end),
    and `tag` among the card's tags."""
    metadata, body = read_model_card(folder)
    title, *chunks = body.split("\n## ")
    sections = dict(chunk.partition("\n")[::2] for chunk in chunks)
    sections = {name.strip(): content for name, content in sections.items()}
    sections.pop(heading, None)
    ordered = list(sections.items())
    at = next((i for i, (name, _) in enumerate(ordered) if name == "Storage"), len(ordered))
    ordered.insert(at, (heading, text))
    metadata["tags"] = sorted(set(metadata.get("tags", [])) | {tag})
    write_model_card(folder, title=title.strip().removeprefix("# "), metadata=metadata, sections=dict(ordered))


def add_folder_arguments(parser, run_flag: str, run_help: str, scale_flag: str, scale_default: float, what: str):
    """The arguments every add_<component>.py takes: the pipeline folder, the training run, float16 storage, and the
    guidance scale and steps of the card's example and storage check."""
    parser.add_argument("--pipeline", required=True, help="a shipped GuidedDiffusionPipeline folder (with a model card)")
    parser.add_argument(f"--{run_flag}", required=True, help=run_help)
    parser.add_argument("--fp16", action="store_true", help=f"store the {what}'s weights in float16")
    parser.add_argument(f"--{scale_flag}", type=float, default=scale_default,
                        help="guidance scale of the card's example and storage check")  # fmt: skip
    parser.add_argument("--check_steps", type=int, default=50, help="steps (of the folder's scheduler) of the float16 storage check")


def check_folder_arguments(args, run_flag: str, run_files: tuple, scale_flag: str) -> None:
    """Refuse, before anything is read, a pipeline or run folder that is not finished, and a bad scale or step count."""
    needed = [("pipeline", "model_index.json"), ("pipeline", "README.md"), *((run_flag, name) for name in run_files)]
    for flag, name in needed:
        folder = getattr(args, flag)
        if not (Path(folder) / name).is_file():
            raise ValueError(f"--{flag} {folder!r} has no {name}: it is not a finished {flag.replace('_', ' ')} folder.")
    check_range(f"--{scale_flag}", getattr(args, scale_flag), low=0)
    check_range("--check_steps", args.check_steps, low=1, integer=True)
