"""The one place that knows how diffusers' guider API works (`diffusers.guiders`, experimental in diffusers and
tested here with diffusers 0.42). If diffusers changes it, this module is what to mend.

A diffusers guider is driven as diffusers' modular pipelines drive it: `set_state(step, num_inference_steps,
timestep)`, then `prepare_inputs(data)` returns one batch per prediction it wants this step (it is also where APG
resets its momentum at step 0): each batch names the prediction and takes index 0 (conditional) or 1
(unconditional) of every (conditional, unconditional) field of `data`. Then for each batch, in order,
`prepare_models(denoiser)`, the network call, `cleanup_models(denoiser)`: guiders that alter the network for one
prediction (PAG, SLG, SEG, diffusers' AutoGuidance) hook it there. Finally `forward(**predictions)` returns a
`GuiderOutput` whose `pred` is the guided model output. We pass `prepare_inputs` only the names of our two
conditionings as its one field, so each batch says which conditioning its prediction reads; our loop makes the
tensors itself (in one batched call where no prediction alters the network).
"""

import logging
from contextlib import contextmanager
from typing import NamedTuple

import diffusers.guiders
from diffusers.configuration_utils import register_to_config
from diffusers.guiders import BaseGuidance
from diffusers.guiders.guider_utils import GuiderOutput

TESTED_DIFFUSERS = ("0.42",)  # minor versions whose guider API this module was tested with (setup.py pins them)

# the predictions our pipelines can make, in the order they are stacked in one batched UNet call: the
# unconditional half first, as the pipelines have always batched classifier-free guidance
PREDICTIONS = ("pred_uncond", "pred_cond")

# diffusers' (conditional, unconditional) tuple fields: index 0 feeds a conditional batch, 1 an unconditional one
CONDITIONINGS = ("pred_cond", "pred_uncond")

__all__ = ["CONDITIONINGS", "PREDICTIONS", "TESTED_DIFFUSERS", "BaseGuidance", "GuiderOutput", "Prediction",
           "alters_network", "combine", "diffusers_guider", "quiet_construction", "register_to_config",
           "step_predictions"]  # fmt: skip


class Prediction(NamedTuple):
    """One network prediction a guider asks for: its `name` ("pred_cond", "pred_uncond", "pred_cond_skip",
    "pred_weak", ...) and the conditioning it reads, `inputs` ("pred_cond" or "pred_uncond")."""

    name: str
    inputs: str


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


def step_predictions(guider: BaseGuidance, step: int, num_inference_steps: int, timestep) -> list[Prediction]:
    """Set the guider's step state and return the predictions it needs at this step, in its order."""
    guider.set_state(step=step, num_inference_steps=num_inference_steps, timestep=timestep)
    batches = guider.prepare_inputs({"inputs": CONDITIONINGS})
    return [Prediction(getattr(batch, BaseGuidance._identifier_key), batch.inputs) for batch in batches]


def alters_network(guider: BaseGuidance) -> bool:
    """Whether the guider hooks the network for some of its predictions (`prepare_models`), so that each
    prediction needs a call of its own, made between `prepare_models` and `cleanup_models`."""
    if hasattr(guider, "alters_network"):  # ours; a CombinedGuidance asks its first member
        return guider.alters_network
    return type(guider).prepare_models is not BaseGuidance.prepare_models


# diffusers guiders whose `forward` takes `torch.norm` over every dim but the batch: torch computes a norm over one or
# two dims only, so on (B, C, H, W) images they raise ("dim must be a 2-tuple"; diffusers wrote them for (batch, tokens,
# dim) latents). On a (B, C, H * W) view the same call is the Frobenius norm, the per-sample vector norm they mean.
NORM_OVER_TWO_DIMS = tuple(getattr(diffusers.guiders, name) for name in ("MagnitudeAwareGuidance",)
                           if hasattr(diffusers.guiders, name))  # fmt: skip


def combine(guider: BaseGuidance, predictions: dict):
    """The guided model output from this step's predictions (name -> tensor)."""
    first = next(iter(predictions.values()))
    if not isinstance(guider, NORM_OVER_TWO_DIMS) or first.ndim <= 3:
        return guider.forward(**predictions).pred
    flat = {name: prediction.flatten(2) for name, prediction in predictions.items()}
    return guider.forward(**flat).pred.reshape(first.shape)


def diffusers_guider(name: str) -> type | None:
    """diffusers' guider class of that name, or None."""
    found = getattr(diffusers.guiders, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseGuidance) else None


def planned_predictions(guider: BaseGuidance, num_inference_steps: int) -> list[list[Prediction]]:
    """The predictions a guider will ask for at each of `num_inference_steps` steps (for cost estimates; a
    pipeline plans with each step's full context instead)."""
    return [step_predictions(guider, step, num_inference_steps, None) for step in range(num_inference_steps)]
