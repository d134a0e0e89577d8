"""Our schedulers against closed forms derived independently of the code under test (float64 NumPy, Bayes' rule,
the papers' definitions), including every place where we depart from diffusers on purpose."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from guided_diffusers.schedulers import (
    PREDICTION_TYPES,
    GuidedDDIMScheduler,
    GuidedDDPMScheduler,
    dynamic_threshold,
    model_output_from,
    static_clip,
    x0_and_eps,
)

T = 1000


def gaussian(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


# ------------------------------------------------------------------------------------------------ schedules
def test_linear_alphas_cumprod_is_product_of_one_minus_beta():
    betas = np.linspace(1e-4, 0.02, T)  # Ho 2020, sec. 4
    expected = np.cumprod(1 - betas)
    np.testing.assert_allclose(GuidedDDPMScheduler().alphas_cumprod.numpy(), expected, rtol=2e-5)


def test_cosine_alphas_cumprod_telescopes_to_f_ratio():
    """Nichol & Dhariwal 2021, eq. 17: abar_t = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""
    f = lambda t: np.cos((t / T + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    expected = f(np.arange(1, T + 1)) / f(0)
    ours = GuidedDDIMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.numpy()
    unclipped = slice(0, T - 5)  # the last betas are capped at 0.999, where the product departs from the ratio
    np.testing.assert_allclose(ours[unclipped], expected[unclipped], rtol=1e-4, atol=1e-7)


def test_zero_terminal_snr_rescaling_ends_at_zero_and_keeps_the_first_level():
    plain = GuidedDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    rescaled = GuidedDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True
    )
    assert rescaled.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert rescaled.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-6)


# ------------------------------------------------------------------------------------------- forward process
def test_add_noise_has_the_forward_marginal_mean_and_variance():
    """q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I), checked empirically over 200k draws."""
    scheduler = GuidedDDPMScheduler(beta_schedule="squaredcos_cap_v2")
    n, t = 200_000, 400
    x0 = torch.full((n, 1), 0.7)
    x_t = scheduler.add_noise(x0, gaussian((n, 1), 0), torch.full((n,), t))
    abar = scheduler.alphas_cumprod[t].item()
    standard_error = math.sqrt((1 - abar) / n)
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.7, abs=5 * standard_error)
    assert x_t.var().item() == pytest.approx(1 - abar, rel=0.02)


def test_marginal_variance_stays_one_for_unit_variance_data():
    scheduler = GuidedDDPMScheduler()
    n = 100_000
    for t in (0, 250, 999):
        x_t = scheduler.add_noise(gaussian((n,), 1), gaussian((n,), 2), torch.full((n,), t))
        assert x_t.var().item() == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_prediction_conversions_invert_each_other(prediction_type):
    x0, eps = gaussian((3, 2, 4, 4), 3), gaussian((3, 2, 4, 4), 4)
    alpha_prod = torch.tensor([0.9, 0.5, 0.01])
    x_t = alpha_prod.sqrt().view(-1, 1, 1, 1) * x0 + (1 - alpha_prod).sqrt().view(-1, 1, 1, 1) * eps
    output = model_output_from(x0, eps, alpha_prod, prediction_type)
    x0_back, eps_back = x0_and_eps(output, x_t, alpha_prod, prediction_type)
    torch.testing.assert_close(x0_back, x0, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(eps_back, eps, atol=2e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------ DDPM posterior
def bayes_posterior(x_t, x0, abar_t, abar_prev):
    """q(x_prev | x_t, x0) from Bayes' rule: N(x_t; sqrt(alpha) x_prev, beta) N(x_prev; sqrt(abar_prev) x0,
    1 - abar_prev), with alpha = abar_t / abar_prev, beta = 1 - alpha. Returns (mean, variance) in float64."""
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    precision = alpha / beta + 1 / (1 - abar_prev)
    mean = (math.sqrt(alpha) * x_t / beta + math.sqrt(abar_prev) * x0 / (1 - abar_prev)) / precision
    return mean, 1 / precision


@pytest.mark.parametrize("num_inference_steps", [None, 10])
def test_ddpm_step_samples_the_bayes_posterior(num_inference_steps):
    """With the exact x0 (prediction_type='sample'), a DDPM step draws from q(x_prev | x_t, x0) (Ho 2020, eq. 6-7),
    also on a respaced chain (improved DDPM, sec. 4)."""
    scheduler = GuidedDDPMScheduler(prediction_type="sample", clip_sample=False)
    if num_inference_steps:
        scheduler.set_timesteps(num_inference_steps)
    t = int(scheduler.timesteps[3])
    prev_t = scheduler.previous_timestep(t)
    abar_t, abar_prev = (scheduler.alphas_cumprod[i].double().item() for i in (t, prev_t))
    n = 200_000
    x0, x_t = torch.full((n, 1, 1, 1), 0.3), torch.full((n, 1, 1, 1), -0.8)
    prev = scheduler.step(x0, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample.double()
    mean, variance = bayes_posterior(-0.8, 0.3, abar_t, abar_prev)
    assert prev.mean().item() == pytest.approx(mean, abs=5 * math.sqrt(variance / n))
    assert prev.var().item() == pytest.approx(variance, rel=0.02)
    assert scheduler.noise_std(t).item() ** 2 == pytest.approx(variance, rel=1e-4)


def test_ddpm_variances_follow_the_papers():
    """fixed_large: beta_t; fixed_large_log: the same (diffusers gives NaN); learned: exp(v) is Sigma (improved
    DDPM; diffusers reads v as Sigma); learned_range: v = -1 gives beta_tilde, v = +1 gives beta_t (eq. 15)."""
    t = 500
    beta_t = GuidedDDPMScheduler().betas[t].item()
    _, beta_tilde = bayes_posterior(0.0, 0.0, *(GuidedDDPMScheduler().alphas_cumprod[i].double().item() for i in (t, t - 1)))
    std = lambda kind, v=None: GuidedDDPMScheduler(variance_type=kind).noise_std(t, v)  # noqa: E731
    assert std("fixed_small").item() ** 2 == pytest.approx(beta_tilde, rel=1e-4)
    assert std("fixed_large").item() ** 2 == pytest.approx(beta_t, rel=1e-5)
    assert std("fixed_large_log").item() ** 2 == pytest.approx(beta_t, rel=1e-5)
    assert math.isnan(DDPMScheduler(variance_type="fixed_large_log")._get_variance(t) ** 0.5)  # the departure
    log_variance = torch.tensor([-3.0, -7.0])
    torch.testing.assert_close(std("learned", log_variance) ** 2, log_variance.exp())
    ends = std("learned_range", torch.tensor([-1.0, 1.0])) ** 2
    assert ends[0].item() == pytest.approx(beta_tilde, rel=1e-4)
    assert ends[1].item() == pytest.approx(beta_t, rel=1e-4)


def test_ddpm_last_step_is_the_posterior_mean_even_when_it_starts_above_zero():
    """Algorithm 2 sets z = 0 on the last step. With trailing spacing the last step starts at t = 99; diffusers
    still adds noise there (visible with fixed_large), ours returns the mean, which is x0 itself: the posterior
    q(x_prev | x_t, x0) collapses onto x0 when abar_prev = 1."""
    config = dict(variance_type="fixed_large", prediction_type="sample", clip_sample=False, timestep_spacing="trailing")
    ours, theirs = GuidedDDPMScheduler(**config), DDPMScheduler(**config)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    t = int(ours.timesteps[-1])
    assert t == 99
    x0, x_t = gaussian((1, 1, 4, 4), 5), gaussian((1, 1, 4, 4), 6)
    torch.testing.assert_close(ours.step(x0, t, x_t).prev_sample, x0, atol=1e-6, rtol=0)
    theirs_prev = theirs.step(x0, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    assert (theirs_prev - x0).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------- DDIM
def test_ddim_eta_zero_is_deterministic_and_eta_one_is_not():
    scheduler = GuidedDDIMScheduler()
    scheduler.set_timesteps(10)
    x_t, eps = gaussian((2, 1, 4, 4), 7), gaussian((2, 1, 4, 4), 8)
    t = scheduler.timesteps[2]
    step = lambda eta, seed: scheduler.step(eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(step(0.0, 1).prev_sample, step(0.0, 2).prev_sample)
    assert not torch.equal(step(1.0, 1).prev_sample, step(1.0, 2).prev_sample)


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_ddim_steps_to_the_actual_previous_timestep(spacing):
    """DDIM eq. 12 with abar_prev at the schedule's next timestep. diffusers uses t - T // n instead: for linspace
    with n = 7 that is 999 -> 857 where the schedule's next step is 832."""
    ours = GuidedDDIMScheduler(timestep_spacing=spacing, clip_sample=False)
    theirs = DDIMScheduler.from_config(ours.config)
    ours.set_timesteps(7)
    theirs.set_timesteps(7)
    t, t_next = int(ours.timesteps[0]), int(ours.timesteps[1])
    assert t_next != t - T // 7
    x_t, eps = gaussian((1, 1, 4, 4), 9), gaussian((1, 1, 4, 4), 10)

    def closed_form(prev):
        abar_t, abar_prev = (ours.alphas_cumprod[i].double().item() for i in (t, prev))
        x0 = (x_t.double() - math.sqrt(1 - abar_t) * eps.double()) / math.sqrt(abar_t)
        return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps.double()

    torch.testing.assert_close(ours.step(eps, t, x_t).prev_sample.double(), closed_form(t_next), atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.step(eps, t, x_t).prev_sample.double(), closed_form(t - T // 7), atol=1e-5, rtol=0)


def test_ddim_custom_timesteps_are_followed():
    scheduler = GuidedDDIMScheduler(clip_sample=False)
    scheduler.set_timesteps(timesteps=[900, 500, 120, 3])
    assert scheduler.timesteps.tolist() == [900, 500, 120, 3] and scheduler.num_inference_steps == 4
    assert [scheduler.previous_timestep(t) for t in (900, 500, 120, 3)] == [500, 120, 3, -1]


class DiracModel:
    """The exact eps-prediction network for data concentrated at one point mu: eps(x, t) = (x - a mu) / b.
    Along the DDIM ODE eps stays constant, so DDIM solves it exactly with any number of steps."""

    def __init__(self, scheduler, mu):
        self.scheduler, self.mu = scheduler, mu

    def __call__(self, x, t):
        abar = self.scheduler._alpha_prod(int(t))
        return (x - abar**0.5 * self.mu) / (1 - abar) ** 0.5


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("num_inference_steps", [5, 50])
def test_ddim_inversion_round_trip_is_exact_for_the_analytic_model(beta_schedule, num_inference_steps):
    scheduler = GuidedDDIMScheduler(beta_schedule=beta_schedule, clip_sample=False)
    scheduler.set_timesteps(num_inference_steps)
    model = DiracModel(scheduler, mu=gaussian((2, 1, 4, 4), 11).clamp(-1, 1))
    timesteps = scheduler.timesteps.tolist()
    z = gaussian((2, 1, 4, 4), 12)
    abar = lambda t: scheduler.alphas_cumprod[t].item()  # noqa: E731
    x_start = math.sqrt(abar(timesteps[-1])) * model.mu + math.sqrt(1 - abar(timesteps[-1])) * z

    x = x_start
    for t in reversed(timesteps[:-1]):  # up the chain: x sits at the level of previous_timestep(t)
        x = scheduler.inversion_step(model(x, scheduler.previous_timestep(t)), t, x).next_sample
    closed_form_end = math.sqrt(abar(timesteps[0])) * model.mu + math.sqrt(1 - abar(timesteps[0])) * z
    torch.testing.assert_close(x, closed_form_end, atol=1e-4, rtol=1e-4)
    for t in timesteps[:-1]:  # and back down
        x = scheduler.step(model(x, t), t, x).prev_sample
    torch.testing.assert_close(x, x_start, atol=1e-4, rtol=1e-4)


def test_ddim_inversion_step_inverts_step_for_the_same_eps():
    scheduler = GuidedDDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(20)
    x_t, eps = gaussian((2, 3, 4, 4), 13), gaussian((2, 3, 4, 4), 14)
    for t in scheduler.timesteps[[0, 7, -1]]:
        x_prev = scheduler.step(eps, t, x_t).prev_sample
        torch.testing.assert_close(scheduler.inversion_step(eps, t, x_prev).next_sample, x_t, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- thresholding
def test_dynamic_threshold_on_hand_made_tensors():
    x0 = torch.tensor([[-4.0, -2.0, 0.0, 1.0, 2.0], [0.5, -0.25, 0.0, 0.1, -0.9]]).view(2, 1, 1, 5)
    # ratio 1: s = max |x0| per sample, clamped to [1, max_value]
    expected = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 0.5], [0.5, -0.25, 0.0, 0.1, -0.9]]).view(2, 1, 1, 5)
    torch.testing.assert_close(dynamic_threshold(x0, ratio=1.0, max_value=10.0), expected)
    # s capped at max_value = 3: clip to [-3, 3], divide by 3
    capped = torch.tensor([-3.0, -2.0, 0.0, 1.0, 2.0]) / 3
    torch.testing.assert_close(dynamic_threshold(x0, ratio=1.0, max_value=3.0)[0].flatten(), capped)
    # ratio 0.5: the median of |x0| = (4, 2, 0, 1, 2) is 2
    torch.testing.assert_close(
        dynamic_threshold(x0, ratio=0.5, max_value=10.0)[0].flatten(), torch.tensor([-1.0, -1.0, 0.0, 0.5, 1.0])
    )


def test_dynamic_threshold_is_static_clipping_when_few_pixels_saturate():
    x0 = gaussian((4, 3, 8, 8), 15) * 0.4
    torch.testing.assert_close(dynamic_threshold(x0, ratio=0.995), static_clip(x0, 1.0))


def test_dynamic_threshold_keeps_dtype_and_range_for_half_precision():
    x0 = (gaussian((2, 3, 8, 8), 16) * 5).half()
    out = dynamic_threshold(x0, ratio=0.9, max_value=4.0)
    assert out.dtype == torch.float16 and out.abs().max().item() <= 1.0
