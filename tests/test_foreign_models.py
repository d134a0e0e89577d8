"""Other people's diffusers folders (Stable Diffusion, DeepFloyd IF stage I, DDPM, DDIM) in our pipelines (issue 25): with our extras off (plain CFG, the folder's own
scheduler and thresholding) the images equal the stock diffusers pipeline's for the same seed; our guiders then
work on them."""

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMPipeline, DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler, EulerDiscreteScheduler, IFPipeline,
    PNDMScheduler, StableDiffusionPipeline,
)  # fmt: skip

from foreign_models import tiny_ddpm, tiny_deepfloyd_if, tiny_stable_diffusion
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


@pytest.fixture(scope="module")
def if_folder(tmp_path_factory):
    return tiny_deepfloyd_if(tmp_path_factory.mktemp("foreign") / "if")


IF_SETTINGS = {
    "cfg 7": dict(guidance_scale=7.0),
    "w = 1 (conditional only)": dict(guidance_scale=1.0),
    "negative prompt, 2 images per prompt": dict(guidance_scale=7.0, negative_prompt="Blurry", num_images_per_prompt=2),
    "our dynamic thresholding is IF's own": dict(guidance_scale=7.0, ours=dict(thresholding="dynamic")),
}


@pytest.mark.parametrize("scheduler", [None, DPMSolverMultistepScheduler], ids=["folder's DDPM", "DPM-Solver++"])
@pytest.mark.parametrize("setting", list(IF_SETTINGS))
def test_a_deepfloyd_if_folder_samples_what_the_stock_pipeline_samples(if_folder, scheduler, setting):
    """IF's learned variance (the conditional branch's, never extrapolated), dynamic thresholding (p = 0.95,
    s <= 1.5), lower-cased prompts ("A Red Square") and T5's attention mask, all as IFPipeline samples."""
    stock, ours = IFPipeline.from_pretrained(if_folder), load_pipeline(str(if_folder))
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
        if scheduler is not None:
            pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    assert isinstance(ours, TextToImagePipeline) and ours.config.prompt_preprocessing == "deepfloyd-if"
    kwargs = dict(IF_SETTINGS[setting])
    extra = kwargs.pop("ours", {})
    expected = images(stock, "A Red Square", **kwargs)
    got = images(ours, "A Red Square", **kwargs, **extra)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE


def test_our_guiders_run_on_deepfloyd_if_and_change_the_image(if_folder):
    ours = load_pipeline(str(if_folder))
    ours.set_progress_bar_config(disable=True)
    plain = images(ours, "a red square", guidance_scale=7.0)
    assert np.abs(images(ours, "A RED square", guidance_scale=7.0) - plain).max() == 0  # IF lower-cases prompts
    interval = images(ours, "a red square", guider=GuidanceIntervalCFG(guidance_scale=7.0, sigma_lo=0.5, sigma_hi=2.0))
    assert np.abs(interval - plain).max() > 1e-3


def test_thresholding_on_stable_diffusions_latents_warns_that_it_bounds_pixels(sd_folder, caplog):
    ours = load_pipeline(str(sd_folder))
    ours.set_progress_bar_config(disable=True)
    with caplog.at_level("WARNING"):
        images(ours, guidance_scale=7.5, thresholding="dynamic")
    assert "thresholding bounds pixels, not latents" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        images(ours, guidance_scale=7.5, thresholding="none")
    assert "not latents" not in caplog.text


def test_the_diffusers_call_signature_gives_the_stock_pipelines_images(sd_folder):
    """prompt_embeds / negative_prompt_embeds, height / width, a generator per image, and a step-end callback
    that edits the latents, each as StableDiffusionPipeline takes them."""
    stock, ours = pair(sd_folder)
    embeds, negative_embeds = stock.encode_prompt("a red square", "cpu", 1, True, "blurry")
    for kwargs in [dict(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds),
                   dict(prompt_embeds=embeds), dict(prompt_embeds=embeds, negative_prompt="dark")]:  # fmt: skip
        expected = stock(num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np",
                         guidance_scale=7.5, **kwargs).images  # fmt: skip
        got = ours(num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np",
                   guidance_scale=7.5, **kwargs).images  # fmt: skip
        assert np.abs(got - expected).max() <= TOLERANCE
    sized = dict(height=24, width=32, guidance_scale=7.5)  # 7.5: SD's default, ours is 5
    assert images(ours, **sized).shape == (1, 24, 32, 3)
    assert np.abs(images(ours, **sized) - images(stock, **sized)).max() <= TOLERANCE
    generators = dict(num_images_per_prompt=2, guidance_scale=7.5)
    one_each = lambda pipe: pipe("a cat", num_inference_steps=3, output_type="np",  # noqa: E731
                                 generator=[torch.Generator().manual_seed(seed) for seed in (3, 4)], **generators).images
    assert np.abs(one_each(ours) - one_each(stock)).max() <= TOLERANCE

    seen = []

    def shrink(pipe, i, t, tensors):
        seen.append(sorted(tensors))
        return {"latents": tensors["latents"] * 0.9} if i == 1 else {}

    callback = dict(callback_on_step_end=shrink, callback_on_step_end_tensor_inputs=["latents"], guidance_scale=7.5)
    got = images(ours, **callback)
    assert seen == [["latents"]] * 4
    expected = images(stock, **callback)
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="a", prompt_embeds=torch.zeros(1, 77, 32)), "Pass `prompt` or `prompt_embeds`, exactly one"),
    (dict(), "Pass `prompt` or `prompt_embeds`, exactly one"),
    (dict(prompt_embeds=torch.zeros(1, 77, 16)), r"`prompt_embeds` must be a float tensor \(batch, tokens, 32\)"),
    (dict(prompt_embeds=torch.full((1, 77, 32), float("nan"))), "`prompt_embeds` must hold at least one row, all finite"),
    (dict(prompt_embeds=torch.zeros(1, 77, 32), negative_prompt_embeds=torch.zeros(2, 77, 32)),
     "`negative_prompt_embeds` must come with `prompt_embeds` of the same shape"),
    (dict(prompt="a", negative_prompt_embeds=torch.zeros(1, 77, 32)), "must come with `prompt_embeds`"),
    (dict(prompt="a", negative_prompt="b", negative_prompt_embeds=torch.zeros(1, 77, 32)), "not both"),
    (dict(prompt="a", height=18), "`height` must be a multiple of 4"),
    (dict(prompt="a", width=0), "`width` must lie in"),
    (dict(prompt="a", num_images_per_prompt=2, generator=[torch.Generator()]), "one per image \\(2"),
    (dict(prompt="a", callback_on_step_end_tensor_inputs=["noise"]), "`callback_on_step_end_tensor_inputs` must be"),
])  # fmt: skip
def test_bad_call_arguments_are_refused_before_any_network_runs(sd_folder, kwargs, message):
    ours = load_pipeline(str(sd_folder))
    calls = []
    ours.unet.register_forward_hook(lambda *_: calls.append(1))
    ours.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=message):
        ours(num_inference_steps=2, **kwargs)
    assert not calls


TEXT_GUIDERS = ["cfg:guidance_scale=5,guidance_rescale=0.7", "interval:guidance_scale=5,sigma_lo=0.5,sigma_hi=3",
                "scheduled:guidance_scale=5", "apg:guidance_scale=5,eta=0", "apg:guidance_scale=5,eta=0,space=x0",
                "cfg-zero-star:guidance_scale=5", "tcfg:guidance_scale=5", "cfg++:guidance_scale=0.5"]  # fmt: skip


@pytest.mark.parametrize("kind", ["stable diffusion", "deepfloyd if"])
def test_every_sampler_guider_and_thresholding_of_ours_runs_on_the_foreign_models(sd_folder, if_folder, kind):
    from guided_diffusers.guiders import guider_from_spec
    from guided_diffusers.pipelines.samplers import make_scheduler

    ours = load_pipeline(str(sd_folder if kind == "stable diffusion" else if_folder))
    ours.set_progress_bar_config(disable=True)
    config = ours.scheduler.config
    for sampler in ("ddpm", "ddim", "dpm2m"):
        ours.scheduler = make_scheduler(sampler, config)
        for thresholding in ("none", "static", "dynamic"):
            result = images(ours, guidance_scale=5.0, thresholding=thresholding)
            assert np.isfinite(result).all()
    ours.scheduler = make_scheduler("ddim", config)
    conditional = images(ours, guidance_scale=1.0)
    for spec in TEXT_GUIDERS:
        result = images(ours, guider=guider_from_spec(spec))
        assert np.isfinite(result).all() and np.abs(result - conditional).max() > 1e-4, spec


def test_each_documented_cause_of_the_old_difference_still_matters(sd_folder):
    """The README's "Agreement with diffusers" causes, each undone on its own: our own models' 24-token prompts, or
    the padding mask given to the encoder and UNet, moves the Stable Diffusion image away from the stock one."""
    stock, ours = pair(sd_folder)
    expected = images(stock, guidance_scale=7.5)
    parts = dict(tokenizer=ours.tokenizer, text_encoder=ours.text_encoder, unet=ours.unet, scheduler=ours.scheduler,
                 vae=ours.vae)  # fmt: skip
    for undone in (dict(max_length=24, attention_mask="none"), dict(max_length=77, attention_mask="both")):
        old = TextToImagePipeline(**parts, **undone)
        old.set_progress_bar_config(disable=True)
        assert np.abs(images(old, guidance_scale=7.5) - expected).max() > 1e-3, undone
