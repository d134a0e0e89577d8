"""Shared helpers: a deterministic stand-in network and a trajectory runner, so that our schedulers and diffusers'
can be driven through identical sampling loops and compared step by step."""

import math
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores; one torch thread each, as the README's runs (two 2-thread processes
    # on 2 cores ran 20-40x slower than one)
    torch.set_num_threads(1)

from guided_diffusers.schedulers import model_output_from

SHAPE = (2, 3, 8, 8)
DATA_STD = 1.5  # > 1, so predicted x0 leaves [-1, 1] and clipping / thresholding really act


def toy_model_output(scheduler, sample: torch.Tensor, timestep: int, step_index: int) -> torch.Tensor:
    """A sample-dependent 'network' with realistic outputs: the exact denoiser of Gaussian data N(0, s^2 I),
    E[x0 | x_t] = a s^2 x_t / (a^2 s^2 + b^2), perturbed a little per step, emitted in the scheduler's prediction
    type; learned-variance schedulers also get variance channels near their natural values."""
    config = scheduler.config
    alpha_prod = scheduler.alphas_cumprod[timestep].item()
    a, b = math.sqrt(alpha_prod), math.sqrt(1 - alpha_prod)
    generator = torch.Generator().manual_seed(1000 + step_index)
    x0 = a * DATA_STD**2 * sample / (alpha_prod * DATA_STD**2 + b**2)
    x0 = x0 + 0.1 * torch.randn(sample.shape, generator=generator)
    eps = (sample - a * x0) / max(b, 1e-3)
    output = model_output_from(x0, eps, alpha_prod, config.prediction_type)
    variance_type = getattr(config, "variance_type", None)
    if variance_type == "learned_range":  # the interpolation fraction, in [-1, 1]
        output = torch.cat([output, torch.tanh(torch.randn(sample.shape, generator=generator))], dim=1)
    elif variance_type == "learned":  # log Sigma near log beta_t
        log_beta = math.log(scheduler.betas[timestep].item())
        output = torch.cat([output, log_beta + 0.1 * torch.randn(sample.shape, generator=generator)], dim=1)
    return output


def run_chain(scheduler, num_inference_steps=10, seed=0, output_scheduler=None, output_transform=None, **step_kwargs):
    """Sample a whole chain; returns [(timestep, abar_t, prev_sample, pred_original_sample), ...].

    `output_scheduler` (default: `scheduler`) is the one whose config shapes the toy outputs, so that two schedulers
    can be fed identical outputs; `output_transform` maps them before `step` (to adapt a reference's conventions)."""
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    trajectory = []
    for i, t in enumerate(scheduler.timesteps):
        model_output = toy_model_output(output_scheduler or scheduler, sample, int(t), i)
        if output_transform is not None:
            model_output = output_transform(model_output)
        out = scheduler.step(model_output, t, sample, generator=generator, **step_kwargs)
        trajectory.append((int(t), scheduler.alphas_cumprod[t].item(), out.prev_sample, out.pred_original_sample))
        sample = out.prev_sample
    return trajectory


def assert_trajectories_close(ours, theirs, atol=1e-5, steps=None):
    """Max abs difference of every prev_sample <= atol. x0 = (x_t - b eps) / a magnifies float32 rounding in x_t by
    1 / a (a = sqrt(abar_t) ~ 0.006 at t = 999), so x0 predictions get the bound atol / a, relative to their size."""
    assert len(ours) == len(theirs)
    pairs = list(zip(ours, theirs))[: steps if steps is not None else len(ours)]
    for (t, alpha_prod, prev, x0), (t_ref, _, prev_ref, x0_ref) in pairs:
        assert t == t_ref
        assert torch.isfinite(prev).all(), f"non-finite sample at t={t}"
        assert (prev - prev_ref).abs().max().item() <= atol, f"prev_sample differs at t={t}"
        scale = (1 + x0_ref.abs().max().item()) / math.sqrt(alpha_prod)
        assert (x0 - x0_ref).abs().max().item() <= atol * scale, f"x0 differs at t={t}"
