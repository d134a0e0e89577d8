"""Our schedulers against diffusers' DDPMScheduler / DDIMScheduler as the oracle, over a grid of configs: same
config, same model outputs, same seed -> the same whole trajectory (max abs difference <= 1e-5, float32), including
the noise drawn. Where diffusers departs from the papers, the reference is adjusted as documented in our classes and
the departure itself is tested against the closed form in test_scheduler_closed_form.py."""

import itertools

import pytest
import torch
from conftest import assert_trajectories_close, run_chain
from diffusers import DDIMScheduler, DDPMScheduler

from guided_diffusers.schedulers import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    VARIANCE_TYPES,
    GuidedDDIMScheduler,
    GuidedDDPMScheduler,
)

# (thresholding, clip_sample)
X0_MODES = {"none": (False, False), "static": (False, True), "dynamic": (True, False)}
DDPM_SPACINGS = {"leading": ("leading", 0), "leading+1": ("leading", 1), "trailing": ("trailing", 0),
                 "linspace": ("linspace", 0)}  # fmt: skip


def variance_channels_as_sigma(output):
    """Our `learned` outputs (prediction, log Sigma) as diffusers reads them: (prediction, Sigma)."""
    mean, log_variance = output.chunk(2, dim=1)
    return torch.cat([mean, log_variance.exp()], dim=1)


def x0_mode_config(mode):
    thresholding, clip_sample = X0_MODES[mode]
    return dict(thresholding=thresholding, clip_sample=clip_sample, dynamic_thresholding_ratio=0.9,
                sample_max_value=2.5)  # fmt: skip


@pytest.mark.parametrize(
    "beta_schedule,prediction_type,variance_type,spacing,x0_mode",
    list(itertools.product(BETA_SCHEDULES, PREDICTION_TYPES, VARIANCE_TYPES, DDPM_SPACINGS, X0_MODES)),
)
def test_ddpm_trajectory_matches_diffusers(beta_schedule, prediction_type, variance_type, spacing, x0_mode):
    timestep_spacing, steps_offset = DDPM_SPACINGS[spacing]
    ours = GuidedDDPMScheduler(
        beta_schedule=beta_schedule, prediction_type=prediction_type, variance_type=variance_type,
        timestep_spacing=timestep_spacing, steps_offset=steps_offset, **x0_mode_config(x0_mode),
    )  # fmt: skip
    reference_config = dict(ours.config)
    reference_config.pop("_use_default_values")  # from_config would reset the keys listed there to defaults
    if variance_type == "fixed_large_log":  # diffusers takes sqrt(log beta) (NaN); ours is sqrt(beta)
        reference_config["variance_type"] = "fixed_large"
    # diffusers reads `learned` variance channels as Sigma, ours (improved DDPM) as log Sigma
    output_transform = variance_channels_as_sigma if variance_type == "learned" else None

    theirs = DDPMScheduler.from_config(reference_config)
    ours_chain = run_chain(ours)
    theirs_chain = run_chain(theirs, output_scheduler=ours, output_transform=output_transform)
    # diffusers adds noise on the last step whenever t > 0; ours returns the posterior mean there (Algorithm 2).
    # With fixed_small that noise has std ~1e-10, so only the other variances differ on that one step.
    last_step_differs = theirs.timesteps[-1] > 0 and variance_type not in ("fixed_small", "fixed_small_log")
    assert_trajectories_close(ours_chain, theirs_chain, steps=-1 if last_step_differs else None)


def test_ddpm_full_chain_without_set_timesteps_matches_diffusers():
    ours = GuidedDDPMScheduler(num_train_timesteps=50, beta_end=0.2)
    theirs = DDPMScheduler.from_config(ours.config)
    assert_trajectories_close(run_chain(ours, None), run_chain(theirs, None))


@pytest.mark.parametrize(
    "beta_schedule,prediction_type,spacing,x0_mode,eta,set_alpha_to_one",
    list(
        itertools.product(
            BETA_SCHEDULES, PREDICTION_TYPES, ["leading", "leading+1", "trailing"], X0_MODES, [0.0, 0.5, 1.0],
            [True, False],
        )
    ),
)
def test_ddim_trajectory_matches_diffusers(beta_schedule, prediction_type, spacing, x0_mode, eta, set_alpha_to_one):
    timestep_spacing, steps_offset = DDPM_SPACINGS[spacing]
    ours = GuidedDDIMScheduler(
        beta_schedule=beta_schedule, prediction_type=prediction_type, timestep_spacing=timestep_spacing,
        steps_offset=steps_offset, set_alpha_to_one=set_alpha_to_one, **x0_mode_config(x0_mode),
    )  # fmt: skip
    reference_config = dict(ours.config)
    if beta_schedule == "sigmoid":  # diffusers' DDIM lacks it; hand it the same betas
        reference_config["trained_betas"] = ours.betas.tolist()
        reference_config.pop("_use_default_values")  # else from_config resets trained_betas to its default
    theirs = DDIMScheduler.from_config(reference_config)
    # 10 steps of T = 1000: trailing lands on t - T // n too, so diffusers' previous timestep is right here
    assert_trajectories_close(run_chain(ours, eta=eta), run_chain(theirs, eta=eta))


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddim_use_clipped_model_output_matches_diffusers(prediction_type):
    ours = GuidedDDIMScheduler(prediction_type=prediction_type, thresholding=True)
    theirs = DDIMScheduler.from_config(ours.config)
    kwargs = dict(eta=0.3, use_clipped_model_output=True)
    assert_trajectories_close(run_chain(ours, **kwargs), run_chain(theirs, **kwargs))


@pytest.mark.parametrize("scheduler_class,reference_class", [(GuidedDDPMScheduler, DDPMScheduler),
                                                             (GuidedDDIMScheduler, DDIMScheduler)])  # fmt: skip
@pytest.mark.parametrize("rescale", [False, True])
def test_schedule_constants_equal_diffusers(scheduler_class, reference_class, rescale):
    for beta_schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        ours = scheduler_class(beta_schedule=beta_schedule, rescale_betas_zero_snr=rescale)
        theirs = reference_class.from_config(ours.config)
        assert torch.equal(ours.betas, theirs.betas)
        assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 10, 50, 999, 1000])
def test_timesteps_equal_diffusers(spacing, num_inference_steps):
    ours = GuidedDDIMScheduler(timestep_spacing=spacing)
    theirs = DDIMScheduler.from_config(ours.config)
    ours.set_timesteps(num_inference_steps)
    theirs.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)


def test_add_noise_and_velocity_equal_diffusers():
    ours, theirs = GuidedDDPMScheduler(beta_schedule="squaredcos_cap_v2"), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=generator), torch.randn(4, 3, 8, 8, generator=generator)
    timesteps = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(ours.add_noise(x0, noise, timesteps), theirs.add_noise(x0, noise, timesteps), atol=1e-6)
    assert torch.allclose(ours.get_velocity(x0, noise, timesteps), theirs.get_velocity(x0, noise, timesteps), atol=1e-6)
