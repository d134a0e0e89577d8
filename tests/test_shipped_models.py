"""Every shipped folder in checkpoints/ loads, has a model card that parses, and does its job on real data."""

import json
from pathlib import Path

import pytest
import torch

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import CascadePipeline, GuidedDiffusionPipeline, TextToImagePipeline, load_pipeline
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
    pipe = load_pipeline(folder)
    if isinstance(pipe, TextToImagePipeline):
        images = pipe(["a 4 to the left of a 9", "the digit seven"], num_inference_steps=3, output_type="np").images
        canvas = (28, 56) if pipe.vae is None else (32, 64)  # latent models decode with a 2-pixel border
        assert images.shape == (2, *canvas, 1)
        return
    labels = list(range(min(pipe.num_classes, 2))) or None
    stages = {"super_resolution_steps": 3} if isinstance(pipe, CascadePipeline) else {}
    images = pipe(batch_size=2, class_labels=labels, guidance_scale=3.0 if labels else 1.0, num_inference_steps=3,
                  output_type="np", **stages).images  # fmt: skip
    last = pipe.super_resolution_unet if stages else pipe.unet  # a cascade's images come out of its last stage
    assert images.shape == (2, last.config.sample_size, last.config.sample_size, last.config.out_channels)


def evaluation_classifier(folder: Path) -> NoiseAwareClassifier:
    """The shipped judge of the dataset the folder's card names."""
    dataset = read_model_card(folder)[0]["datasets"][0]
    return NoiseAwareClassifier.from_pretrained(CHECKPOINTS / f"{dataset.replace('_', '-')}-eval-classifier").eval()


def judged_accuracy(folder: Path, pipeline_class=GuidedDiffusionPipeline, **guidance) -> float:
    """Share of 20 class-conditional samples (2 per class, DDIM 20 steps) that the shipped evaluation classifier of
    the same dataset sees as the class asked for."""
    pipe = pipeline_class.from_pretrained(folder)
    judge = evaluation_classifier(folder)
    labels = torch.arange(20) % pipe.num_classes
    images = pipe(batch_size=20, class_labels=labels, num_inference_steps=20, output_type="pt",
                  generator=torch.Generator().manual_seed(0), **guidance).images  # fmt: skip
    with torch.no_grad():
        logits = judge(images * 2 - 1, torch.zeros(20, dtype=torch.long)).logits
    return (logits.argmax(1) == labels).float().mean().item()


SHIPPED_PIPELINES = [f for f in FOLDERS if (f / "model_index.json").exists() and (f / "classifier").is_dir()]
CASCADES = [f for f in FOLDERS if (f / "super_resolution_unet").is_dir()]
TEXT_PIPELINES = [f for f in FOLDERS if (f / "model_index.json").exists() and "text-to-image" in read_model_card(f)[0]["tags"]]


@pytest.mark.parametrize("folder", SHIPPED_PIPELINES, ids=lambda p: p.name)
def test_shipped_pipeline_draws_the_class_asked_for_with_classifier_free_guidance(folder):
    assert judged_accuracy(folder, guidance_scale=3.0, thresholding="dynamic") >= 0.85


@pytest.mark.parametrize("folder", SHIPPED_PIPELINES, ids=lambda p: p.name)
def test_shipped_pipeline_draws_the_class_asked_for_with_classifier_guidance_alone(folder):
    # unguided (guidance_scale 0: the null class) it would be right about 10% of the time
    assert judged_accuracy(folder, guidance_scale=0.0, classifier_scale=10.0) >= 0.6


@pytest.mark.parametrize("folder", CASCADES, ids=lambda p: p.name)
def test_shipped_cascade_draws_the_class_asked_for(folder):
    # both stages at 20 steps; the super-resolution stage at its default augmentation level
    assert judged_accuracy(folder, CascadePipeline, guidance_scale=3.0, super_resolution_steps=20) >= 0.85


def card_accuracy(folder: Path, below: int) -> float:
    """The held-out accuracy the folder's card reports for the timestep bucket starting at `below`'s bucket."""
    buckets = json.loads((folder / "accuracy_by_timestep.json").read_text())
    return next(b["accuracy"] for b in buckets if b["timesteps"][0] <= below <= max(b["timesteps"][1] - 1, 0))


def held_out(folder: Path, classifier, count: int):
    card_folder = folder if (folder / "README.md").exists() else folder.parent  # a pipeline's classifier/
    dataset = read_model_card(card_folder)[0]["datasets"][0]
    data = to_tensors(load_image_dataset(dataset, split="test", max_samples=count), classifier.config.sample_size,
                      classifier.config.in_channels)  # fmt: skip
    return to_model_range(data.images), data.labels


# the cards measured on 10,000 (evaluation) or 2,000 (guidance) test images; a re-measurement on fewer must agree
# within about 3 binomial standard deviations


@pytest.mark.parametrize("folder", [f for f in FOLDERS if f.name.endswith("eval-classifier")], ids=lambda p: p.name)
def test_shipped_evaluation_classifier_is_as_accurate_as_its_card_says(folder):
    classifier = NoiseAwareClassifier.from_pretrained(folder).eval()
    x0, labels = held_out(folder, classifier, 1000)
    with torch.no_grad():
        logits = classifier(x0, torch.zeros(len(x0), dtype=torch.long)).logits
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy >= card_accuracy(folder, 0) - 0.03 and accuracy >= 0.8


def guidance_classifiers():
    """Standalone noise-aware classifier folders and the classifier/ of each shipped pipeline."""
    standalone = [f for f in FOLDERS if (f / "config.json").exists() and "noise-aware-classifier" in read_model_card(f)[0]["tags"]]
    return standalone + [f / "classifier" for f in SHIPPED_PIPELINES]


@pytest.mark.parametrize("folder", guidance_classifiers(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_guidance_classifier_is_as_accurate_on_lightly_noised_images_as_its_card_says(folder):
    from guided_diffusers.schedulers import GuidedDDPMScheduler

    classifier = NoiseAwareClassifier.from_pretrained(folder).eval()
    schedule = {k: v for k, v in classifier.config.noise_schedule.items() if v is not None}
    scheduler = GuidedDDPMScheduler(**schedule)
    x0, labels = held_out(folder, classifier, 500)
    generator = torch.Generator().manual_seed(0)
    t = torch.randint(0, 100, (len(x0),), generator=generator)
    x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
    with torch.no_grad():
        accuracy = (classifier(x_t, t).logits.argmax(1) == labels).float().mean().item()
    assert accuracy >= card_accuracy(folder, 0) - 0.05 and accuracy >= 0.8


@pytest.mark.parametrize("folder", TEXT_PIPELINES, ids=lambda p: p.name)
def test_shipped_text_model_draws_the_item_a_held_out_prompt_asks_for(folder):
    """One-item held-out prompts (each class once, a template never seen in training), judged by the dataset's
    evaluation classifier; the card measured the alignment on 60 such images per setting."""
    from guided_diffusers.pipelines.samplers import default_thresholding
    from guided_diffusers.training.captions import NO_ITEM, evaluation_prompts
    from guided_diffusers.training.evaluate_text_to_image import items

    pipe = TextToImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    dataset = read_model_card(folder)[0]["datasets"][0]
    singles = [(text, label) for text, label, right in evaluation_prompts(dataset) if right == NO_ITEM][:10]
    images = pipe([text for text, _ in singles], guidance_scale=5.0, num_inference_steps=20, output_type="pt",
                  thresholding=default_thresholding(pipe), generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    crops, _ = items(images * 2 - 1, torch.full((len(singles),), NO_ITEM))
    judge = evaluation_classifier(folder)
    with torch.no_grad():
        predicted = judge(crops, torch.zeros(len(crops), dtype=torch.long)).logits.argmax(1)
    accuracy = (predicted == torch.tensor([label for _, label in singles])).float().mean().item()
    assert accuracy >= 0.7, accuracy


CLIP_SCORERS = [f for f in FOLDERS if (f / "config.json").exists() and
                json.loads((f / "config.json").read_text())["_class_name"] == "NoiseAwareCLIP"]  # fmt: skip


@pytest.mark.parametrize("folder", CLIP_SCORERS, ids=lambda p: p.name)
def test_shipped_clip_score_model_is_clean_and_retrieves_held_out_compositions(folder):
    """Held-out test images composed with held-out wordings: the clean model's best caption among every content
    names what they show (its card: 98.8% on 2,000)."""
    from guided_diffusers.models import NoiseAwareCLIP
    from guided_diffusers.pipelines.text_encoding import load_text_encoder
    from guided_diffusers.schedulers import GuidedDDPMScheduler
    from guided_diffusers.training.caption_states import caption_cache
    from guided_diffusers.training.captions import CaptionedPairs, retrieval_candidates
    from guided_diffusers.training.train_clip import CaptionedImages, retrieval_by_timestep

    model = NoiseAwareCLIP.from_pretrained(folder).eval()
    assert model.config.noise_free  # it grades; the guiding models read x_t
    dataset = read_model_card(folder)[0]["datasets"][0]
    test = to_tensors(load_image_dataset(dataset, None, "test", 200), 28, 1)
    held_out = CaptionedImages(CaptionedPairs(test.images.numpy(), test.labels.numpy(), dataset, "held_out", 0.5,
                                              length=200, seed=7), items=False)  # fmt: skip
    candidates = retrieval_candidates(dataset, "held_out")
    tokenizer, encoder = load_text_encoder(model.config.text_encoder_id)
    cache = caption_cache(tokenizer, encoder, [c for c, _, _ in candidates], model.config.max_length, "cpu")
    (row,) = retrieval_by_timestep(model, GuidedDDPMScheduler(), held_out, candidates, cache, 1, "cpu", noise_free=True)
    assert row["accuracy"] >= 0.9, row


@pytest.mark.parametrize("folder", [f for f in TEXT_PIPELINES if (f / "clip_model").is_dir()], ids=lambda p: p.name)
def test_shipped_clip_model_steers_the_empty_caption_to_the_prompt(folder):
    """CLIP guidance alone on the unconditional branch (the empty caption): one-item held-out prompts, judged by the
    evaluation classifier; without guidance that branch matches a prompt's class about 1 time in 10."""
    from guided_diffusers.guiders import CLIPGuidance
    from guided_diffusers.training.captions import NO_ITEM, evaluation_prompts
    from guided_diffusers.training.evaluate_text_to_image import items

    pipe = TextToImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    dataset = read_model_card(folder)[0]["datasets"][0]
    singles = [(text, label) for text, label, right in evaluation_prompts(dataset) if right == NO_ITEM][:10]
    out = pipe([text for text, _ in singles], guider=CLIPGuidance(clip_scale=30.0, prediction="pred_uncond"),
               num_inference_steps=50, output_type="pt", thresholding="none", generator=torch.Generator().manual_seed(0))  # fmt: skip
    crops, _ = items(out.images * 2 - 1, torch.full((len(singles),), NO_ITEM))
    with torch.no_grad():
        predicted = evaluation_classifier(folder)(crops, torch.zeros(len(crops), dtype=torch.long)).logits.argmax(1)
    accuracy = (predicted == torch.tensor([label for _, label in singles])).float().mean().item()
    assert out.evaluations["clip"] == 50 and accuracy >= 0.7, accuracy
