"""Model cards (README.md with Hub YAML metadata) that record how a model was made."""

import platform
from pathlib import Path

import torch
import yaml


def hardware() -> str:
    """The machine in words: CPU model and threads, and the GPU if one was used."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    threads = torch.get_num_threads()
    text = f"{cpu}, {threads} torch thread{'s' if threads != 1 else ''}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def dataset_label(args) -> str:
    """The dataset as a model card names it: the --dataset_name, or the --train_data_dir folder's name."""
    return args.dataset_name or Path(args.train_data_dir).name


def training_section(args, state, num_images: int) -> str:
    """How the model was made: the exact command, data, steps, wall time, hardware, final loss."""
    return (
        f"```bash\n{args.command}\n```\n\n"
        f"- data: `{dataset_label(args)}` split `{args.dataset_split}`, {num_images} images\n"
        f"- steps: {state.step} optimizer steps of {args.train_batch_size * args.gradient_accumulation_steps} "
        "images per process\n"
        f"- wall time: {state.train_seconds / 60:.1f} minutes of training (summed over resumed sessions)\n"
        f"- hardware: {hardware()}\n"
        f"- final training loss (mean of the last {args.logging_steps} steps): {state.last_loss:.4f}"
    )


def write_model_card(folder, *, title: str, metadata: dict, sections: dict[str, str]) -> Path:
    """README.md = YAML front matter + a title + one `## heading` per section, in order."""
    front = yaml.safe_dump(metadata, sort_keys=False).strip()
    body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections.items())
    path = Path(folder) / "README.md"
    path.write_text(f"---\n{front}\n---\n\n# {title}\n\n{body}\n")
    return path


def write_card_metadata(folder, metadata: dict) -> Path:
    """Replace a model card's YAML front matter, leaving its markdown body byte for byte."""
    path = Path(folder) / "README.md"
    _, body = read_model_card(folder)
    path.write_text(f"---\n{yaml.safe_dump(metadata, sort_keys=False).strip()}\n---\n{body}")
    return path


def read_model_card(folder) -> tuple[dict, str]:
    """(metadata, markdown body) of a model card."""
    text = (Path(folder) / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def sections(body: str) -> dict[str, str]:
    """A model card body split into {heading: text} at its `## ` headings."""
    parts = {}
    for chunk in body.split("\n## ")[1:]:
        heading, _, text = chunk.partition("\n")
        parts[heading.strip()] = text.strip()
    return parts
