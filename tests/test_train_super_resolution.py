"""training/train_super_resolution.py: what the loss feeds the UNet (against the augmentation written out), a tiny
run through the command line that writes a loadable SuperResolutionPipeline, and bad flags refused before training."""

import importlib.util
import re
from types import SimpleNamespace

import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput

from guided_diffusers.pipelines import SuperResolutionPipeline
from guided_diffusers.pipelines.noise_augmentation import (
    LEVEL_TO_EMBEDDING, area_downsample, augment, level_timestep_condition, upsample,
)  # fmt: skip
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.data import ImageTensors, to_model_range
from guided_diffusers.training.loop import step_generator
from guided_diffusers.training.model_card import read_model_card
from script_runner import REPO, run_script

SCRIPT = "training/train_super_resolution.py"
TINY = ["--dataset_name", "mnist", "--max_train_samples", "128", "--model_config", "tiny", "--train_batch_size", "16",
        "--logging_steps", "4", "--logger", "none", "--eval_batch_size", "4", "--ddpm_num_inference_steps", "2",
        "--save_images_steps", "1000"]  # fmt: skip


class Recorder(torch.nn.Module):
    """Stands in for the UNet: records its inputs and predicts zeros."""

    def forward(self, sample, timestep, **conditioning):
        self.inputs, self.conditioning = (sample, timestep, conditioning.get("class_labels")), conditioning
        return UNet2DOutput(sample=torch.zeros_like(sample[:, :1]))


PLAIN_STAGE = SimpleNamespace(time_cond_proj_dim=None)  # a UNet2DModel stage's config, as the loss reads it


@pytest.fixture(scope="module")
def make_loss():
    """The script's loss, imported from the script file (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("train_super_resolution", REPO / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_super_resolution_loss


@pytest.mark.parametrize("max_level", [0.0, 0.6])
def test_the_loss_feeds_x_t_beside_the_augmented_low_resolution_image(make_loss, max_level):
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    data = ImageTensors(images, None, None)
    args = SimpleNamespace(random_flip=False, max_augmentation_level=max_level, low_resolution=14, resolution=28,
                           snr_gamma=None, vlb_weight=0.001, class_conditional=False)  # fmt: skip
    scheduler = GuidedDDPMScheduler(num_train_timesteps=100)
    model, indices = Recorder(), torch.tensor([3, 1, 4, 5])
    make_loss(scheduler, data, args, "cpu", PLAIN_STAGE)(model, indices, step_generator(0, 0, 0))
    sample, timesteps, labels = model.inputs
    # the same draws in the same order: x0 (no flip), eps, t, then the levels and the augmentation noise
    generator = step_generator(0, 0, 0)
    x0 = to_model_range(images[indices])
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, 100, (4,), generator=generator)
    levels = torch.rand(4, generator=generator) * max_level
    augmentation_noise = torch.randn(x0.shape, generator=generator)
    torch.testing.assert_close(timesteps, t)
    torch.testing.assert_close(sample[:, :1], scheduler.add_noise(x0, noise, t))
    low = area_downsample(x0, 14)
    torch.testing.assert_close(sample[:, 1:], augment(upsample(low, 28), levels, augmentation_noise))
    torch.testing.assert_close(labels, levels * LEVEL_TO_EMBEDDING)
    if max_level == 0:  # no augmentation: the clean upsampled image and level 0
        torch.testing.assert_close(sample[:, 1:], upsample(low, 28))
        assert labels.abs().max() == 0
    else:
        assert 0 < labels.min() and labels.max() <= max_level * LEVEL_TO_EMBEDDING


def test_a_class_conditioned_stage_is_told_the_labels_dropped_to_the_null_class_and_the_level(make_loss):
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    data = ImageTensors(images, torch.arange(8) % 3, ["a", "b", "c"])
    args = SimpleNamespace(random_flip=False, max_augmentation_level=0.6, low_resolution=14, resolution=28,
                           snr_gamma=None, vlb_weight=0.001, class_conditional=True, label_dropout=0.5)  # fmt: skip
    model, indices = Recorder(), torch.tensor([3, 1, 4, 5, 0, 2, 7, 6])
    make_loss(GuidedDDPMScheduler(num_train_timesteps=100), data, args, "cpu", SimpleNamespace(time_cond_proj_dim=16))(
        model, indices, step_generator(0, 0, 0))  # fmt: skip
    generator = step_generator(0, 0, 0)  # x0, eps, t, the levels, the augmentation noise, then the dropout draw
    x0 = to_model_range(images[indices])
    torch.randn(x0.shape, generator=generator), torch.randint(0, 100, (8,), generator=generator)
    levels = torch.rand(8, generator=generator) * 0.6
    torch.randn(x0.shape, generator=generator)
    dropped = torch.rand(8, generator=generator) < 0.5
    assert 0 < dropped.sum() < 8  # this seed drops some labels and keeps others
    expected = torch.where(dropped, 3, data.labels[indices])
    assert torch.equal(model.conditioning["class_labels"], expected)
    torch.testing.assert_close(model.conditioning["timestep_cond"], level_timestep_condition(levels, 16))
    assert model.conditioning["encoder_hidden_states"] is None


def test_training_writes_a_super_resolution_pipeline_with_its_card(tmp_path):
    out = tmp_path / "run"
    run_script(SCRIPT, *TINY, "--max_train_steps", "6", "--max_augmentation_level", "0.5", "--augmentation_level",
               "0.1", "--output_dir", out)  # fmt: skip
    pipe = SuperResolutionPipeline.from_pretrained(out)
    assert pipe.config.low_resolution == 14 and pipe.unet.config.in_channels == 2
    assert pipe.unet.config.class_embed_type == "timestep" and (out / "samples.png").is_file()
    pipe.set_progress_bar_config(disable=True)
    images = pipe(torch.rand(2, 1, 14, 14), augmentation_level=0.1, num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 28, 28, 1)
    metadata, body = read_model_card(out)
    assert "super-resolution" in metadata["tags"] and "a ~ U[0, 0.5]" in body and "train_super_resolution.py" in body


def test_class_conditional_training_writes_a_stage_that_takes_labels_and_cfg(tmp_path):
    out = tmp_path / "run"
    run_script(SCRIPT, *TINY, "--max_train_steps", "4", "--class_conditional", "--label_dropout", "0.2",
               "--output_dir", out)  # fmt: skip
    pipe = SuperResolutionPipeline.from_pretrained(out)
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and pipe.unet.config.num_class_embeds == 11
    assert pipe.config.null_class_label == 10 and pipe.num_classes == 10 and len(pipe.config.class_names) == 10
    pipe.set_progress_bar_config(disable=True)
    out_images = pipe(torch.rand(2, 1, 14, 14), num_inference_steps=2, class_labels=[3, 7], guidance_scale=2.0,
                      output_type="np")  # fmt: skip
    assert out_images.images.shape == (2, 28, 28, 1) and out_images.evaluations["unet"] == 4
    _, body = read_model_card(out)
    assert "UNet2DConditionModel" in body and "label dropout 0.2" in body and "guidance_scale=3" in body


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--low_resolution", "28"], "--low_resolution must lie in \\[1, --resolution - 1\\]"),
        (["--max_augmentation_level", "1.5"], "--max_augmentation_level must lie in \\[0, 1\\]"),
        (["--max_augmentation_level", "nan"], "--max_augmentation_level must lie in \\[0, 1\\]"),
        (["--augmentation_level", "-0.1"], "--augmentation_level must lie in \\[0, 1\\]"),
        (["--class_conditional", "--label_dropout", "1"], "--label_dropout must lie in \\[0, 1\\)"),
        (["--model_config", "huge"], "--model_config must be one of the presets"),
    ],
)
def test_bad_flags_are_refused_before_training(tmp_path, extra, message):
    result = run_script(SCRIPT, *TINY, "--max_train_steps", "2", *extra, "--output_dir", tmp_path / "run", check=False)
    assert result.returncode != 0 and re.search(message, result.stderr), result.stderr[-500:]
    assert not (tmp_path / "run" / "checkpoint-1").exists()

