"""The one denoising loop every pipeline runs (pixel, latent, class-conditional, text-to-image, SDEdit), and the
guided network output that inversion uses too.

At each step the guider says which predictions it needs (conditional, unconditional, a weak model's); those of one
network are stacked into one batched call, the guider combines the outputs (and may correct them), the scheduler
steps, and the guider may correct the step (classifier guidance's mean shift). A prediction the guider does not need
at a step is not computed. A guider that alters the network for one prediction (diffusers' PAG, SLG, SEG,
AutoGuidance hook it in `prepare_models`) gets one call per prediction, in its order, as diffusers' modular pipelines
make them. `counts` tallies the evaluations: "unet" (one per prediction, each over the whole image batch),
"unet_calls" (forward calls), "weak_unet" (the weak model's predictions, autoguidance), "classifier" (forward +
backward), for universal guidance "unet_gradient" (a network forward and backward) and "clean_classifier", and for
CLIP guidance "clip" (an image-tower forward and backward), so that methods can be compared at equal cost.
"""

from collections import Counter
from dataclasses import dataclass, field

import torch

from ..guiders import PREDICTIONS, Guider, StepContext
from ..guiders.diffusers_api import Prediction, alters_network, combine, step_predictions

PREDICTION_NAMES = {"pred_cond": "conditional", "pred_uncond": "unconditional", "pred_weak": "weak model's"}
WEAK = "pred_weak"  # autoguidance's prediction: the weak model's, on the conditional inputs


@dataclass
class Conditioning:
    """How to make each prediction: the network to call and, per conditioning ("pred_cond", "pred_uncond"), the
    keyword arguments that condition it (class labels, text states). `models` names other networks for some
    predictions (the weak model of autoguidance for "pred_weak"). `class_labels` and `classifier` are what
    classifier guidance reads, `clean_classifier` what universal guidance reads, `clip_model` and
    `clip_text_embeds` what CLIP guidance reads."""

    model: object
    branches: dict
    class_labels: torch.Tensor | None = None
    classifier: torch.nn.Module | None = None
    clean_classifier: torch.nn.Module | None = None
    missing: dict = field(default_factory=dict)  # prediction or conditioning name -> why this pipeline cannot make it
    models: dict = field(default_factory=dict)  # prediction name -> the network that makes it, if not `model`
    clip_model: torch.nn.Module | None = None
    clip_text_embeds: torch.Tensor | None = None  # (B, E): the call's prompts under clip_model

    def model_for(self, prediction: Prediction):
        return self.models.get(prediction.name, self.model)

    def why_not(self, prediction: Prediction) -> str | None:
        """Why this pipeline cannot make the prediction, or None if it can."""
        if prediction.name == WEAK and WEAK not in self.models:
            return self.missing.get(WEAK, "this pipeline has no weak model (`weak_unet`)")
        if prediction.inputs not in self.branches:
            return self.missing.get(prediction.inputs, f"this pipeline has no {prediction.inputs} conditioning")
        return None


def call(conditioning: Conditioning, model, sample: torch.Tensor, timestep, predictions: list) -> dict:
    """One forward call of `model` making the given predictions, stacked along the batch in their order."""
    branches = [conditioning.branches[prediction.inputs] for prediction in predictions]
    if len(branches) == 1:
        output = model(sample, timestep, **branches[0]).sample
    else:
        kwargs = {key: torch.cat([branch[key] for branch in branches]) for key in branches[0]}
        output = model(torch.cat([sample] * len(branches)), timestep, **kwargs).sample
    return dict(zip([prediction.name for prediction in predictions], output.chunk(len(branches))))


def predict(guider, conditioning: Conditioning, context: StepContext, predictions: list[Prediction]) -> dict:
    """The networks' outputs for the step's predictions (name -> tensor): one batched call per network, the
    unconditional half first; one call per prediction, between the guider's `prepare_models` and `cleanup_models`,
    for a guider that alters the network."""
    sample, timestep, counts = context.sample, context.timestep, context.counts
    if alters_network(guider):
        outputs = {}
        for prediction in predictions:  # in the guider's order: prepare_models counts its calls to know which it is
            model = conditioning.model_for(prediction)
            guider.prepare_models(model)
            try:
                outputs.update(call(conditioning, model, sample, timestep, [prediction]))
            finally:
                guider.cleanup_models(model)
            tally(counts, conditioning, [prediction])
        return outputs
    by_model = {}
    for prediction in sorted(predictions, key=lambda p: PREDICTIONS.index(p.inputs)):  # stable: uncond first
        by_model.setdefault(id(conditioning.model_for(prediction)), []).append(prediction)
    outputs = {}
    for group in by_model.values():
        outputs.update(call(conditioning, conditioning.model_for(group[0]), sample, timestep, group))
        tally(counts, conditioning, group)
    return outputs


def step_context(conditioning: Conditioning, step: int, num_steps: int, timestep, scheduler, sample: torch.Tensor,
                 counts: Counter | None = None) -> StepContext:  # fmt: skip
    """What a guider of ours sees at one step of a sampling (or inversion) call."""
    return StepContext(step, num_steps, timestep, scheduler, sample, conditioning.class_labels, conditioning.classifier,
                       Counter() if counts is None else counts, conditioning.clean_classifier,
                       lambda x, inputs="pred_cond": differentiable_prediction(conditioning, x, timestep, inputs),
                       conditioning.clip_model, conditioning.clip_text_embeds)  # fmt: skip


def differentiable_prediction(conditioning: Conditioning, sample: torch.Tensor, timestep, inputs: str) -> torch.Tensor:
    """The output on the `inputs` conditioning ("pred_cond", "pred_uncond") at (sample, timestep), to be called
    outside inference mode with gradients on (universal guidance differentiates x0_hat(x_t) through the network):
    inputs made in inference mode are copied, as autograd cannot save them."""
    branch = {key: value.clone() for key, value in conditioning.branches[inputs].items()}
    timestep = timestep.clone() if torch.is_tensor(timestep) else timestep
    return conditioning.model(sample, timestep, **branch).sample


def tally(counts: Counter, conditioning: Conditioning, predictions: list) -> None:
    """Count one call's predictions, the weak model's apart (a smaller network), and the call."""
    for prediction in predictions:
        counts["weak_unet" if prediction.name == WEAK else "unet"] += 1
    counts["unet_calls" if conditioning.model_for(predictions[0]) is conditioning.model else "weak_unet_calls"] += 1


def begin_step(guider, context: StepContext) -> list[Prediction]:
    """Hand a guider of ours the step's context, set the step state of any guider; the predictions it needs."""
    if isinstance(guider, Guider):
        guider.set_context(context)
    return step_predictions(guider, context.step, context.num_inference_steps, context.timestep)


def guided_output(guider, conditioning: Conditioning, context: StepContext) -> torch.Tensor:
    """One step's guided network output at x_t = `context.sample`."""
    predictions = begin_step(guider, context)
    return combine(guider, predict(guider, conditioning, context, predictions))


def after_step(guider, step, output: torch.Tensor) -> torch.Tensor:
    """The sampler's x_{t-1}, as a guider of ours may correct it (classifier guidance's mean shift, CFG++)."""
    if not isinstance(guider, Guider):
        return step.prev_sample
    return guider.after_step(step.prev_sample, output, getattr(step, "pred_original_sample", None))


def after_inversion_step(guider, next_sample: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """DDIM inversion's x_t, as a guider of ours that changes the sampler step changes its inverse (CFG++)."""
    if not isinstance(guider, Guider):
        return next_sample
    return guider.after_inversion_step(next_sample, output)


def plan(guider, conditioning: Conditioning, scheduler, timesteps) -> list[list[Prediction]]:
    """The predictions each step will need, asked of the guider before any network runs, and refused with the
    reason when this pipeline cannot make one of them."""
    steps = [begin_step(guider, StepContext(i, len(timesteps), t, scheduler)) for i, t in enumerate(timesteps)]
    for prediction in dict.fromkeys(prediction for predictions in steps for prediction in predictions):
        reason = conditioning.why_not(prediction)
        if reason is not None:
            at = [i for i, predictions in enumerate(steps) if prediction in predictions]
            what = PREDICTION_NAMES.get(prediction.name, f"{prediction.name!r}")
            raise ValueError(f"`guider` {type(guider).__name__} needs the {what} prediction (at steps {at[0]}-{at[-1]} "
                             f"of {len(steps)}), but {reason}.")  # fmt: skip
    if alters_network(guider):
        rehearse_hooks(guider, conditioning, scheduler, timesteps)
    return steps


def rehearse_hooks(guider, conditioning: Conditioning, scheduler, timesteps) -> None:
    """Apply and remove a network-altering guider's hooks for every planned prediction, with no network call, so
    that a layer it cannot find is refused before any work (diffusers finds the layers only when hooking)."""
    for i, t in enumerate(timesteps):
        for prediction in begin_step(guider, StepContext(i, len(timesteps), t, scheduler)):
            model = conditioning.model_for(prediction)
            try:
                guider.prepare_models(model)
            except (ValueError, AttributeError) as error:
                raise ValueError(f"`guider` {type(guider).__name__} could not alter {type(model).__name__} for its "
                                 f"{prediction.name!r} prediction: {error} (a UNet2DModel has no transformer blocks "
                                 f"for fqn='auto': name attention layers, e.g. LayerSkipConfig(indices=[0], "
                                 f"fqn='mid_block.attentions', skip_attention=False, skip_attention_scores=True, "
                                 f"skip_ff=False))") from error  # fmt: skip
            finally:
                guider.cleanup_models(model)


def needed_conditionings(steps: list[list[Prediction]]) -> set:
    """The conditionings ("pred_cond", "pred_uncond") any step's predictions read."""
    return {prediction.inputs for predictions in steps for prediction in predictions}


def denoise(guider, conditioning: Conditioning, scheduler, latents, timesteps, step_options: dict, progress=iter,
            counts: Counter | None = None):  # fmt: skip
    """From `latents` at the level of timesteps[0] down to x0, one guided step per timestep; yields
    (i, t, latents, pred_original_sample) after each. A consumer may `send` new latents back (callbacks do)."""
    counts = Counter() if counts is None else counts
    for i, t in enumerate(progress(timesteps)):
        model_input = scheduler.scale_model_input(latents, t)
        context = step_context(conditioning, i, len(timesteps), t, scheduler, model_input, counts)
        output = guided_output(guider, conditioning, context)
        step = scheduler.step(output, t, latents, **step_options)
        latents = after_step(guider, step, output)
        replaced = yield i, t, latents, getattr(step, "pred_original_sample", None)
        if replaced is not None:
            latents = replaced
            yield None  # answer the send(); the loop's next() resumes sampling


def run(pipe, steps, callback_on_step_end=None, on_step=None, tensor_inputs=("latents", "pred_original_sample")):
    """Drive a `denoise` generator to the end: `on_step(i, t, latents, x0)` sees every step (trajectories),
    `callback_on_step_end(pipe, i, t, tensors)`, given the `tensor_inputs` of {"latents", "pred_original_sample"},
    may return new latents. The last latents."""
    final = None
    for i, t, latents, x0 in steps:
        if on_step is not None:
            on_step(i, t, latents, x0)
        if callback_on_step_end is not None:
            tensors = {"latents": latents, "pred_original_sample": x0}
            returned = callback_on_step_end(pipe, i, t, {name: tensors[name] for name in tensor_inputs})
            if isinstance(returned, dict) and "latents" in returned:
                latents = returned["latents"]
                steps.send(latents)
        final = latents
    return final
