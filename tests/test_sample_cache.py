"""evaluation/sample_cache.py: a sweep interrupted mid-row resumes with the samples an uninterrupted run would have."""

import pytest
import torch
from diffusers import UNet2DModel

from guided_diffusers.pipelines import GuidedDiffusionPipeline
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.evaluation.sweeps import generate
from guided_diffusers.evaluation.sample_cache import SampleCache, weights_digest

SETTING = dict(sampler="ddim", num_inference_steps=2, guidance_scale=3.0, classifier_scale=0.0, thresholding="static",
               eta=0.0)  # fmt: skip


@pytest.fixture
def pipe():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4,
                       num_class_embeds=11)  # fmt: skip
    pipe = GuidedDiffusionPipeline(unet, GuidedDDPMScheduler(), null_class_label=10)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def counting_calls(pipe):
    """Count the UNet's forward passes: a re-used batch must cost none."""
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls


def cache_of(pipe, root, resume):
    return SampleCache(root, dict(weights=weights_digest(pipe), setting=SETTING, seed=0, batch_size=4), resume)


def test_a_resumed_run_reuses_finished_batches_and_samples_only_the_missing_one(pipe, tmp_path):
    uninterrupted, labels = generate(pipe, SETTING, num_samples=10, batch_size=4, seed=0)
    writer = cache_of(pipe, tmp_path, resume=False)
    assert torch.equal(generate(pipe, SETTING, 10, 4, 0, writer)[0], uninterrupted)  # caching changes nothing
    assert sorted(p.name for p in writer.folder.iterdir()) == [
        "batch-000000-4.safetensors", "batch-000004-4.safetensors", "batch-000008-2.safetensors"]  # fmt: skip
    # no .partial left behind: each batch was written under a temporary name, then renamed
    (writer.folder / "batch-000004-4.safetensors").unlink()  # as if stopped during the second batch
    calls = counting_calls(pipe)
    resumed = cache_of(pipe, tmp_path, resume=True)
    images, resumed_labels = generate(pipe, SETTING, 10, 4, 0, resumed)
    assert torch.equal(images, uninterrupted) and torch.equal(resumed_labels, labels)
    assert len(calls) == 2  # only the missing batch: 2 DDIM steps, CFG's two halves batched into one call each
    assert resumed.seconds > 0  # the re-used batches report the time they took when they were sampled


def test_without_resume_nothing_is_read(pipe, tmp_path):
    generate(pipe, SETTING, 4, 4, 0, cache_of(pipe, tmp_path, resume=False))
    calls = counting_calls(pipe)
    generate(pipe, SETTING, 4, 4, 0, cache_of(pipe, tmp_path, resume=False))
    assert len(calls) == 2  # sampled again, and written again (so a later run can resume)


def test_other_weights_or_settings_never_reuse_a_batch(pipe, tmp_path):
    first = cache_of(pipe, tmp_path, resume=True)
    generate(pipe, SETTING, 4, 4, 0, first)
    with torch.no_grad():
        pipe.unet.conv_out.bias.add_(0.1)
    assert cache_of(pipe, tmp_path, resume=True).folder != first.folder
    other = SampleCache(tmp_path, dict(weights=weights_digest(pipe), setting={**SETTING, "eta": 1.0}, seed=0,
                                       batch_size=4), resume=True)  # fmt: skip
    assert other.folder != first.folder and other.load(0, 4) is None


def test_a_batch_written_under_another_key_is_refused(pipe, tmp_path):
    cache = cache_of(pipe, tmp_path, resume=True)
    generate(pipe, SETTING, 4, 4, 0, cache)
    stranger = SampleCache(tmp_path, dict(weights="0" * 64, setting=SETTING, seed=0, batch_size=4), resume=True)
    stranger.folder = cache.folder  # a file copied by hand into the wrong folder
    with pytest.raises(ValueError, match="another setting or other weights"):
        stranger.load(0, 4)



def test_a_resumed_run_reads_back_the_measures_of_a_finished_row_and_only_under_the_same_judge(pipe, tmp_path):
    generate(pipe, SETTING, 4, 4, 0, cache_of(pipe, tmp_path, resume=False))
    calls = []

    def measure(value):
        return lambda: calls.append(value) or {"fd_own": value}

    assert cache_of(pipe, tmp_path, resume=False).measured("a" * 64, 4, measure(0.5)) == {"fd_own": 0.5}
    assert cache_of(pipe, tmp_path, resume=True).measured("a" * 64, 4, measure(9.0)) == {"fd_own": 0.5}  # read back
    assert cache_of(pipe, tmp_path, resume=True).measured("b" * 64, 4, measure(1.0)) == {"fd_own": 1.0}  # new judge
    assert cache_of(pipe, tmp_path, resume=True).measured("a" * 64, 3, measure(2.0)) == {"fd_own": 2.0}  # other N
    assert cache_of(pipe, tmp_path, resume=False).measured("a" * 64, 4, measure(3.0)) == {"fd_own": 3.0}  # no resume
    assert calls == [0.5, 1.0, 2.0, 3.0]
    assert not list(cache_of(pipe, tmp_path, resume=True).folder.glob("*.partial"))


def test_the_judges_fingerprint_follows_its_classifier_and_real_images():
    from guided_diffusers.evaluation.judge import fingerprint
    from guided_diffusers.models import NoiseAwareClassifier
    from guided_diffusers.training.model_configs import classifier_config

    torch.manual_seed(0)
    classifier = NoiseAwareClassifier(**classifier_config("tiny", 8, 1, 3, "mean"))
    real = torch.rand(5, 1, 8, 8)
    first = fingerprint(classifier, real, use_efficientnet=False)
    assert first == fingerprint(classifier, real.clone(), use_efficientnet=False)
    assert first != fingerprint(classifier, real, use_efficientnet=True)
    assert first != fingerprint(classifier, real[:4], use_efficientnet=False)
    with torch.no_grad():
        next(classifier.parameters()).add_(1e-3)
    assert first != fingerprint(classifier, real, use_efficientnet=False)
