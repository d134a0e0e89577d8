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
