"""The README's main command keeps working: the exact-denoiser example samples real digits."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_exact_denoiser_example_reproduces_dataset_digits(tmp_path):
    output = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "sample_exact_denoiser.py"), "--num_inference_steps", "10",
         "--per_class", "1", "--output", str(output)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert output.is_file()
    rows = re.findall(r"^(DDIM|DDPM)\S* .*?\s+([\d.]+)\s+(\d+)%$", result.stdout, flags=re.M)
    assert len(rows) == 2
    for _, nearest_distance, class_agreement in rows:  # the ideal denoiser lands on dataset images
        assert float(nearest_distance) < 0.5 and int(class_agreement) == 100


def test_cfg_plus_plus_scales_example_reads_the_shipped_schedule():
    result = subprocess.run([sys.executable, str(REPO / "examples" / "cfg_plus_plus_scales.py"), "--pipeline",
                             str(REPO / "checkpoints" / "mnist"), "--num_inference_steps", "20", "50"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", result.stdout, flags=re.M)
    assert [row[0] for row in rows] == ["20", "50"]
    (_, first_20, median_20, _, last_20), (_, first_50, median_50, _, last_50) = rows
    assert last_20 == last_50 == "1.00"  # the last step lands on sigma = 0: w = lambda
    assert float(median_50) > float(median_20) > 1 and float(first_50) > float(first_20)  # more steps, more guidance


def test_clip_guided_class_model_example_steers_the_unconditional_model():
    result = subprocess.run([sys.executable, str(REPO / "examples" / "clip_guided_class_model.py"), "--pipeline",
                             str(REPO / "checkpoints" / "mnist"), "--eval_classifier",
                             str(REPO / "checkpoints" / "mnist-eval-classifier"), "--clip_scales", "10",
                             "--num_inference_steps", "20"], capture_output=True, text=True, check=True)  # fmt: skip
    (accuracy,) = re.findall(r"^\| 10 \| ([\d.]+)% \| 20 / 20 \|$", result.stdout, flags=re.M)
    assert float(accuracy) >= 70  # unguided, the null class matches the prompt's digit about 1 time in 10


def test_compose_text_cascade_example_joins_a_text_base_and_the_shipped_stage(tmp_path):
    """A tiny random 14x14 text base with the shipped cascade's super-resolution stage: one loadable folder."""
    import torch

    from guided_diffusers.pipelines import TextCascadePipeline, TextToImagePipeline, load_pipeline
    from guided_diffusers.pipelines.text_encoding import load_text_encoder
    from guided_diffusers.schedulers import GuidedDDIMScheduler
    from guided_diffusers.training.model_configs import build_text_unet, text_unet_config

    torch.manual_seed(0)
    base = TextToImagePipeline(*load_text_encoder(), build_text_unet(text_unet_config("tiny", 14, 14, 1, 384)),
                               GuidedDDIMScheduler(num_train_timesteps=1000))  # fmt: skip
    base.save_pretrained(tmp_path / "base")
    subprocess.run([sys.executable, str(REPO / "examples" / "compose_text_cascade.py"), "--base", str(tmp_path / "base"),
                    "--stage", str(REPO / "checkpoints" / "mnist-cascade"), "--num_inference_steps", "2",
                    "--output_dir", str(tmp_path / "cascade")], capture_output=True, text=True, check=True)  # fmt: skip
    cascade = load_pipeline(str(tmp_path / "cascade"))
    shipped = load_pipeline(str(REPO / "checkpoints" / "mnist-cascade"))
    assert isinstance(cascade, TextCascadePipeline) and (tmp_path / "cascade" / "samples.png").is_file()
    for name, weights in shipped.super_resolution_unet.state_dict().items():  # the stage, as shipped
        assert torch.equal(cascade.super_resolution_unet.state_dict()[name], weights), name
