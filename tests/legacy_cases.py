"""Fixed-seed outputs of the pipelines as they were before guidance moved into `guiders/` (commit 4951ab6), on tiny
random models: CFG (w = 0, 1, 3), classifier guidance in both forms, CFG + classifier, class weights, diffusers'
schedulers, text-to-image with a negative prompt, a latent model, inversion, reconstruction, interpolation and
SDEdit variations. `tests/test_guiders_unchanged.py` asserts that today's code gives the same tensors.

Recorded once, with the pre-refactor code checked out, by `python tests/legacy_cases.py` (it writes
tests/fixtures/pre_guiders.safetensors). Every case uses the public API only, which the refactor kept.
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines import GuidedDiffusionPipeline, TextToImagePipeline
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler, GuidedDPMSolverMultistepScheduler
from guided_diffusers.training.model_configs import (
    build_text_unet, build_unet, classifier_config, text_unet_config, unet_config, vae_config,
)  # fmt: skip

FIXTURE = Path(__file__).parent / "fixtures" / "pre_guiders.safetensors"
SIZE, CLASSES, STEPS, T = 8, 4, 4, 100
LABELS = torch.tensor([0, 1, 2, 3])


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def unet(num_classes=CLASSES, learned_variance=False, channels=1):
    torch.manual_seed(0)
    return build_unet(unet_config("tiny", SIZE, channels, num_classes, learned_variance)).eval()


def classifier(scheduler):
    torch.manual_seed(1)
    config = classifier_config("tiny", SIZE, 1, CLASSES, "attention", schedule_of(scheduler.config))
    return NoiseAwareClassifier(**config).eval()


def guided(scheduler, num_classes=CLASSES, with_classifier=False, learned_variance=False, vae=None):
    channels = 1 if vae is None else vae.config.latent_channels
    size = SIZE if vae is None else SIZE // 2
    torch.manual_seed(0)
    network = build_unet(unet_config("tiny", size, channels, num_classes, learned_variance)).eval()
    pipe = GuidedDiffusionPipeline(network, scheduler, classifier=classifier(scheduler) if with_classifier else None,
                                   null_class_label=num_classes if num_classes else None, vae=vae)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    return pipe(batch_size=4, num_inference_steps=STEPS, output_type="pt", generator=seeded(), **kwargs).images


def ddpm(**kwargs):
    return GuidedDDPMScheduler(num_train_timesteps=T, **kwargs)


def ddim(**kwargs):
    return GuidedDDIMScheduler(num_train_timesteps=T, **kwargs)


def images(seed=3):
    return torch.rand(2, 1, SIZE, SIZE, generator=seeded(seed))


def replacing_callback(pipe, i, t, tensors):
    return {"latents": tensors["latents"] * 0.9} if i == 1 else None


def pixel_cases():
    yield "cfg_w3_ddim_dynamic", lambda: sample(guided(ddim()), class_labels=LABELS, guidance_scale=3.0, thresholding="dynamic")
    yield "cfg_w0_ddim", lambda: sample(guided(ddim()), class_labels=LABELS, guidance_scale=0.0)
    yield "cfg_w1_ddim", lambda: sample(guided(ddim()), class_labels=LABELS, guidance_scale=1.0)
    yield "null_class_no_labels", lambda: sample(guided(ddim()))
    yield "cfg_w3_ddpm_eta", lambda: sample(guided(ddpm()), class_labels=LABELS, guidance_scale=3.0)
    yield "cfg_w2_dpm2m", lambda: sample(guided(GuidedDPMSolverMultistepScheduler(num_train_timesteps=T)),
                                         class_labels=LABELS, guidance_scale=2.0)  # fmt: skip
    yield "classifier_mean_ddpm", lambda: sample(guided(ddpm(), with_classifier=True), class_labels=LABELS,
                                                 guidance_scale=0.0, classifier_scale=2.0)  # fmt: skip
    # re-recorded in issue 25, on purpose: CFG now guides the prediction channels and keeps the conditional
    # branch's learned variance (GLIDE, DeepFloyd IF) instead of extrapolating the variance too
    yield "classifier_mean_ddpm_learned_range", lambda: sample(
        guided(ddpm(variance_type="learned_range"), with_classifier=True, learned_variance=True),
        class_labels=LABELS, guidance_scale=2.0, classifier_scale=2.0)  # fmt: skip
    yield "classifier_score_ddim", lambda: sample(guided(ddim(), with_classifier=True), class_labels=LABELS,
                                                  classifier_scale=3.0)  # fmt: skip
    yield "classifier_score_ddim_eta", lambda: sample(guided(ddim(), with_classifier=True), class_labels=LABELS,
                                                      classifier_scale=3.0, eta=1.0)  # fmt: skip
    yield "cfg_plus_classifier_ddpm", lambda: sample(guided(ddpm(), with_classifier=True), class_labels=LABELS,
                                                     guidance_scale=3.0, classifier_scale=1.0)  # fmt: skip
    yield "cfg_plus_classifier_dpm2m", lambda: sample(guided(GuidedDPMSolverMultistepScheduler(num_train_timesteps=T),
                                                             with_classifier=True), class_labels=LABELS,
                                                      guidance_scale=3.0, classifier_scale=1.0)  # fmt: skip
    yield "unconditional_unet_classifier_ddim", lambda: sample(guided(ddim(), num_classes=0, with_classifier=True),
                                                               class_labels=LABELS, classifier_scale=2.0)  # fmt: skip
    yield "unconditional_unet", lambda: sample(guided(ddim(), num_classes=0))
    yield "class_weights_w2", lambda: sample(guided(ddim()), guidance_scale=2.0,
                                             class_labels=torch.tensor([[0.5, 0.5, 0.0, 0.0]]))  # fmt: skip
    yield "diffusers_ddim_cfg", lambda: sample(guided(DDIMScheduler(num_train_timesteps=T)), class_labels=LABELS,
                                               guidance_scale=3.0)  # fmt: skip
    yield "diffusers_dpmpp_cfg_classifier", lambda: sample(
        guided(DPMSolverMultistepScheduler(num_train_timesteps=T), with_classifier=True), class_labels=LABELS,
        guidance_scale=3.0, classifier_scale=1.0)  # fmt: skip
    yield "diffusers_euler_cfg_classifier", lambda: sample(
        guided(EulerDiscreteScheduler(num_train_timesteps=T), with_classifier=True), class_labels=LABELS,
        guidance_scale=2.0, classifier_scale=1.0)  # fmt: skip
    yield "callback_replaces_latents", lambda: sample(guided(ddim()), class_labels=LABELS, guidance_scale=3.0,
                                                      callback_on_step_end=replacing_callback)  # fmt: skip
    yield "trajectory_x0_step2", lambda: guided(ddim())(
        batch_size=4, class_labels=LABELS, guidance_scale=3.0, num_inference_steps=STEPS, output_type="pt",
        generator=seeded(), return_trajectory=True).trajectory[2]["pred_original_sample"]  # fmt: skip


def inversion_cases():
    pipe = lambda: guided(ddim(clip_sample=False))  # noqa: E731
    yield "invert_w1", lambda: pipe().invert(images(), num_inference_steps=STEPS).latents
    yield "invert_w2_fixed_point", lambda: pipe().invert(images(), class_labels=[1, 2], num_inference_steps=STEPS,
                                                        guidance_scale=2.0, fixed_point_iterations=2).latents  # fmt: skip
    yield "reconstruct_w2", lambda: pipe().reconstruct(torch.randn(2, 1, SIZE, SIZE, generator=seeded(4)),
                                                      class_labels=[1, 2], num_inference_steps=STEPS, guidance_scale=2.0)  # fmt: skip
    yield "interpolate_labels", lambda: pipe().interpolate(images()[:1], images(5)[:1], num_frames=3, start_label=0,
                                                          end_label=3, num_inference_steps=STEPS, guidance_scale=2.0,
                                                          output_type="pt")  # fmt: skip
    yield "variations_ddim_cfg", lambda: pipe().variations(images(), strength=0.5, class_labels=[1, 2], guidance_scale=3.0,
                                                          num_inference_steps=STEPS, generator=seeded(), output_type="pt")  # fmt: skip
    yield "variations_ddpm_cfg_classifier", lambda: guided(ddpm(), with_classifier=True).variations(
        images(), strength=0.75, class_labels=[1, 2], guidance_scale=2.0, classifier_scale=1.0, num_inference_steps=STEPS,
        generator=seeded(), output_type="pt")  # fmt: skip
    yield "variations_dpm2m", lambda: guided(GuidedDPMSolverMultistepScheduler(num_train_timesteps=T)).variations(
        images(), strength=0.75, class_labels=[1, 2], guidance_scale=2.0, num_inference_steps=STEPS, generator=seeded(),
        thresholding="static", output_type="pt")  # fmt: skip


def tiny_vae():
    torch.manual_seed(2)
    config = vae_config("tiny", SIZE, 1)
    return AutoencoderKL(**config).eval()


def latent_cases():
    yield "latent_cfg_w2", lambda: sample(guided(ddim(clip_sample=False), vae=tiny_vae()), class_labels=LABELS,
                                          guidance_scale=2.0, thresholding="none")  # fmt: skip


def text_pipeline():
    from guided_diffusers.pipelines.text_encoding import load_text_encoder

    tokenizer, encoder = load_text_encoder()
    torch.manual_seed(0)
    network = build_text_unet(text_unet_config("tiny", 8, 16, 1, 384)).eval()
    pipe = TextToImagePipeline(tokenizer, encoder, network, ddim())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_cases():
    prompts = ["a handwritten seven", "a 4 to the left of a 9"]
    run = lambda **kw: text_pipeline()(prompts, num_inference_steps=STEPS, output_type="pt", generator=seeded(), **kw).images  # noqa: E731
    yield "text_w4_negative", lambda: run(guidance_scale=4.0, negative_prompt="a blurry digit")
    yield "text_w4_dynamic", lambda: run(guidance_scale=4.0, thresholding="dynamic")
    yield "text_w1", lambda: run(guidance_scale=1.0)
    yield "text_w0", lambda: run(guidance_scale=0.0)
    yield "text_w3_two_per_prompt", lambda: run(guidance_scale=3.0, num_images_per_prompt=2)


def all_cases():
    for cases in (pixel_cases, inversion_cases, latent_cases, text_cases):
        yield from cases()


def machine_fingerprint() -> torch.Tensor:
    """One plain UNet forward: if this differs from the recorded one, this machine's kernels round differently
    from the recording machine's, and only agreement to rounding can be expected."""
    return unet()(torch.randn(4, 1, SIZE, SIZE, generator=seeded(9)), 50, class_labels=LABELS).sample


def record():
    from safetensors.torch import save_file

    outputs = {name: case().detach().contiguous() for name, case in all_cases()}
    outputs["machine_fingerprint"] = machine_fingerprint().detach().contiguous()
    FIXTURE.parent.mkdir(exist_ok=True)
    save_file(outputs, FIXTURE)
    print(f"recorded {len(outputs) - 1} cases in {FIXTURE}")


if __name__ == "__main__":
    record()
