"""The Space's actions: plain functions over the library's public API (no sampling math here), so that tests and
the API call exactly what the buttons call. Each checks every control before any work, reports progress per
denoising step, stops on Stop, and returns pictures as PNG files in a folder of its own request."""

import random
import time

import gradio as gr
import torch

from guided_diffusers.guiders import guider_for_call, planned_predictions
from guided_diffusers.pipelines import SAMPLERS
from guided_diffusers.pipelines.samplers import THRESHOLDING_MODES
from guided_diffusers.evaluation.metrics import saturated_share
from guided_diffusers.schedulers import GuidedDDPMScheduler

from .controls import (MAX_BATCH, MAX_SEED, MAX_STEPS, Steps, check_cost, choice, class_index, number,
                       one_run_per_visitor, pick, refuse, request_folder, saved, user_facing)  # fmt: skip
from .guidance_methods import GUIDANCE_SCALE, METHODS, method_guider
from .pictures import grid, labelled_rows, strip
from .models import ServedModel

ETA_SAMPLERS = ("ddim", "diffusers-ddim", "ddim-karras")  # the samplers whose step takes eta
DPM_SAMPLERS = ("dpm2m", "dpm++")  # refuse num_inference_steps = num_train_timesteps (a repeated timestep)


def max_steps(model: ServedModel, sampler: str) -> int:
    """The most steps `sampler` takes on this model: every training step, but one fewer for DPM-Solver."""
    train = model.pipe.scheduler.config.num_train_timesteps
    return min(MAX_STEPS, train - 1 if sampler in DPM_SAMPLERS else train)


def guidance_options(model: ServedModel, label, guidance, classifier_scale, method="cfg", extra=None) -> dict:
    """Class and guider as the pipeline takes them: the guidance method at CFG scale w (forced to 1 on a model
    without a null class), then classifier guidance at scale s if s > 0. Without a class, guidance does not apply
    (the UI disables it) and is not used."""
    index = class_index(model, label)
    pipe = model.pipe
    guidance = number(guidance, "guidance scale", 0, 50)
    classifier_scale = number(classifier_scale, "classifier guidance scale", 0, 100)
    if index is not None and classifier_scale > 0 and pipe.classifier is None:
        raise refuse(f"{model.name} has no noise-aware classifier: set the classifier guidance scale to 0.")
    method = choice(method, "guidance method", METHODS)
    needs = METHODS[method].needs
    if index is not None and needs is not None and not has_part(pipe, needs):
        raise refuse(f"{model.name} has no `{needs}`, which {METHODS[method].title} needs: choose another method.")
    guidance = guidance if pipe.config.null_class_label is not None else 1.0
    guider = method_guider(method, guidance, classifier_scale, extra or {}, class_given=index is not None)
    return dict(class_labels=None if index is None else [index], guider=guider)


def has_part(pipe, path: str) -> bool:
    """Whether the pipeline has `path`: a component ("weak_unet") or a module inside one ("unet.mid_block.attentions.0";
    a UNet built without mid-block attention holds None there)."""
    component, _, inside = path.partition(".")
    found = getattr(pipe, component, None)
    if found is None or not inside:
        return found is not None
    try:
        return found.get_submodule(inside) is not None
    except AttributeError:
        return False


def passes(options: dict) -> int:
    """Network passes per image per step at most: the guider's predictions (2 for CFG), +1 for a classifier, +3
    for universal guidance (a UNet forward and backward, about two passes, and the clean classifier)."""
    guider = guider_for_call(options.get("guider"), options.get("guidance_scale"), options.get("classifier_scale"))
    per_step = planned_predictions(guider, options["num_inference_steps"])
    return (max(map(len, per_step)) + (1 if getattr(guider, "needs_classifier", False) else 0)
            + (3 if getattr(guider, "needs_clean_classifier", False) else 0))  # fmt: skip


def sampling_options(model: ServedModel, label, sampler, steps, eta, guidance, classifier_scale, thresholding,
                     percentile, batch, method="cfg", extra=None) -> dict:  # fmt: skip
    """The pipeline arguments of one sampling request, every control checked and the cost capped."""
    sampler = choice(sampler, "sampler", list(SAMPLERS))
    options = guidance_options(model, label, guidance, classifier_scale, method, extra)
    batch = number(batch, "batch size", 1, MAX_BATCH, integer=True)
    options.update(
        batch_size=batch,
        class_labels=None if options["class_labels"] is None else options["class_labels"] * batch,
        num_inference_steps=number(steps, f"steps (for {sampler})", 1, max_steps(model, sampler), integer=True),
        eta=number(eta, "eta", 0, 1) if sampler in ETA_SAMPLERS else 0.0,
        thresholding=choice(thresholding, "thresholding", THRESHOLDING_MODES),
        dynamic_thresholding_ratio=number(percentile, "dynamic thresholding percentile", 50, 100) / 100,
    )
    check_cost(options["num_inference_steps"], batch, passes(options))
    return options


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- Sample
@user_facing
def sample(models, model, label, sampler, steps, eta, guidance, classifier_scale, thresholding, percentile, seed,
           randomize, batch, method="cfg", cfg_rescale=0.0, apg_eta=0.0, apg_threshold=15.0, apg_momentum=-0.5,
           apg_x0_eta=0.0, zero_init_steps=1, mag_alpha=8.0, sigma_lo=0.28, sigma_hi=5.42, cfgpp_lambda=0.2,
           universal_scale=10.0, autoguidance_sigma_lo=0.6, progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """Stream (x_t, predicted x0, samples, seed used, PNG download) as files, one update per step; the last
    update carries every picture (API clients get files, never placeholders). `method` is a key of
    `guidance_methods.METHODS`; the arguments after it are the methods' own controls."""
    served = pick(models, model)
    seed = random.randint(0, MAX_SEED) if randomize else number(seed, "seed", 0, MAX_SEED, integer=True)
    extra = dict(cfg_rescale=cfg_rescale, apg_eta=apg_eta, apg_threshold=apg_threshold, apg_momentum=apg_momentum,
                 apg_x0_eta=apg_x0_eta, zero_init_steps=zero_init_steps, mag_alpha=mag_alpha, sigma_lo=sigma_lo,
                 sigma_hi=sigma_hi, cfgpp_lambda=cfgpp_lambda, universal_scale=universal_scale,
                 autoguidance_sigma_lo=autoguidance_sigma_lo)  # fmt: skip
    options = sampling_options(served, label, sampler, steps, eta, guidance, classifier_scale, thresholding,
                               percentile, batch, method, extra)  # fmt: skip
    folder = request_folder()
    with one_run_per_visitor(request):
        steps = Steps(progress, request, options["num_inference_steps"])
        pipe = served.with_sampler(sampler)
        x_t = x0 = None
        for i, _, latents, predicted in pipe.iterate(generator=generator(seed), **options):
            steps.tick()
            with torch.inference_mode():  # a latent model decodes each preview
                x_t = saved(grid(pipe.decode(latents)), folder, f"x_t-{i}")
                x0 = x0 if predicted is None else saved(grid(pipe.decode(predicted)), folder, f"x0-{i}")
            yield x_t, x0, None, seed, None
        with torch.inference_mode():
            final = grid(pipe.decode(latents))
    download = saved(final, folder, f"guided-diffusers-{served.name}-{seed}", headroom=False)
    yield x_t, x0, saved(final, folder, "samples"), seed, download


# -------------------------------------------------------------------------------------- Forward process
@user_facing
def forward_process(models, model, index, timestep):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for one real image (four draws), with the marginal statistics."""
    served = pick(models, model)
    images = dataset_images(served)
    index = number(index, "image index", 0, len(images) - 1, integer=True)
    scheduler = GuidedDDPMScheduler.from_config(served.pipe.scheduler.config)
    timestep = number(timestep, "t", 0, scheduler.config.num_train_timesteps - 1, integer=True)
    x0 = images[index : index + 1].repeat(4, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=generator(index))
    x_t = scheduler.add_noise(x0, noise, torch.full((4,), timestep))
    abar = scheduler.alphas_cumprod[timestep].item()
    standardised = (images - images.mean()) / images.std()  # Var[x_t] = abar Var[x0] + (1 - abar) stays 1
    spread = scheduler.add_noise(standardised, torch.randn(images.shape, generator=generator(0)),
                                 torch.full((len(images),), timestep)).var().item()  # fmt: skip
    text = (f"- abar_t = {abar:.4f}\n- SNR = abar / (1 - abar) = {abar / (1 - abar):.4g}\n"
            f"- x_t has mean sqrt(abar_t) x0 and variance 1 - abar_t\n"
            f"- Var[x_t] over {len(images)} standardised images: {spread:.3f} (stays 1)")  # fmt: skip
    return saved(strip(torch.cat([x0[:1], x_t])), request_folder(), "forward"), text


def dataset_images(served: ServedModel) -> torch.Tensor:
    if served.images is None:
        raise refuse(f"No dataset images are available offline for {served.name}: upload an image instead.")
    return served.images


# --------------------------------------------------------------------------------- comparisons
def rows_of_settings(served, settings, seed, progress, request):
    """Sample the same noise once per (label, sampler, options) setting, one progress bar over all their steps.
    Returns the rows and, per row, its seconds and network evaluations."""
    steps = Steps(progress, request, sum(options["num_inference_steps"] for _, _, options in settings))
    rows, runs = [], []
    with one_run_per_visitor(request):
        for _, sampler, options in settings:
            start, pipe = time.perf_counter(), served.with_sampler(sampler)
            output = pipe(generator=generator(seed), output_type="pt", callback_on_step_end=steps.callback, **options)
            rows.append(output.images * 2 - 1)
            runs.append({"seconds": time.perf_counter() - start, "evaluations": output.evaluations})
    return rows, runs


def compared(served, settings, seed, progress, request, file_name: str, header: list[str], statistics):
    """The comparison tabs' shared shape: every setting from the same noise (cost checked first), a picture with a
    labelled row per setting, and a table with a line per setting: its name, then `statistics(options, images,
    run)`, `run` holding the row's seconds and network evaluations."""
    cost_steps = sum(options["num_inference_steps"] * passes(options) for _, _, options in settings)
    check_cost(cost_steps, settings[0][2]["batch_size"], 1, "This comparison")
    rows, runs = rows_of_settings(served, settings, seed, progress, request)
    lines = [[name.replace("\n", ", "), *statistics(options, images, run)]
             for (name, _, options), images, run in zip(settings, rows, runs)]  # fmt: skip
    picture = labelled_rows(rows, [name for name, _, _ in settings])
    return saved(picture, request_folder(), file_name), table(header, lines)


def table(header: list[str], lines: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


@user_facing
def guidance_sweep(models, model, label, scales, seed, method="cfg", progress=gr.Progress(), request: gr.Request = None):
    """One seed, a row per value of the chosen guidance method's scale (w, or the scale that takes its place, such as
    CFG++'s lambda; its other controls at their defaults; the model's default sampler and thresholding), each
    labelled with its value, with the UNet evaluations it took, the within-row diversity and the noise-aware
    classifier's accuracy at t = 0."""
    served = pick(models, model)
    if class_index(served, label) is None or served.pipe.config.null_class_label is None:
        raise refuse("The guidance sweep needs a class and a model with a null class (classifier-free guidance).")
    scale = METHODS[choice(method, "guidance method", METHODS)].scale_control()
    values = [number(v, scale.label, scale.low, scale.high) for v in str(scales).replace(",", " ").split()]
    if not 1 <= len(values) <= 6:
        raise refuse(f"{scale.label}: give 1 to 6 numbers separated by spaces; got {scales!r}.")
    seed, d = number(seed, "seed", 0, MAX_SEED, integer=True), served.defaults
    w_of = (lambda value: value) if scale is GUIDANCE_SCALE else (lambda value: d["guidance_scale"])  # not read
    settings = [(f"{scale.symbol} = {v:g}", d["sampler"],
                 sampling_options(served, label, d["sampler"], d["num_inference_steps"], 0, w_of(v), 0,
                                  d["thresholding"], 99.5, 8, method, {scale.name: v}))
                for v in values]  # fmt: skip
    classifier = served.pipe.classifier

    def statistics(options, images, run):
        flat = images.flatten(1)
        counts = run["evaluations"]
        weak = f" + {counts['weak_unet']} weak" if counts.get("weak_unet") else ""
        gradient = f" + {counts['unet_gradient']} forward+backward" if counts.get("unet_gradient") else ""
        cells = [f"{counts['unet']}{weak}{gradient}", f"{torch.cdist(flat, flat).mean().item():.2f}"]
        if classifier is not None:
            with torch.no_grad():
                predicted = classifier(images, torch.zeros(len(images), dtype=torch.long)).logits.argmax(1)
            cells.append(f"{(predicted == options['class_labels'][0]).float().mean().item():.0%}")
        return cells

    header = [f"{METHODS[method].title}", "UNet evaluations", "diversity (mean pixel distance)"] + (
        ["accuracy (noise-aware classifier, t = 0)"] if classifier is not None else [])  # fmt: skip
    return compared(served, settings, seed, progress, request, "guidance-sweep", header, statistics)


@user_facing
def thresholding_comparison(models, model, label, guidance, steps, seed, percentile=80,
                            progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """Same noise, one row per thresholding mode (none, static, dynamic at `percentile`), with each row's share of
    saturated pixels. Fewer saturated pixels is not better images: see the model card's FD for that."""
    served = pick(models, model)
    seed, percentile = number(seed, "seed", 0, MAX_SEED, integer=True), number(percentile, "percentile", 50, 100)
    names = {"none": "none", "static": "static", "dynamic": f"dynamic\np = {percentile:g}%"}
    settings = [(names[mode], "ddim", sampling_options(served, label, "ddim", steps, 0, guidance, 0, mode, percentile, 4))
                for mode in THRESHOLDING_MODES]  # fmt: skip
    return compared(served, settings, seed, progress, request, "thresholding", ["thresholding", "saturated pixels"],
                    lambda options, images, run: [f"{saturated_share(images):.1%}"])


@user_facing
def sampler_comparison(models, model, label, steps, seed, with_ddpm_1000=False, progress=gr.Progress(),
                       request: gr.Request = None):  # fmt: skip
    """DDPM-N, DDIM-N and DPM-Solver++(2M)-N from the same noise (and DDPM over every training step, if asked),
    with time per image."""
    served = pick(models, model)
    seed = number(seed, "seed", 0, MAX_SEED, integer=True)
    steps = number(steps, "steps", 1, max_steps(served, "dpm2m"), integer=True)
    kinds = [("ddpm", steps), ("ddim", steps), ("dpm2m", steps)]
    if with_ddpm_1000:
        kinds.insert(0, ("ddpm", served.pipe.scheduler.config.num_train_timesteps))
    settings = [(f"{sampler}\n{count} steps", sampler, sampling_options(served, label, sampler, count, 0, 1, 0, "static",
                                                                          99.5, 4)) for sampler, count in kinds]  # fmt: skip
    return compared(served, settings, seed, progress, request, "samplers", ["sampler", "time per image"],
                    lambda options, images, run: [f"{run['seconds'] / len(images):.2f} s"])


# ----------------------------------------------------------------------------------------- Cascade
@user_facing
def cascade(models, model, label, guidance, steps, augmentation_level, super_resolution_steps, seed, count=4,
            progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """A cascade's base samples, those upsampled bilinearly, and the super-resolved result, a labelled row each
    (the same images in each column), with each stage's network evaluations and time. Both stages use the model's
    default sampler and thresholding; the augmentation level is the stage's noise-conditioning level."""
    served = pick(models, model, "cascade")
    d, pipe = served.defaults, served.pipe
    index = class_index(served, label)
    guidance = number(guidance, "guidance scale", 0, 50) if pipe.config.null_class_label is not None else 1.0
    guidance = 1.0 if index is None else guidance  # no class: nothing to guide towards
    level = number(augmentation_level, "augmentation level", 0, 1)
    steps = number(steps, "base steps", 1, max_steps(served, d["sampler"]), integer=True)
    stage_train = pipe.super_resolution_scheduler.config.num_train_timesteps
    stage_steps = number(super_resolution_steps, "super-resolution steps", 1,
                         min(MAX_STEPS, stage_train - (1 if d["sampler"] in DPM_SAMPLERS else 0)), integer=True)  # fmt: skip
    count = number(count, "images", 1, 8, integer=True)
    seed = number(seed, "seed", 0, MAX_SEED, integer=True)
    check_cost(steps * (1 if guidance in (0, 1) else 2) + stage_steps, count, 1)
    tracker = Steps(progress, request, steps + stage_steps)
    start = time.perf_counter()
    with one_run_per_visitor(request):
        out = pipe(batch_size=count, class_labels=None if index is None else [index] * count, guidance_scale=guidance,
                   num_inference_steps=steps, thresholding=d["thresholding"], sampler=d["sampler"],
                   augmentation_level=level, super_resolution_steps=stage_steps, super_resolution_sampler=d["sampler"],
                   super_resolution_thresholding=d["thresholding"], generator=generator(seed), output_type="pt",
                   callback_on_step_end=tracker.callback)  # fmt: skip
    seconds = time.perf_counter() - start
    low = out.low_resolution_images
    size = low.shape[-1]
    rows = [low * 2 - 1, out.upsampled_images * 2 - 1, out.images * 2 - 1]
    names = [f"base\n{size}x{size}", "upsampled\n(bilinear)", f"super-resolved\na = {level:g}"]
    picture = labelled_rows(rows, names)
    counts = out.evaluations
    lines = [["base", f"{counts['unet']}", f"{size}x{size}"],
             ["super-resolution", f"{counts['super_resolution_unet']}", f"{out.images.shape[-1]}x{out.images.shape[-1]}"]]  # fmt: skip
    text = table(["stage", "UNet evaluations", "size"], lines) + f"\n\n{seconds:.1f} s for {count} images."
    return saved(picture, request_folder(), "cascade"), text


# -------------------------------------------------------------------------------------------- Text
@user_facing
def text_to_image(models, model, prompt, negative_prompt, guidance, thresholding, steps, count, seed, compare,
                  progress=gr.Progress(), request: gr.Request = None):  # fmt: skip
    """Images for a prompt; with `compare`, one labelled row per thresholding mode, with saturated shares."""
    served = pick(models, model, "text")
    modes = list(THRESHOLDING_MODES) if compare else [choice(thresholding, "thresholding", THRESHOLDING_MODES)]
    guidance = number(guidance, "CFG scale", 0, 50)
    steps = number(steps, "steps", 1, max_steps(served, "ddim"), integer=True)
    count = number(count, "images", 1, 8, integer=True)
    seed = number(seed, "seed", 0, MAX_SEED, integer=True)
    check_cost(steps * len(modes), count, 1 if guidance in (0, 1) else 2)
    tracker = Steps(progress, request, steps * len(modes))
    rows = []
    with one_run_per_visitor(request):
        for mode in modes:
            rows.append(served.pipe(prompt, negative_prompt=negative_prompt or None, guidance_scale=guidance,
                                    num_inference_steps=steps, num_images_per_prompt=count, thresholding=mode,
                                    generator=generator(seed), output_type="pt", callback_on_step_end=tracker.callback
                                    ).images * 2 - 1)  # fmt: skip
    lines = [[mode, f"{saturated_share(images):.1%}"] for mode, images in zip(modes, rows)]
    picture = labelled_rows(rows, modes) if compare else grid(rows[0])
    return saved(picture, request_folder(), "text"), table(["thresholding", "saturated pixels"], lines)
