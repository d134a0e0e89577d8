"""The samplers the project compares: ours and diffusers' DPM-Solver++, built from one diffusion config."""

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from ..schedulers import GuidedDDIMScheduler, GuidedDDPMScheduler
from ..schedulers.validation import check_choice

SAMPLERS = {
    "ddpm": lambda config: GuidedDDPMScheduler.from_config(config),
    "ddim": lambda config: GuidedDDIMScheduler.from_config(config),
    # Lu et al. 2022, second-order multistep; diffusers' implementation, for comparison
    "dpm++": lambda config: DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2),
    # diffusers' own DDIM, the reference ours is tested against
    "diffusers-ddim": lambda config: DDIMScheduler.from_config(config),
}


def editable_config(config) -> dict:
    """A scheduler config as a plain dict that `from_config` honours as edited: without `_use_default_values`,
    whose listed keys `from_config` would otherwise reset to their defaults."""
    return {key: value for key, value in dict(config).items() if key != "_use_default_values"}


def make_scheduler(name: str, config):
    """A fresh scheduler of kind `name` (ddpm, ddim, dpm++, diffusers-ddim) on the noise schedule in `config`."""
    check_choice("sampler", name, SAMPLERS)
    return SAMPLERS[name](editable_config(config))
