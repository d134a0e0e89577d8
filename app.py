"""guided-diffusers demo: DDPM, DDIM, classifier-free and classifier guidance, and dynamic thresholding on our
own models, as a Gradio app (a Hugging Face Space).

    python app.py                                 # the models in checkpoints/
    python app.py --models path/a,user/hub-repo   # folders or Hub ids; also GUIDED_DIFFUSERS_MODELS

Every action is a plain function over the library's public API (no sampling math here), so tests call them too.
"""

import argparse
import os
import random
import re
import time
from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from guided_diffusers.pipelines import SAMPLERS, GuidedDiffusionPipeline, TextToImagePipeline, make_scheduler
from guided_diffusers.pipelines.samplers import THRESHOLDING_MODES
from guided_diffusers.pipelines.samplers import default_thresholding as thresholding_for
from guided_diffusers.pipelines.image_utils import make_grid
from guided_diffusers.pipelines.loading import pipeline_class
from guided_diffusers.schedulers import GuidedDDPMScheduler
from guided_diffusers.training.data import fit_image, load_image_dataset, to_model_range, to_tensors
from guided_diffusers.training.model_card import read_model_card

MAX_STEPS, MAX_BATCH, MAX_SEED, MAX_INVERSION_STEPS = 1000, 16, 2**31 - 1, 250
UNCONDITIONAL = "unconditional"
THRESHOLDING = list(THRESHOLDING_MODES)
SCALE = 4  # nearest-neighbour upscaling for display


# ------------------------------------------------------------------------------------------- models
def load_pipelines(spec: str) -> dict:
    """Pipelines by name from a folder of model folders, or a comma-separated list of folders / Hub ids; each
    loads as the class its model_index.json names (class-conditional or text-to-image)."""
    root = Path(spec)
    if root.is_dir() and not (root / "model_index.json").exists():
        sources = sorted(str(p.parent) for p in root.glob("*/model_index.json"))
    else:
        sources = [s.strip() for s in spec.split(",") if s.strip()]
    if not sources:
        raise SystemExit(f"No models found in {spec!r}: pass --models with pipeline folders or Hub ids.")
    pipelines = {}
    for source in sources:
        try:
            cls = pipeline_class(source)
        except ValueError as error:  # a folder of another pipeline class
            raise SystemExit(str(error)) from None
        pipe = cls.from_pretrained(source)  # safetensors only; no remote code
        pipe.set_progress_bar_config(disable=True)
        pipelines[Path(source).name] = pipe
    return pipelines


def class_names(pipe) -> list[str]:
    count = pipe.num_classes or (pipe.classifier.config.num_classes if pipe.classifier is not None else 0)
    return list(pipe.config.class_names or [str(i) for i in range(count)])


def dataset_name(pipe, source: str) -> str | None:
    """The dataset a model card names, for the forward-process tab."""
    folder = Path(pipe.name_or_path or source)
    if (folder / "README.md").exists():
        return read_model_card(folder)[0].get("datasets", [None])[0]
    return None


# ----------------------------------------------------------------------------------------- checks
def checked(value, name, low, high, integer=False):
    """Server-side validation: a clear gr.Error for anything out of range."""
    if value is None or (integer and float(value) != int(value)) or not low <= float(value) <= high:
        raise gr.Error(f"{name} must be {'an integer ' if integer else ''}between {low} and {high}; got {value}.")
    return int(value) if integer else float(value)


def sampling_options(pipe, label, sampler, steps, eta, guidance, classifier_scale, thresholding, percentile, batch):
    """The pipeline arguments of one request, every control checked."""
    if sampler not in SAMPLERS:
        raise gr.Error(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}.")
    if thresholding not in THRESHOLDING:
        raise gr.Error(f"thresholding must be one of {', '.join(THRESHOLDING)}; got {thresholding!r}.")
    names = class_names(pipe)
    if label != UNCONDITIONAL and label not in names:
        raise gr.Error(f"class must be '{UNCONDITIONAL}' or one of {', '.join(names)}; got {label!r}.")
    batch = checked(batch, "batch size", 1, MAX_BATCH, integer=True)
    classifier_scale = checked(classifier_scale, "classifier guidance scale", 0, 100)
    if classifier_scale > 0 and pipe.classifier is None:
        raise gr.Error("This model has no noise-aware classifier: set the classifier guidance scale to 0.")
    conditional = label != UNCONDITIONAL
    return dict(
        batch_size=batch,
        class_labels=[names.index(label)] * batch if conditional else None,
        guidance_scale=checked(guidance, "CFG scale", 0, 50) if conditional and pipe.num_classes else 1.0,
        classifier_scale=classifier_scale if conditional else 0.0,
        num_inference_steps=checked(steps, "steps", 1, MAX_STEPS, integer=True),
        eta=checked(eta, "eta", 0, 1),
        thresholding=thresholding,
        dynamic_thresholding_ratio=checked(percentile, "dynamic thresholding percentile", 50, 100) / 100,
    )


def with_scheduler(pipe, sampler):
    """A pipeline sharing `pipe`'s models but with a scheduler of its own: concurrent requests (the queue runs two
    at a time) then never change or step each other's scheduler."""
    own = GuidedDiffusionPipeline(pipe.unet, make_scheduler(sampler, pipe.scheduler.config), classifier=pipe.classifier,
                                  null_class_label=pipe.config.null_class_label, class_names=pipe.config.class_names,
                                  vae=pipe.vae)  # fmt: skip
    own.set_progress_bar_config(disable=True)
    return own


def render(pipe, sampler: str, seed, options: dict) -> torch.Tensor:
    """One whole sampling run with these options, as a [-1, 1] batch."""
    generator = torch.Generator().manual_seed(int(seed))
    return with_scheduler(pipe, sampler)(generator=generator, output_type="pt", **options).images * 2 - 1


def shown(pipe, latents: torch.Tensor):
    """What the UNet diffuses as a picture: decoded first for a latent (VAE) model."""
    with torch.inference_mode():
        return picture(pipe.decode(latents))


def picture(latents: torch.Tensor, rows: int = 1):
    """A [-1, 1] batch as one upscaled PNG-ready grid."""
    images = GuidedDiffusionPipeline.postprocess(latents.float(), "np")
    return make_grid(images, rows=rows, scale=SCALE)


# ----------------------------------------------------------------------------------------- actions
def sample(pipelines, model, label, sampler, steps, eta, guidance, classifier_scale, thresholding, percentile, seed,
           randomize, batch, progress=gr.Progress()):  # fmt: skip
    """Stream (x_t, predicted x0, final grid or None, seed used, PNG path or None), one update per step."""
    pipe = pick(pipelines, model)
    seed = random.randint(0, MAX_SEED) if randomize else checked(seed, "seed", 0, MAX_SEED, integer=True)
    options = sampling_options(pipe, label, sampler, steps, eta, guidance, classifier_scale, thresholding, percentile, batch)
    pipe = with_scheduler(pipe, sampler)
    try:
        steps_iter = pipe.iterate(generator=torch.Generator().manual_seed(seed), **options)
        for i, t, latents, x0 in steps_iter:
            progress((i + 1, options["num_inference_steps"]), desc=f"t = {int(t)}")
            # identical pictures in one update share one cached file, which Gradio would write while serving it
            same = x0 is None or torch.equal(x0, latents)
            yield shown(pipe, latents), gr.skip() if same else shown(pipe, x0), None, seed, None
    except ValueError as error:  # the library's own checks, shown as such
        raise gr.Error(str(error)) from error
    final = shown(pipe, latents)
    path = Path(os.environ.get("GRADIO_TEMP_DIR", "/tmp")) / f"guided-diffusers-{model}-{seed}.png"
    final.save(path)
    yield gr.skip(), gr.skip(), final, seed, str(path)


def forward_process(pipelines, datasets, model, index, timestep):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for one real image, with the marginal statistics."""
    pipe = pick(pipelines, model)
    images = datasets.get(model)
    if images is None:
        raise gr.Error("No dataset images are available offline for this model.")
    index = checked(index, "image index", 0, len(images) - 1, integer=True)
    timestep = checked(timestep, "t", 0, pipe.scheduler.config.num_train_timesteps - 1, integer=True)
    scheduler = GuidedDDPMScheduler.from_config(pipe.scheduler.config)
    x0 = images[index : index + 1].repeat(4, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(index))
    x_t = scheduler.add_noise(x0, noise, torch.full((4,), timestep))
    abar = scheduler.alphas_cumprod[timestep].item()
    text = (f"abar_t = {abar:.4f}, SNR = {abar / (1 - abar):.4g}; mean of x_t = sqrt(abar_t) x0, variance 1 - abar_t. "
            f"Over the whole dataset Var[x_t] = abar Var[x0] + (1 - abar): {marginal_variance(images, scheduler, timestep):.3f}")  # fmt: skip
    return picture(torch.cat([x0[:1], x_t])), text


def marginal_variance(images, scheduler, timestep) -> float:
    """Empirical variance of x_t over the loaded images (standardised), which stays 1 for unit-variance data."""
    x0 = (images - images.mean()) / images.std()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    return scheduler.add_noise(x0, noise, torch.full((len(x0),), timestep)).var().item()


def schedule_plot():
    """abar_t and log SNR of the linear and cosine schedules."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    for schedule in ("linear", "squaredcos_cap_v2"):
        abar = GuidedDDPMScheduler(beta_schedule=schedule).alphas_cumprod.double().numpy()
        left.plot(abar, label=schedule)
        right.plot(np.log(abar / (1 - abar)), label=schedule)
    for axes, title in ((left, "abar_t"), (right, "log SNR")):
        axes.set_title(title)
        axes.set_xlabel("t")
    left.legend()
    figure.tight_layout()
    return figure


def default_thresholding(pipelines, model):
    """The thresholding the Sample and Text tabs start from for this model (none for a latent model)."""
    return thresholding_for(pick(pipelines, model, (GuidedDiffusionPipeline, TextToImagePipeline)))


def thresholding_comparison(pipelines, model, label, guidance, steps, seed, percentile=99.5):
    """Same noise, high guidance: none vs static vs dynamic at `percentile`, with the share of saturated pixels."""
    pipe = pick(pipelines, model)
    rows, captions = [], []
    for mode in THRESHOLDING:
        options = sampling_options(pipe, label, "ddim", steps, 0.0, guidance, 0.0, mode, percentile, 4)
        images = render(pipe, "ddim", seed, options)
        rows.append(images)
        name = f"dynamic (p = {percentile:g}%)" if mode == "dynamic" else mode
        captions.append(f"{name}: {(images.abs() > 0.99).float().mean().item():.1%} saturated pixels")
    return picture(torch.cat(rows), rows=3), "\n".join(captions)


def sampler_comparison(pipelines, model, label, steps, seed):
    """DDPM with every training step vs DDIM-N vs DPM-Solver++-N from the same noise, with time per image."""
    pipe = pick(pipelines, model)
    steps = checked(steps, "steps", 1, MAX_STEPS, integer=True)
    rows, lines = [], []
    for sampler, count in (("ddpm", pipe.scheduler.config.num_train_timesteps), ("ddim", steps), ("dpm++", steps)):
        options = sampling_options(pipe, label, sampler, count, 0.0, 1.0, 0.0, "none", 99.5, 4)
        start = time.perf_counter()
        rows.append(render(pipe, sampler, seed, options))
        lines.append(f"{sampler}-{count}: {(time.perf_counter() - start) / 4:.2f} s per image")
    return picture(torch.cat(rows), rows=3), "\n".join(lines)


def guidance_sweep(pipelines, model, label, scales, seed):
    """One seed, a row per CFG scale, with accuracy under the model's classifier and within-row diversity."""
    pipe = pick(pipelines, model)
    if label == UNCONDITIONAL or not pipe.num_classes:
        raise gr.Error("Pick a class: the sweep is over classifier-free guidance scales.")
    values = [checked(float(v), "CFG scale", 0, 50) for v in str(scales).replace(",", " ").split()][:6]
    rows, lines = [], []
    for scale in values:
        options = sampling_options(pipe, label, "ddim", 50, 0.0, scale, 0.0, "dynamic", 99.5, 8)
        images = render(pipe, "ddim", seed, options)
        rows.append(images)
        flat = images.flatten(1)
        line = f"w = {scale:g}: diversity (mean pixel distance) {torch.cdist(flat, flat).mean().item():.2f}"
        if pipe.classifier is not None:
            with torch.no_grad():
                predicted = pipe.classifier(images, torch.zeros(len(images), dtype=torch.long)).logits.argmax(1)
            line += f", accuracy {(predicted == options['class_labels'][0]).float().mean().item():.0%}"
        lines.append(line)
    return picture(torch.cat(rows), rows=len(rows)), "\n".join(lines)


def source_image(pipe, datasets, model, index, upload) -> torch.Tensor:
    """The image to invert, (1, C, H, W) in [0, 1]: an upload (fitted to the model's size) or a dataset image."""
    config = pipe.image_config
    if upload is not None:
        pixels = fit_image(upload, config.sample_size, config.in_channels)
        return torch.tensor(pixels).permute(2, 0, 1)[None].float() / 255
    images = datasets.get(model)
    if images is None:
        raise gr.Error("No dataset images are available offline for this model: upload an image.")
    index = checked(index, "image index", 0, len(images) - 1, integer=True)
    return (images[index : index + 1] + 1) / 2


def class_index(pipe, label):
    """A class name -> its index, or None for unconditional."""
    names = class_names(pipe)
    if label != UNCONDITIONAL and label not in names:
        raise gr.Error(f"class must be '{UNCONDITIONAL}' or one of {', '.join(names)}; got {label!r}.")
    return None if label == UNCONDITIONAL else names.index(label)


def inversion_options(pipe, label, steps, guidance) -> dict:
    """Conditioning and steps shared by inversion, reconstruction and variations, every control checked."""
    labels = class_index(pipe, label)
    return dict(
        class_labels=None if labels is None else [labels],
        num_inference_steps=checked(steps, "steps", 2, MAX_INVERSION_STEPS, integer=True),
        guidance_scale=checked(guidance, "CFG scale", 0, 20) if labels is not None and pipe.num_classes else 1.0,
    )


def inversion(pipelines, datasets, model, index, upload, label, steps, guidance, iterations):
    """Invert one image with DDIM and sample it back: (x0 | x_T / 3 | reconstruction), with the error."""
    pipe = pick(pipelines, model)
    image, options = source_image(pipe, datasets, model, index, upload), inversion_options(pipe, label, steps, guidance)
    iterations = checked(iterations, "fixed-point iterations", 0, 5, integer=True)
    try:
        latents = pipe.invert(image, fixed_point_iterations=iterations, **options).latents
        rebuilt = pipe.reconstruct(latents, **options)
    except ValueError as error:
        raise gr.Error(str(error)) from error
    mse = ((rebuilt - image) * 2).pow(2).mean().item()
    text = (f"x_T: mean {latents.mean().item():.3f}, std {latents.std().item():.3f} (Gaussian noise: 0, 1). "
            f"Reconstruction MSE (pixels in [-1, 1]): {mse:.2e}")  # fmt: skip
    noise = [] if pipe.vae is not None else [(latents / 3).clamp(-1, 1)]  # a latent model's x_T is no picture
    return picture(torch.cat([image * 2 - 1, *noise, rebuilt * 2 - 1])), text


def interpolation(pipelines, datasets, model, index, upload, index_b, label, label_b, frames, steps):
    """Invert two images, slerp their latents, interpolate the class embeddings: a strip and an animated GIF."""
    pipe = pick(pipelines, model)
    start, end = source_image(pipe, datasets, model, index, upload), source_image(pipe, datasets, model, index_b, None)
    frames = checked(frames, "frames", 3, 16, integer=True)
    steps = checked(steps, "steps", 2, MAX_INVERSION_STEPS, integer=True)
    try:
        images = pipe.interpolate(start, end, num_frames=frames, start_label=class_index(pipe, label),
                                  end_label=class_index(pipe, label_b), num_inference_steps=steps, output_type="pt")  # fmt: skip
    except ValueError as error:
        raise gr.Error(str(error)) from error
    strip = picture(images * 2 - 1)
    cells = [picture(frame[None] * 2 - 1) for frame in images]
    path = Path(os.environ.get("GRADIO_TEMP_DIR", "/tmp")) / f"guided-diffusers-interpolation-{time.time_ns()}.gif"
    cells[0].save(path, save_all=True, append_images=cells[1:] + cells[-2:0:-1], duration=120, loop=0)  # there and back
    return strip, str(path)


def variations(pipelines, datasets, model, index, upload, label, strength, guidance, steps, seed):
    """SDEdit: noise the image to `strength` and denoise, optionally towards another class; 8 variations."""
    pipe = pick(pipelines, model)
    image = source_image(pipe, datasets, model, index, upload)
    options = inversion_options(pipe, label, steps, guidance)
    seed = checked(seed, "seed", 0, MAX_SEED, integer=True)
    try:
        images = pipe.variations(image.repeat(8, 1, 1, 1), strength=checked(strength, "strength", 0.01, 1),
                                 generator=torch.Generator().manual_seed(seed), output_type="pt", **options)  # fmt: skip
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return picture(torch.cat([image, images]) * 2 - 1, rows=1)


def pick(pipelines, model, kind=GuidedDiffusionPipeline):
    """The loaded pipeline called `model`, of the kind the action needs, or a gr.Error naming the choices."""
    names = [name for name, pipe in pipelines.items() if isinstance(pipe, kind)]
    if model not in names:
        raise gr.Error(f"model must be one of {', '.join(names)}; got {model!r}.")
    return pipelines[model]


def text_to_image(pipelines, model, prompt, negative_prompt, guidance, thresholding, steps, count, seed, compare):
    """Images for a prompt, one row per thresholding mode when comparing, with the share of saturated pixels."""
    pipe = pick(pipelines, model, TextToImagePipeline)
    if thresholding not in THRESHOLDING:
        raise gr.Error(f"thresholding must be one of {', '.join(THRESHOLDING)}; got {thresholding!r}.")
    options = dict(guidance_scale=checked(guidance, "CFG scale", 0, 50), negative_prompt=negative_prompt or None,
                   num_inference_steps=checked(steps, "steps", 1, MAX_STEPS, integer=True),
                   num_images_per_prompt=checked(count, "images", 1, MAX_BATCH, integer=True), output_type="pt")  # fmt: skip
    seed = checked(seed, "seed", 0, MAX_SEED, integer=True)
    rows, lines = [], []
    for mode in THRESHOLDING if compare else [thresholding]:
        try:
            images = pipe(prompt, thresholding=mode, generator=torch.Generator().manual_seed(seed), **options).images * 2 - 1
        except ValueError as error:
            raise gr.Error(str(error)) from error
        rows.append(images)
        lines.append(f"{mode}: {(images.abs() > 0.99).float().mean().item():.1%} saturated pixels")
    return picture(torch.cat(rows), rows=len(rows)), "\n".join(lines)


# -------------------------------------------------------------------------------------------- the UI
ABOUT = """
**Sampler**: our DDPM (ancestral, Ho 2020), our DDIM (Song 2021; `eta` 0 is deterministic, 1 as noisy as DDPM),
our DPM-Solver++(2M) (`dpm2m`, Lu 2022: second order, good at 10-20 steps), diffusers' DPM-Solver++ and DDIM for
comparison. **Steps**: how many of the 1000 training timesteps are visited.
**CFG scale** w (Ho & Salimans 2022): 0 = unconditional model, 1 = conditional, > 1 = stronger class, less variety.
**Classifier guidance** s (Dhariwal & Nichol 2021): adds s times the gradient of a noise-aware classifier's log p(y|x_t).
**Thresholding** (Imagen): static clips the predicted x0 to [-1, 1]; dynamic rescales it by the chosen percentile of
|x0| when that exceeds 1, so high guidance does not saturate. On MNIST, whose pixels are mostly exactly -1 or 1,
Imagen's 99.5th percentile lifts the background off -1 and breaks samples at high w, while a percentile near 80
keeps the digits with fewer saturated pixels than static clipping (measured in `checkpoints/mnist-text`'s card).
**Seed**: the same seed and settings give the same image.
**Inversion** (Song 2021, sec. 4.3): DDIM run backwards maps an image to the noise x_T that DDIM maps back to it;
fixed-point iterations make each backward step exact at the cost of more network calls. **Interpolation**: slerp
between two inverted x_T, the class embedding moving linearly. **Variations** (SDEdit, Meng 2022): noise the image
part of the way (strength) and denoise, optionally towards another class.
**Text** (Imagen, Saharia 2022): a frozen MiniLM encodes the prompt, the UNet attends to its token states; CFG
contrasts the prompt with the empty caption (or the negative prompt); tick "compare" to see none, static and
dynamic thresholding side by side. The shipped text model is latent, so it samples with none.
"""


def build_demo(pipelines: dict, datasets: dict) -> gr.Blocks:
    text_names = [name for name, pipe in pipelines.items() if isinstance(pipe, TextToImagePipeline)]
    names = [name for name in pipelines if name not in text_names]
    if not names:
        raise SystemExit("No class-conditional or unconditional model to serve: the app needs at least one.")
    first = pipelines[names[0]]
    labels = [UNCONDITIONAL, *class_names(first)]
    model_dropdown = lambda: gr.Dropdown(names, value=names[0], label="model")  # noqa: E731
    class_dropdown = lambda value=UNCONDITIONAL: gr.Dropdown(labels, value=value, label="class")  # noqa: E731
    image = lambda label: gr.Image(label=label, format="png", type="pil", interactive=False)  # noqa: E731
    # from 50: Imagen's 99.5 breaks MNIST samples at high guidance, a percentile near 80 does not (see ABOUT)
    percentile_slider = lambda: gr.Slider(50, 100, value=99.5, step=0.5, label="dynamic thresholding percentile")  # noqa: E731
    bind = lambda fn, *extra: partial(fn, pipelines, *extra)  # noqa: E731 (partial keeps generators streaming)

    with gr.Blocks(title="guided-diffusers") as demo:
        gr.Markdown("# guided-diffusers\nGuided diffusion sampling on our own models, on a CPU.")
        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column():
                    model, label = model_dropdown(), class_dropdown(labels[1] if len(labels) > 1 else UNCONDITIONAL)
                    sampler = gr.Dropdown(list(SAMPLERS), value="ddim", label="sampler")
                    steps = gr.Slider(1, MAX_STEPS, value=50, step=1, label="steps")
                    eta = gr.Slider(0, 1, value=0, step=0.05, label="eta (DDIM)")
                    guidance = gr.Slider(0, 20, value=3, step=0.5, label="CFG scale")
                    classifier_scale = gr.Slider(0, 20, value=0, step=0.5, label="classifier guidance scale")
                    thresholding = gr.Radio(THRESHOLDING, value=default_thresholding(pipelines, names[0]),
                                            label="thresholding", info="none for latent models: it bounds pixels")
                    percentile = percentile_slider()
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="seed")
                        randomize = gr.Checkbox(False, label="random seed")
                    batch = gr.Slider(1, MAX_BATCH, value=8, step=1, label="batch size")
                    with gr.Row():
                        run, stop = gr.Button("Sample", variant="primary"), gr.Button("Stop")
                with gr.Column():
                    current, predicted, final = image("x_t"), image("predicted x0"), image("samples")
                    used_seed, download = gr.Number(label="seed used", precision=0), gr.File(label="download PNG")
            event = run.click(bind(sample), [model, label, sampler, steps, eta, guidance, classifier_scale, thresholding,
                                             percentile, seed, randomize, batch],
                              [current, predicted, final, used_seed, download], api_name="sample")  # fmt: skip
            stop.click(None, None, None, cancels=[event], api_visibility="private")
            model.change(bind(default_thresholding), [model], [thresholding], api_visibility="private")
        with gr.Tab("Forward process"):
            model_f = model_dropdown()
            index = gr.Slider(0, 99, value=0, step=1, label="dataset image")
            timestep = gr.Slider(0, 999, value=250, step=1, label="t")
            noised, stats = image("x0 and four draws of x_t"), gr.Markdown()
            gr.Plot(schedule_plot(), label="schedules")
            gr.Button("Show").click(bind(forward_process, datasets), [model_f, index, timestep], [noised, stats],
                                    api_name="forward")  # fmt: skip
        with gr.Tab("Guidance sweep"):
            model_g, label_g = model_dropdown(), class_dropdown(labels[1] if len(labels) > 1 else UNCONDITIONAL)
            scales, seed_g = gr.Textbox("0 1 3 7", label="CFG scales (up to 6)"), gr.Number(0, precision=0, label="seed")
            sweep_image, sweep_text = image("a row per scale"), gr.Markdown()
            gr.Button("Sweep").click(bind(guidance_sweep), [model_g, label_g, scales, seed_g], [sweep_image, sweep_text],
                                     api_name="guidance_sweep")  # fmt: skip
        with gr.Tab("Thresholding"):
            model_t, label_t = model_dropdown(), class_dropdown(labels[1] if len(labels) > 1 else UNCONDITIONAL)
            guidance_t, percentile_t = gr.Slider(1, 50, value=15, step=1, label="CFG scale"), percentile_slider()
            steps_t, seed_t = gr.Slider(5, 200, value=50, step=1, label="steps"), gr.Number(0, precision=0, label="seed")
            threshold_image, threshold_text = image("rows: none, static, dynamic"), gr.Markdown()
            gr.Button("Compare").click(bind(thresholding_comparison), [model_t, label_t, guidance_t, steps_t, seed_t,
                                                                       percentile_t],
                                       [threshold_image, threshold_text], api_name="thresholding")  # fmt: skip
        with gr.Tab("Samplers"):
            model_s, label_s = model_dropdown(), class_dropdown()
            steps_s, seed_s = gr.Slider(5, 200, value=20, step=1, label="steps (DDIM, DPM-Solver++)"), gr.Number(0, precision=0, label="seed")
            sampler_image, sampler_text = image("rows: DDPM-1000, DDIM-N, DPM-Solver++-N"), gr.Markdown()
            gr.Button("Compare").click(bind(sampler_comparison), [model_s, label_s, steps_s, seed_s],
                                       [sampler_image, sampler_text], api_name="samplers")  # fmt: skip
        with gr.Tab("Inversion"):
            with gr.Row():
                with gr.Column():
                    model_i = model_dropdown()
                    index_i = gr.Slider(0, 99, value=0, step=1, label="dataset image (or upload one)")
                    upload_i = gr.Image(label="upload", type="pil", sources=["upload"], format="png")
                    label_i = class_dropdown()
                    steps_i = gr.Slider(2, MAX_INVERSION_STEPS, value=50, step=1, label="DDIM steps")
                    guidance_i = gr.Slider(0, 10, value=1, step=0.5, label="CFG scale (with a class)")
                    iterations_i = gr.Slider(0, 5, value=0, step=1, label="fixed-point iterations per step")
                with gr.Column():
                    inverted, inversion_text = image("x0 | x_T (divided by 3) | reconstruction"), gr.Markdown()
                    gr.Button("Invert and reconstruct", variant="primary").click(
                        bind(inversion, datasets), [model_i, index_i, upload_i, label_i, steps_i, guidance_i, iterations_i],
                        [inverted, inversion_text], api_name="invert")  # fmt: skip
            with gr.Row():
                with gr.Column():
                    index_b = gr.Slider(0, 99, value=1, step=1, label="second dataset image")
                    label_b, frames = class_dropdown(), gr.Slider(3, 16, value=8, step=1, label="frames")
                    gr.Markdown("Interpolation uses the first image's class and this one (both, or neither).")
                with gr.Column():
                    strip, gif = image("interpolation"), gr.Image(label="animated", type="filepath", interactive=False)
                    gr.Button("Interpolate").click(bind(interpolation, datasets), [model_i, index_i, upload_i, index_b, label_i,
                                                                                  label_b, frames, steps_i],
                                                   [strip, gif], api_name="interpolate")  # fmt: skip
            with gr.Row():
                with gr.Column():
                    strength = gr.Slider(0.05, 1, value=0.5, step=0.05, label="SDEdit strength (how much noise)")
                    target, seed_v = class_dropdown(), gr.Number(0, precision=0, label="seed")
                with gr.Column():
                    varied = image("source, then 8 variations (towards the class, if one is set)")
                    gr.Button("Variations").click(bind(variations, datasets), [model_i, index_i, upload_i, target, strength,
                                                                              guidance_i, steps_i, seed_v],
                                                  varied, api_name="variations")  # fmt: skip
        if text_names:
            with gr.Tab("Text"):
                with gr.Row():
                    with gr.Column():
                        model_x = gr.Dropdown(text_names, value=text_names[0], label="text-to-image model")
                        prompt = gr.Textbox("a 4 to the left of a 9", label="prompt")
                        negative = gr.Textbox("", label="negative prompt (replaces the empty caption in CFG)")
                        guidance_x = gr.Slider(0, 30, value=5, step=0.5, label="CFG scale")
                        thresholding_x = gr.Radio(THRESHOLDING, value=thresholding_for(pipelines[text_names[0]]),
                                                  label="thresholding", info="none for latent models: it bounds pixels")
                        compare = gr.Checkbox(False, label="compare none / static / dynamic (a row each)")
                        steps_x = gr.Slider(5, 200, value=50, step=1, label="steps")
                        count, seed_x = gr.Slider(1, 8, value=4, step=1, label="images"), gr.Number(0, precision=0, label="seed")
                    with gr.Column():
                        text_image, text_info = image("images"), gr.Markdown()
                        gr.Button("Generate", variant="primary").click(
                            bind(text_to_image), [model_x, prompt, negative, guidance_x, thresholding_x, steps_x, count,
                                                  seed_x, compare], [text_image, text_info], api_name="text_to_image")  # fmt: skip
                model_x.change(bind(default_thresholding), [model_x], [thresholding_x],
                               api_visibility="private")  # fmt: skip
        with gr.Tab("About"):
            gr.Markdown(ABOUT)
            for name, pipe in pipelines.items():
                card = Path(pipe.name_or_path or "") / "README.md"
                if card.exists():
                    gr.Markdown(f"### {name}\n\n" + card_for_display(read_model_card(card.parent)[1]))
    return demo


def card_for_display(body: str) -> str:
    """A model card's markdown without links into its folder: the app serves no files but its outputs, so a plot
    or sample grid the card embeds by relative path is named instead (it is in the model folder and on the Hub)."""
    body = re.sub(r"!\[([^\]]*)\]\((?!https?://)([^)]+)\)", r"*(\1: `\2` in the model folder)*", body)
    return re.sub(r"\[([^\]]*)\]\((?!https?://)([^)]+)\)", r"\1 (`\2`)", body)


def load_datasets(pipelines) -> dict:
    """The first 100 test images of each model's dataset, where it is available offline."""
    found = {}
    for name, pipe in pipelines.items():
        if not isinstance(pipe, GuidedDiffusionPipeline):  # text models draw no dataset images
            continue
        dataset = dataset_name(pipe, name)
        try:
            data = to_tensors(load_image_dataset(dataset, split="test", max_samples=100), pipe.image_config.sample_size,
                              pipe.image_config.in_channels)  # fmt: skip
            found[name] = to_model_range(data.images)
        except Exception:  # noqa: BLE001 (the tab then says the data is unavailable)
            continue
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=os.environ.get("GUIDED_DIFFUSERS_MODELS", "checkpoints"))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # a 2-core CPU Space
    pipelines = load_pipelines(args.models)
    demo = build_demo(pipelines, load_datasets(pipelines))
    demo.queue(default_concurrency_limit=2, max_size=32).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
