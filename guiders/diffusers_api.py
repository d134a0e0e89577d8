"""The one place that knows how diffusers' guider API works (`diffusers.guiders`, experimental in diffusers and
tested here with diffusers 0.42). If diffusers changes it, this module is what to mend.

A diffusers guider is driven as diffusers' modular pipelines drive it: `set_state(step, num_inference_steps,
timestep)`, then `prepare_inputs(data)` names the predictions it wants this step (one batch each; it is also where
APG resets its momentum at step 0), then `forward(pred_cond=..., pred_uncond=...)` returns a `GuiderOutput` whose
`pred` is the guided model output. We pass `prepare_inputs` no tensors: our loop builds all the predictions a step
needs into one batched UNet call itself, so only the names it returns matter.
"""

import logging
from contextlib import contextmanager

import diffusers.guiders
from diffusers.configuration_utils import register_to_config
from diffusers.guiders import BaseGuidance
from diffusers.guiders.guider_utils import GuiderOutput

TESTED_DIFFUSERS = ("0.42",)  # minor versions whose guider API this module was tested with (setup.py pins them)

# the predictions our pipelines can make, in the order they are stacked in one batched UNet call: the
# unconditional half first, as the pipelines have always batched classifier-free guidance
PREDICTIONS = ("pred_uncond", "pred_cond")

__all__ = ["PREDICTIONS", "TESTED_DIFFUSERS", "BaseGuidance", "GuiderOutput", "combine", "diffusers_guider",
           "quiet_construction", "register_to_config", "step_predictions"]  # fmt: skip


@contextmanager
def quiet_construction():
    """`BaseGuidance.__init__` logs "Guiders are currently an experimental feature" on every construction; ours
    are built on every pipeline call that uses the `guidance_scale=` shorthand, so we say it once in setup.py's
    pin instead of once per call."""
    logger = logging.getLogger("diffusers.guiders.guider_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def step_predictions(guider: BaseGuidance, step: int, num_inference_steps: int, timestep) -> list[str]:
    """Set the guider's step state and return the names of the predictions it needs at this step."""
    guider.set_state(step=step, num_inference_steps=num_inference_steps, timestep=timestep)
    batches = guider.prepare_inputs({})
    return [getattr(batch, BaseGuidance._identifier_key) for batch in batches]


def combine(guider: BaseGuidance, predictions: dict):
    """The guided model output from this step's predictions (name -> tensor)."""
    return guider.forward(**predictions).pred


def diffusers_guider(name: str) -> type | None:
    """diffusers' guider class of that name, or None."""
    found = getattr(diffusers.guiders, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseGuidance) else None


def planned_predictions(guider: BaseGuidance, num_inference_steps: int) -> list[list[str]]:
    """The predictions a guider will ask for at each of `num_inference_steps` steps (for cost estimates; a
    pipeline plans with each step's full context instead)."""
    return [step_predictions(guider, step, num_inference_steps, None) for step in range(num_inference_steps)]
