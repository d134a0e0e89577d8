"""Universal guidance (Bansal et al. 2023) with a clean-image classifier: the gradient through x0_hat(x_t) against
its closed form on a linear denoiser, the guided pipeline against the update written out with autograd, its counted
cost, the `clean_classifier` component saved and loaded, and bad input before any network call."""

import pytest
import torch
from diffusers import DDIMScheduler

from test_guiders import LABELS, SIZE, STEPS, final_latents, reference_ddim
from test_guidance import tiny_unet

from guided_diffusers.guiders import ClassifierFreeGuidance, CombinedGuidance, UniversalClassifierGuidance
from guided_diffusers.guiders import clean_classifier_gradient
from guided_diffusers.models import NoiseAwareClassifier
from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.training.model_configs import classifier_config

CLASSES = 4


def clean_classifier(num_classes=CLASSES, size=SIZE, seed=5):
    torch.manual_seed(seed)
    return NoiseAwareClassifier(**classifier_config("tiny", size, 1, num_classes, "mean")).eval()


def pipeline(**components):
    pipe = GuidedDiffusionPipeline(tiny_unet(), DDIMScheduler(num_train_timesteps=100, clip_sample=False),
                                   null_class_label=CLASSES, **components)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_gradient_through_a_linear_denoiser_is_the_closed_form():
    """eps(x) = c x gives x0_hat = (1 - sqrt(1 - abar) c) x / sqrt(abar), and with logits W x0:
    grad_x log p(y | x0_hat(x)) = (1 - sqrt(1 - abar) c) / sqrt(abar) W^T (onehot(y) - softmax(W x0_hat))."""
    torch.manual_seed(0)
    weight, c, abar = torch.randn(CLASSES, SIZE * SIZE) * 0.3, 0.4, 0.7
    classifier = lambda x, t: x.flatten(1) @ weight.T  # noqa: E731
    x, labels = torch.randn(3, 1, SIZE, SIZE), torch.tensor([0, 2, 3])
    gradient = clean_classifier_gradient(classifier, lambda z: c * z, x, abar, "epsilon", labels)
    factor = (1 - (1 - abar) ** 0.5 * c) / abar**0.5
    x0 = factor * x.flatten(1)
    expected = factor * (torch.nn.functional.one_hot(labels, CLASSES) - torch.softmax(x0 @ weight.T, -1)) @ weight
    torch.testing.assert_close(gradient.flatten(1), expected, atol=1e-5, rtol=1e-5)


def universal_loop(pipe, scale, unet_labels=LABELS):
    """DDIM with eps' = eps - s sqrt(1 - abar_t) grad_x log p(y | x0_hat(x_t)), the gradient by autograd here, and
    eps the UNet's on `unet_labels`."""

    def guided_eps(x, t, abar):
        with torch.enable_grad():
            z = x.clone().requires_grad_(True)
            eps = pipe.unet(z, t, class_labels=unet_labels).sample
            x0 = (z - (1 - abar).sqrt() * eps) / abar.sqrt()
            logits = pipe.clean_classifier(x0, torch.zeros(4, dtype=torch.long)).logits
            log_p = torch.log_softmax(logits, -1).gather(1, LABELS[:, None]).sum()
            (gradient,) = torch.autograd.grad(log_p, z)
        return eps.detach() - scale * (1 - abar).sqrt() * gradient

    return reference_ddim(pipe, guided_eps)


def test_universal_guidance_is_the_update_written_out_and_counts_its_cost():
    pipe = pipeline(clean_classifier=clean_classifier())
    latents, out = final_latents(pipe, guider=UniversalClassifierGuidance(classifier_scale=30.0), thresholding="none")
    torch.testing.assert_close(latents, universal_loop(pipe, 30.0), atol=1e-5, rtol=1e-5)
    assert (out.evaluations["unet"], out.evaluations["unet_gradient"], out.evaluations["clean_classifier"]) == \
        (STEPS, STEPS, STEPS)  # fmt: skip
    unguided, _ = final_latents(pipe, guidance_scale=1.0, thresholding="none")
    assert (latents - unguided).abs().max() > 1e-3
    zero, out = final_latents(pipe, guider=UniversalClassifierGuidance(classifier_scale=0.0), thresholding="none")
    assert torch.equal(zero, unguided) and "unet_gradient" not in out.evaluations  # scale 0: nothing computed


def test_it_steers_the_unconditional_model_towards_the_labels():
    pipe = pipeline(clean_classifier=clean_classifier())
    guider = UniversalClassifierGuidance(classifier_scale=30.0, prediction="pred_uncond")
    latents, out = final_latents(pipe, guider=guider, thresholding="none")
    torch.testing.assert_close(latents, universal_loop(pipe, 30.0, unet_labels=torch.full((4,), CLASSES)), atol=1e-5,
                               rtol=1e-5)  # fmt: skip
    assert (out.evaluations["unet"], out.evaluations["unet_gradient"]) == (STEPS, STEPS)
    with pytest.raises(ValueError, match="`prediction` must be one of"):
        UniversalClassifierGuidance(prediction="pred_weak")


def test_after_cfg_it_corrects_the_cfg_output():
    pipe = pipeline(clean_classifier=clean_classifier())
    combined = CombinedGuidance([ClassifierFreeGuidance(guidance_scale=2.0), UniversalClassifierGuidance(classifier_scale=10.0)])
    latents, out = final_latents(pipe, guider=combined)
    cfg, _ = final_latents(pipe, guidance_scale=2.0)
    assert out.evaluations["unet"] == 2 * STEPS and out.evaluations["unet_gradient"] == STEPS
    assert (latents - cfg).abs().max() > 1e-3


def test_the_clean_classifier_is_saved_and_loaded_with_the_pipeline(tmp_path):
    pipe = pipeline(clean_classifier=clean_classifier())
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = GuidedDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.clean_classifier, NoiseAwareClassifier)
    for mine, theirs in zip(pipe.clean_classifier.parameters(), loaded.clean_classifier.parameters()):
        assert torch.equal(mine, theirs)
    assert GuidedDiffusionPipeline.from_pretrained(tmp_path / "pipe", clean_classifier=None).clean_classifier is None


@pytest.mark.parametrize(
    "components,kwargs,message",
    [({}, dict(class_labels=LABELS), "needs a `clean_classifier`, a classifier of clean images; this pipeline has none"),
     (dict(clean_classifier=clean_classifier(num_classes=3)), dict(class_labels=LABELS), "`clean_classifier` has 3 classes"),
     (dict(clean_classifier=clean_classifier(size=16)), dict(class_labels=LABELS), "`clean_classifier` reads 1x16px"),
     (dict(clean_classifier=clean_classifier()), dict(class_labels=None), "needs `class_labels`")],
)  # fmt: skip
def test_bad_input_is_refused_before_any_network_call(components, kwargs, message):
    pipe = pipeline(**components)
    calls = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        pipe(batch_size=4, num_inference_steps=STEPS, guider=UniversalClassifierGuidance(classifier_scale=1.0), **kwargs)
    with pytest.raises(ValueError, match="`classifier_scale` must"):
        UniversalClassifierGuidance(classifier_scale=float("nan"))
    assert not calls


def test_a_clean_classifier_enters_the_sweep_cache_key_only_of_settings_that_use_it():
    """Adding a clean classifier to a shipped folder must keep every cached sample of the other settings."""
    from guided_diffusers.evaluation.sweeps import setting_weights

    plain, with_clean = pipeline(), pipeline(clean_classifier=clean_classifier())
    setting = dict(sampler="ddim", num_inference_steps=STEPS, guider="cfg:guidance_scale=2", guidance_scale=None,
                   classifier_scale=0.0, thresholding="none", eta=0.0)  # fmt: skip
    assert setting_weights(plain, setting) == setting_weights(with_clean, setting)
    assert "+clean:" in setting_weights(with_clean, {**setting, "guider": "universal:classifier_scale=3"})
    with pytest.raises(ValueError, match="needs a `clean_classifier`"):
        setting_weights(plain, {**setting, "guider": "universal:classifier_scale=3"})


def test_adm_guidance_of_the_unconditional_model_is_the_shorthand():
    """ClassifierGuidance(prediction="pred_uncond"), the noise-aware guide that universal guidance is measured
    against, is `classifier_scale=s, guidance_scale=0`, with one UNet prediction per step."""
    from test_guiders import LinearClassifier

    from guided_diffusers.guiders import ClassifierGuidance

    pipe = pipeline(classifier=LinearClassifier())
    alone, out = final_latents(pipe, guider=ClassifierGuidance(classifier_scale=5.0, prediction="pred_uncond"))
    shorthand, _ = final_latents(pipe, guidance_scale=0.0, classifier_scale=5.0)
    assert torch.equal(alone, shorthand) and out.evaluations["unet"] == STEPS
