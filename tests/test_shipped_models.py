"""Every shipped folder in checkpoints/ loads, has a model card that parses, and does its job on real data."""

from pathlib import Path

import pytest
import torch

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.model_card import read_model_card

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
FOLDERS = sorted(p for p in CHECKPOINTS.glob("*") if p.is_dir())


def test_something_is_shipped_and_weights_stay_small():
    assert FOLDERS, "checkpoints/ holds no model"
    weights = [f for folder in FOLDERS for f in folder.rglob("*") if f.is_file() and f.suffix in (".safetensors",)]
    assert sum(f.stat().st_size for f in weights) < 50e6
    assert not [f for folder in FOLDERS for f in folder.rglob("*") if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_model_card_parses_and_says_how_the_model_was_made(folder):
    metadata, body = read_model_card(folder)
    assert {"library_name", "license", "tags", "datasets"} <= set(metadata)
    assert "```bash\naccelerate launch training/" in body and "wall time" in body and "hardware" in body


@pytest.mark.parametrize("folder", [f for f in FOLDERS if (f / "model_index.json").exists()], ids=lambda p: p.name)
def test_shipped_pipeline_samples_images_of_the_right_shape(folder):
    pipe = GuidedDiffusionPipeline.from_pretrained(folder)
    labels = list(range(min(pipe.num_classes, 2))) or None
    images = pipe(batch_size=2, class_labels=labels, guidance_scale=3.0 if labels else 1.0, num_inference_steps=3,
                  output_type="np").images  # fmt: skip
    assert images.shape == (2, pipe.unet.config.sample_size, pipe.unet.config.sample_size, pipe.unet.config.in_channels)


@pytest.mark.parametrize("folder", [f for f in FOLDERS if f.name.endswith("eval-classifier")], ids=lambda p: p.name)
def test_shipped_evaluation_classifier_recognises_held_out_images(folder):
    classifier = NoiseAwareClassifier.from_pretrained(folder).eval()
    dataset = read_model_card(folder)[0]["datasets"][0]
    data = to_tensors(load_image_dataset(dataset, split="test", max_samples=500), classifier.config.sample_size,
                      classifier.config.in_channels)  # fmt: skip
    with torch.no_grad():
        logits = classifier(to_model_range(data.images), torch.zeros(len(data), dtype=torch.long)).logits
    assert (logits.argmax(1) == data.labels).float().mean().item() >= 0.98


def guidance_classifiers():
    return [f for f in FOLDERS if (f / "config.json").exists() and "noise-aware-classifier" in read_model_card(f)[0]["tags"]]


@pytest.mark.parametrize("folder", guidance_classifiers(), ids=lambda p: p.name)
def test_shipped_guidance_classifier_recognises_lightly_noised_held_out_images(folder):
    from guided_diffusers.schedulers import GuidedDDPMScheduler

    classifier = NoiseAwareClassifier.from_pretrained(folder).eval()
    schedule = {k: v for k, v in classifier.config.noise_schedule.items() if v is not None}
    scheduler = GuidedDDPMScheduler(**schedule)
    dataset = read_model_card(folder)[0]["datasets"][0]
    data = to_tensors(load_image_dataset(dataset, split="test", max_samples=300), classifier.config.sample_size,
                      classifier.config.in_channels)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    t = torch.randint(0, 100, (len(data),), generator=generator)
    x0 = to_model_range(data.images)
    x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
    with torch.no_grad():
        accuracy = (classifier(x_t, t).logits.argmax(1) == data.labels).float().mean().item()
    assert accuracy >= 0.9
