"""From a sweep's settings to samples: the pipeline's guidance arguments for a setting, its plan checked before any
sampling, class-balanced samples from fixed seeds (resumable through a `SampleCache`), the digest of the weights a
setting samples from, and the device it samples on."""

import time

import torch

from ..guiders import guider_for_call, guider_from_spec
from ..pipelines import make_scheduler
from ..pipelines.denoising import WEAK, plan
from ..pipelines.samplers import set_distinct_timesteps
from .sample_cache import SampleCache, weights_digest


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default=None, help="where the pipeline samples: cpu, cuda or cuda:<index> "
                        "(default: cuda when there is one). The noise is drawn on the CPU from the seed, so every "
                        "device starts from the same noise; the metrics run on the CPU.")  # fmt: skip


def sampling_device(name: str | None) -> torch.device:
    """The torch.device of --device, checked before any work starts."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # not a device name at all ("gpu", "cuda:x")
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:<index>; got {name!r}.")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {name}: no such CUDA device here ({torch.cuda.device_count()} visible); use cpu.")
    return device


def check_steps(pipe, settings: list[dict]) -> None:
    """Refuse, before any sampling, a sampler that cannot take its step count (DPM-Solver at 1,000 of 1,000 training
    steps) or its guider (CFG++ with anything but DDIM at eta 0): a sweep may run for hours before it reaches that
    row."""
    for setting in settings:
        try:
            planned_predictions(pipe, setting)
        except ValueError as error:
            raise ValueError(f"sampler {setting['sampler']!r}: {error}") from None


def planned_predictions(pipe, setting: dict) -> list:
    """The predictions each step of a setting will make, as the pipeline plans them (refusing what it cannot do:
    autoguidance without a `weak_unet`, CFG++ with a sampler other than DDIM)."""
    scheduler = make_scheduler(setting["sampler"], pipe.scheduler.config)
    set_distinct_timesteps(scheduler, setting["num_inference_steps"])
    conditional = bool(pipe.num_classes or setting["classifier_scale"] > 0 or setting.get("guider"))
    arguments = guidance_arguments(setting, conditional)
    guider = guider_for_call(arguments.get("guider"), arguments.get("guidance_scale"), arguments.get("classifier_scale"))
    labels = torch.zeros(1, dtype=torch.long, device=pipe.device) if conditional else None
    _, conditioning = pipe.check_inputs(1, labels, guider, "pt", scheduler, setting["eta"])
    return plan(guider, conditioning, scheduler, scheduler.timesteps)


def setting_weights(pipe, setting: dict) -> str:
    """The digest of the weights a setting's samples come from: the pipeline's, and its weak model's and clean
    classifier's only where the setting's guider uses them (so adding either to a pipeline keeps the other settings'
    cached samples); never its `clip_model`, which only prompt-steered calls read (these sweeps make none)."""
    digest = weights_digest(pipe, exclude=("weak_unet", "clean_classifier", "clip_model"))
    if any(prediction.name == WEAK for step in planned_predictions(pipe, setting) for prediction in step):
        digest += "+weak:" + weights_digest(pipe, only=("weak_unet",))
    if uses_clean_classifier(setting):
        digest += "+clean:" + weights_digest(pipe, only=("clean_classifier",))
    return digest


def uses_clean_classifier(setting: dict) -> bool:
    guider = guidance_arguments(setting, True).get("guider")
    return bool(getattr(guider, "needs_clean_classifier", False))


def generate(pipe, setting: dict, num_samples: int, batch_size: int, seed: int, cache: SampleCache | None = None):
    """Samples in [-1, 1] with labels 0, 1, ..., K-1, 0, 1, ... (class-balanced), or unlabelled. A setting's
    "options" (a dict, if any) are passed to the pipeline as they are (a cascade's super-resolution arguments). The sampler is
    built from the pipeline's own scheduler config, which is put back afterwards: a sampler built from the previous
    setting's would inherit its config (DPM-Solver's timestep spacing leaked into the next sampler that way). With a
    `cache`, finished batches are kept on disk and, when it resumes, re-used (batch i is seeded with seed + i *
    batch_size either way, so a resumed run has the samples of an uninterrupted one)."""
    loaded = pipe.scheduler
    pipe.scheduler = make_scheduler(setting["sampler"], loaded.config)
    try:
        return sample_balanced(pipe, setting, num_samples, batch_size, seed, cache)
    finally:
        pipe.scheduler = loaded


def sample_balanced(pipe, setting: dict, num_samples: int, batch_size: int, seed: int, cache=None):
    num_classes = pipe.num_classes or (pipe.classifier.config.num_classes if pipe.classifier is not None else 0)
    labels = torch.arange(num_samples) % num_classes if num_classes else None
    images = []
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        batch_labels = labels[start : start + count] if labels is not None else None
        cached = cache.load(start, count) if cache is not None else None
        if cached is not None:
            images.append(cached)
            continue
        conditional = batch_labels is not None and (pipe.num_classes or setting["classifier_scale"] > 0
                                                    or setting.get("guider"))  # fmt: skip
        began = time.perf_counter()
        out = pipe(batch_size=count, class_labels=batch_labels if conditional else None,
                   num_inference_steps=setting["num_inference_steps"], eta=setting["eta"],
                   thresholding=setting["thresholding"], output_type="pt",
                   generator=torch.Generator().manual_seed(seed + start), **guidance_arguments(setting, conditional),
                   **setting.get("options", {}))  # fmt: skip
        images.append(out.images.cpu() * 2 - 1)
        if cache is not None:
            cache.save(start, images[-1], time.perf_counter() - began, out.evaluations)
    return torch.cat(images), labels


def guidance_arguments(setting: dict, conditional: bool) -> dict:
    """The pipeline's guidance arguments for a setting: its guider, or the shorthand scales (no guidance without
    labels)."""
    if not conditional:
        return dict(guidance_scale=1.0, classifier_scale=setting["classifier_scale"])
    if setting.get("guider"):  # settings made elsewhere (quality_per_step.py) may have no "guider" key
        return dict(guider=guider_from_spec(setting["guider"]))
    return dict(guidance_scale=setting["guidance_scale"], classifier_scale=setting["classifier_scale"])
