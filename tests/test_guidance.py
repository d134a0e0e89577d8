"""Classifier-free and classifier guidance against the papers' equations, on tiny random UNets and on a
classifier whose gradient is known in closed form."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from guided_diffusers.guiders import StepContext, from_scales
from guided_diffusers.models import NoiseAwareClassifier, schedule_of
from guided_diffusers.pipelines.denoising import guided_output
from guided_diffusers.pipelines import GuidedDiffusionPipeline, classifier_gradient, guide_mean, guide_score
from guided_diffusers.pipelines.samplers import with_thresholding
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.schedulers.thresholding import clip_or_threshold
from guided_diffusers.training.model_configs import classifier_config

SIZE, CLASSES = 8, 4


class PrototypeClassifier(torch.nn.Module):
    """log p(y | x) = -||x - c_y||^2 / 2 + const, so grad_x log p(y | x) = c_y - sum_k p(k | x) c_k exactly."""

    def __init__(self):
        super().__init__()
        levels = torch.linspace(-0.9, 0.9, CLASSES)
        self.register_buffer("prototypes", levels.view(-1, 1, 1, 1).expand(CLASSES, 1, SIZE, SIZE).clone())
        self.config = SimpleNamespace(num_classes=CLASSES, sample_size=SIZE, in_channels=1)
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return -((x[:, None] - self.prototypes[None]) ** 2).flatten(2).sum(-1) / 2

    def check_schedule(self, scheduler_config):
        pass

    device = property(lambda self: self.prototypes.device)  # what DiffusionPipeline reads from components
    dtype = property(lambda self: self.prototypes.dtype)

    def closed_form_gradient(self, x, labels):
        p = torch.softmax(self(x, 0), dim=1)
        return self.prototypes[labels] - torch.einsum("bk,kchw->bchw", p, self.prototypes)


def tiny_unet(num_class_embeds=CLASSES + 1, seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    ).eval()  # fmt: skip


def pipeline(scheduler=None, classifier=None, null_class_label=CLASSES, **unet_kwargs):
    pipe = GuidedDiffusionPipeline(tiny_unet(**unet_kwargs), scheduler or GuidedDDPMScheduler(num_train_timesteps=100),
                                   classifier=classifier, null_class_label=null_class_label)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    kwargs = {"batch_size": 4, "num_inference_steps": 5, "output_type": "pt", **kwargs}
    return pipe(generator=torch.Generator().manual_seed(0), **kwargs).images


LABELS = torch.tensor([0, 1, 2, 3])


# ---------------------------------------------------------------------------------------- equations
def test_classifier_gradient_matches_the_closed_form():
    classifier = PrototypeClassifier()
    x = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 0.5
    torch.testing.assert_close(classifier_gradient(classifier, x, 0, LABELS), classifier.closed_form_gradient(x, LABELS))


def test_a_small_step_along_the_gradient_raises_log_p():
    classifier = PrototypeClassifier()
    x = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    log_p = lambda x: torch.log_softmax(classifier(x, 0), 1).gather(1, LABELS[:, None]).squeeze(1)  # noqa: E731
    g = classifier_gradient(classifier, x, 0, LABELS)
    assert (log_p(x + 1e-3 * g) > log_p(x)).all()


def test_mean_shift_and_score_forms_agree_to_first_order():
    """ADM Algorithm 1 shifts the DDPM mean by s Sigma g; Algorithm 2 replaces eps by eps - s sqrt(1 - abar) g.
    On adjacent timesteps of a 1000-step chain (beta ~ 0.01) the two moves agree up to O(beta)."""
    classifier, scale, t = PrototypeClassifier(), 2.0, 500
    ddpm, ddim = GuidedDDPMScheduler(clip_sample=False), GuidedDDIMScheduler(clip_sample=False)
    ddim.set_timesteps(1000)
    x_t = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    noise = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    g = classifier_gradient(classifier, x_t, t, LABELS)
    variance = ddpm.noise_std(t) ** 2
    unguided = ddpm.step(eps, t, x_t, variance_noise=noise).prev_sample
    mean_shift = guide_mean(unguided, variance, g, scale) - unguided
    torch.testing.assert_close(mean_shift, scale * variance * g)
    alpha_prod = ddim.alphas_cumprod[t].item()
    guided_eps = guide_score(eps, x_t, alpha_prod, g, scale, "epsilon")
    score_shift = (ddim.step(guided_eps, t, x_t, eta=1.0, variance_noise=noise).prev_sample
                   - ddim.step(eps, t, x_t, eta=1.0, variance_noise=noise).prev_sample)  # fmt: skip
    torch.testing.assert_close(score_shift, mean_shift, rtol=0.03, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_score_form_is_the_same_eps_correction_in_every_parameterisation(prediction_type):
    from guided_diffusers.schedulers import model_output_from, x0_and_eps

    generator = torch.Generator().manual_seed(6)
    x_t, x0, eps = (torch.randn(2, 1, 4, 4, generator=generator) for _ in range(3))
    g, alpha_prod = torch.randn(2, 1, 4, 4, generator=generator), 0.3
    output = model_output_from(x0, eps, alpha_prod, prediction_type)
    _, guided_eps = x0_and_eps(guide_score(output, x_t, alpha_prod, g, 1.5, prediction_type), x_t, alpha_prod,
                               prediction_type)  # fmt: skip
    _, plain_eps = x0_and_eps(output, x_t, alpha_prod, prediction_type)
    torch.testing.assert_close(guided_eps, plain_eps - 1.5 * (1 - alpha_prod) ** 0.5 * g, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- the pipeline
def test_guidance_scale_one_is_the_conditional_model_alone():
    pipe = pipeline()
    images = sample(pipe, class_labels=LABELS, guidance_scale=1.0, output_type="pt")
    scheduler, generator = pipe.scheduler, torch.Generator().manual_seed(0)
    latents = randn_tensor((4, 1, SIZE, SIZE), generator=generator)
    scheduler.set_timesteps(5)
    for t in scheduler.timesteps:
        latents = scheduler.step(pipe.unet(latents, t, class_labels=LABELS).sample, t, latents, generator=generator).prev_sample
    assert torch.equal(images, (latents / 2 + 0.5).clamp(0, 1))


def test_a_class_conditional_unet_without_null_class_samples_its_classes():
    pipe = pipeline(null_class_label=None, num_class_embeds=CLASSES)
    assert pipe.num_classes == CLASSES
    assert sample(pipe, class_labels=LABELS).shape == (4, 1, SIZE, SIZE)


def test_float_class_weights_mix_the_class_embeddings():
    pipe = pipeline()
    one_hot = torch.nn.functional.one_hot(LABELS, CLASSES).float()
    # one-hot weights are the classes themselves, with and without CFG
    for scale in (1.0, 3.0):
        torch.testing.assert_close(sample(pipe, class_labels=one_hot, guidance_scale=scale),
                                   sample(pipe, class_labels=LABELS, guidance_scale=scale))  # fmt: skip
    halfway = sample(pipe, class_labels=torch.full((1, CLASSES), 1 / CLASSES), guidance_scale=2.0)
    assert torch.isfinite(halfway).all() and halfway.shape == (4, 1, SIZE, SIZE)


def test_outputs_are_ordinary_tensors_and_callbacks_may_edit_latents_in_place():
    """Sampling runs under inference_mode; nothing of it must leak to callers."""
    pipe = pipeline()

    def halve_in_place(pipe, i, t, tensors):
        tensors["latents"].mul_(0.5)

    out = pipe(batch_size=2, class_labels=[0, 1], num_inference_steps=3, output_type="pt", return_trajectory=True,
               callback_on_step_end=halve_in_place)  # fmt: skip
    for tensor in (out.images, out.trajectory[0]["latents"], out.trajectory[0]["pred_original_sample"]):
        assert not tensor.is_inference()
    out.images.add_(1)  # in place, outside inference mode
    assert out.images.clone().requires_grad_(True).sum().requires_grad


def test_classifier_scale_zero_is_no_guidance_bit_for_bit():
    with_classifier = sample(pipeline(classifier=PrototypeClassifier()), class_labels=LABELS, guidance_scale=3.0)
    without = sample(pipeline(), class_labels=LABELS, guidance_scale=3.0)
    assert torch.equal(with_classifier, without)


def test_the_cfg_guided_output_is_the_formula_in_one_batched_call():
    pipe = pipeline()
    x, t = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(7)), torch.tensor(50)
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    _, conditioning = pipe.check_inputs(4, LABELS, from_scales(3.0), "pt")
    context = lambda: StepContext(0, 1, t, pipe.scheduler, x)  # noqa: E731
    guided = guided_output(from_scales(3.0), conditioning, context())
    assert calls == [8]  # both halves in one call
    cond = pipe.unet(x, t, class_labels=LABELS).sample
    uncond = pipe.unet(x, t, class_labels=torch.full((4,), CLASSES)).sample
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=1e-5)
    calls.clear()
    assert torch.equal(guided_output(from_scales(0.0), conditioning, context()), uncond) and calls == [4]


def test_classifier_guidance_costs_one_classifier_call_and_no_extra_unet_call():
    classifier = PrototypeClassifier()
    pipe = pipeline(classifier=classifier)
    unet_calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: unet_calls.append(1))
    sample(pipe, class_labels=LABELS, guidance_scale=3.0, classifier_scale=1.0, num_inference_steps=6)
    assert len(unet_calls) == 6 and classifier.calls == 6


def target_log_prob(classifier, images_01):
    x = images_01 * 2 - 1
    return torch.log_softmax(classifier(x, 0), 1).gather(1, LABELS[:, None]).mean().item()


@pytest.mark.parametrize(
    "scheduler",
    [GuidedDDPMScheduler(num_train_timesteps=100), GuidedDDIMScheduler(num_train_timesteps=100),
     DDIMScheduler(num_train_timesteps=100), DPMSolverMultistepScheduler(num_train_timesteps=100),
     EulerDiscreteScheduler(num_train_timesteps=100)],
    ids=lambda s: type(s).__name__,
)  # fmt: skip
def test_classifier_guidance_moves_samples_towards_the_target_class_with_any_scheduler(scheduler):
    classifier = PrototypeClassifier()
    pipe = pipeline(scheduler, classifier, null_class_label=None, num_class_embeds=None)  # unconditional UNet
    plain = sample(pipe, num_inference_steps=10)
    guided = sample(pipe, class_labels=LABELS, classifier_scale=4.0, num_inference_steps=10)
    assert torch.isfinite(guided).all()
    assert target_log_prob(classifier, guided) > target_log_prob(classifier, plain) + 1.0


@pytest.mark.parametrize("scheduler_class", [GuidedDDPMScheduler, GuidedDDIMScheduler])
def test_huge_cfg_with_dynamic_or_static_thresholding_keeps_x0_in_range(scheduler_class):
    pipe = pipeline(scheduler_class(num_train_timesteps=100, clip_sample=False))
    for mode in ("dynamic", "static", "none"):
        x0_ranges = []
        callback = lambda p, i, t, tensors: x0_ranges.append(tensors["pred_original_sample"].abs().max().item())  # noqa: E731
        images = sample(pipe, class_labels=LABELS, guidance_scale=30.0, thresholding=mode, callback_on_step_end=callback)
        assert torch.isfinite(images).all() and len(x0_ranges) == 5
        if mode == "none":
            assert max(x0_ranges) > 1.0  # what thresholding prevents
        else:
            assert max(x0_ranges) <= 1.0 + 1e-6


@pytest.mark.parametrize("scheduler_class", [GuidedDDPMScheduler, GuidedDDIMScheduler])
def test_dynamic_thresholding_per_call_is_imagens_not_static_clipping(scheduler_class):
    """With diffusers' default cap (sample_max_value = 1) s would be clamped to 1, making "dynamic" identical to
    "static"; a per-call "dynamic" is Imagen's uncapped s = max(1, percentile(|x0|)), so at high guidance the two
    differ, and x0 goes through clip(x0, -s, s) / s with s above 1."""
    pipe = pipeline(scheduler_class(num_train_timesteps=100))
    assert pipe.scheduler.config.sample_max_value == 1.0
    dynamic = sample(pipe, class_labels=LABELS, guidance_scale=30.0, thresholding="dynamic")
    static = sample(pipe, class_labels=LABELS, guidance_scale=30.0, thresholding="static")
    assert (dynamic - static).abs().max() > 1e-3
    scheduler = with_thresholding(pipe.scheduler, "dynamic")
    x0 = torch.linspace(-4, 4, 2 * 100).reshape(2, 1, 10, 10)
    s = torch.quantile(x0.reshape(2, -1).abs(), 0.995, dim=1).reshape(2, 1, 1, 1)
    torch.testing.assert_close(clip_or_threshold(x0, scheduler.config), x0.clamp(-s, s) / s)
    capped = scheduler_class(num_train_timesteps=100, sample_max_value=1.5)  # a cap above 1 is the config's choice
    assert with_thresholding(capped, "dynamic").config.sample_max_value == 1.5


def test_callback_can_replace_latents_and_trajectory_has_every_step():
    pipe = pipeline()
    out = pipe(batch_size=2, num_inference_steps=4, output_type="pt", return_trajectory=True,
               callback_on_step_end=lambda p, i, t, tensors: {"latents": torch.zeros_like(tensors["latents"])})  # fmt: skip
    assert len(out.trajectory) == 4 and torch.equal(out.images, torch.full_like(out.images, 0.5))


def test_n_class_labels_give_n_images_without_a_batch_size_as_dit_does():
    pipe = pipeline()
    run = lambda **kwargs: pipe(num_inference_steps=2, output_type="pt", guidance_scale=2.0,  # noqa: E731
                                generator=torch.Generator().manual_seed(0), **kwargs).images  # fmt: skip
    labels = run(class_labels=[1, 3, 3])
    assert labels.shape[0] == 3
    assert torch.equal(labels, run(class_labels=[1, 3, 3], batch_size=3))  # the same as saying it
    assert run(class_labels=2).shape[0] == 1 and run(class_labels=[2]).shape[0] == 1
    assert run(class_labels=torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0]])).shape[0] == 2  # rows of class weights
    with pytest.raises(ValueError, match="`class_labels` must have 1 or `batch_size`=2 entries; got 3. Leave"):
        run(class_labels=[1, 3, 3], batch_size=2)


# ------------------------------------------------------------------------------------------ bad input
def noise_aware(schedule_scheduler=None, num_classes=CLASSES, size=SIZE):
    scheduler = schedule_scheduler or GuidedDDPMScheduler(num_train_timesteps=100)
    return NoiseAwareClassifier(**classifier_config("tiny", size, 1, num_classes, "mean", schedule_of(scheduler.config)))


@pytest.mark.parametrize(
    "make_pipe,kwargs,message",
    [
        (pipeline, dict(class_labels=[0, 1, 2, 9]), r"`class_labels` must lie in \[0, 3\]"),
        (pipeline, dict(class_labels=[0, 1]), "`class_labels` must have 1 or `batch_size`=4 entries"),
        (pipeline, dict(class_labels=LABELS, guidance_scale=-1.0), "`guidance_scale` must lie in"),
        (pipeline, dict(class_labels=LABELS, classifier_scale=-0.5), "`classifier_scale` must lie in"),
        (pipeline, dict(class_labels=LABELS, classifier_scale=1.0), "`classifier_scale` > 0 needs a `classifier`"),
        (pipeline, dict(guidance_scale=3.0), "needs `class_labels`"),
        (lambda: pipeline(null_class_label=None, num_class_embeds=CLASSES), dict(), "without a null class: pass `class_labels`"),
        (pipeline, dict(class_labels=LABELS, thresholding="soft"), "`thresholding` must be one of"),
        (pipeline, dict(batch_size=0), "`batch_size` must lie in"),
        (pipeline, dict(output_type="jpg"), "`output_type` must be one of"),
        (lambda: pipeline(null_class_label=None, num_class_embeds=CLASSES), dict(class_labels=LABELS, guidance_scale=3.0),
         "needs a UNet with a null class"),
        (lambda: pipeline(classifier=noise_aware(num_classes=7)), dict(class_labels=LABELS, classifier_scale=1.0),
         "`classifier` has 7 classes, the UNet 4"),
        (lambda: pipeline(classifier=noise_aware(size=16)), dict(class_labels=LABELS, classifier_scale=1.0),
         "`classifier` reads 1x16px images"),
        (lambda: pipeline(classifier=noise_aware(GuidedDDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2"))),
         dict(class_labels=LABELS, classifier_scale=1.0), "another noise schedule .*beta_schedule"),
        (lambda: pipeline(EulerDiscreteScheduler(num_train_timesteps=100)), dict(class_labels=LABELS, thresholding="static"),
         "`thresholding`='static' is not supported by EulerDiscreteScheduler"),
    ],
)  # fmt: skip
def test_bad_input_raises_before_sampling(make_pipe, kwargs, message):
    pipe = make_pipe()
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: calls.append(1))
    with pytest.raises(ValueError, match=message):
        sample(pipe, **kwargs)
    assert not calls


def test_null_class_label_must_be_the_last_embedding():
    with pytest.raises(ValueError, match="`null_class_label` must be the last class embedding"):
        GuidedDiffusionPipeline(tiny_unet(), GuidedDDPMScheduler(), null_class_label=0)


def test_classifier_guidance_with_a_real_noise_aware_classifier_under_inference_mode():
    """Every input the classifier's backward may save (x, t, labels) must be an ordinary tensor."""
    from guided_diffusers.models import NoiseAwareClassifier, schedule_of
    from guided_diffusers.training.model_configs import classifier_config

    scheduler = GuidedDDPMScheduler(num_train_timesteps=100)
    for pooling in ("attention", "mean"):
        classifier = NoiseAwareClassifier(**classifier_config("tiny", SIZE, 1, CLASSES, pooling, schedule_of(scheduler.config)))
        pipe = pipeline(scheduler=scheduler, classifier=classifier.eval())
        labels = LABELS.tolist()  # made into a tensor inside inference mode
        assert torch.isfinite(sample(pipe, class_labels=labels, guidance_scale=0.0, classifier_scale=5.0)).all()


def test_static_clipping_reaches_diffusers_dpm_solver_which_has_no_clip_sample():
    """A DDPM config's clip_sample rides along in DPMSolverMultistepScheduler's config but does nothing there; static
    clipping becomes Imagen's rule with s capped at 1, which clips to [-1, 1]."""
    from guided_diffusers.pipelines.samplers import make_scheduler, with_thresholding

    scheduler = with_thresholding(make_scheduler("dpm++", GuidedDDPMScheduler(clip_sample=True).config), "static")
    assert scheduler.config.thresholding and scheduler.config.sample_max_value == 1.0
    x0 = torch.linspace(-3, 3, 64).reshape(1, 1, 8, 8)
    assert torch.equal(scheduler._threshold_sample(x0), x0.clamp(-1, 1))
