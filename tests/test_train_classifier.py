"""The noise-aware classifier and training/train_classifier.py through its command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training.model_card import read_model_card
from guided_diffusers.training.model_configs import classifier_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "training" / "train_classifier.py")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_classifier_saves_and_loads_as_safetensors(tmp_path, pooling):
    schedule = schedule_of(GuidedDDPMScheduler(beta_schedule="squaredcos_cap_v2").config)
    model = NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, pooling, schedule)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = NoiseAwareClassifier.from_pretrained(tmp_path).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 900])
    torch.testing.assert_close(loaded(x, t).logits, model(x, t).logits)
    assert loaded.config.noise_schedule["beta_schedule"] == "squaredcos_cap_v2"


def test_unknown_pooling_is_named():
    with pytest.raises(ValueError, match="`pooling` must be 'attention' or 'mean'"):
        NoiseAwareClassifier(pooling="max")


@pytest.fixture(scope="module")
def diffusion_folder(tmp_path_factory):
    """A pipeline folder with a cosine schedule, as train_unet.py writes it."""
    folder = tmp_path_factory.mktemp("pipeline")
    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip
    scheduler = GuidedDDPMScheduler(beta_schedule="squaredcos_cap_v2")
    GuidedDiffusionPipeline(unet, scheduler, null_class_label=10).save_pretrained(folder)
    return folder


def test_training_reads_the_schedule_of_a_pipeline_and_reports_accuracy_by_timestep(tmp_path, diffusion_folder):
    out = tmp_path / "classifier"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--dataset_name", "mnist", "--max_train_samples", "4096", "--model_config", "tiny",
         "--pooling", "mean", "--train_batch_size", "64", "--max_train_steps", "250", "--learning_rate", "3e-3",
         "--lr_warmup_steps", "10", "--logger", "none", "--eval_max_samples", "300", "--num_timestep_buckets", "4",
         "--noise_scheduler", str(diffusion_folder), "--output_dir", str(out)],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "accuracy_by_timestep.json").read_text())
    assert [row["timesteps"] for row in rows] == [[0, 250], [250, 500], [500, 750], [750, 1000]]
    assert rows[0]["accuracy"] > 0.18 and rows[0]["accuracy"] > rows[-1]["accuracy"]  # chance is 0.1; low noise is easier
    classifier = NoiseAwareClassifier.from_pretrained(out)
    assert classifier.config.noise_schedule["beta_schedule"] == "squaredcos_cap_v2"
    metadata, body = read_model_card(out)
    assert "noise-aware-classifier" in metadata["tags"] and "[0, 250)" in body
    # it guides the pipeline it was trained for
    pipe = GuidedDiffusionPipeline.from_pretrained(diffusion_folder)
    pipe.scheduler = GuidedDDIMScheduler.from_config(pipe.scheduler.config)
    pipe.register_modules(classifier=classifier)
    images = pipe(batch_size=2, class_labels=[1, 2], guidance_scale=0.0, classifier_scale=1.0, num_inference_steps=3,
                  output_type="np").images  # fmt: skip
    assert images.shape == (2, 28, 28, 1)


@pytest.mark.parametrize(
    "extra,message",
    [(["--noise_scheduler", "/no/such/folder"], "holds no scheduler_config.json"),
     (["--num_timestep_buckets", "0"], "--num_timestep_buckets must be a positive integer"),
     (["--model_config", "huge"], "--model_config must be one of the presets tiny, small")],
)  # fmt: skip
def test_bad_arguments_fail_before_training(tmp_path, extra, message):
    result = subprocess.run([sys.executable, SCRIPT, "--dataset_name", "mnist", "--output_dir", str(tmp_path), *extra],
                            env=ENV, capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and message in result.stderr


def test_a_saved_pipeline_with_classifier_loads_in_a_fresh_process(diffusion_folder, tmp_path):
    """diffusers imports no module named in model_index.json by itself; importing the pipeline must be enough."""
    pipe = GuidedDiffusionPipeline.from_pretrained(diffusion_folder)
    schedule = schedule_of(pipe.scheduler.config)
    pipe.register_modules(classifier=NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean", schedule)))
    pipe.save_pretrained(tmp_path / "with-classifier")
    code = ("from guided_diffusers.pipelines import GuidedDiffusionPipeline; "
            f"print(type(GuidedDiffusionPipeline.from_pretrained({str(tmp_path / 'with-classifier')!r}).classifier).__name__)")
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "NoiseAwareClassifier"
