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
    text = f"{cpu}, {torch.get_num_threads()} torch threads"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def write_model_card(folder, *, title: str, metadata: dict, sections: dict[str, str]) -> Path:
    """README.md = YAML front matter + a title + one `## heading` per section, in order."""
    front = yaml.safe_dump(metadata, sort_keys=False).strip()
    body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections.items())
    path = Path(folder) / "README.md"
    path.write_text(f"---\n{front}\n---\n\n# {title}\n\n{body}\n")
    return path


def read_model_card(folder) -> tuple[dict, str]:
    """(metadata, markdown body) of a model card."""
    text = (Path(folder) / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body
