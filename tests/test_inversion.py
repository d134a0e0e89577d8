"""DDIM inversion, reconstruction, interpolation and SDEdit variations: closed forms with an analytic Gaussian
model, behaviour on a tiny UNet trained on real MNIST digits, and bad input."""

import math

import numpy as np
import pytest
import torch
from analytic_models import GaussianDenoiser
from PIL import Image

from guided_diffusers.models import with_mixed_class_embedding
from guided_diffusers.pipelines import GuidedDiffusionPipeline, slerp
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training.data import load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.losses import diffusion_loss
from guided_diffusers.training.model_configs import build_unet, unet_config


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gaussian_pipeline(num_class_embeds=None, scheduler=None):
    model = GaussianDenoiser(num_class_embeds=num_class_embeds)
    null = None if num_class_embeds is None else num_class_embeds - 1
    return quiet(GuidedDiffusionPipeline(model, scheduler or GuidedDDIMScheduler(), null_class_label=null))


def random_images(count=3, seed=0):
    return torch.rand((count, 1, 4, 4), generator=torch.Generator().manual_seed(seed))


def mse_model_range(images, reference):
    """Mean squared error with images in [-1, 1], as the issue states the target."""
    return ((images - reference) * 2).pow(2).mean().item()


# ------------------------------------------------------------------------------------------ closed forms
def test_inversion_approaches_the_closed_form_ode_as_steps_grow():
    pipe, images = gaussian_pipeline(), random_images()
    errors = []
    for steps in (10, 100, 1000):
        latents = pipe.invert(images, num_inference_steps=steps).latents
        scheduler = pipe.inversion_scheduler()
        scheduler.set_timesteps(steps)
        exact = pipe.unet.ode_latents(images * 2 - 1, int(scheduler.timesteps[0]))
        errors.append((latents - exact).abs().max().item())
    # DDIM is Euler's method on the ODE in (x / a, b / a): first order, error ~ 1 / steps
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_fixed_point_inversion_is_exact_with_and_without_guidance(guidance_scale):
    pipe, images, labels = gaussian_pipeline(num_class_embeds=3), random_images(), [0, 1, 0]
    naive = pipe.invert(images, labels, num_inference_steps=10, guidance_scale=guidance_scale).latents
    exact = pipe.invert(images, labels, num_inference_steps=10, guidance_scale=guidance_scale,
                        fixed_point_iterations=30).latents  # fmt: skip
    rebuilt = pipe.reconstruct(exact, labels, num_inference_steps=10, guidance_scale=guidance_scale)
    torch.testing.assert_close(rebuilt, images, atol=1e-5, rtol=0)
    naive_rebuilt = pipe.reconstruct(naive, labels, num_inference_steps=10, guidance_scale=guidance_scale)
    assert (naive_rebuilt - images).abs().max() > 0.1  # 10 steps without fixed points: far from exact


def test_trajectory_runs_from_the_images_to_the_latents():
    pipe, images = gaussian_pipeline(), random_images()
    out = pipe.invert(images, num_inference_steps=5, return_trajectory=True)
    assert len(out.trajectory) == 6
    torch.testing.assert_close(out.trajectory[0], images * 2 - 1)
    torch.testing.assert_close(out.trajectory[-1], out.latents)
    assert not out.latents.is_inference() and not out.trajectory[1].is_inference()  # usable like any tensor


def test_inversion_ignores_the_pipeline_schedulers_clipping_and_kind():
    # a DDPM pipeline with clipping still inverts with unclipped DDIM on the same noise schedule
    images = random_images()
    ddpm = gaussian_pipeline(scheduler=GuidedDDPMScheduler(clip_sample=True))
    ddim = gaussian_pipeline(scheduler=GuidedDDIMScheduler(clip_sample=False))
    torch.testing.assert_close(ddpm.invert(images, num_inference_steps=20).latents,
                               ddim.invert(images, num_inference_steps=20).latents)  # fmt: skip
    assert ddpm.scheduler.config.clip_sample  # the pipeline's own scheduler is untouched


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_fixed_point_inversion_is_exact_for_other_prediction_types(prediction_type):
    class Reparameterised(GaussianDenoiser):  # the same exact model, emitting x0 or v
        def forward(self, sample, timestep, class_labels=None, return_dict=True):
            from guided_diffusers.schedulers import model_output_from, x0_and_eps

            eps = super().forward(sample, timestep, class_labels).sample
            alpha_prod = self.alphas_cumprod[int(timestep)].float()
            x0, _ = x0_and_eps(eps, sample, alpha_prod, "epsilon")
            output = model_output_from(x0, eps, alpha_prod, prediction_type)
            return type(super().forward(sample, timestep, class_labels))(sample=output)

    images = random_images()
    pipe = quiet(GuidedDiffusionPipeline(Reparameterised(), GuidedDDIMScheduler(prediction_type=prediction_type)))
    latents = pipe.invert(images, num_inference_steps=10, fixed_point_iterations=30).latents
    torch.testing.assert_close(pipe.reconstruct(latents, num_inference_steps=10), images, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------- slerp
def test_slerp_endpoints_norms_and_angles():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1, 8, 8, generator=generator)
    b = torch.randn(1, 8, 8, generator=generator)
    b = b * a.norm() / b.norm()  # equal norms: the arc keeps them
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert path.shape == (9, 1, 8, 8)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.flatten(1).norm(dim=1), a.norm().expand(9), atol=1e-4, rtol=1e-5)

    def angle(x, y):
        return torch.arccos((x.flatten() @ y.flatten()) / (x.norm() * y.norm())).item()

    total = angle(a, b)
    for index, lam in enumerate(torch.linspace(0, 1, 9).tolist()):  # equal angular steps along the great circle
        assert angle(a, path[index]) == pytest.approx(lam * total, abs=1e-3)
    # a straight line would shrink the norm in the middle; slerp does not
    assert ((a + b) / 2).norm() < 0.9 * path[4].norm()


def test_slerp_of_parallel_vectors_is_the_line():
    a = torch.ones(2, 3)
    torch.testing.assert_close(slerp(a, 3 * a, torch.tensor([0.0, 0.5, 1.0])), torch.stack([a, 2 * a, 3 * a]))


# ------------------------------------------------------------------------------ class-embedding mixing
def test_mixed_class_embedding_is_linear_and_leaves_the_unet_untouched():
    unet = build_unet(unet_config("tiny", 16, 1, num_classes=3))
    view = with_mixed_class_embedding(unet)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor(10)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2]), 4).float()
    with torch.no_grad():
        torch.testing.assert_close(view(x, t, class_labels=one_hot).sample, unet(x, t, class_labels=torch.tensor([0, 2])).sample)
        half = torch.tensor([[0.5, 0.5, 0, 0]] * 2)
        embedding = unet.class_embedding.weight
        torch.testing.assert_close(view.class_embedding(half), (embedding[0] + embedding[1]).expand(2, -1) / 2)
    assert isinstance(unet.class_embedding, torch.nn.Embedding)  # the original keeps integer labels
    assert view.conv_in.weight is unet.conv_in.weight  # shared parameters, no copy


# ------------------------------------------------------------------------ a tiny UNet trained on MNIST
@pytest.fixture(scope="module")
def mnist_pipeline():
    """A tiny class-conditional UNet trained for 400 steps on 2,048 real MNIST digits (about 30 s on 2 cores),
    plus 8 held-out test digits and their labels."""
    torch.manual_seed(0)
    train = to_tensors(load_image_dataset("mnist", split="train", max_samples=2048), 16, 1)
    test = to_tensors(load_image_dataset("mnist", split="test", max_samples=8), 16, 1)
    unet = build_unet(unet_config("tiny", 16, 1, num_classes=10))
    scheduler = GuidedDDIMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        index = torch.randint(len(train), (64,), generator=generator)
        x0, labels = to_model_range(train.images[index]), train.labels[index].clone()
        labels[torch.rand(64, generator=generator) < 0.2] = 10  # label dropout: the null class for CFG
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(1000, (64,), generator=generator)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        loss = diffusion_loss(unet(x_t, timesteps, class_labels=labels).sample, x0, noise, x_t, timesteps, scheduler)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unet.eval()
    pipe = quiet(GuidedDiffusionPipeline(unet, scheduler, null_class_label=10))
    return pipe, (test.images.float() / 255), test.labels


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_reconstruction_error_falls_with_steps_on_real_digits(mnist_pipeline, guidance_scale):
    pipe, images, labels = mnist_pipeline
    errors = {}
    for steps in (10, 50, 250):
        latents = pipe.invert(images, labels, num_inference_steps=steps, guidance_scale=guidance_scale).latents
        rebuilt = pipe.reconstruct(latents, labels, num_inference_steps=steps, guidance_scale=guidance_scale)
        errors[steps] = mse_model_range(rebuilt, images)
    assert errors[10] > errors[50] > errors[250], errors


def test_fixed_point_iterations_cut_the_error_at_few_steps(mnist_pipeline):
    pipe, images, labels = mnist_pipeline
    latents = pipe.invert(images, labels, num_inference_steps=10).latents
    refined = pipe.invert(images, labels, num_inference_steps=10, fixed_point_iterations=5).latents
    naive_error = mse_model_range(pipe.reconstruct(latents, labels, num_inference_steps=10), images)
    refined_error = mse_model_range(pipe.reconstruct(refined, labels, num_inference_steps=10), images)
    assert refined_error < naive_error / 5, (naive_error, refined_error)


def test_inverted_latents_look_like_gaussian_noise(mnist_pipeline):
    pipe, images, labels = mnist_pipeline
    latents = pipe.invert(images, labels, num_inference_steps=50).latents
    assert abs(latents.mean().item()) < 0.2 and 0.75 < latents.std().item() < 1.25


def test_interpolation_starts_and_ends_at_the_reconstructions(mnist_pipeline):
    pipe, images, labels = mnist_pipeline
    start, end = images[0], images[1]
    frames = pipe.interpolate(start, end, num_frames=5, start_label=int(labels[0]), end_label=int(labels[1]),
                              num_inference_steps=20, output_type="pt")  # fmt: skip
    assert frames.shape == (5, 1, 16, 16)
    pair = torch.stack([start, end])
    latents = pipe.invert(pair, labels[:2], num_inference_steps=20).latents
    rebuilt = pipe.reconstruct(latents, labels[:2], num_inference_steps=20)
    torch.testing.assert_close(frames[[0, -1]], rebuilt, atol=1e-5, rtol=0)
    # a smooth path: neighbouring frames are closer to each other than the two ends are
    steps = (frames[1:] - frames[:-1]).flatten(1).norm(dim=1)
    assert steps.max() < (frames[-1] - frames[0]).norm()


def test_interpolation_accepts_pil_images_without_labels(mnist_pipeline):
    pipe, images, _ = mnist_pipeline
    pil = [Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)) for image in images[:2]]
    frames = pipe.interpolate(pil[0], pil[1], num_frames=3, num_inference_steps=5)
    assert len(frames) == 3 and frames[0].size == (16, 16)


def test_variations_stay_close_at_low_strength_and_move_at_high(mnist_pipeline):
    pipe, images, labels = mnist_pipeline
    distances = {}
    for strength in (0.2, 0.9):
        out = pipe.variations(images, strength=strength, class_labels=labels, num_inference_steps=20,
                              generator=torch.Generator().manual_seed(0), output_type="pt")  # fmt: skip
        assert out.shape == images.shape
        distances[strength] = mse_model_range(out, images)
    assert distances[0.2] < distances[0.9], distances


def test_variations_are_reproducible_and_work_with_every_sampler(mnist_pipeline):
    from guided_diffusers.pipelines import SAMPLERS, make_scheduler

    pipe, images, labels = mnist_pipeline
    for sampler in SAMPLERS:
        view = quiet(GuidedDiffusionPipeline(pipe.unet, make_scheduler(sampler, pipe.scheduler.config), null_class_label=10))
        runs = [view.variations(images[:2], strength=0.5, class_labels=[3, 8], guidance_scale=2.0, num_inference_steps=10,
                                generator=torch.Generator().manual_seed(1), output_type="pt") for _ in range(2)]  # fmt: skip
        torch.testing.assert_close(runs[0], runs[1])
        assert torch.isfinite(runs[0]).all()


# -------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(2, 3, 4, 4), "1x4x4"),  # channels
        (torch.rand(2, 1, 8, 8), "1x4x4"),  # size
        (torch.rand(2, 1, 4, 4) * 2 - 1, r"\[0, 1\]"),  # model range instead of [0, 1]
        ("image.png", "PIL images"),
    ],
)
def test_images_that_do_not_fit_the_model_are_refused(images, message):
    pipe = gaussian_pipeline()
    with pytest.raises(ValueError, match=message):
        pipe.invert(images)
    with pytest.raises(ValueError, match=message):
        pipe.variations(images, strength=0.5)


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.5, math.nan])
def test_strength_outside_zero_one_is_refused(strength):
    with pytest.raises(ValueError, match="strength"):
        gaussian_pipeline().variations(random_images(), strength=strength)


def test_strength_too_small_for_the_step_count_is_refused():
    with pytest.raises(ValueError, match="leaves no step"):
        gaussian_pipeline().variations(random_images(), strength=0.05, num_inference_steps=10)


def test_other_bad_arguments_are_refused():
    pipe, images = gaussian_pipeline(num_class_embeds=3), random_images(2)
    with pytest.raises(ValueError, match="fixed_point_iterations"):
        pipe.invert(images, fixed_point_iterations=-1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe.invert(images, num_inference_steps=0)
    with pytest.raises(ValueError, match="num_frames"):
        pipe.interpolate(images[0], images[1], num_frames=1)
    with pytest.raises(ValueError, match="start_label"):
        pipe.interpolate(images[0], images[1], start_label=0)
    with pytest.raises(ValueError, match="one image each"):
        pipe.interpolate(images, images[1])
    with pytest.raises(ValueError, match="class weights"):
        pipe.reconstruct(torch.randn(2, 1, 4, 4), class_labels=torch.ones(2, 5))
    with pytest.raises(ValueError, match="non-negative"):
        pipe.reconstruct(torch.randn(2, 1, 4, 4), class_labels=-torch.ones(2, 2))
