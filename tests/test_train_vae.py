"""training/train_vae.py through its command line: a tiny AutoencoderKL on a few hundred real MNIST digits."""

import json

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file
from script_runner import run_script

from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.model_card import read_model_card

TINY = ["--dataset_name", "mnist", "--resolution", "32", "--max_train_samples", "256", "--vae_config", "tiny",
        "--train_batch_size", "16", "--logging_steps", "2", "--logger", "none", "--checkpointing_steps", "4",
        "--eval_max_samples", "64", "--scaling_samples", "128", "--eval_batch_size", "32"]  # fmt: skip


def run(*args, check=True):
    return run_script("training/train_vae.py", *args, check=check)


def test_trains_an_autoencoder_with_a_measured_latent_scale_and_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(*TINY, "--max_train_steps", "8", "--use_ema", "--output_dir", str(straight))
    vae = AutoencoderKL.from_pretrained(straight).eval()
    result = json.loads((straight / "reconstruction.json").read_text())
    assert result["num_images"] == 64 and result["mse"] > 0
    # scaling_factor = 1 / std of the training latents: scaled, they have unit variance (same 128 images, seed 0)
    data = to_tensors(load_image_dataset("mnist", split="train", max_samples=256), 32, 1)
    chosen = torch.randperm(256, generator=torch.Generator().manual_seed(0))[:128]
    with torch.no_grad():
        latents = vae.encode(to_model_range(data.images[chosen])).latent_dist.mean * vae.config.scaling_factor
    assert latents.std().item() == pytest.approx(1.0, abs=1e-3)
    metadata, body = read_model_card(straight)
    assert "train_vae.py" in body and "MSE" in body and (straight / "reconstructions.png").is_file()

    run(*TINY, "--max_train_steps", "4", "--use_ema", "--output_dir", str(resumed))
    run(*TINY, "--max_train_steps", "8", "--use_ema", "--output_dir", str(resumed), "--resume_from_checkpoint", "latest")
    a = load_file(straight / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "diffusion_pytorch_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_reconstruction_improves_with_training(tmp_path):
    errors = []
    for steps in (2, 40):
        run(*TINY, "--max_train_steps", str(steps), "--learning_rate", "2e-3", "--output_dir", str(tmp_path / str(steps)))
        errors.append(json.loads((tmp_path / str(steps) / "reconstruction.json").read_text())["mse"])
    assert errors[1] < 0.7 * errors[0], errors


@pytest.mark.parametrize(
    "extra, message",
    [(["--vae_config", "huge"], "--vae_config"), (["--resolution", "31"], "divisible"), (["--kl_weight", "-1"], "--kl_weight")],
)  # fmt: skip
def test_bad_flags_fail_before_training(tmp_path, extra, message):
    result = run(*TINY, "--max_train_steps", "1", "--output_dir", str(tmp_path / "x"), *extra, check=False)
    assert result.returncode != 0 and message in result.stderr
