"""Imagen's text cascade (issue 26): a text base, then the super-resolution stage; against the two stages run by
hand, save/load without the frozen encoder's weights, and bad input refused before any network runs. Tiny random
UNets on the real MiniLM encoder; the training of a 14x14 text base is in test_train_text_to_image."""

import pytest
import torch

from guided_diffusers.pipelines import TextCascadePipeline, TextToImagePipeline, load_pipeline
from guided_diffusers.pipelines.noise_augmentation import upsample
from guided_diffusers.pipelines.text_encoding import load_text_encoder
from guided_diffusers.schedulers import GuidedDDIMScheduler
from guided_diffusers.training.model_configs import (
    build_text_unet, build_unet, super_resolution_unet_config, text_unet_config,
)  # fmt: skip

LOW, HIGH = 8, 16


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder()


def text_cascade(encoder, stage=None):
    tokenizer, text_encoder = encoder
    torch.manual_seed(0)
    base = build_text_unet(text_unet_config("tiny", LOW, LOW, 1, 384)).eval()
    stage = build_unet(super_resolution_unet_config("tiny", HIGH, 1)).eval() if stage is None else stage
    schedule = GuidedDDIMScheduler(num_train_timesteps=100)
    pipe = TextCascadePipeline(tokenizer, text_encoder, base, schedule, stage,
                               GuidedDDIMScheduler.from_config(schedule.config))  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_calls(module):
    calls = []
    module.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_the_text_cascade_is_its_text_base_then_its_super_resolution_stage(encoder):
    pipe = text_cascade(encoder)
    prompts = ["a handwritten 3", "a seven"]
    out = pipe(prompts, guidance_scale=2.0, num_inference_steps=3, augmentation_level=0.1, super_resolution_steps=2,
               generator=torch.Generator().manual_seed(3), output_type="pt")  # fmt: skip
    assert out.images.shape == (2, 1, HIGH, HIGH) and out.low_resolution_images.shape == (2, 1, LOW, LOW)
    assert out.evaluations["unet"] == 6 and out.evaluations["super_resolution_unet"] == 2  # CFG: 2 per base step
    generator = torch.Generator().manual_seed(3)  # one generator: the base's noise first, then the stage's
    base = TextToImagePipeline(*encoder, pipe.unet, pipe.scheduler)
    base.set_progress_bar_config(disable=True)
    low = base(prompts, guidance_scale=2.0, num_inference_steps=3, generator=generator, output_type="pt").images
    torch.testing.assert_close(out.low_resolution_images, low)
    torch.testing.assert_close(out.upsampled_images, upsample(low * 2 - 1, HIGH).div(2).add(0.5).clamp(0, 1))
    stage = pipe.super_resolution(low, augmentation_level=0.1, num_inference_steps=2, generator=generator,
                                  output_type="pt").images  # fmt: skip
    torch.testing.assert_close(out.images, stage)


def test_the_prompt_steers_the_base_and_the_callback_sees_both_stages(encoder):
    pipe, seen = text_cascade(encoder), []
    kwargs = dict(num_inference_steps=2, super_resolution_steps=3, output_type="pt")
    first = pipe("a 1", generator=torch.Generator().manual_seed(0),
                 callback_on_step_end=lambda stage, i, t, tensors: seen.append((type(stage).__name__, i)), **kwargs)
    other = pipe("a 9", generator=torch.Generator().manual_seed(0), **kwargs)
    assert not torch.equal(first.low_resolution_images, other.low_resolution_images)
    assert seen == [("TextToImagePipeline", 0), ("TextToImagePipeline", 1), ("SuperResolutionPipeline", 0),
                    ("SuperResolutionPipeline", 1), ("SuperResolutionPipeline", 2)]  # fmt: skip


def test_the_text_cascade_saves_without_the_encoder_and_loads_it_by_name(encoder, tmp_path):
    pipe = text_cascade(encoder)
    pipe.save_pretrained(tmp_path)
    for name in ("unet", "scheduler", "super_resolution_unet", "super_resolution_scheduler"):
        assert (tmp_path / name).is_dir(), name
    assert not (tmp_path / "text_encoder").exists() and not (tmp_path / "tokenizer").exists()
    loaded = load_pipeline(str(tmp_path))
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded, TextCascadePipeline) and not loaded.text_encoder.training
    kwargs = dict(guidance_scale=3.0, num_inference_steps=2, super_resolution_steps=2, output_type="pt")
    first = pipe("a 4", generator=torch.Generator().manual_seed(0), **kwargs).images
    again = loaded("a 4", generator=torch.Generator().manual_seed(0), **kwargs).images
    torch.testing.assert_close(again, first, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arguments, message", [
    (dict(prompt=""), "`prompt` must be a non-empty string"),
    (dict(augmentation_level=1.5), "`augmentation_level` must lie in \\[0, 1\\]"),
    (dict(augmentation_level=float("nan")), "`augmentation_level`"),
    (dict(super_resolution_steps=0), "`super_resolution_steps` must lie in \\[1, inf\\]"),
    (dict(super_resolution_thresholding="hard"), "`super_resolution_thresholding` must be one of"),
    (dict(sampler="unipc"), "`sampler` must be one of"),
    (dict(super_resolution_sampler="unipc"), "`super_resolution_sampler` must be one of"),
    (dict(guidance_scale=float("inf")), "guidance_scale"),
    (dict(output_type="jpg"), "`output_type` must be one of"),
    (dict(generator=[torch.Generator()]), "`generator` must be one torch.Generator"),
])  # fmt: skip
def test_bad_input_is_refused_before_any_network_runs(encoder, arguments, message):
    pipe = text_cascade(encoder)
    base_calls, stage_calls = unet_calls(pipe.unet), unet_calls(pipe.super_resolution_unet)
    with pytest.raises(ValueError, match=message):
        pipe(**{"prompt": "a 2", "num_inference_steps": 2, **arguments})
    assert base_calls == [] and stage_calls == []


def test_stages_that_do_not_fit_are_refused(encoder):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="must read the base's images"):
        text_cascade(encoder, stage=build_unet(super_resolution_unet_config("tiny", HIGH, 3)))
    with pytest.raises(ValueError, match="class-conditioned"):
        text_cascade(encoder, stage=build_unet(super_resolution_unet_config("tiny", HIGH, 1, num_classes=3)))
    tokenizer, text_encoder = encoder
    wide = build_text_unet(text_unet_config("tiny", LOW, 2 * LOW, 1, 384))
    schedule = GuidedDDIMScheduler(num_train_timesteps=100)
    with pytest.raises(ValueError, match="must read the base's images"):
        TextCascadePipeline(tokenizer, text_encoder, wide, schedule,
                            build_unet(super_resolution_unet_config("tiny", HIGH, 1)), schedule)  # fmt: skip
