"""Our DPM-Solver++(2M) against diffusers' DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)
as the oracle (same config, same model outputs -> the same trajectory), and against the closed-form probability-flow
ODE of Gaussian data, where a second-order solver must beat DDIM at the same steps."""

import itertools

import pytest
import torch
from analytic_models import GaussianDenoiser
from conftest import SHAPE, toy_model_output
from diffusers import DPMSolverMultistepScheduler

from guided_diffusers.pipelines import GuidedDiffusionPipeline, make_scheduler
from guided_diffusers.schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler, GuidedDPMSolverMultistepScheduler

X0_MODES = {"none": {}, "dynamic": dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=2.5)}


def chain(scheduler, steps: int, output_scheduler) -> list[torch.Tensor]:
    """Every prev_sample of a whole solve, with the toy network of conftest (shaped by `output_scheduler`)."""
    scheduler.set_timesteps(steps)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    samples = []
    for i, t in enumerate(scheduler.timesteps):
        sample = scheduler.step(toy_model_output(output_scheduler, sample, int(t), i), t, sample).prev_sample
        samples.append(sample)
    return samples


@pytest.mark.parametrize("beta_schedule,prediction_type,spacing,x0_mode,steps", list(itertools.product(
    ["linear", "scaled_linear", "squaredcos_cap_v2"], ["epsilon", "v_prediction", "sample"],
    ["linspace", "leading", "trailing"], list(X0_MODES), [7, 20])))  # fmt: skip
def test_matches_diffusers_dpm_solver_plus_plus_2m(beta_schedule, prediction_type, spacing, x0_mode, steps):
    config = dict(beta_schedule=beta_schedule, prediction_type=prediction_type, timestep_spacing=spacing, **X0_MODES[x0_mode])
    reference = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **config)
    ours = GuidedDPMSolverMultistepScheduler.from_config(reference.config)
    theirs = chain(reference, steps, ours)
    mine = chain(ours, steps, ours)
    assert torch.equal(ours.timesteps, reference.timesteps)
    for step, (a, b) in enumerate(zip(mine, theirs)):
        # float32 rounding of the schedule's scalars, relative to the sample's size
        assert (a - b).abs().max().item() <= 2e-5 * (1 + b.abs().max().item()), f"step {step}"


def closed_form_error(scheduler_cls, steps: int) -> float:
    """Max abs error of the final sample against the exact probability-flow ODE solution from the same x_T."""
    model = GaussianDenoiser(sample_size=4, data_std=0.5)
    scheduler = scheduler_cls(timestep_spacing="trailing", clip_sample=False)
    scheduler.set_timesteps(steps)
    x_T = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    sample = x_T
    for t in scheduler.timesteps:
        sample = scheduler.step(model(sample, t).sample, t, sample).prev_sample
    # invert x_T = a mu + sqrt(a^2 s^2 + b^2) (x0 - mu) / s at t = 999 for the exact x0
    alpha_prod = model.alphas_cumprod[999]
    a, s, mu = alpha_prod.sqrt(), 0.5, model.means[0]
    exact = (mu + s * (x_T.double() - a * mu) / (alpha_prod * s**2 + 1 - alpha_prod).sqrt()).float()
    return (sample - exact).abs().max().item()


def test_second_order_beats_ddim_on_the_exact_ode_and_converges_faster():
    ddim = [closed_form_error(GuidedDDIMScheduler, n) for n in (20, 40)]
    dpm = [closed_form_error(GuidedDPMSolverMultistepScheduler, n) for n in (20, 40)]
    assert dpm[0] < ddim[0] / 2.5 and dpm[1] < ddim[1] / 10
    assert ddim[1] > ddim[0] / 2.5  # first order: doubling the steps about halves DDIM's error
    assert dpm[1] < dpm[0] / 4  # second order (or better here): at least a quarter


def test_a_new_solve_starts_first_order_and_bad_options_are_refused():
    scheduler = GuidedDPMSolverMultistepScheduler()
    first = chain(scheduler, 5, scheduler)
    again = chain(scheduler, 5, scheduler)  # set_timesteps forgets the previous solve's x0
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="solver_order"):
        GuidedDPMSolverMultistepScheduler(solver_order=3)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(1000)


def test_available_to_every_pipeline_as_a_sampler_with_per_call_thresholding():
    scheduler = make_scheduler("dpm2m", GuidedDDIMScheduler(clip_sample=True).config)
    assert isinstance(scheduler, GuidedDPMSolverMultistepScheduler) and scheduler.config.timestep_spacing == "linspace"
    pipe = GuidedDiffusionPipeline(GaussianDenoiser(sample_size=4, data_std=2.0), scheduler)
    images = {mode: pipe(batch_size=2, num_inference_steps=6, thresholding=mode, output_type="pt",
                         generator=torch.Generator().manual_seed(0)).images for mode in ("none", "dynamic")}  # fmt: skip
    assert images["none"].shape == (2, 1, 4, 4) and not torch.equal(images["none"], images["dynamic"])


def test_ours_and_diffusers_solve_on_the_same_timesteps_from_a_ddpm_config():
    """The side-by-side comparison is of implementations only: from a DDPM config ("leading" spacing) both samplers
    take DPM-Solver's own "linspace" spacing."""
    config = GuidedDDPMScheduler(timestep_spacing="leading").config
    ours, theirs = make_scheduler("dpm2m", config), make_scheduler("dpm++", config)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert torch.equal(ours.timesteps, theirs.timesteps) and ours.timesteps[0] == 999


def test_a_schedule_that_repeats_a_timestep_is_refused_before_any_unet_call():
    """diffusers' DPM-Solver++ (linspace spacing) at 1,000 steps of a 1,000-step schedule repeats timestep 500: a step
    of h = 0 that turns its samples into NaN. Ours refuse that step count in set_timesteps; a pipeline given
    diffusers' refuses it too, before the first UNet call, and 999 steps, the most DPM-Solver can take, still run."""
    theirs = make_scheduler("dpm++", GuidedDDPMScheduler().config)
    theirs.set_timesteps(1000)
    if len(theirs.timesteps.unique()) == 1000:
        pytest.skip("this diffusers no longer repeats a timestep at 1,000 steps")
    assert not torch.isfinite(chain(theirs, 1000, theirs)[-1]).all()
    pipe = GuidedDiffusionPipeline(GaussianDenoiser(sample_size=4, data_std=2.0), theirs)
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match="`num_inference_steps`=1000 makes DPMSolverMultistepScheduler repeat a timestep"):
        pipe(batch_size=1, num_inference_steps=1000, output_type="pt")
    assert not calls
    theirs.set_timesteps(999)
    assert len(theirs.timesteps.unique()) == 999
