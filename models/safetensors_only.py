"""Weights load from safetensors only: a pickle file (`.bin`, `.pt`, `.ckpt`, `.pth`) can run code when loaded, and
diffusers falls back to one silently ("Defaulting to unsafe serialization") when a folder has no safetensors. Every
`from_pretrained` of ours goes through `safetensors_kwargs`."""

from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_only_files(source) -> list[Path]:
    """Pickle weight files in a local model folder (or its component folders) that have no safetensors beside them."""
    folder = Path(source)
    if not folder.is_dir():
        return []
    found = []
    for directory in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
        if not any(directory.glob("*.safetensors")):
            found += [p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES]
    return sorted(found)


def safetensors_kwargs(source, kwargs: dict) -> dict:
    """`from_pretrained` keyword arguments that load safetensors only; ValueError for `use_safetensors=False` or a
    local folder whose weights are pickle only, naming the files."""
    if kwargs.get("use_safetensors") is False:
        raise ValueError("`use_safetensors=False` is refused: this project loads weights from safetensors only "
                         "(pickle files can run code when loaded).")  # fmt: skip
    pickled = pickle_only_files(source)
    if pickled:
        names = ", ".join(str(p.relative_to(source)) for p in pickled)
        raise ValueError(f"{source}: weights in pickle format only ({names}); this project loads safetensors only "
                         "(pickle files can run code when loaded). Convert them, e.g. load them yourself and "
                         "`save_pretrained(..., safe_serialization=True)`.")  # fmt: skip
    return {**kwargs, "use_safetensors": True}


class SafetensorsOnly:
    """Mixin for a diffusers ModelMixin or DiffusionPipeline: `from_pretrained` loads safetensors only."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        kwargs = safetensors_kwargs(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
