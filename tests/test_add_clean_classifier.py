"""training/add_clean_classifier.py: a clean classifier added to a shipped pipeline folder loads with it, guides, is
told in the card once; the judge's own weights, a noise-aware classifier and a classifier of other classes are
refused before the folder is touched."""

import json

import pytest
import torch

from script_runner import run_script
from test_add_weak_unet import shipped_folder
from test_assemble_checkpoint import fake_run

from guided_diffusers.guiders import UniversalClassifierGuidance
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.training.model_card import read_model_card
from guided_diffusers.training.model_configs import classifier_config

SCRIPT = "training/add_clean_classifier.py"
CLEAN = {"Training": "```bash\ntrain_classifier.py --noise_free --model_config tiny --seed 1\n```",
         "Held-out accuracy by timestep": "| timesteps | held-out accuracy |\n| --- | --- |\n| clean (t = 0) | 97.0% |"}


def classifier(seed, num_classes=10):
    torch.manual_seed(seed)
    return NoiseAwareClassifier(**classifier_config("tiny", 28, 1, num_classes, "mean"))


@pytest.fixture()
def folders(tmp_path):
    shipped = shipped_folder(tmp_path / "shipped")
    fake_run(tmp_path / "guide", classifier(1), "guide", CLEAN)
    fake_run(tmp_path / "judge", classifier(2), "judge", CLEAN)
    return shipped, tmp_path / "guide", tmp_path / "judge"


def test_the_clean_classifier_joins_the_folder_loads_with_it_and_is_told_once(folders):
    shipped, guide, judge = folders
    before = (shipped / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    for _ in range(2):  # re-running replaces, never duplicates
        run_script(SCRIPT, "--pipeline", shipped, "--classifier_run", guide, "--eval_classifier", judge, "--fp16",
                   "--check_steps", "2")  # fmt: skip
    pipe = GuidedDiffusionPipeline.from_pretrained(shipped)
    assert isinstance(pipe.clean_classifier, NoiseAwareClassifier)
    assert json.loads((shipped / "model_index.json").read_text())["clean_classifier"] == \
        ["guided_diffusers.models.noise_aware_classifier", "NoiseAwareClassifier"]  # fmt: skip
    assert (shipped / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    metadata, body = read_model_card(shipped)
    assert body.count("## Clean classifier (universal guidance)") == 1 and "--noise_free" in body and "97.0%" in body
    assert body.index("## Clean classifier") < body.index("## Storage") and "universal-guidance" in metadata["tags"]
    assert "max abs pixel difference" in body
    out = pipe(batch_size=2, class_labels=[1, 2], guider=UniversalClassifierGuidance(classifier_scale=3.0),
               num_inference_steps=2, output_type="pt")  # fmt: skip
    assert out.evaluations["clean_classifier"] == 2 and torch.isfinite(out.images).all()


def test_the_judge_a_noise_aware_or_a_mismatched_classifier_is_refused_and_the_folder_left_alone(folders, tmp_path):
    shipped, guide, judge = folders
    index = (shipped / "model_index.json").read_text()
    result = run_script(SCRIPT, "--pipeline", shipped, "--classifier_run", judge, "--eval_classifier", judge, check=False)
    assert result.returncode != 0 and "must not be the one that judges the samples" in result.stderr
    fake_run(tmp_path / "noisy", classifier(3), "noisy", {"Training": "```bash\ntrain_classifier.py\n```"})
    result = run_script(SCRIPT, "--pipeline", shipped, "--classifier_run", tmp_path / "noisy", check=False)
    assert result.returncode != 0 and "was not trained with --noise_free" in result.stderr
    fake_run(tmp_path / "five", classifier(4, num_classes=5), "five", CLEAN)
    result = run_script(SCRIPT, "--pipeline", shipped, "--classifier_run", tmp_path / "five", check=False)
    assert result.returncode != 0 and "`clean_classifier` has 5 classes, the UNet 10" in result.stderr
    result = run_script(SCRIPT, "--pipeline", shipped, "--classifier_run", tmp_path / "nowhere", check=False)
    assert result.returncode != 0 and "not a finished classifier run folder" in result.stderr
    assert (shipped / "model_index.json").read_text() == index and not (shipped / "clean_classifier").exists()
