"""The samplers the project compares (ours, diffusers' DDIM and DPM-Solver++), built from one diffusion config,
and the per-call scheduler options every pipeline shares. A sampler's cost is its network evaluations: one per entry
of `scheduler.timesteps` (N for most, 2N - 1 for Heun, N (1 + corrector steps) for predictor-corrector)."""

import inspect
import logging

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from ..schedulers import (
    GuidedDDIMScheduler,
    GuidedDDPMScheduler,
    GuidedDPMSolverMultistepScheduler,
    GuidedEDMScheduler,
    GuidedScoreSDEScheduler,
)
from ..schedulers.validation import check_choice

logger = logging.getLogger(__name__)

THRESHOLDING_MODES = ("none", "static", "dynamic")

DPM_SOLVER_SPACING = "linspace"  # DPM-Solver's own timestep spacing, for both implementations
# name -> (scheduler class, config overrides)
SAMPLERS = {
    "ddpm": (GuidedDDPMScheduler, {}),
    "ddim": (GuidedDDIMScheduler, {}),
    # ours: DPM-Solver++(2M) (Lu et al. 2022), with DPM-Solver's own timestep spacing whatever the training used
    "dpm2m": (GuidedDPMSolverMultistepScheduler, {"timestep_spacing": DPM_SOLVER_SPACING}),
    # Lu et al. 2022, second-order multistep; diffusers' implementation, for comparison: with the same spacing as
    # ours, so that the two differ in implementation only (from a DDPM config it would inherit "leading")
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                            "timestep_spacing": DPM_SOLVER_SPACING}),
    # diffusers' own DDIM, the reference ours is tested against
    "diffusers-ddim": (DDIMScheduler, {}),
    # Karras 2022's noise levels (rho = 7) rounded to training timesteps, for our DDIM and DPM-Solver++
    "ddim-karras": (GuidedDDIMScheduler, {"timestep_spacing": "karras"}),
    "dpm2m-karras": (GuidedDPMSolverMultistepScheduler, {"timestep_spacing": "karras"}),
    # the EDM sampler (Karras 2022, Algorithm 2, no churn): Heun on Karras levels, 2N - 1 evaluations; and its Euler
    "heun": (GuidedEDMScheduler, {"solver_order": 2, "timestep_spacing": DPM_SOLVER_SPACING}),
    "euler": (GuidedEDMScheduler, {"solver_order": 1, "timestep_spacing": DPM_SOLVER_SPACING}),
    # Heun ending at sigma = 0.1 (t ~ 26) instead of the schedule's sigma at t = 0 (0.01): on the shipped MNIST model,
    # the evaluations below it add background grain that more Heun steps shrink only slowly (docs/schedulers.md)
    "heun-sigma-min-0.1": (GuidedEDMScheduler, {"solver_order": 2, "timestep_spacing": DPM_SOLVER_SPACING,
                                                "sigma_min": 0.1}),
    # the reverse VP SDE (Song 2021): Euler-Maruyama alone, reverse diffusion alone, and reverse diffusion + one
    # Langevin step (snr 0.16), so that the corrector's worth is one comparison at equal network calls
    "sde": (GuidedScoreSDEScheduler, {"predictor": "euler_maruyama", "corrector_steps": 0}),
    "reverse-diffusion": (GuidedScoreSDEScheduler, {"predictor": "reverse_diffusion", "corrector_steps": 0}),
    "pc": (GuidedScoreSDEScheduler, {"predictor": "reverse_diffusion", "corrector_steps": 1}),
}


def sampler_label(scheduler) -> str:
    """What a scheduler samples with, for tables and cards: "DDPM" for our DDPM (what a saved folder loads with),
    "DDIM", ..., or the class name of another."""
    names = {GuidedDDPMScheduler: "DDPM", GuidedDDIMScheduler: "DDIM", GuidedDPMSolverMultistepScheduler: "DPM-Solver++(2M)",
             DPMSolverMultistepScheduler: "diffusers' DPM-Solver++", DDIMScheduler: "diffusers' DDIM",
             GuidedEDMScheduler: "EDM", GuidedScoreSDEScheduler: "reverse SDE"}  # fmt: skip
    return names.get(type(scheduler), type(scheduler).__name__)


def editable_config(config) -> dict:
    """A scheduler config as a plain dict that `from_config` honours as edited: without `_use_default_values`,
    whose listed keys `from_config` would otherwise reset to their defaults."""
    return {key: value for key, value in dict(config).items() if key != "_use_default_values"}


def make_scheduler(name: str, config):
    """A fresh scheduler of kind `name` (a key of SAMPLERS: ours, or diffusers' dpm++ and diffusers-ddim) on the
    noise schedule in `config`."""
    check_choice("sampler", name, SAMPLERS)
    scheduler_class, overrides = SAMPLERS[name]
    return scheduler_class.from_config(known_keys_only(editable_config(config), scheduler_class), **overrides)


def known_keys_only(config: dict, scheduler_class) -> dict:
    """`config` without the keys `scheduler_class` does not take (another sampler's options, such as a Heun's churn
    in a config saved from it), which `from_config` would ignore with a warning each."""
    parameters = inspect.signature(scheduler_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return config  # it takes any key
    return {key: value for key, value in config.items() if key in parameters or key.startswith("_")}


def set_distinct_timesteps(scheduler, num_inference_steps: int, device=None) -> None:
    """`scheduler.set_timesteps`, refusing a DPM-Solver schedule that repeats a timestep. A repeated timestep is a
    step of zero length: diffusers' DPMSolverMultistepScheduler (linspace spacing) makes one at 1,000 steps of a
    1,000-step schedule (round(linspace(0, 999, 1001)) holds 500 twice) and divides by h = 0 there, so its samples
    are NaN. Ours refuse that step count in set_timesteps already. PNDM repeats one timestep on purpose (PLMS's
    warm-up takes two model outputs there), so only DPM-Solver is checked."""
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if isinstance(scheduler, DPMSolverMultistepScheduler) and len(timesteps.unique()) < len(timesteps):
        raise ValueError(f"`num_inference_steps`={num_inference_steps} makes {type(scheduler).__name__} repeat a "
                         f"timestep (a step of zero length); use fewer steps (at most "
                         f"{scheduler.config.num_train_timesteps - 1} for DPM-Solver).")  # fmt: skip


def with_thresholding(scheduler, thresholding: str | None, dynamic_thresholding_ratio: float | None = None):
    """`scheduler`, or a copy with this call's x0 thresholding: "none", "static" (clip to [-1, 1]) or "dynamic"
    (Imagen: s = max(1, percentile(|x0|)), x0 = clip(x0, -s, s) / s, uncapped unless the config caps s above 1),
    and optionally its percentile. Raises ValueError if the scheduler has no such option."""
    if thresholding is None and dynamic_thresholding_ratio is None:
        return scheduler
    if thresholding is not None:
        check_choice("thresholding", thresholding, THRESHOLDING_MODES)
    config = editable_config(scheduler.config)
    # what the class takes, not what its config holds: from_config keeps keys a class ignores (a DDPM config's
    # clip_sample rides along in diffusers' DPMSolverMultistepScheduler, which never clips with it)
    accepted = set(inspect.signature(type(scheduler).__init__).parameters)
    if thresholding == "dynamic" and "thresholding" not in accepted or thresholding == "static" and not (
        {"clip_sample", "thresholding"} & accepted
    ):
        raise ValueError(f"`thresholding`={thresholding!r} is not supported by {type(scheduler).__name__}.")
    if thresholding is not None:
        config.update(thresholding=thresholding == "dynamic", clip_sample=thresholding == "static")
    if thresholding == "static" and "clip_sample" not in accepted:
        # no clip_sample (diffusers' DPM-Solver): Imagen's rule with s capped at 1 is clipping to [-1, 1]
        config.update(thresholding=True, sample_max_value=1.0)
    if thresholding == "dynamic" and config.get("sample_max_value", 1.0) <= 1.0:
        # diffusers' default cap sample_max_value = 1 clamps s to [1, 1]: dynamic thresholding would be static
        # clipping. Imagen's s = max(1, percentile(|x0|)) has no cap, so a call asking for it gets none; a config
        # with a cap above 1 (DeepFloyd IF uses 1.5) keeps its own.
        config["sample_max_value"] = float("inf")
    if dynamic_thresholding_ratio is not None:
        config["dynamic_thresholding_ratio"] = dynamic_thresholding_ratio
    return type(scheduler).from_config(config)


def warn_if_latent(vae, thresholding: str | None) -> None:
    """Thresholding bounds x0 to the pixel range [-1, 1]; a latent model's x0 is a latent (Stable Diffusion's have
    unit variance and no such range), so asking for it on a latent model is most likely a mistake: warn, and do it."""
    if vae is not None and thresholding in ("static", "dynamic"):
        logger.warning("thresholding=%r on a latent model: thresholding bounds pixels, not latents (x0 here is a VAE "
                       "latent); latent models are sampled with thresholding='none'.", thresholding)  # fmt: skip


def private_scheduler(scheduler, thresholding: str | None = None, dynamic_thresholding_ratio: float | None = None):
    """A copy of `scheduler` for one sampling call, with that call's thresholding if given: timesteps and solver
    history live on a scheduler, so two calls sharing one would disturb each other."""
    own = with_thresholding(scheduler, thresholding, dynamic_thresholding_ratio)
    return type(own).from_config(editable_config(own.config)) if own is scheduler else own


def default_thresholding(pipe) -> str:
    """"dynamic" for a pixel model, "none" for a latent one: thresholding bounds x0 to the pixel range [-1, 1],
    and a latent model's x0 is a latent (unit variance, no such range)."""
    return "none" if getattr(pipe, "vae", None) is not None else "dynamic"


def step_kwargs(scheduler, generator, eta: float, use_clipped_model_output: bool) -> dict:
    """Pass each option only to schedulers whose `step` takes it (DDIM takes eta, DPM-Solver does not)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    options = {"eta": eta, "generator": generator, "use_clipped_model_output": use_clipped_model_output}
    return {name: value for name, value in options.items() if name in accepted}
