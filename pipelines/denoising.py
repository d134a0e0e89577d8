"""The one denoising loop every pipeline runs (pixel, latent, class-conditional, text-to-image, SDEdit), and the
guided network output that inversion uses too.

At each step the guider says which predictions it needs (conditional, unconditional); they are stacked into one
batched network call, the guider combines the outputs (and may correct them), the scheduler steps, and the guider
may correct the step (classifier guidance's mean shift). A prediction the guider does not need at a step is not
computed. `counts` tallies the evaluations: "unet" (one per prediction, each over the whole image batch),
"unet_calls" (batched forward calls) and "classifier" (forward + backward), so that methods can be compared at equal
cost.
"""

from collections import Counter
from dataclasses import dataclass, field

import torch

from ..guiders import PREDICTIONS, Guider, StepContext
from ..guiders.diffusers_api import combine, step_predictions

PREDICTION_NAMES = {"pred_cond": "conditional", "pred_uncond": "unconditional"}


@dataclass
class Conditioning:
    """How to make each prediction: the network to call and, per prediction name, the keyword arguments that
    condition it (class labels, text states). `class_labels` and `classifier` are what classifier guidance reads."""

    model: object
    branches: dict
    class_labels: torch.Tensor | None = None
    classifier: torch.nn.Module | None = None
    missing: dict = field(default_factory=dict)  # prediction name -> why this pipeline cannot make it


def predict(conditioning: Conditioning, sample: torch.Tensor, timestep, names: list[str]) -> dict:
    """The network's outputs for the named predictions, from one batched call (unconditional half first)."""
    ordered = [name for name in PREDICTIONS if name in names]
    if len(ordered) == 1:
        output = conditioning.model(sample, timestep, **conditioning.branches[ordered[0]]).sample
        return {ordered[0]: output}
    branches = [conditioning.branches[name] for name in ordered]
    kwargs = {key: torch.cat([branch[key] for branch in branches]) for key in branches[0]}
    output = conditioning.model(torch.cat([sample] * len(ordered)), timestep, **kwargs).sample
    return dict(zip(ordered, output.chunk(len(ordered))))


def begin_step(guider, context: StepContext) -> list[str]:
    """Hand a guider of ours the step's context, set the step state of any guider; the predictions it needs."""
    if isinstance(guider, Guider):
        guider.set_context(context)
    return step_predictions(guider, context.step, context.num_inference_steps, context.timestep)


def guided_output(guider, conditioning: Conditioning, context: StepContext) -> torch.Tensor:
    """One step's guided network output at x_t = `context.sample`."""
    names = begin_step(guider, context)
    predictions = predict(conditioning, context.sample, context.timestep, names)
    context.counts.update(unet=len(names), unet_calls=1)
    return combine(guider, predictions)


def after_step(guider, step, output: torch.Tensor) -> torch.Tensor:
    """The sampler's x_{t-1}, as a guider of ours may correct it (classifier guidance's mean shift, CFG++)."""
    if not isinstance(guider, Guider):
        return step.prev_sample
    return guider.after_step(step.prev_sample, output, getattr(step, "pred_original_sample", None))


def plan(guider, conditioning: Conditioning, scheduler, timesteps) -> list[list[str]]:
    """The predictions each step will need, asked of the guider before any network runs, and refused with the
    reason when this pipeline cannot make one of them."""
    steps = [begin_step(guider, StepContext(i, len(timesteps), t, scheduler)) for i, t in enumerate(timesteps)]
    for name in dict.fromkeys(name for names in steps for name in names):
        if name not in conditioning.branches:
            at = [i for i, names in enumerate(steps) if name in names]
            what = PREDICTION_NAMES.get(name, repr(name))
            reason = conditioning.missing.get(name, "this pipeline makes only the conditional and unconditional "
                                              "predictions (guiders that alter the network, such as PAG, SLG, SEG or "
                                              "AutoGuidance, are not supported)")  # fmt: skip
            raise ValueError(f"`guider` {type(guider).__name__} needs the {what} prediction (at steps {at[0]}-{at[-1]} "
                             f"of {len(steps)}), but {reason}.")  # fmt: skip
    return steps


def needed_anywhere(steps: list[list[str]]) -> set:
    return {name for names in steps for name in names}


def denoise(guider, conditioning: Conditioning, scheduler, latents, timesteps, step_options: dict, progress=iter,
            counts: Counter | None = None):  # fmt: skip
    """From `latents` at the level of timesteps[0] down to x0, one guided step per timestep; yields
    (i, t, latents, pred_original_sample) after each. A consumer may `send` new latents back (callbacks do)."""
    counts = Counter() if counts is None else counts
    for i, t in enumerate(progress(timesteps)):
        model_input = scheduler.scale_model_input(latents, t)
        context = StepContext(i, len(timesteps), t, scheduler, model_input, conditioning.class_labels,
                              conditioning.classifier, counts)  # fmt: skip
        output = guided_output(guider, conditioning, context)
        step = scheduler.step(output, t, latents, **step_options)
        latents = after_step(guider, step, output)
        replaced = yield i, t, latents, getattr(step, "pred_original_sample", None)
        if replaced is not None:
            latents = replaced
            yield None  # answer the send(); the loop's next() resumes sampling


def run(pipe, steps, callback_on_step_end=None, on_step=None):
    """Drive a `denoise` generator to the end: `on_step(i, t, latents, x0)` sees every step (trajectories),
    `callback_on_step_end(pipe, i, t, {"latents", "pred_original_sample"})` may return new latents. The last
    latents."""
    final = None
    for i, t, latents, x0 in steps:
        if on_step is not None:
            on_step(i, t, latents, x0)
        if callback_on_step_end is not None:
            returned = callback_on_step_end(pipe, i, t, {"latents": latents, "pred_original_sample": x0})
            if isinstance(returned, dict) and "latents" in returned:
                latents = returned["latents"]
                steps.send(latents)
        final = latents
    return final
