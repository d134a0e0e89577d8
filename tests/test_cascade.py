"""The cascade (issue 26): noise-conditioning augmentation against its closed form, the super-resolution stage's
conditioning plumbing and sampling loop against a loop written out here, the cascade's two stages, save/load, and
bad input refused before any network runs. Tiny random models; the shipped cascade is in test_shipped_models."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from guided_diffusers.pipelines import CascadePipeline, GuidedDiffusionPipeline, SuperResolutionPipeline, load_pipeline
from guided_diffusers.pipelines.noise_augmentation import (
    LEVEL_TO_EMBEDDING,
    area_downsample,
    augment,
    augmentation_scales,
    level_timestep_condition,
    upsample,
)
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from guided_diffusers.training.data import fit_image
from guided_diffusers.training.model_configs import build_unet, super_resolution_unet_config, unet_config

LOW, HIGH = 8, 16


def tiny_stages(seed=0):
    torch.manual_seed(seed)
    base = build_unet(unet_config("tiny", LOW, 1, num_classes=3)).eval()
    super_resolution = build_unet(super_resolution_unet_config("tiny", HIGH, 1)).eval()
    return base, super_resolution


def cascade(**kwargs):
    base, super_resolution = tiny_stages()
    schedule = GuidedDDPMScheduler(num_train_timesteps=100)
    pipe = CascadePipeline(base, GuidedDDIMScheduler.from_config(schedule.config), super_resolution,
                           GuidedDDIMScheduler.from_config(schedule.config), null_class_label=3,
                           class_names=["a", "b", "c"], **kwargs)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Spy:
    """Records each forward call's inputs of a module."""

    def __init__(self, module):
        self.calls = []
        module.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.calls.append({"sample": args[0].clone(), "timestep": args[1], **{k: None if v is None else v.clone() for k, v in kwargs.items()}})


# ------------------------------------------------------------------------------ noise-conditioning augmentation
def test_augmentation_is_a_variance_preserving_cosine_path():
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    alpha, sigma = augmentation_scales(levels)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(4))
    torch.testing.assert_close(alpha, torch.cos(levels * math.pi / 2))
    x, noise = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    z = augment(x, levels, noise)
    assert torch.equal(z[0], x[0])  # a = 0: the clean image, exactly
    torch.testing.assert_close(z[2], math.sqrt(0.5) * (x[2] + noise[2]))
    torch.testing.assert_close(z[3], noise[3], atol=1e-6, rtol=0)  # a = 1: pure noise


def test_area_downsampling_is_the_block_mean_and_the_base_data_matches_it():
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    block_means = images.reshape(3, 1, 14, 2, 14, 2).mean(dim=(3, 5))
    torch.testing.assert_close(area_downsample(images, 14), block_means)
    # the base model's training data (--resize_filter area, uint8) is the same images to within one uint8 level
    # (PIL's box filter rounds in fixed point)
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    fitted = torch.from_numpy(fit_image(Image.fromarray(pixels), 14, 1, "area")[..., 0].copy()).float()
    exact = area_downsample(torch.from_numpy(pixels).float()[None, None], 14)[0, 0]
    assert (fitted - exact).abs().max() <= 1
    with pytest.raises(ValueError, match="`resize_filter` must be one of bicubic, area"):
        fit_image(Image.fromarray(pixels), 14, 1, "lanczos")


# ------------------------------------------------------------------------------ the super-resolution stage
def test_the_stage_feeds_x_t_beside_the_augmented_upsampled_image_and_the_level():
    pipe = cascade().super_resolution
    spy = Spy(pipe.unet)
    low = torch.rand(2, 1, LOW, LOW)
    pipe(low, augmentation_level=0.3, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert len(spy.calls) == 3
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(2, 1, HIGH, HIGH, generator=generator)
    noise = torch.randn(2, 1, HIGH, HIGH, generator=generator)
    condition = augment(upsample(low * 2 - 1, HIGH), torch.full((2,), 0.3), noise)
    for call in spy.calls:
        assert call["sample"].shape == (2, 2, HIGH, HIGH)
        torch.testing.assert_close(call["sample"][:, 1:], condition)
        torch.testing.assert_close(call["class_labels"], torch.full((2,), 0.3 * LEVEL_TO_EMBEDDING))
    torch.testing.assert_close(spy.calls[0]["sample"][:, :1], x_T)


def test_level_zero_conditions_on_the_clean_image_as_a_loop_written_out():
    pipe = cascade().super_resolution
    low = torch.rand(2, 1, LOW, LOW)
    images = pipe(low, augmentation_level=0.0, num_inference_steps=4, generator=torch.Generator().manual_seed(1),
                  output_type="pt").images  # fmt: skip
    scheduler = GuidedDDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(4)
    x = torch.randn(2, 1, HIGH, HIGH, generator=torch.Generator().manual_seed(1))
    clean = upsample(low * 2 - 1, HIGH)  # no noise at all
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = pipe.unet(torch.cat([x, clean], 1), t, class_labels=torch.zeros(2)).sample
            x = scheduler.step(eps, t, x, use_clipped_model_output=True).prev_sample  # as the pipelines step DDIM
    torch.testing.assert_close(images, (x / 2 + 0.5).clamp(0, 1))


def test_the_augmentation_level_changes_the_result():
    pipe = cascade().super_resolution
    low = torch.rand(1, 1, LOW, LOW)
    outputs = [pipe(low, augmentation_level=level, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    output_type="pt").images for level in (0.0, 0.5)]  # fmt: skip
    assert not torch.allclose(*outputs)


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.rand(1, 1, HIGH, HIGH), "must be 1x8x8"),  # the stage's output size, not its input
        (torch.rand(1, 3, LOW, LOW), "must be 1x8x8"),  # RGB for a grayscale stage
        (np.random.rand(1, LOW, LOW, 3).astype(np.float32), "must be 1x8x8"),
        (torch.full((1, 1, LOW, LOW), float("nan")), "finite values in \\[0, 1\\]"),
        (torch.rand(1, 1, LOW, LOW) * 2 - 1, "finite values in \\[0, 1\\]"),  # [-1, 1], the model's range
        ("digit.png", "must be PIL images"),
    ],
)
def test_a_bad_user_image_is_refused_before_any_network_call(image, message):
    pipe = cascade().super_resolution
    spy = Spy(pipe.unet)
    with pytest.raises(ValueError, match=message):
        pipe(image, num_inference_steps=2)
    assert spy.calls == []


def test_a_pil_image_of_the_low_resolution_is_super_resolved():
    pipe = cascade().super_resolution
    images = pipe(Image.new("L", (LOW, LOW), 128), num_inference_steps=2, output_type="pil").images
    assert len(images) == 1 and images[0].size == (HIGH, HIGH)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"augmentation_level": 1.5}, "`augmentation_level` must lie in \\[0, 1\\]"),
        ({"augmentation_level": float("nan")}, "`augmentation_level` must be a finite number"),
        ({"augmentation_level": "0.2"}, "`augmentation_level` must be a number"),
        ({"num_inference_steps": 0}, "`num_inference_steps` must lie in"),
        ({"thresholding": "hard"}, "`thresholding` must be one of"),
    ],
)
def test_bad_stage_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        cascade().super_resolution(torch.rand(1, 1, LOW, LOW), **options)


def test_a_unet_that_is_not_a_super_resolution_stage_is_refused():
    base, _ = tiny_stages()
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        SuperResolutionPipeline(base, GuidedDDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match="`low_resolution` must be an integer in \\[1, 15\\]"):
        SuperResolutionPipeline(tiny_stages()[1], GuidedDDIMScheduler(num_train_timesteps=100), low_resolution=16)


# ------------------------------------------------------------------------------ the cascade
def test_the_cascade_is_its_base_then_its_super_resolution_stage():
    pipe = cascade()
    generator = torch.Generator().manual_seed(3)
    out = pipe(class_labels=[0, 2], guidance_scale=2.0, num_inference_steps=3, augmentation_level=0.1,
               super_resolution_steps=2, generator=generator, output_type="pt")  # fmt: skip
    assert out.images.shape == (2, 1, HIGH, HIGH) and out.low_resolution_images.shape == (2, 1, LOW, LOW)
    assert out.evaluations == {"unet": 6, "unet_calls": 3, "super_resolution_unet": 2}
    generator = torch.Generator().manual_seed(3)  # one generator, drawn by the base first, then by the stage
    base = GuidedDiffusionPipeline(pipe.unet, pipe.scheduler, null_class_label=3)
    base.set_progress_bar_config(disable=True)
    low = base(class_labels=[0, 2], guidance_scale=2.0, num_inference_steps=3, generator=generator, output_type="pt").images
    torch.testing.assert_close(out.low_resolution_images, low)
    torch.testing.assert_close(out.upsampled_images, upsample(low * 2 - 1, HIGH).div(2).add(0.5).clamp(0, 1))
    stage = pipe.super_resolution(low, augmentation_level=0.1, num_inference_steps=2, generator=generator,
                                  output_type="pt").images  # fmt: skip
    torch.testing.assert_close(out.images, stage)


def test_the_stage_sampler_is_chosen_per_call():
    pipe = cascade()
    kwargs = dict(class_labels=[1], num_inference_steps=2, super_resolution_steps=3, output_type="pt")
    heun = pipe(super_resolution_sampler="heun", generator=torch.Generator().manual_seed(0), **kwargs)
    ddim = pipe(generator=torch.Generator().manual_seed(0), **kwargs)
    assert heun.evaluations["super_resolution_unet"] == 5 and ddim.evaluations["super_resolution_unet"] == 3  # 2N - 1
    assert type(pipe.super_resolution_scheduler).__name__ == "GuidedDDIMScheduler"  # the folder's, untouched
    heun_base = pipe(sampler="heun", generator=torch.Generator().manual_seed(0), **kwargs)
    assert heun_base.evaluations["unet"] == 3 and type(pipe.scheduler).__name__ == "GuidedDDIMScheduler"


def test_the_callback_sees_every_step_of_both_stages():
    seen = []
    cascade()(class_labels=[1], num_inference_steps=2, super_resolution_steps=3,
              callback_on_step_end=lambda stage, i, t, tensors: seen.append((type(stage).__name__, i)))  # fmt: skip
    assert seen == [("GuidedDiffusionPipeline", 0), ("GuidedDiffusionPipeline", 1), ("SuperResolutionPipeline", 0),
                    ("SuperResolutionPipeline", 1), ("SuperResolutionPipeline", 2)]  # fmt: skip


def test_the_cascade_saves_and_loads_as_one_folder(tmp_path):
    pipe = cascade()
    pipe.save_pretrained(tmp_path)
    for name in ("unet", "scheduler", "super_resolution_unet", "super_resolution_scheduler"):
        assert (tmp_path / name).is_dir(), name
    loaded = load_pipeline(str(tmp_path))
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded, CascadePipeline) and loaded.config.class_names == ["a", "b", "c"]
    kwargs = dict(class_labels=[1], guidance_scale=3.0, num_inference_steps=2, super_resolution_steps=2, output_type="pt")
    first = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    again = loaded(generator=torch.Generator().manual_seed(0), **kwargs).images
    torch.testing.assert_close(again, first, atol=1e-6, rtol=0)


def test_the_super_resolution_stage_saves_and_loads(tmp_path):
    stage = cascade().super_resolution
    stage.save_pretrained(tmp_path)
    loaded = load_pipeline(str(tmp_path))
    assert isinstance(loaded, SuperResolutionPipeline) and loaded.config.low_resolution == LOW


def test_bad_stage_options_are_refused_before_the_base_runs():
    pipe = cascade()
    spy = Spy(pipe.unet)
    with pytest.raises(ValueError, match="`augmentation_level` must lie in \\[0, 1\\]"):
        pipe(class_labels=[0], augmentation_level=-0.1, num_inference_steps=2)
    with pytest.raises(ValueError, match="`super_resolution_steps` must lie in \\[1, inf\\]"):
        pipe(class_labels=[0], super_resolution_steps=0, num_inference_steps=2)
    with pytest.raises(ValueError, match="`super_resolution_thresholding` must be one of"):
        pipe(class_labels=[0], super_resolution_thresholding="hard", num_inference_steps=2)
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        pipe(class_labels=[0], sampler="unipc", num_inference_steps=2)
    with pytest.raises(ValueError, match="`super_resolution_sampler` must be one of"):
        pipe(class_labels=[0], super_resolution_sampler="unipc", num_inference_steps=2)
    with pytest.raises(ValueError, match="`class_labels` must lie in \\[0, 2\\]"):
        pipe(class_labels=[5], num_inference_steps=2)
    assert spy.calls == []


def test_stages_that_do_not_fit_are_refused():
    base, super_resolution = tiny_stages()
    schedule = GuidedDDIMScheduler(num_train_timesteps=100)
    torch.manual_seed(0)
    rgb_stage = build_unet(super_resolution_unet_config("tiny", HIGH, 3))
    with pytest.raises(ValueError, match="must read the base's images"):
        CascadePipeline(base, schedule, rgb_stage, schedule, null_class_label=3)
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        CascadePipeline(base, schedule, base, schedule, null_class_label=3)
    with pytest.raises(ValueError, match="`null_class_label` must be the last class embedding"):
        CascadePipeline(base, schedule, super_resolution, schedule, null_class_label=1)


# ------------------------------------------------------------------------------ a class-conditioned stage
def conditioned_cascade():
    base, _ = tiny_stages()
    torch.manual_seed(1)
    stage = build_unet(super_resolution_unet_config("tiny", HIGH, 1, num_classes=3)).eval()
    schedule = GuidedDDIMScheduler(num_train_timesteps=100)
    pipe = CascadePipeline(base, schedule, stage, GuidedDDIMScheduler.from_config(schedule.config), null_class_label=3,
                           class_names=["a", "b", "c"])  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_class_conditioned_stage_is_told_the_level_through_timestep_cond_and_guided_away_from_its_null_class():
    pipe = conditioned_cascade().super_resolution
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and pipe.num_classes == 3
    spy = Spy(pipe.unet)
    out = pipe(torch.rand(2, 1, LOW, LOW), augmentation_level=0.3, num_inference_steps=3, class_labels=[0, 2],
               guidance_scale=3.0, output_type="pt")  # fmt: skip
    assert out.evaluations == {"unet": 6, "unet_calls": 3}  # CFG: both predictions in one batched call per step
    for call in spy.calls:
        assert call["sample"].shape == (4, 2, HIGH, HIGH) and call.get("encoder_hidden_states") is None
        assert call["class_labels"].tolist() == [3, 3, 0, 2]  # the null class's half first
        torch.testing.assert_close(call["timestep_cond"], level_timestep_condition(torch.full((4,), 0.3), 16))
    # the level's embedding: sin/cos of a * 1000 at the UNet's timestep frequencies (flip_sin_to_cos: cos first)
    frequencies = torch.exp(-math.log(10000) * torch.arange(8) / 8)
    torch.testing.assert_close(level_timestep_condition(torch.tensor([0.3]), 16)[0],
                               torch.cat([torch.cos(300 * frequencies), torch.sin(300 * frequencies)]))  # fmt: skip


def test_a_class_conditioned_stage_at_w_0_is_its_null_class_and_level_zero_a_loop_written_out():
    pipe = conditioned_cascade().super_resolution
    low = torch.rand(2, 1, LOW, LOW)

    def sample(**kwargs):
        return pipe(low, num_inference_steps=3, generator=torch.Generator().manual_seed(4), output_type="pt",
                    **kwargs).images  # fmt: skip

    torch.testing.assert_close(sample(class_labels=[0, 1], guidance_scale=0.0), sample(), atol=1e-6, rtol=0)
    assert not torch.allclose(sample(class_labels=[0, 1]), sample())
    images = sample(class_labels=[0, 1], augmentation_level=0.0)  # w = 1: the class's prediction alone
    scheduler = GuidedDDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(3)
    x = torch.randn(2, 1, HIGH, HIGH, generator=torch.Generator().manual_seed(4))
    clean, level = upsample(low * 2 - 1, HIGH), level_timestep_condition(torch.zeros(2), 16)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = pipe.unet(torch.cat([x, clean], 1), t, None, class_labels=torch.tensor([0, 1]), timestep_cond=level).sample
            x = scheduler.step(eps, t, x, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(images, (x / 2 + 0.5).clamp(0, 1))


def test_the_cascade_tells_a_class_conditioned_stage_the_base_labels_and_saves_it(tmp_path):
    pipe = conditioned_cascade()
    spy = Spy(pipe.super_resolution_unet)
    kwargs = dict(class_labels=[1, 2], num_inference_steps=2, super_resolution_steps=2, output_type="pt")
    out = pipe(super_resolution_guidance_scale=2.0, generator=torch.Generator().manual_seed(0), **kwargs)
    assert out.evaluations["super_resolution_unet"] == 4
    assert all(call["class_labels"].tolist() == [3, 3, 1, 2] for call in spy.calls)
    pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(str(tmp_path))
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.super_resolution_unet).__name__ == "UNet2DConditionModel"
    again = loaded(super_resolution_guidance_scale=2.0, generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(again.images, out.images, atol=1e-6, rtol=0)


def test_stage_guidance_that_cannot_apply_is_refused_before_any_network_runs():
    plain, conditioned = cascade(), conditioned_cascade()
    spies = [Spy(plain.unet), Spy(plain.super_resolution_unet), Spy(conditioned.super_resolution_unet)]
    low = torch.rand(1, 1, LOW, LOW)
    with pytest.raises(ValueError, match="`super_resolution_guidance_scale` != 1 .* not class-conditioned"):
        plain(class_labels=[0], super_resolution_guidance_scale=2.0, num_inference_steps=2)
    with pytest.raises(ValueError, match="`guidance_scale` != 1 .* no labels were given"):
        conditioned.super_resolution(low, guidance_scale=2.0)
    with pytest.raises(ValueError, match="`class_labels` given, but this super-resolution stage is not class-conditioned"):
        plain.super_resolution(low, class_labels=[0])
    with pytest.raises(ValueError, match="`class_labels` must lie in \\[0, 2\\]"):
        conditioned.super_resolution(low, class_labels=[3])  # the null class is not a class to ask for
    assert all(spy.calls == [] for spy in spies)
    base, _ = tiny_stages()
    torch.manual_seed(0)
    four_classes = build_unet(super_resolution_unet_config("tiny", HIGH, 1, num_classes=4))
    with pytest.raises(ValueError, match="must know the base's classes: it has 5 class embeddings, the base 4"):
        CascadePipeline(base, plain.scheduler, four_classes, plain.scheduler, null_class_label=3)
    with pytest.raises(ValueError, match="`null_class_label` must be the UNet's last class embedding \\(3\\)"):
        SuperResolutionPipeline(conditioned.super_resolution_unet, plain.scheduler, null_class_label=0)
