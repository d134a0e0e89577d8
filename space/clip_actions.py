"""The CLIP guidance tab's action: GLIDE's comparison on one prompt and seed (Nichol et al. 2022, sec. 2.4 and 5),
over the library's public API. A text model draws a row each without guidance (the conditional model), with CLIP
guidance, with CFG, and with CFG then CLIP guidance; a class model's rows are its unconditional model without and
with CLIP guidance (an open-vocabulary prompt steering a model that was never given text). Each row says what it
cost in UNet and CLIP evaluations. The pipelines' own scheduler samples (DDPM), as in the measurements."""

import time

import gradio as gr

from guided_diffusers.guiders import ClassifierFreeGuidance, CLIPGuidance, CombinedGuidance

from .actions import generator, table
from .controls import (MAX_SEED, Steps, check_cost, number, one_run_per_visitor, refuse, request_folder, saved,
                       user_facing)  # fmt: skip
from .models import ServedModel
from .pictures import labelled_rows


def clip_models(models: dict) -> list[str]:
    """The served models with a noise-aware `clip_model` (text models and class models alike)."""
    return [name for name, model in models.items()
            if model.kind in ("text", "class") and getattr(model.pipe, "clip_model", None) is not None]  # fmt: skip


def default_prompt(served: ServedModel) -> str:
    """A prompt in the words the model's clip_model was trained on: two items for a text model's compositions, one
    for a class model's single images."""
    return "a 4 to the left of a 9" if served.is_text else "a picture of the numeral seven"


def comparison_rows(served: ServedModel, clip_scale: float, guidance: float) -> list[tuple[str, object]]:
    """(label, guider) per row: GLIDE's comparison for a text model, without and with CLIP for a class model."""
    clip = CLIPGuidance(clip_scale=clip_scale)  # on the conditional branch (a class model's: its null class)
    if not served.is_text:
        return [("unconditional", None), (f"CLIP s = {clip_scale:g}", clip)]
    cfg = ClassifierFreeGuidance(guidance_scale=guidance)
    return [("no guidance\n(w = 1)", ClassifierFreeGuidance(guidance_scale=1.0)), (f"CLIP s = {clip_scale:g}", clip),
            (f"CFG w = {guidance:g}", cfg),
            (f"CFG w = {guidance:g}\n+ CLIP s = {clip_scale:g}",
             CombinedGuidance([ClassifierFreeGuidance(guidance_scale=guidance), CLIPGuidance(clip_scale=clip_scale)]))]


def sample_row(served: ServedModel, prompt: str, guider, steps: int, count: int, seed: int, tracker):
    """One row's images in [-1, 1] and its evaluation counts, from the seed's noise."""
    options = dict(num_inference_steps=steps, generator=generator(seed), output_type="pt", guider=guider,
                   callback_on_step_end=tracker.callback)  # fmt: skip
    if served.is_text:
        out = served.pipe(prompt, num_images_per_prompt=count, **options)
    else:  # no class labels: the null class's prediction, steered by the prompt
        out = served.pipe(batch_size=count, prompt=[prompt] * count if guider is not None else None, **options)
    return out.images * 2 - 1, out.evaluations


@user_facing
def clip_comparison(models, model, prompt, clip_scale, guidance, steps, count, seed, progress=gr.Progress(),
                    request: gr.Request = None):  # fmt: skip
    """One prompt and seed, a labelled row per setting (see `comparison_rows`), with each row's UNet and CLIP
    evaluations and seconds."""
    names = clip_models(models)
    if model not in names:
        raise refuse(f"model must be one of {', '.join(names)} (the models with a clip_model); got {model!r}.")
    served = models[model]
    prompt = str(prompt or "").strip()
    if not prompt:
        raise refuse("prompt must be a few words (CLIP guidance steers towards it); got an empty prompt.")
    clip_scale = number(clip_scale, "CLIP guidance scale s", 0, 300)
    guidance = number(guidance, "CFG scale w", 0, 30)
    steps = number(steps, "steps", 5, 200, integer=True)
    count, seed = number(count, "images", 1, 8, integer=True), number(seed, "seed", 0, MAX_SEED, integer=True)
    rows = comparison_rows(served, clip_scale, guidance)
    check_cost(steps * len(rows), count, 2, "This comparison")  # CFG's two passes bound every row's UNet work
    tracker = Steps(progress, request, steps * len(rows))
    pictures, lines = [], []
    with one_run_per_visitor(request):
        for label, guider in rows:
            start = time.perf_counter()
            images, counts = sample_row(served, prompt, guider, steps, count, seed, tracker)
            pictures.append(images)
            lines.append([label.replace("\n", " "), f"{counts['unet']}", f"{counts.get('clip', 0)}",
                          f"{(time.perf_counter() - start) / count:.2f} s"])  # fmt: skip
    picture = saved(labelled_rows(pictures, [label for label, _ in rows]), request_folder(), "clip-guidance")
    return picture, table(["setting", "UNet evaluations", "CLIP evaluations (forward + backward)", "time per image"], lines)
