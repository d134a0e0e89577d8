"""training/assemble_checkpoint.py: runs in, one Hub-ready pipeline folder out."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.model_card import read_model_card, write_model_card
from guided_diffusers.training.model_configs import classifier_config

SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "assemble_checkpoint.py")


def fake_run(folder, model, title, extra_sections):
    """A finished run folder as the training scripts leave it: weights, samples.png, model card."""
    model.save_pretrained(folder)
    (folder / "samples.png").write_bytes(b"\x89PNG\r\n")
    sections = {"Model": f"{title} model", "Training": f"```bash\n{title} command\n```", **extra_sections}
    metadata = {"library_name": "diffusers", "tags": ["guided-diffusers"], "datasets": ["mnist"], "license": "apache-2.0"}
    write_model_card(folder, title=title, metadata=metadata, sections=sections)


@pytest.fixture()
def runs(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip
    scheduler = GuidedDDPMScheduler()
    fake_run(tmp_path / "unet", GuidedDiffusionPipeline(unet, scheduler, null_class_label=10), "unet", {"Samples": "grid"})
    classifier = NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean", schedule_of(scheduler.config)))
    fake_run(tmp_path / "classifier", classifier, "classifier", {"Held-out accuracy by timestep": "| t | acc |"})
    (tmp_path / "classifier" / "accuracy_by_timestep.json").write_text('[{"timesteps": [0, 100], "accuracy": 0.9}]')
    return tmp_path


def test_assembled_folder_loads_guides_and_tells_both_stories_in_half_the_space(runs):
    out = runs / "shipped"
    subprocess.run([sys.executable, SCRIPT, "--unet_run", str(runs / "unet"), "--classifier_run",
                    str(runs / "classifier"), "--fp16", "--check_steps", "2", "--output_dir", str(out)], check=True,
                   capture_output=True)  # fmt: skip
    pipe = GuidedDiffusionPipeline.from_pretrained(out)
    assert pipe.unet.dtype == torch.float32 and isinstance(pipe.classifier, NoiseAwareClassifier)
    original = GuidedDiffusionPipeline.from_pretrained(runs / "unet").unet
    size = lambda folder: (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size  # noqa: E731
    assert size(out) < 0.6 * size(runs / "unet")
    torch.testing.assert_close(pipe.unet.conv_in.weight, original.conv_in.weight, atol=1e-3, rtol=1e-3)
    images = pipe(batch_size=2, class_labels=[1, 2], guidance_scale=0.0, classifier_scale=1.0, num_inference_steps=2,
                  output_type="np").images  # fmt: skip
    assert images.shape == (2, 28, 28, 1)
    metadata, body = read_model_card(out)
    assert "classifier-guidance" in metadata["tags"]
    assert "unet command" in body and "classifier command" in body and "float16" in body and (out / "samples.png").is_file()
    assert (out / "classifier" / "accuracy_by_timestep.json").read_text() == (runs / "classifier" / "accuracy_by_timestep.json").read_text()
    # the card measures what float16 storage does to samples, for CFG and for classifier guidance
    storage = body.split("## Storage")[1]
    rows = [line for line in storage.splitlines() if line.startswith("| CFG 3") or line.startswith("| classifier guidance")]
    assert len(rows) == 2 and all(0 < float(row.split("|")[2]) < 0.1 for row in rows)


def test_a_classifier_for_another_schedule_is_refused(runs, tmp_path):
    other = NoiseAwareClassifier(**classifier_config("tiny", 28, 1, 10, "mean",
                                                     schedule_of(GuidedDDPMScheduler(beta_schedule="sigmoid").config)))  # fmt: skip
    fake_run(tmp_path / "other", other, "other", {"Held-out accuracy by timestep": "-"})
    result = subprocess.run([sys.executable, SCRIPT, "--unet_run", str(runs / "unet"), "--classifier_run",
                             str(tmp_path / "other"), "--output_dir", str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "another noise schedule" in result.stderr


def test_unfinished_runs_are_refused(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--unet_run", str(tmp_path), "--output_dir", str(tmp_path / "o")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "is not a finished unet run folder" in result.stderr


def fake_evaluation(folder, table):
    """An evaluate.py output folder: results.md, a sweep plot, two sample grids."""
    folder.mkdir()
    (folder / "results.md").write_text(table)
    for name in ("sweep_guidance_scale.png", "samples_0.png", "samples_1.png"):
        (folder / name).write_bytes(b"\x89PNG\r\n")
    return folder


def test_each_evaluation_becomes_a_section_with_its_plots_and_grids_beside_the_card(runs, tmp_path):
    cfg = fake_evaluation(tmp_path / "cfg", "| cfg table |")
    guided = fake_evaluation(tmp_path / "classifier-guidance", "| classifier table |")
    summary = tmp_path / "summary.md"
    summary.write_text("measured against the targets")
    out = tmp_path / "shipped"
    subprocess.run([sys.executable, SCRIPT, "--unet_run", str(runs / "unet"), "--evaluation", str(cfg), str(guided),
                    "--summary", str(summary), "--output_dir", str(out)], check=True, capture_output=True)  # fmt: skip
    _, body = read_model_card(out)
    assert body.index("## Summary") < body.index("## Evaluation: cfg") < body.index("## Evaluation: classifier-guidance")
    assert "| cfg table |" in body and "| classifier table |" in body
    assert "![sweep_guidance_scale](evaluation/cfg/sweep_guidance_scale.png)" in body
    assert "[1](evaluation/classifier-guidance/samples_1.png)" in body
    assert (out / "evaluation" / "classifier-guidance" / "samples_1.png").is_file()


def test_a_folder_without_results_is_refused_as_an_evaluation(runs, tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--unet_run", str(runs / "unet"), "--evaluation", str(tmp_path),
                             "--output_dir", str(tmp_path / "o")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "is not a finished evaluation folder" in result.stderr


def test_the_assembly_records_the_demo_defaults_measured_by_its_evaluations(runs, tmp_path):
    header = "| sampler | guidance_scale | classifier_scale | thresholding | FD (own classifier) | accuracy |\n| --- | --- | --- | --- | --- | --- |\n"
    real = "| real data (train vs test) | | | | 0.2 | 0.95 |\n"
    cfg = fake_evaluation(tmp_path / "cfg", header + real + "| ddim | 1.0 | 0.0 | static | 0.2 | 0.9 |\n"
                                                           "| ddim | 3.0 | 0.0 | static | 0.3 | 0.99 |\n")  # fmt: skip
    out = runs / "shipped"
    subprocess.run([sys.executable, SCRIPT, "--unet_run", str(runs / "unet"), "--evaluation", str(cfg),
                    "--demo_guidance_sweep", "cfg", "--output_dir", str(out)], check=True, capture_output=True)  # fmt: skip
    demo = read_model_card(out)[0]["demo"]
    assert demo["guidance_scale"] == 3.0 and demo["thresholding"] == "static" and demo["sampler"] == "dpm2m"


def test_a_super_resolution_run_makes_the_folder_a_cascade_with_both_stages_stories(tmp_path):
    from guided_diffusers.pipelines import CascadePipeline, SuperResolutionPipeline
    from guided_diffusers.training.model_configs import build_unet, super_resolution_unet_config, unet_config

    torch.manual_seed(0)
    scheduler = GuidedDDPMScheduler()
    base = build_unet(unet_config("tiny", 14, 1, num_classes=10))
    fake_run(tmp_path / "base", GuidedDiffusionPipeline(base, scheduler, null_class_label=10), "base", {"Samples": "grid"})
    stage = SuperResolutionPipeline(build_unet(super_resolution_unet_config("tiny", 28, 1)), scheduler)
    fake_run(tmp_path / "stage", stage, "stage", {"Samples": "Rows: ...\n\n![samples](samples.png)"})
    out = tmp_path / "cascade"
    subprocess.run([sys.executable, SCRIPT, "--unet_run", str(tmp_path / "base"), "--super_resolution_run",
                    str(tmp_path / "stage"), "--fp16", "--check_steps", "2", "--output_dir", str(out)], check=True,
                   capture_output=True)  # fmt: skip
    pipe = CascadePipeline.from_pretrained(out)
    assert pipe.unet.config.sample_size == 14 and pipe.super_resolution_unet.config.sample_size == 28
    torch.testing.assert_close(pipe.super_resolution_unet.conv_in.weight, stage.unet.conv_in.weight, atol=1e-3, rtol=1e-3)
    metadata, body = read_model_card(out)
    assert "base command" in body and "stage command" in body and "## Super-resolution stage" in body
    assert "(super_resolution_samples.png)" in body and (out / "super_resolution_samples.png").is_file()
    assert "CascadePipeline.from_pretrained" in body and "cascaded diffusion" in body
    assert "max abs pixel difference" in body  # the float16 check ran through the cascade
