"""Our schedulers as drop-in diffusers components: inside stock pipelines, through save/load, and converted to and
from diffusers' own schedulers with `from_config`."""

import json

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).eval()  # fmt: skip


def public(config):
    """A config without diffusers' bookkeeping keys (`_class_name`, `_use_default_values`, ...)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def sample_images(pipeline, **kwargs):
    return pipeline(generator=torch.Generator().manual_seed(0), output_type="np", batch_size=2, **kwargs).images


def test_ours_in_stock_ddpm_pipeline_gives_the_same_images_as_diffusers(tiny_unet):
    ours = GuidedDDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    theirs = DDPMScheduler.from_config(ours.config)
    images = sample_images(DDPMPipeline(tiny_unet, ours), num_inference_steps=10)
    reference = sample_images(DDPMPipeline(tiny_unet, theirs), num_inference_steps=10)
    assert images.shape == (2, 8, 8, 1)
    assert abs(images - reference).max() <= 1e-5


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ours_in_stock_ddim_pipeline_gives_the_same_images_as_diffusers(tiny_unet, eta):
    ours = GuidedDDIMScheduler(num_train_timesteps=100, prediction_type="v_prediction", thresholding=True)
    pipeline = DDIMPipeline(tiny_unet, DDIMScheduler.from_config(ours.config))
    reference = sample_images(pipeline, num_inference_steps=10, eta=eta)
    pipeline.scheduler = ours  # DDIMPipeline.__init__ converts any scheduler to DDIMScheduler; swap ours in after
    assert isinstance(pipeline.scheduler, GuidedDDIMScheduler)
    images = sample_images(pipeline, num_inference_steps=10, eta=eta)
    assert abs(images - reference).max() <= 1e-5


@pytest.mark.parametrize("scheduler_class", [GuidedDDPMScheduler, GuidedDDIMScheduler])
def test_save_pretrained_round_trip(tmp_path, scheduler_class):
    scheduler = scheduler_class(
        num_train_timesteps=500, beta_schedule="sigmoid", prediction_type="v_prediction", thresholding=True,
        dynamic_thresholding_ratio=0.9, sample_max_value=2.0, timestep_spacing="trailing",
    )  # fmt: skip
    scheduler.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == scheduler_class.__name__ and saved["beta_schedule"] == "sigmoid"
    loaded = scheduler_class.from_pretrained(tmp_path)
    assert public(loaded.config) == public(scheduler.config)
    assert torch.equal(loaded.alphas_cumprod, scheduler.alphas_cumprod)
    for s in (loaded, scheduler):
        s.set_timesteps(25)
    assert torch.equal(loaded.timesteps, scheduler.timesteps)


def test_pipeline_folder_with_our_scheduler_loads_back_with_it(tmp_path, tiny_unet):
    pipeline = DDPMPipeline(tiny_unet, GuidedDDPMScheduler(num_train_timesteps=100, variance_type="fixed_large"))
    pipeline.save_pretrained(tmp_path)
    loaded = DDPMPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, GuidedDDPMScheduler)
    assert loaded.scheduler.config.variance_type == "fixed_large"
    assert abs(sample_images(loaded, num_inference_steps=5) - sample_images(pipeline, num_inference_steps=5)).max() == 0


@pytest.mark.parametrize(
    "ours_class,theirs_class", [(GuidedDDPMScheduler, DDPMScheduler), (GuidedDDIMScheduler, DDIMScheduler)]
)
def test_from_config_works_in_both_directions(ours_class, theirs_class):
    theirs = theirs_class(
        num_train_timesteps=700, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=1, clip_sample=False,
    )  # fmt: skip
    ours = ours_class.from_config(theirs.config)
    for key in ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type",
                "timestep_spacing", "steps_offset", "clip_sample"):  # fmt: skip
        assert ours.config[key] == theirs.config[key], key
    back = theirs_class.from_config(ours.config)
    assert public(back.config) == public(theirs.config)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)


def test_any_diffusers_scheduler_config_converts_to_ours():
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    for other in (DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2"), EulerDiscreteScheduler()):
        ours = GuidedDDIMScheduler.from_config(other.config)
        assert torch.allclose(ours.alphas_cumprod, other.alphas_cumprod)
        assert {DDIMScheduler, DDPMScheduler, type(other)} <= set(ours.compatibles)
