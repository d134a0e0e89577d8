"""Other people's diffusers folders in our pipelines (issue 25): with our extras off (plain CFG, the folder's own
scheduler and thresholding) the images equal the stock diffusers pipeline's for the same seed; our guiders then
work on them."""

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMPipeline, DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler,
    StableDiffusionPipeline,
)  # fmt: skip

from foreign_models import tiny_ddpm, tiny_stable_diffusion
from guided_diffusers.guiders import CFGPlusPlus, ClassifierFreeGuidance, GuidanceIntervalCFG
from guided_diffusers.pipelines import GuidedDiffusionPipeline, TextToImagePipeline, load_pipeline
from guided_diffusers.schedulers import GuidedDPMSolverMultistepScheduler

TOLERANCE = 1e-5  # max abs difference in [0, 1] pixels, float32


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return tiny_stable_diffusion(tmp_path_factory.mktemp("foreign") / "sd")


def pair(folder, scheduler=None):
    """The stock pipeline and ours on the same folder, both with `scheduler`'s class if given."""
    stock, ours = StableDiffusionPipeline.from_pretrained(folder), load_pipeline(str(folder))
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
        if scheduler is not None:
            pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    return stock, ours


def images(pipe, prompt="a red square", **kwargs):
    return pipe(prompt, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np",
                **kwargs).images  # fmt: skip


SETTINGS = {
    "cfg 7.5": dict(guidance_scale=7.5),
    "w = 1 (conditional only)": dict(guidance_scale=1.0),
    "negative prompt": dict(guidance_scale=7.5, negative_prompt="blurry, dark"),
    "2 images per prompt": dict(guidance_scale=7.5, num_images_per_prompt=2),
    "eta 1": dict(guidance_scale=7.5, eta=1.0),
    "two prompts, two negatives": dict(prompt=["a cat", "two dogs on a long road in the rain"],
                                       negative_prompt=["dark", "blurry"], guidance_scale=5.0),
}  # fmt: skip


@pytest.mark.parametrize("scheduler", [None, DPMSolverMultistepScheduler, PNDMScheduler, EulerDiscreteScheduler],
                         ids=["folder's DDIM", "DPM-Solver++", "PNDM", "Euler"])  # fmt: skip
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_stable_diffusion_folder_samples_what_the_stock_pipeline_samples(sd_folder, scheduler, setting):
    stock, ours = pair(sd_folder, scheduler)
    assert isinstance(ours, TextToImagePipeline)
    expected, got = images(stock, **SETTINGS[setting]), images(ours, **SETTINGS[setting])
    assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE


def test_the_folder_is_read_as_stable_diffusion_encodes_prompts(sd_folder):
    ours = TextToImagePipeline.from_pretrained(sd_folder)
    assert ours.config.max_length == 77 and ours.config.attention_mask == "none"  # CLIP: 77 tokens, no mask
    assert isinstance(ours.scheduler, DDIMScheduler)  # the folder's own scheduler, not one of ours


def test_our_guiders_run_on_stable_diffusion_and_change_the_image(sd_folder):
    stock, ours = pair(sd_folder)
    plain = images(ours, guidance_scale=7.5)
    assert np.abs(images(ours, guider=ClassifierFreeGuidance(guidance_scale=7.5)) - plain).max() <= TOLERANCE
    conditional = images(stock, guidance_scale=1.0)
    assert np.abs(images(ours, guider=ClassifierFreeGuidance(guidance_scale=1.0)) - conditional).max() <= TOLERANCE
    interval = images(ours, guider=GuidanceIntervalCFG(guidance_scale=7.5, sigma_lo=0.5, sigma_hi=2.0))
    assert np.abs(interval - plain).max() > 1e-3
    cfg_pp = images(ours, guider=CFGPlusPlus(guidance_scale=0.5), eta=0.0)
    assert np.abs(cfg_pp - plain).max() > 1e-3


def test_a_saved_copy_is_ours_and_still_samples_the_same(sd_folder, tmp_path):
    stock, ours = pair(sd_folder)
    ours.save_pretrained(tmp_path / "ours", include_text_encoder=True)
    again = load_pipeline(str(tmp_path / "ours"))
    again.set_progress_bar_config(disable=True)
    assert again.config.attention_mask == "none" and again.config.max_length == 77
    assert np.abs(images(again, guidance_scale=7.5) - images(stock, guidance_scale=7.5)).max() <= TOLERANCE


def test_an_unsupported_pipeline_folder_is_refused_naming_the_supported_ones(sd_folder, tmp_path):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(sd_folder, other)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match="a KandinskyPipeline folder; supported: .*StableDiffusionPipeline"):
        load_pipeline(str(other))


@pytest.mark.parametrize("stock_class, settings", [
    (DDPMPipeline, [dict(num_inference_steps=100), dict(num_inference_steps=10)]),
    (DDIMPipeline, [dict(num_inference_steps=10), dict(num_inference_steps=10, eta=1.0)]),
])  # fmt: skip
def test_ddpm_and_ddim_folders_sample_what_the_stock_pipelines_sample(tmp_path, stock_class, settings):
    folder = tiny_ddpm(tmp_path / "folder", stock_class)
    stock, ours = stock_class.from_pretrained(folder), load_pipeline(str(folder))
    assert isinstance(ours, GuidedDiffusionPipeline) and ours.config.null_class_label is None
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
    # DDIMPipeline derives eps from the unclipped x0 (its default); ours from the clipped one unless told not to
    same_eps = {"use_clipped_model_output": False} if stock_class is DDIMPipeline else {}
    for setting in settings:
        expected = stock(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="np", **setting).images
        got = ours(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="np", **setting,
                   **same_eps).images  # fmt: skip
        assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE


def test_our_samplers_run_on_a_ddpm_folder(tmp_path):
    ours = load_pipeline(str(tiny_ddpm(tmp_path / "folder")))
    ours.set_progress_bar_config(disable=True)
    ours.scheduler = GuidedDPMSolverMultistepScheduler.from_config(ours.scheduler.config)
    images = ours(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="np")
    assert images.images.shape == (2, 8, 8, 3) and images.evaluations["unet"] == 5
