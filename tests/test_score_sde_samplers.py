"""The score-SDE samplers: our EDM scheduler (Karras 2022, Heun and Euler, with churn) against diffusers'
HeunDiscreteScheduler / EulerDiscreteScheduler as the oracle and against Algorithm 2 written out; the reverse-SDE
predictor-corrector scheduler (Song 2021) against its equations and the Gaussian-data marginals; Karras spacing for
our DDIM and DPM-Solver++; each usable in the pipelines with guiders, with its network evaluations counted."""

import itertools
import math

import numpy as np
import pytest
import torch
from analytic_models import GaussianDenoiser
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

from guided_diffusers.guiders import ClassifierFreeGuidance, GuidanceIntervalCFG
from guided_diffusers.pipelines import GuidedDiffusionPipeline, make_scheduler
from guided_diffusers.schedulers import (
    GuidedDDIMScheduler,
    GuidedDPMSolverMultistepScheduler,
    GuidedEDMScheduler,
    GuidedScoreSDEScheduler,
    karras_sigmas,
)
from guided_diffusers.schedulers.sigmas import alpha_prod_at

SHAPE = (2, 3, 6, 6)
DATA_STD = 1.5


def toy_denoiser_output(scheduler, model_input: torch.Tensor, timestep, prediction_type: str) -> torch.Tensor:
    """The exact output for Gaussian data N(0, s^2 I) at the level the (possibly fractional) timestep names, plus a
    fixed perturbation so that the network is not linear, in `prediction_type`."""
    alpha_prod = alpha_prod_at(scheduler.alphas_cumprod, timestep)
    a, b = math.sqrt(alpha_prod), math.sqrt(1 - alpha_prod)
    x0 = a * DATA_STD**2 * model_input / (alpha_prod * DATA_STD**2 + b**2) + 0.1 * torch.tanh(model_input)
    eps = (model_input - a * x0) / b
    return {"epsilon": eps, "sample": x0, "v_prediction": a * eps - b * x0}[prediction_type]


def sigma_chain(scheduler, steps: int, prediction_type: str = "epsilon", seed: int = 0):
    """Every (timestep, prev_sample, x0) of a whole solve of a sigma scheduler (scale_model_input, fractional t)."""
    scheduler.set_timesteps(steps)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)) * scheduler.init_noise_sigma
    generator = torch.Generator().manual_seed(seed + 1)
    trajectory = []
    for t in scheduler.timesteps:
        output = toy_denoiser_output(scheduler, scheduler.scale_model_input(sample, t), t, prediction_type)
        kwargs = {"generator": generator} if "generator" in scheduler.step.__code__.co_varnames else {}
        step = scheduler.step(output, t, sample, **kwargs)
        trajectory.append((float(t), step.prev_sample, step.pred_original_sample))
        sample = step.prev_sample
    return trajectory


def assert_same_solve(ours, theirs, rtol=2e-6):
    """Equal timesteps, and every sample within float32 rounding of the sample's size (VE samples reach sigma_max)."""
    assert [t for t, *_ in ours] == [t for t, *_ in theirs]
    for (t, prev, x0), (_, prev_ref, x0_ref) in zip(ours, theirs):
        assert (prev - prev_ref).abs().max() <= 1e-5 + rtol * prev_ref.abs().max(), f"prev_sample differs at t={t}"
        assert (x0 - x0_ref).abs().max() <= 1e-5 + rtol * x0_ref.abs().max() * 100, f"x0 differs at t={t}"
    assert (ours[-1][1] - theirs[-1][1]).abs().max() <= 1e-5  # the image itself, at sigma = 0


# ------------------------------------------------------------------------------------------------ EDM vs diffusers
@pytest.mark.parametrize("reference_class,order,karras,prediction_type,beta_schedule,spacing", [
    *itertools.product([HeunDiscreteScheduler], [2], [True, False], ["epsilon", "v_prediction", "sample"],
                       ["linear", "squaredcos_cap_v2"], ["linspace", "leading", "trailing"]),
    *itertools.product([EulerDiscreteScheduler], [1], [True, False], ["epsilon", "v_prediction"],
                       ["linear", "scaled_linear"], ["linspace", "trailing"]),
])  # fmt: skip
@pytest.mark.parametrize("steps", [1, 2, 13])
def test_edm_matches_diffusers_heun_and_euler_without_churn(reference_class, order, karras, prediction_type,
                                                            beta_schedule, spacing, steps):  # fmt: skip
    config = dict(beta_start=0.0001, beta_end=0.02, beta_schedule=beta_schedule, prediction_type=prediction_type,
                  use_karras_sigmas=karras, timestep_spacing=spacing)  # fmt: skip
    reference = reference_class(**config)
    ours = GuidedEDMScheduler(solver_order=order, **config)
    assert ours.order == reference.order
    assert_same_solve(sigma_chain(ours, steps, prediction_type), sigma_chain(reference, steps, prediction_type))
    assert len(ours.timesteps) == (2 * steps - 1 if order == 2 else steps)  # network evaluations


def test_edm_clip_sample_matches_diffusers_heun():
    config = dict(beta_start=0.0001, beta_end=0.02, use_karras_sigmas=True, clip_sample=True, clip_sample_range=0.8)
    ours, reference = GuidedEDMScheduler(**config), HeunDiscreteScheduler(**config)
    assert_same_solve(sigma_chain(ours, 8), sigma_chain(reference, 8))


def test_edm_converts_to_and_from_diffusers_configs():
    reference = HeunDiscreteScheduler(beta_start=0.0001, beta_end=0.02, use_karras_sigmas=True)
    ours = GuidedEDMScheduler.from_config(reference.config)
    assert ours.config.use_karras_sigmas and ours.config.solver_order == 2
    back = EulerDiscreteScheduler.from_config(ours.config)
    assert back.config.use_karras_sigmas and back.config.beta_end == 0.02


# ------------------------------------------------------------------------------------------------ Karras levels
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0, 12.0])
@pytest.mark.parametrize("levels", [2, 5, 40])
def test_karras_levels_are_monotone_and_hit_sigma_max_and_sigma_min(rho, levels):
    sigmas = karras_sigmas(levels, 0.002, 80.0, rho)
    assert len(sigmas) == levels and np.all(np.diff(sigmas) < 0)
    assert math.isclose(sigmas[0], 80.0, rel_tol=1e-12) and math.isclose(sigmas[-1], 0.002, rel_tol=1e-9)
    # eq. 5: sigma^(1/rho) is evenly spaced
    assert np.allclose(np.diff(sigmas ** (1 / rho)), (0.002 ** (1 / rho) - 80.0 ** (1 / rho)) / (levels - 1))


def test_edm_default_levels_span_the_schedule_and_each_told_timestep_names_its_level():
    scheduler = GuidedEDMScheduler()
    scheduler.set_timesteps(10)
    train_sigmas = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5
    torch.testing.assert_close(scheduler.sigmas[0], train_sigmas[-1])
    torch.testing.assert_close(scheduler.sigmas[-2], train_sigmas[0])
    assert scheduler.sigmas[-1] == 0
    for level, t in zip(scheduler.levels, scheduler.timesteps):  # the guiders read the level from the timestep
        sigma = ((1 - alpha_prod_at(scheduler.alphas_cumprod, t)) / alpha_prod_at(scheduler.alphas_cumprod, t)) ** 0.5
        assert math.isclose(sigma, float(level), rel_tol=1e-4)


@pytest.mark.parametrize("steps", [10, 20, 50])
def test_karras_spacing_for_ddim_and_dpm_solver_is_diffusers_rounded_levels(steps):
    theirs = DPMSolverMultistepScheduler(use_karras_sigmas=True)
    theirs.set_timesteps(steps)
    for ours in (GuidedDPMSolverMultistepScheduler(timestep_spacing="karras"),
                 GuidedDDIMScheduler(timestep_spacing="karras")):
        ours.set_timesteps(steps)
        assert torch.equal(ours.timesteps, theirs.timesteps)


def test_karras_spacing_visits_a_timestep_once_where_rounding_repeats_it():
    """At 100 steps of the linear schedule two Karras levels round to t = 1: DDIM visits it once (a repeated timestep
    would be a step of zero length), so it takes 99 steps, each between the levels it tells the network."""
    theirs = DPMSolverMultistepScheduler(use_karras_sigmas=True)
    theirs.set_timesteps(100)
    ours = GuidedDDIMScheduler(timestep_spacing="karras")
    ours.set_timesteps(100)
    assert len(theirs.timesteps.unique()) == 99 == len(ours.timesteps)
    assert torch.equal(ours.timesteps, theirs.timesteps.unique().flip(0))


# ------------------------------------------------------------------------------------------------ churn
def algorithm_2(denoise, sigmas, x_hat0, s_churn, s_tmin, s_tmax, s_noise, generator):
    """Karras 2022, Algorithm 2 as printed, from x^_0 (the churned start) at sigma^_0; `denoise(x, sigma)` is D."""
    n = len(sigmas) - 1  # sigmas[n] = 0

    def gamma(i):
        return min(s_churn / n, 2**0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0

    x = x_hat = x_hat0
    sigma_hat = sigmas[0] * (1 + gamma(0))
    for i in range(n):
        if i > 0:
            sigma_hat = sigmas[i] * (1 + gamma(i))
            # eps ~ N(0, S_noise^2 I), drawn where gamma_i > 0 (elsewhere it is multiplied by 0)
            eps = s_noise * torch.randn(x_hat.shape, generator=generator) if gamma(i) > 0 else 0.0
            x_hat = x + (sigma_hat**2 - sigmas[i] ** 2) ** 0.5 * eps
        d = (x_hat - denoise(x_hat, sigma_hat)) / sigma_hat
        x = x_hat + (sigmas[i + 1] - sigma_hat) * d
        if sigmas[i + 1] != 0:
            d_prime = (x - denoise(x, sigmas[i + 1])) / sigmas[i + 1]
            x = x_hat + (sigmas[i + 1] - sigma_hat) * (0.5 * d + 0.5 * d_prime)
    return x


@pytest.mark.parametrize("s_churn,s_tmin,s_tmax", [(0.0, 0.0, None), (10.0, 0.0, None), (40.0, 0.05, 10.0)])
def test_heun_with_churn_follows_karras_algorithm_2(s_churn, s_tmin, s_tmax):
    """Gaussian data N(0, s^2 I): D(x; sigma) = s^2 x / (s^2 + sigma^2), given to our scheduler as the eps at the
    level its timestep names (so the only difference is float rounding of sigma -> t -> sigma)."""
    scheduler = GuidedEDMScheduler(s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax)
    scheduler.set_timesteps(12)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    start = x.clone()
    generator = torch.Generator().manual_seed(5)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        alpha_prod = alpha_prod_at(scheduler.alphas_cumprod, t)
        x0 = math.sqrt(alpha_prod) * DATA_STD**2 * model_input / (alpha_prod * DATA_STD**2 + 1 - alpha_prod)
        eps = (model_input - math.sqrt(alpha_prod) * x0) / math.sqrt(1 - alpha_prod)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    sigmas = [float(s) for s in scheduler.sigmas]
    expected = algorithm_2(lambda y, sigma: DATA_STD**2 * y / (DATA_STD**2 + sigma**2), sigmas, start, s_churn, s_tmin,
                           math.inf if s_tmax is None else s_tmax, 1.0, torch.Generator().manual_seed(5))  # fmt: skip
    torch.testing.assert_close(x, expected, atol=1e-4, rtol=1e-4)
    churned = scheduler.sigma_hats > scheduler.sigmas[:-1]
    assert churned.any() == (s_churn > 0)


def test_churned_levels_are_evaluated_at_sigma_hat():
    scheduler = GuidedEDMScheduler(s_churn=20.0, s_tmin=0.1, s_tmax=5.0)
    scheduler.set_timesteps(10)
    gamma = min(20.0 / 10, 2**0.5 - 1)
    sigmas = scheduler.sigmas[:-1]
    inside = (sigmas >= 0.1) & (sigmas <= 5.0)
    torch.testing.assert_close(scheduler.sigma_hats[inside], sigmas[inside] * (1 + gamma))
    torch.testing.assert_close(scheduler.sigma_hats[~inside], sigmas[~inside])
    assert torch.equal(scheduler.levels[0::2], scheduler.sigma_hats)  # Heun's first stage: at sigma^_i
    assert torch.equal(scheduler.levels[1::2], scheduler.sigmas[1:-1])  # its correction: at sigma_{i+1}


# ------------------------------------------------------------------------------------------------ score SDE
def sde_scheduler(**config):
    return GuidedScoreSDEScheduler(clip_sample=False, timestep_spacing="trailing", **config)


def test_predictors_follow_their_equations():
    sample, eps, noise = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(k)) for k in range(3))
    for predictor in ("euler_maruyama", "reverse_diffusion"):
        scheduler = sde_scheduler(predictor=predictor)
        scheduler.set_timesteps(10)
        t, s = int(scheduler.timesteps[2]), int(scheduler.timesteps[3])
        alpha_t, alpha_s = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[s]
        scheduler.step(eps, scheduler.timesteps[0], sample)  # move to the third level
        scheduler.step(eps, scheduler.timesteps[1], sample)
        result = scheduler.step(eps, t, sample, variance_noise=noise).prev_sample
        score = -eps / (1 - alpha_t) ** 0.5
        if predictor == "euler_maruyama":
            delta = math.log(alpha_s / alpha_t)  # int beta dt between the two levels
            expected = sample + delta * (0.5 * sample + score) + delta**0.5 * noise
        else:
            beta = 1 - alpha_t / alpha_s
            expected = (2 - (1 - beta) ** 0.5) * sample + beta * score + beta**0.5 * noise
        torch.testing.assert_close(result, expected)


def test_langevin_corrector_follows_algorithm_5_and_each_sample_has_its_own_step_size():
    scheduler = sde_scheduler(corrector_steps=2, snr=0.2)
    scheduler.set_timesteps(5)
    assert scheduler.order == 3 and len(scheduler.timesteps) == 15
    t = int(scheduler.timesteps[0])
    sample, eps, noise = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(k)) for k in range(3))
    eps[1] *= 3  # a different score norm for the second sample
    result = scheduler.step(eps, t, sample, variance_noise=noise).prev_sample
    alpha_t, alpha_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[int(scheduler.timesteps[3])]
    score = -eps / (1 - alpha_t) ** 0.5
    for i in range(SHAPE[0]):
        step_size = 2 * (alpha_t / alpha_prev) * (0.2 * noise[i].norm() / score[i].norm()) ** 2
        torch.testing.assert_close(result[i], sample[i] + step_size * score[i] + (2 * step_size) ** 0.5 * noise[i])
    alone = sde_scheduler(corrector_steps=2, snr=0.2)
    alone.set_timesteps(5)
    torch.testing.assert_close(alone.step(eps[:1], t, sample[:1], variance_noise=noise[:1]).prev_sample, result[:1])


def test_zero_corrector_steps_is_the_predictor_alone():
    """corrector_steps=0 visits each level once, and its chain equals the predictor equation applied level by level."""
    model = GaussianDenoiser(sample_size=6, in_channels=3, data_std=DATA_STD)
    scheduler = sde_scheduler(predictor="reverse_diffusion", corrector_steps=0)
    scheduler.set_timesteps(8)
    assert torch.equal(scheduler.timesteps, scheduler.levels) and len(scheduler.timesteps) == 8
    x = expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    noises = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(10 + i)) for i in range(8)]
    levels = scheduler.levels.tolist()
    for i, t in enumerate(levels):
        x = scheduler.step(model(x, t).sample, t, x, variance_noise=noises[i]).prev_sample
        alpha_t = scheduler.alphas_cumprod[t]
        alpha_prev = scheduler.alphas_cumprod[levels[i + 1]] if i + 1 < len(levels) else torch.tensor(1.0)
        beta = 1 - alpha_t / alpha_prev
        score = -model(expected, t).sample / (1 - alpha_t) ** 0.5
        noise = beta**0.5 * noises[i] if i + 1 < len(levels) else 0  # z = 0 on the last step
        expected = (2 - (1 - beta) ** 0.5) * expected + beta * score + noise
    torch.testing.assert_close(x, expected)


@pytest.mark.parametrize("predictor,corrector_steps", [("euler_maruyama", 0), ("reverse_diffusion", 0),
                                                       ("reverse_diffusion", 1)])  # fmt: skip
def test_sde_samples_have_the_data_marginals_on_gaussian_data(predictor, corrector_steps):
    """Data N(mu, s^2 I) with the exact score: 1,000 chains of 250 levels end with the data's mean and variance,
    within sampling error (the variance of a variance estimate of n samples is 2 s^4 / n) and discretisation. In
    256 dimensions: the corrector's step size rests on ||z|| / ||score||, which is steady only in many dimensions."""
    model = GaussianDenoiser(sample_size=16, in_channels=1, data_std=0.5, seed=3)
    scheduler = sde_scheduler(predictor=predictor, corrector_steps=corrector_steps)
    scheduler.set_timesteps(250)
    samples = torch.randn(1000, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for t in scheduler.timesteps:
        samples = scheduler.step(model(samples, t).sample, t, samples, generator=generator).prev_sample
    mean, variance = samples.mean(0), samples.var(0)
    torch.testing.assert_close(mean, model.means[0].float(), atol=0.07, rtol=0)  # 4.4 sd of a pixel's mean
    assert abs(variance.mean().item() - 0.25) < 0.0125, variance.mean()  # 5% (sd of the estimate: 0.3%)
    assert ((variance - 0.25).abs() < 0.25 * 0.2).all()  # each pixel: 4.5 sd of its estimate


def ode_error(sampler: str, steps: int) -> float:
    """Max abs error of a solve against the exact probability-flow ODE map of Gaussian data (the DPM-Solver tests'
    closed form), from the same x_T: x0 = mu + s (x_T - a mu) / sqrt(a^2 s^2 + b^2) at the first level."""
    model = GaussianDenoiser(sample_size=4, data_std=0.5)
    scheduler = make_scheduler(sampler, GuidedDDIMScheduler(clip_sample=False).config)
    scheduler.set_timesteps(steps)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    first = scheduler.timesteps[0]
    start = scheduler.scale_model_input(x, first)  # x_T in VP form
    for t in scheduler.timesteps:
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t).sample, t, x).prev_sample
    alpha_prod, s, mu = alpha_prod_at(scheduler.alphas_cumprod, first), 0.5, model.means[0].float()
    exact = mu + s * (start - alpha_prod**0.5 * mu) / (alpha_prod * s**2 + 1 - alpha_prod) ** 0.5
    return (x - exact).abs().max().item()


def test_heun_is_second_order_and_beats_euler_at_equal_evaluations_on_the_exact_ode():
    heun = [ode_error("heun", n) for n in (25, 50)]  # 49 and 99 evaluations
    euler = [ode_error("euler", n) for n in (49, 99)]
    assert heun[1] < heun[0] / 3.5  # second order: doubling the steps quarters the error
    assert euler[1] > euler[0] / 2.5  # first order: about halves it
    assert heun[0] < euler[0] / 1.5 and heun[1] < euler[1] / 4, (heun, euler)


# ------------------------------------------------------------------------------------------------ in the pipelines
@pytest.mark.parametrize("sampler,evaluations", [("heun", 2 * 6 - 1), ("heun-sigma-min-0.1", 2 * 6 - 1),
                                                 ("euler", 6), ("sde", 6),
                                                 ("reverse-diffusion", 6), ("pc", 12),
                                                 ("ddim-karras", 6), ("dpm2m-karras", 6)])  # fmt: skip
def test_every_new_sampler_runs_guided_in_the_pipeline_and_its_evaluations_are_counted(sampler, evaluations):
    model = GaussianDenoiser(sample_size=4, data_std=0.8, num_class_embeds=3)
    pipe = GuidedDiffusionPipeline(model, make_scheduler(sampler, GuidedDDIMScheduler().config), null_class_label=2)
    pipe.set_progress_bar_config(disable=True)
    runs = {}
    for name, guider in (("cfg", ClassifierFreeGuidance(guidance_scale=3.0)),
                         ("interval", GuidanceIntervalCFG(guidance_scale=3.0, sigma_lo=0.3, sigma_hi=5.0))):  # fmt: skip
        out = pipe(class_labels=[0, 1], guider=guider, num_inference_steps=6, thresholding="none", output_type="pt",
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
        runs[name] = out
        assert torch.isfinite(out.images).all()
    assert runs["cfg"].evaluations["unet"] == 2 * evaluations  # conditional + unconditional at every evaluation
    assert evaluations < runs["interval"].evaluations["unet"] < 2 * evaluations  # the interval skips some


def test_cfg_plus_plus_is_refused_on_a_sigma_sampler_before_any_network_call():
    from guided_diffusers.guiders import CFGPlusPlus

    model = GaussianDenoiser(sample_size=4, num_class_embeds=3)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    pipe = GuidedDiffusionPipeline(model, make_scheduler("heun", GuidedDDIMScheduler().config), null_class_label=2)
    with pytest.raises(ValueError, match="CFGPlusPlus.*GuidedEDMScheduler"):
        pipe(class_labels=[0], guider=CFGPlusPlus(guidance_scale=0.5), num_inference_steps=4)
    assert calls == []


@pytest.mark.parametrize("sampler,steps,calls", [("ddim-karras", 100, 49), ("heun", 10, 9), ("pc", 10, 10)])
def test_sdedit_runs_the_last_strength_share_of_the_steps_a_sampler_visits(sampler, steps, calls):
    """strength 0.5: the last half of the levels. DDIM on Karras levels visits 99 at 100 steps (two round onto
    t = 1), so 49; Heun's last 5 of 10 steps are 4 two-call steps and the final Euler step; PC's 5 levels, 2 calls
    each."""
    model = GaussianDenoiser(sample_size=4, num_class_embeds=3)
    pipe = GuidedDiffusionPipeline(model, make_scheduler(sampler, GuidedDDIMScheduler().config), null_class_label=2)
    pipe.set_progress_bar_config(disable=True)
    made = []
    model.register_forward_hook(lambda *_: made.append(1))
    out = pipe.variations(torch.rand(1, 1, 4, 4), strength=0.5, class_labels=[0], guidance_scale=1.0,
                          num_inference_steps=steps, output_type="pt", generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert len(made) == calls and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("config,message", [
    (dict(rho=0.0), "`rho` must lie in \\(0"),
    (dict(rho=-7.0), "`rho` must lie in \\(0"),
    (dict(s_churn=-1.0), "`s_churn` must lie in \\[0"),
    (dict(s_churn=float("nan")), "`s_churn` must be a finite number"),
    (dict(sigma_min=2.0, sigma_max=1.0), "`sigma_min` must be below `sigma_max`"),
    (dict(sigma_min=1.0, sigma_max=1.0), "`sigma_min` must be below `sigma_max`"),
    (dict(sigma_min=0.0), "`sigma_min` must lie in \\(0"),
    (dict(s_tmin=2.0, s_tmax=1.0), "`s_tmax` must lie in \\[2.0"),
    (dict(s_noise=-0.5), "`s_noise` must lie in \\[0"),
    (dict(solver_order=3), "`solver_order` must be one of 1, 2"),
    (dict(timestep_spacing="karras"), "`timestep_spacing` must be one of"),
    (dict(use_karras_sigmas="yes"), "`use_karras_sigmas` must be true or false"),
    (dict(rescale_betas_zero_snr=True), "sigma = inf"),
])  # fmt: skip
def test_bad_edm_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        GuidedEDMScheduler(**config)


@pytest.mark.parametrize("config,message", [
    (dict(snr=0.0), "`snr` must lie in \\(0"),
    (dict(snr=-0.16), "`snr` must lie in \\(0"),
    (dict(snr="0.16"), "`snr` must be a number"),
    (dict(corrector_steps=-1), "`corrector_steps` must lie in \\[0"),
    (dict(corrector_steps=1.5), "`corrector_steps` must be an integer"),
    (dict(predictor="ancestral"), "`predictor` must be one of 'euler_maruyama', 'reverse_diffusion'"),
])  # fmt: skip
def test_bad_score_sde_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        GuidedScoreSDEScheduler(**config)


def test_bad_sampling_calls_are_refused_before_any_network_call():
    edm = GuidedEDMScheduler()
    with pytest.raises(ValueError, match="cannot be used with `use_karras_sigmas`"):
        edm.set_timesteps(timesteps=[900, 500, 100])
    with pytest.raises(ValueError, match="`num_inference_steps` must be an integer in \\[1, num_train_timesteps"):
        edm.set_timesteps(0)
    raised = GuidedEDMScheduler(sigma_min=0.1, timestep_spacing="linspace")  # one step's level is sigma(t = 0) = 0.01
    with pytest.raises(ValueError, match="`num_inference_steps`=1 makes the highest level 0.01, not above `sigma_min`"):
        raised.set_timesteps(1)
    raised.set_timesteps(2)
    assert raised.sigmas[1].item() == pytest.approx(0.1)
    sde = GuidedScoreSDEScheduler()
    with pytest.raises(ValueError, match="call `set_timesteps` before `step`"):
        sde.step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE))
    sde.set_timesteps(4)
    with pytest.raises(ValueError, match="not the one this scheduler expects next"):
        sde.step(torch.zeros(SHAPE), int(sde.timesteps[0]), torch.zeros(SHAPE))
        sde.step(torch.zeros(SHAPE), int(sde.timesteps[-1]), torch.zeros(SHAPE))
    with pytest.raises(ValueError, match="`karras` spacing|Karras spacing needs a finite sigma"):
        GuidedDDIMScheduler(timestep_spacing="karras", rescale_betas_zero_snr=True).set_timesteps(10)
