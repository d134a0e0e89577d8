"""Bad input raises ValueError early, naming the argument and what is allowed."""

import pytest
import torch

from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler, dynamic_threshold

BOTH = [GuidedDDPMScheduler, GuidedDDIMScheduler]
X = torch.zeros(2, 3, 4, 4)


@pytest.mark.parametrize("scheduler_class", BOTH)
@pytest.mark.parametrize(
    "argument,value,allowed",
    [
        ("beta_schedule", "cosine", "'squaredcos_cap_v2'"),
        ("prediction_type", "eps", "'v_prediction'"),
        ("timestep_spacing", "uniform", "'trailing'"),
        ("dynamic_thresholding_ratio", 0.0, "(0, 1]"),
        ("dynamic_thresholding_ratio", 1.5, "(0, 1]"),
        ("sample_max_value", 0.5, "[1, inf]"),
        ("clip_sample_range", 0.0, "(0, inf]"),
        ("num_train_timesteps", 0, "positive integer"),
    ],
)
def test_bad_config_values_are_named(scheduler_class, argument, value, allowed):
    with pytest.raises(ValueError, match=rf"`{argument}`.*{__import__('re').escape(allowed)}"):
        scheduler_class(**{argument: value})


def test_unknown_variance_type_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"`variance_type` must be one of .*'learned_range'; got 'small'"):
        GuidedDDPMScheduler(variance_type="small")


def test_trained_betas_of_the_wrong_length():
    with pytest.raises(ValueError, match="`trained_betas`"):
        GuidedDDIMScheduler(num_train_timesteps=10, trained_betas=[0.1] * 9)


@pytest.mark.parametrize("scheduler_class", BOTH)
@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5])
def test_num_inference_steps_out_of_range(scheduler_class, steps):
    with pytest.raises(ValueError, match=r"`num_inference_steps` must be an integer in \[1, num_train_timesteps=1000\]"):
        scheduler_class().set_timesteps(steps)


@pytest.mark.parametrize("scheduler_class", BOTH)
@pytest.mark.parametrize(
    "timesteps,message",
    [([10, 500, 0], "strictly descending"), ([500, 500, 0], "strictly descending"), ([1000, 10], r"\[0, .*999"),
     ([10, -1], r"\[0, .*999"), ([], "non-empty"), ([9.5, 3.0], "integers")],
)  # fmt: skip
def test_bad_custom_timesteps(scheduler_class, timesteps, message):
    with pytest.raises(ValueError, match=rf"`timesteps`.*{message}"):
        scheduler_class().set_timesteps(timesteps=timesteps)


@pytest.mark.parametrize("scheduler_class", BOTH)
def test_exactly_one_of_steps_or_timesteps(scheduler_class):
    with pytest.raises(ValueError, match="exactly one of `num_inference_steps` or `timesteps`"):
        scheduler_class().set_timesteps(10, timesteps=[5, 1])
    with pytest.raises(ValueError, match="exactly one of `num_inference_steps` or `timesteps`"):
        scheduler_class().set_timesteps()


def test_steps_offset_that_leaves_the_schedule():
    with pytest.raises(ValueError, match="`steps_offset`=1"):
        GuidedDDIMScheduler(steps_offset=1).set_timesteps(1000)


def test_ddim_step_before_set_timesteps():
    with pytest.raises(ValueError, match="call `set_timesteps` before `step`"):
        GuidedDDIMScheduler().step(X, 999, X)


@pytest.mark.parametrize("scheduler_class", BOTH)
def test_timestep_not_in_the_schedule(scheduler_class):
    scheduler = scheduler_class()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="`timestep` 901 is not in the schedule"):
        scheduler.step(X, 901, X)


@pytest.mark.parametrize("scheduler_class", BOTH)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 3, 4, 4), (2, 4, 4, 4), (2, 6, 4, 2)])
def test_mismatched_model_output_shape(scheduler_class, shape):
    scheduler = scheduler_class()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"`model_output` has shape .* but `sample` has \(2, 3, 4, 4\)"):
        scheduler.step(torch.zeros(shape), scheduler.timesteps[0], X)


def test_doubled_channels_are_accepted_as_learned_variance():
    scheduler = GuidedDDPMScheduler(variance_type="learned_range")
    scheduler.set_timesteps(10)
    out = scheduler.step(torch.zeros(2, 6, 4, 4), scheduler.timesteps[0], X, generator=torch.Generator())
    assert out.prev_sample.shape == X.shape


def test_learned_variance_without_variance_channels():
    scheduler = GuidedDDPMScheduler(variance_type="learned")
    with pytest.raises(ValueError, match="`variance_type`='learned' needs the network's variance channels"):
        scheduler.step(X, 999, X)


def test_negative_eta():
    scheduler = GuidedDDIMScheduler()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"`eta` must lie in \[0, inf\]"):
        scheduler.step(X, scheduler.timesteps[0], X, eta=-0.1)


@pytest.mark.parametrize("scheduler_class", BOTH)
def test_generator_and_variance_noise_together(scheduler_class):
    scheduler = scheduler_class()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="at most one of `generator` and `variance_noise`"):
        scheduler.step(X, scheduler.timesteps[0], X, generator=torch.Generator(), variance_noise=X)


def test_variance_noise_of_the_wrong_shape():
    scheduler = GuidedDDPMScheduler()
    with pytest.raises(ValueError, match="`variance_noise` must have the shape of `sample`"):
        scheduler.step(X, 999, X, variance_noise=torch.zeros(1, 3, 4, 4))


def test_threshold_function_checks_its_own_arguments():
    with pytest.raises(ValueError, match="`dynamic_thresholding_ratio`"):
        dynamic_threshold(X, ratio=0.0)
    with pytest.raises(ValueError, match="`sample_max_value`"):
        dynamic_threshold(X, max_value=0.9)
