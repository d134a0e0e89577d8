"""The models the Space serves: loaded once, each with what its controls need (class names, whether it has a null
class or a classifier, its measured demo defaults, a few real images for the tabs that start from one)."""

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from guided_diffusers.evaluation.method_table import guidance_methods_report
from guided_diffusers.pipelines import CascadePipeline, GuidedDiffusionPipeline, TextToImagePipeline, make_scheduler
from guided_diffusers.pipelines.loading import pipeline_class
from guided_diffusers.pipelines.samplers import editable_config
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.demo_defaults import read_demo_defaults
from guided_diffusers.training.model_card import read_model_card

UNCONDITIONAL = "unconditional"
DATASET_IMAGES = 100
logger = logging.getLogger("guided_diffusers.space")


@dataclass
class ServedModel:
    """One loaded pipeline and the facts the UI is built from."""

    name: str
    pipe: object
    folder: Path | None
    defaults: dict
    images: torch.Tensor | None = None  # a few real test images in [-1, 1], where the dataset is available offline
    card_metadata: dict = field(default_factory=dict)
    methods_report: dict | None = None  # its guider sweep's results.json (the Guidance methods tab), if it has one
    by_sampler: dict = field(default_factory=dict, repr=False)  # sampler name -> a pipeline sharing pipe's networks
    building: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def with_sampler(self, sampler: str | None):
        """The pipeline with `sampler`'s scheduler (None: the model's own): built once per sampler, sharing the
        networks, and shared by every request, as pipelines keep no per-call state (each call steps a private copy
        of the scheduler)."""
        if not sampler:
            return self.pipe
        with self.building:
            if sampler not in self.by_sampler:
                self.by_sampler[sampler] = self._rebuilt(make_scheduler(sampler, editable_config(self.pipe.scheduler.config)))
            return self.by_sampler[sampler]

    def _rebuilt(self, scheduler):
        pipe = self.pipe
        if self.is_text:
            other = TextToImagePipeline(pipe.tokenizer, pipe.text_encoder, pipe.unet, scheduler, vae=pipe.vae,
                                        clip_model=pipe.clip_model, **pipe.text_options())  # fmt: skip
        else:
            other = GuidedDiffusionPipeline(pipe.unet, scheduler, classifier=pipe.classifier, vae=pipe.vae,
                                            null_class_label=pipe.config.null_class_label,
                                            class_names=pipe.config.class_names, weak_unet=pipe.weak_unet,
                                            clean_classifier=pipe.clean_classifier, clip_model=pipe.clip_model)  # fmt: skip
        other.set_progress_bar_config(disable=True)
        return other

    @property
    def is_text(self) -> bool:
        return isinstance(self.pipe, TextToImagePipeline)

    @property
    def kind(self) -> str:
        """Which actions serve it: "text", "cascade" or "class" (class-conditional or unconditional)."""
        return "text" if self.is_text else "cascade" if isinstance(self.pipe, CascadePipeline) else "class"

    @property
    def class_names(self) -> list[str]:
        """The model's class names: the UNet's classes, or the classifier's for an unconditional UNet."""
        pipe = self.pipe
        if self.is_text:
            return []
        count = pipe.num_classes or (pipe.classifier.config.num_classes if pipe.classifier is not None else 0)
        return list(pipe.config.class_names or [str(i) for i in range(count)])

    @property
    def has_null_class(self) -> bool:
        """Whether the model samples without a class (an unconditional UNet, or one trained with label dropout)."""
        return not self.is_text and (not self.pipe.num_classes or self.pipe.config.null_class_label is not None)

    @property
    def class_choices(self) -> list[str]:
        return self.class_names + ([UNCONDITIONAL] if self.has_null_class else [])

    @property
    def default_class(self) -> str:
        """The first class of a class-conditional model; unconditional where there is nothing to condition on."""
        return self.class_names[0] if self.pipe.num_classes else UNCONDITIONAL

    @property
    def latent(self) -> bool:
        return getattr(self.pipe, "vae", None) is not None

    @property
    def dataset(self) -> str | None:
        return (self.card_metadata.get("datasets") or [None])[0]


def model_sources(spec: str) -> list[str]:
    """A folder of model folders, or a comma-separated list of folders / Hub ids."""
    root = Path(spec)
    if root.is_dir() and not (root / "model_index.json").exists():
        return sorted(str(p.parent) for p in root.glob("*/model_index.json"))
    return [s.strip() for s in spec.split(",") if s.strip()]


def load_model(source: str) -> ServedModel:
    """One pipeline folder or Hub id as the class its model_index.json names; raises on anything broken."""
    pipe = pipeline_class(source).from_pretrained(source)  # safetensors only; no remote code
    pipe.set_progress_bar_config(disable=True)
    folder = Path(pipe.name_or_path or source)
    folder = folder if folder.is_dir() else None
    metadata = {}
    if folder is not None and (folder / "README.md").is_file():
        metadata = read_model_card(folder)[0] or {}
    defaults = read_demo_defaults(folder, latent=getattr(pipe, "vae", None) is not None)
    return ServedModel(Path(source.rstrip("/")).name, pipe, folder, defaults, card_metadata=metadata,
                       methods_report=guidance_methods_report(folder) if isinstance(pipe, GuidedDiffusionPipeline) else None)


def load_models(spec: str) -> dict[str, ServedModel]:
    """Every model that loads, by name; a broken one is skipped with one line in the log, and only when nothing
    loads does the app stop, with a sentence saying why."""
    sources = model_sources(spec)
    if not sources:
        raise SystemExit(f"No models found in {spec!r}: pass --models with pipeline folders or Hub ids.")
    models = {}
    for source in sources:
        try:
            model = load_model(source)
        except Exception as error:  # noqa: BLE001 (any broken folder: skipped, the others still served)
            logger.warning("skipping model %s: %s", source, str(error).splitlines()[0] if str(error) else type(error).__name__)
            continue
        models[model.name] = model
    if not models:
        raise SystemExit(f"None of the models in {spec!r} could be loaded (see the log above).")
    for model in models.values():
        model.images = dataset_images(model)
    return models


def dataset_images(model: ServedModel) -> torch.Tensor | None:
    """The first test images of the dataset the model card names, where it is available offline."""
    if model.kind != "class" or model.dataset is None:
        return None
    config = model.pipe.image_config
    try:
        data = load_image_dataset(model.dataset, split="test", max_samples=DATASET_IMAGES)
        return to_model_range(to_tensors(data, config.sample_size, config.in_channels).images)
    except Exception as error:  # noqa: BLE001 (the tabs then ask for an upload)
        logger.info("no dataset images for %s: %s", model.name, error)
        return None


def class_models(models: dict) -> list[str]:
    return [name for name, model in models.items() if isinstance(model.pipe, GuidedDiffusionPipeline)]


def text_models(models: dict) -> list[str]:
    return [name for name, model in models.items() if model.is_text]


def measured_methods_models(models: dict) -> list[str]:
    """The class models whose folders hold a measured sweep of guidance methods."""
    return [name for name in class_models(models) if models[name].methods_report is not None]


def cascade_models(models: dict) -> list[str]:
    return [name for name, model in models.items() if model.kind == "cascade"]
