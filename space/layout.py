"""The Space's page: one tab per idea, every control following the chosen model (its classes, its measured
defaults, only the controls that apply), the main action and its result on one screen, Stop beside every run."""

from functools import partial

import gradio as gr

from guided_diffusers.pipelines import SAMPLERS
from guided_diffusers.pipelines.pipeline_super_resolution import DEFAULT_AUGMENTATION_LEVEL
from guided_diffusers.pipelines.samplers import THRESHOLDING_MODES

from . import actions, clip_actions, inversion_actions, method_actions
from .components import Number, Slider
from .controls import MAX_BATCH, MAX_INVERSION_STEPS, request_stop
from .guidance_methods import GUIDANCE_SCALE, METHODS
from .models import UNCONDITIONAL, cascade_models, class_models, measured_methods_models, text_models

SAMPLER_NAMES = {"ddpm": "DDPM (ours)", "ddim": "DDIM (ours)", "dpm2m": "DPM-Solver++(2M) (ours)",
                 "dpm++": "DPM-Solver++ (diffusers)", "diffusers-ddim": "DDIM (diffusers)",
                 "ddim-karras": "DDIM, Karras levels (ours)", "dpm2m-karras": "DPM-Solver++(2M), Karras levels (ours)",
                 "heun": "EDM Heun, 2 evaluations a step (ours)",
                 "heun-sigma-min-0.1": "EDM Heun ending at sigma 0.1, 2 evaluations a step (ours)",
                 "euler": "EDM Euler, Karras levels (ours)",
                 "sde": "reverse SDE, Euler-Maruyama (ours)", "reverse-diffusion": "reverse SDE, reverse diffusion (ours)",
                 "pc": "SDE predictor-corrector, 2 evaluations a step (ours)"}  # fmt: skip
CSS = ".result img { image-rendering: pixelated; }"  # keep upscaled digits crisp if the browser rescales them


def about(models) -> str:
    cards = "\n".join(f"- **{name}**: `{model.folder}/README.md`" if model.folder else f"- **{name}**"
                      for name, model in models.items())  # fmt: skip
    return f"""
**guided-diffusers** is a toolkit for *guided* diffusion sampling in the Hugging Face diffusers ecosystem: our own
DDPM, DDIM and DPM-Solver++ schedulers, classifier-free and classifier guidance, Imagen's thresholding, DDIM
inversion, and models trained by our own scripts on MNIST and Fashion-MNIST, all running here on a CPU.

- **Sample**: a grid of one class, with x_t and the predicted x0 as it denoises, guided by the method you choose
  (classifier-free guidance or one of twelve newer methods, each with its own controls). The defaults are each
  model's measured best (its model card says how they were chosen).
- **Guidance methods** (models with a measured sweep of them): one seed, a row per guidance method at the setting
  where the model's own evaluation measured it best, with those measured numbers.
- **Guidance sweep**: one seed at several scales w of a guidance method (or CFG++'s lambda): more w, more
  like the class, less varied; each row with the UNet evaluations it cost.
- **Thresholding**: none, static clipping and Imagen's dynamic thresholding from the same noise at high w.
- **Samplers**: DDPM, DDIM and DPM-Solver++ at the same number of steps, with time per image.
- **Forward process**: a real image noised to any t, and the noise schedules.
- **Inversion**: DDIM run backwards to noise and forwards again, interpolation between two images, SDEdit variations.
- **Text** (with a text-to-image model): a prompt drawn by an Imagen-style model on a frozen MiniLM encoder.
- **CLIP guidance** (with a model that has a noise-aware CLIP): GLIDE's comparison on one prompt, CLIP guidance
  against and with CFG, and a prompt steering a class model that was never given text.
- **Cascade** (with a cascade): a 14x14 base sample, the same upsampled, and a diffusion super-resolution stage's
  28x28 result side by side, with the stage's noise-conditioning augmentation level as a control.

Model cards (training command, data, hardware, time and every measurement):
{cards}
"""


def follow_model(models, name, default_label=True):
    """Updates for a tab's class dropdown when its model changes: that model's classes and default class."""
    model = models[name]
    keep_unconditional = not default_label and UNCONDITIONAL in model.class_choices
    return gr.update(choices=model.class_choices, value=UNCONDITIONAL if keep_unconditional else model.default_class)


def reads_w(models, name, method):
    """Whether the w slider applies: the model has a null class and the method has no scale of its own (CFG++)."""
    return models[name].pipe.config.null_class_label is not None and not getattr(METHODS.get(method), "scale", None)


def sample_controls(models, name, method):
    """Every Sample-tab control that depends on the model: classes, the measured defaults, what applies."""
    model, d = models[name], models[name].defaults
    return (gr.update(choices=model.class_choices, value=model.default_class),
            gr.update(value=d["sampler"]), gr.update(value=d["num_inference_steps"], maximum=actions.max_steps(model, d["sampler"])),
            gr.update(value=d["guidance_scale"], visible=reads_w(models, name, method)),
            gr.update(value=d["classifier_scale"], visible=model.pipe.classifier is not None),
            gr.update(value=d["thresholding"]))  # fmt: skip


def sampler_controls(models, name, sampler, steps):
    maximum = actions.max_steps(models[name], sampler) if sampler in SAMPLERS else 1000
    return gr.update(visible=sampler in actions.ETA_SAMPLERS), gr.update(maximum=maximum, value=min(steps, maximum))


def model_and_class(models, names):
    first = models[names[0]]
    model = gr.Dropdown(names, value=names[0], label="model")
    label = gr.Dropdown(first.class_choices, value=first.default_class, label="class", allow_custom_value=True,
                        info="a class name or its index")  # fmt: skip
    model.change(partial(follow_model, models), model, label, api_visibility="private")
    return model, label


def result(label, **kwargs):
    return gr.Image(label=label, type="filepath", format="png", interactive=False, elem_classes="result", **kwargs)


def buttons(action: str):
    """The action's button and a Stop beside it."""
    with gr.Row():
        return gr.Button(action, variant="primary"), gr.Button("Stop", variant="stop")


def wire(run, stop, fn, inputs, outputs, api_name, progress_on=None):
    """Run `fn` on click (all sampling shares one CPU queue); Stop ends it at its next denoising step. The progress
    bar covers `progress_on` (default: the first output) only, so that streamed previews stay visible."""
    event = run.click(fn, inputs, outputs, api_name=api_name, concurrency_id="cpu",
                      show_progress_on=progress_on or outputs[0])  # fmt: skip
    stop.click(request_stop, None, None, cancels=[event], api_visibility="private")


def sample_tab(models, names):
    first, bind = models[names[0]], lambda fn: partial(fn, models)
    d = first.defaults
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model, label = model_and_class(models, names)
            method = method_menu()
            guidance = Slider(0, 20, value=d["guidance_scale"], step=0.5, label="guidance scale w",
                                 info="0 unconditional, 1 conditional, > 1 guided")  # fmt: skip
            run, stop = buttons("Sample")
            about_method, extras = method_controls()
            with gr.Row():
                seed = Number(0, precision=0, label="seed", minimum=0)
                randomize = gr.Checkbox(False, label="random seed")
            batch = Slider(1, MAX_BATCH, value=8, step=1, precision=0, label="batch size")
            sampler = gr.Dropdown([(SAMPLER_NAMES[s], s) for s in SAMPLERS], value=d["sampler"], label="sampler")
            steps = Slider(1, actions.max_steps(first, d["sampler"]), value=d["num_inference_steps"], step=1,
                              precision=0, label="steps")  # fmt: skip
            eta = Slider(0, 1, value=0, step=0.05, label="eta (DDIM: 0 deterministic, 1 as noisy as DDPM)",
                            visible=d["sampler"] in actions.ETA_SAMPLERS)  # fmt: skip
            classifier_scale = Slider(0, 20, value=0, step=0.5, label="classifier guidance scale s",
                                         visible=first.pipe.classifier is not None)  # fmt: skip
            thresholding = gr.Radio(list(THRESHOLDING_MODES), value=d["thresholding"], label="thresholding of x0")
            percentile = Slider(50, 100, value=99.5, step=0.5, label="dynamic thresholding percentile",
                                   visible=d["thresholding"] == "dynamic")  # fmt: skip
        with gr.Column(scale=3):
            final = result("samples", height=260)
            with gr.Row():
                current, predicted = result("x_t", height=200), result("predicted x0", height=200)
            with gr.Row():
                used_seed = Number(label="seed used", precision=0, interactive=False)
                download = gr.File(label="download PNG", interactive=False)
    inputs = [model, label, sampler, steps, eta, guidance, classifier_scale, thresholding, percentile, seed, randomize, batch,
              method, *extras.values()]  # fmt: skip
    wire(run, stop, bind(actions.sample), inputs, [current, predicted, final, used_seed, download], "sample", final)
    follow_method(method, about_method, extras)
    model.change(partial(sample_controls, models), [model, method],
                 [label, sampler, steps, guidance, classifier_scale, thresholding], api_visibility="private")  # fmt: skip
    method.change(lambda name, key: gr.update(visible=reads_w(models, name, key)), [model, method], guidance,
                  api_visibility="private")  # fmt: skip
    disable_without_class(label, guidance, classifier_scale)
    sampler.change(partial(sampler_controls, models), [model, sampler, steps], [eta, steps], api_visibility="private")
    thresholding.change(lambda mode: gr.update(visible=mode == "dynamic"), thresholding, percentile,
                        api_visibility="private")  # fmt: skip


def method_menu():
    return gr.Dropdown([(m.title, key) for key, m in METHODS.items()], value="cfg", label="guidance method")


def method_controls(with_extras: bool = True):
    """A line on the chosen guidance method, and each method's own sliders (only the chosen method's shown)."""
    about_method = gr.Markdown(METHODS["cfg"].about)
    extras = {}
    for key, spec in METHODS.items():
        for control in spec.controls if with_extras else []:
            extras[control.name] = Slider(control.low, control.high, value=control.default, step=control.step,
                                          precision=0 if control.integer else None, label=control.label,
                                          visible=key == "cfg")  # fmt: skip
    return about_method, extras


def follow_method(method, about_method, extras):
    owner = {control.name: key for key, spec in METHODS.items() for control in spec.controls}

    def update(key):
        about = METHODS[key].about if key in METHODS else ""
        updates = (gr.update(value=about), *[gr.update(visible=owner[name] == key) for name in extras])
        return updates if extras else updates[0]  # one output takes one update, not a tuple of one

    method.change(update, method, [about_method, *extras.values()], api_visibility="private")


def sweep_tab(models, names):
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model, label = model_and_class(models, names)
            method = method_menu()
            about_method, _ = method_controls(with_extras=False)
            follow_method(method, about_method, {})
            scales = gr.Textbox(SWEEP_DEFAULTS["w"], label=sweep_label(GUIDANCE_SCALE))
            seed = Number(0, precision=0, label="seed", minimum=0)
            run, stop = buttons("Sweep")
            gr.Markdown("Each row: 8 samples from the same noise at one value of the scale, with the model's "
                        "default sampler and thresholding.")  # fmt: skip
        with gr.Column(scale=3):
            picture, stats = result("a row per guidance scale"), gr.Markdown(label="statistics per row")
    method.change(follow_sweep_scale, [method, scales], scales, api_visibility="private")
    wire(run, stop, partial(actions.guidance_sweep, models), [model, label, scales, seed, method], [picture, stats],
         "guidance_sweep")  # fmt: skip


def methods_tab(models, names):
    """Each guidance method at its best measured setting, from one seed (models whose folders hold the sweep)."""
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=names[0], label="model")
            label = class_menu(models, names, model, "class")
            with gr.Row():
                count = Slider(1, 8, value=4, step=1, precision=0, label="images per method")
                seed = Number(0, precision=0, label="seed", minimum=0)
            run, stop = buttons("Compare methods")
            gr.Markdown("A row per method, the same noise for every row, each at the setting where the model's own "
                        "sweep measured it best: of its settings at least as recognisable as the accuracy goal "
                        "(MNIST 99%, Fashion-MNIST 95%), the one closest to real data (FD, in the worse of two "
                        "feature spaces). The numbers under the picture were measured there, over 1,000 samples per "
                        "setting; `docs/guiders.md` has the whole table.")  # fmt: skip
        with gr.Column(scale=3):
            picture, stats = result("a row per method at its best measured setting"), gr.Markdown()
    wire(run, stop, partial(method_actions.guidance_methods, models), [model, label, seed, count], [picture, stats],
         "guidance_methods")  # fmt: skip


SWEEP_DEFAULTS = {"w": "0 1 3 5", "lambda": "0 0.2 0.4 0.8"}


def sweep_label(scale):
    return f"{scale.label} (up to 6 values, separated by spaces)"


def follow_sweep_scale(key, values):
    """The sweep's values box follows the method's scale: its label, and its default values where the typed ones
    are out of the new scale's range."""
    scale = METHODS[key].scale_control() if key in METHODS else GUIDANCE_SCALE
    try:
        fits = all(scale.low <= float(v) <= scale.high for v in str(values).replace(",", " ").split())
    except ValueError:
        fits = False
    return gr.update(label=sweep_label(scale), value=values if fits else SWEEP_DEFAULTS[scale.symbol])


def thresholding_tab(models, names):
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model, label = model_and_class(models, names)
            guidance = Slider(1, 50, value=8, step=1, label="CFG scale w (high, where thresholding matters)")
            percentile = Slider(50, 100, value=80, step=0.5, label="dynamic thresholding percentile",
                                   info="Imagen uses 99.5; on MNIST-like data about 80 keeps the digits")  # fmt: skip
            steps = Slider(5, 200, value=25, step=1, precision=0, label="DDIM steps")
            seed = Number(0, precision=0, label="seed", minimum=0)
            run, stop = buttons("Compare")
        with gr.Column(scale=3):
            picture, stats = result("rows: none, static, dynamic"), gr.Markdown(label="saturated pixels per row")
            gr.Markdown("Fewer saturated pixels is not better images; the model cards measure quality (FD). At w = 8, "
                        "static clipping beats Imagen's 99.5th percentile on MNIST and Fashion-MNIST; on a pixel-space "
                        "text model, a percentile of 80 beat static clipping at w = 10-15 (`checkpoints/mnist-text`).")  # fmt: skip
    wire(run, stop, partial(actions.thresholding_comparison, models), [model, label, guidance, steps, seed, percentile],
         [picture, stats], "thresholding")  # fmt: skip


def samplers_tab(models, names):
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model, label = model_and_class(models, names)
            steps = Slider(2, 200, value=20, step=1, precision=0, label="steps")
            ddpm_1000 = gr.Checkbox(False, label="add DDPM over every training step (1000 steps: about a minute)")
            seed = Number(0, precision=0, label="seed", minimum=0)
            run, stop = buttons("Compare")
        with gr.Column(scale=3):
            picture, stats = result("a row per sampler, same noise"), gr.Markdown(label="time per image")
    wire(run, stop, partial(actions.sampler_comparison, models), [model, label, steps, seed, ddpm_1000],
         [picture, stats], "samplers")  # fmt: skip


def forward_tab(models, names):
    from .plots import schedule_plot

    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=names[0], label="model")
            index = Slider(0, 99, value=0, step=1, precision=0, label="dataset image")
            timestep = Slider(0, 999, value=250, step=1, precision=0, label="t")
            show = gr.Button("Show", variant="primary")
        with gr.Column(scale=3):
            picture, stats = result("x0 and four draws of x_t"), gr.Markdown(label="statistics")
    gr.Plot(schedule_plot(), label="noise schedules")
    show.click(partial(actions.forward_process, models), [model, index, timestep], [picture, stats], api_name="forward")


def inversion_tab(models, names):
    inv = inversion_actions
    gr.Markdown("### Source image")
    with gr.Row():
        model = gr.Dropdown(names, value=names[0], label="model")
        source = gr.Radio(list(inv.SOURCES), value="dataset image", label="start from")
        index = Slider(0, 99, value=0, step=1, precision=0, label="dataset image")
        upload = gr.Image(label="upload", type="filepath", sources=["upload"], height=140, visible=False)
        polarity = gr.Radio(list(inv.POLARITIES), value="auto", label="upload polarity", visible=False,
                            info="the data is light on dark; auto inverts a dark-on-light upload")  # fmt: skip
    source.change(lambda s: (gr.update(visible=s == "upload"), gr.update(visible=s == "upload"),
                             gr.update(visible=s != "upload")), source, [upload, polarity, index],
                  api_visibility="private")  # fmt: skip
    first = [model, source, index, upload, polarity]
    gr.Markdown("### 1. Invert and reconstruct")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            label = class_menu(models, names, model, "class to invert with", UNCONDITIONAL)
            steps = Slider(2, MAX_INVERSION_STEPS, value=50, step=1, precision=0, label="DDIM steps")
            guidance = Slider(0, 10, value=1, step=0.5, label="CFG scale (with a class)", interactive=False,
                              info="needs a class")
            iterations = Slider(0, inv.MAX_FIXED_POINT, value=0, step=1, precision=0,
                                   label="fixed-point iterations per step")  # fmt: skip
            run, stop = buttons("Invert and reconstruct")
        with gr.Column(scale=3):
            picture, stats = result("x0 | x_T (divided by 3) | reconstruction"), gr.Markdown(label="inversion")
    wire(run, stop, partial(inv.inversion, models), [*first, label, steps, guidance, iterations], [picture, stats],
         "invert")  # fmt: skip
    disable_without_class(label, guidance)
    gr.Markdown("### 2. Interpolate to a second dataset image")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            index_b = Slider(0, 99, value=1, step=1, precision=0, label="second dataset image")
            with gr.Row():
                label_a = class_menu(models, names, model, "class of the first image", UNCONDITIONAL)
                label_b = class_menu(models, names, model, "class of the second image", UNCONDITIONAL)
            frames = Slider(3, inv.MAX_FRAMES, value=8, step=1, precision=0, label="frames")
            steps_b = Slider(2, MAX_INVERSION_STEPS, value=50, step=1, precision=0, label="DDIM steps")
            run, stop = buttons("Interpolate")
        with gr.Column(scale=3):
            frames_picture, gif = result("interpolation"), result("animated (there and back)")
            described = gr.Markdown(label="images")
    wire(run, stop, partial(inv.interpolation, models), [*first, index_b, label_a, label_b, frames, steps_b],
         [frames_picture, gif, described], "interpolate")  # fmt: skip
    gr.Markdown("### 3. Variations (SDEdit)")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            target = class_menu(models, names, model, "class to steer towards", UNCONDITIONAL)
            strength = Slider(0.05, 1, value=0.5, step=0.05, label="strength (how much noise)")
            guidance_v = Slider(0, 10, value=3, step=0.5, label="CFG scale (with a class)", interactive=False,
                                info="needs a class")
            steps_v = Slider(2, MAX_INVERSION_STEPS, value=50, step=1, precision=0, label="DDIM steps")
            seed = Number(0, precision=0, label="seed", minimum=0)
            run, stop = buttons("Variations")
        with gr.Column(scale=3):
            varied, note = result("the source, then 8 variations"), gr.Markdown(label="variations")
    wire(run, stop, partial(inv.variations, models), [*first, target, strength, guidance_v, steps_v, seed],
         [varied, note], "variations")  # fmt: skip
    disable_without_class(target, guidance_v)


def disable_without_class(label, *controls):
    """Guidance controls that apply only with a class: disabled (and saying so) while the class is unconditional."""
    def update(value):
        on = value != UNCONDITIONAL
        updates = [gr.update(interactive=on, info="" if on else "needs a class") for _ in controls]  # None: unchanged
        return updates[0] if len(updates) == 1 else tuple(updates)  # one output takes one update, not a list

    label.change(update, label, list(controls), api_visibility="private")
    return update


def class_menu(models, names, model, label, value=None):
    """A class dropdown that follows `model`."""
    first = models[names[0]]
    value = value if value in first.class_choices else first.default_class
    menu = gr.Dropdown(first.class_choices, value=value, label=label, allow_custom_value=True)
    model.change(partial(follow_model, models, default_label=value != UNCONDITIONAL), model, menu,
                 api_visibility="private")  # fmt: skip
    return menu


def text_tab(models, names):
    first = models[names[0]]
    d = first.defaults
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=names[0], label="text-to-image model")
            prompt = gr.Textbox("a 4 to the left of a 9", label="prompt")
            guidance = Slider(0, 30, value=d["guidance_scale"], step=0.5, label="CFG scale w")
            run, stop = buttons("Generate")
            negative = gr.Textbox("", label="negative prompt (replaces the empty caption in CFG)")
            thresholding = gr.Radio(list(THRESHOLDING_MODES), value=d["thresholding"], label="thresholding of x0",
                                    info="none for latent models: thresholding bounds pixels")  # fmt: skip
            compare = gr.Checkbox(False, label="compare none / static / dynamic (a row each)")
            steps = Slider(5, 200, value=d["num_inference_steps"], step=1, precision=0, label="steps")
            with gr.Row():
                count = Slider(1, 8, value=4, step=1, precision=0, label="images")
                seed = Number(0, precision=0, label="seed", minimum=0)
        with gr.Column(scale=3):
            picture, stats = result("images"), gr.Markdown(label="saturated pixels")
    wire(run, stop, partial(actions.text_to_image, models), [model, prompt, negative, guidance, thresholding, steps,
                                                             count, seed, compare], [picture, stats], "text_to_image")  # fmt: skip
    model.change(lambda name: (gr.update(value=models[name].defaults["thresholding"]),
                               gr.update(value=models[name].defaults["guidance_scale"])), model, [thresholding, guidance],
                 api_visibility="private")  # fmt: skip


def clip_tab(models, names):
    """GLIDE's comparison on one prompt: CLIP guidance against (and with) CFG on a text model; a prompt steering a
    class model's unconditional mode."""
    first = models[names[0]]
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=names[0], label="model with a CLIP model")
            prompt = gr.Textbox(clip_actions.default_prompt(first), label="prompt")
            clip_scale = Slider(0, 300, value=10, step=1, label="CLIP guidance scale s",
                                info="10 measured best on the shipped models (docs/clip-guidance.md)")  # fmt: skip
            guidance = Slider(0, 30, value=3, step=0.5, label="CFG scale w (text models)", visible=first.is_text)
            run, stop = buttons("Compare")
            steps = Slider(5, 200, value=50, step=1, precision=0, label="DDPM steps")
            with gr.Row():
                count = Slider(1, 8, value=4, step=1, precision=0, label="images")
                seed = Number(0, precision=0, label="seed", minimum=0)
            gr.Markdown("CLIP guidance (GLIDE) adds the gradient of a noise-aware image-text model's similarity to "
                        "the prompt at every step, like classifier guidance with an open vocabulary. On our models, "
                        "as in GLIDE, CFG draws the prompt more reliably; CFG + CLIP is closest to real data "
                        "(docs/clip-guidance.md).")  # fmt: skip
        with gr.Column(scale=3):
            picture, stats = result("a row per setting, same noise"), gr.Markdown()
    wire(run, stop, partial(clip_actions.clip_comparison, models), [model, prompt, clip_scale, guidance, steps, count,
                                                                    seed], [picture, stats], "clip_guidance")  # fmt: skip
    model.change(lambda name: (gr.update(value=clip_actions.default_prompt(models[name])),
                               gr.update(visible=models[name].is_text)), model, [prompt, guidance],
                 api_visibility="private")  # fmt: skip


def cascade_tab(models, names):
    first = models[names[0]]
    d = first.defaults
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=names[0], label="cascade")
            label = class_menu(models, names, model, "class")
            guidance = Slider(0, 20, value=d["guidance_scale"], step=0.5, label="base guidance scale w")
            level = Slider(0, 1, value=DEFAULT_AUGMENTATION_LEVEL, step=0.05, label="augmentation level a",
                           info="noise on the base's image before super-resolution: 0 clean, 1 pure noise")  # fmt: skip
            run, stop = buttons("Sample and super-resolve")
            steps = Slider(1, 200, value=d["num_inference_steps"], step=1, precision=0, label="base steps")
            stage_steps = Slider(1, 200, value=d["num_inference_steps"], step=1, precision=0,
                                 label="super-resolution steps")  # fmt: skip
            with gr.Row():
                count = Slider(1, 8, value=4, step=1, precision=0, label="images")
                seed = Number(0, precision=0, label="seed", minimum=0)
        with gr.Column(scale=3):
            picture, stats = result("base, upsampled and super-resolved"), gr.Markdown()
    wire(run, stop, partial(actions.cascade, models), [model, label, guidance, steps, level, stage_steps, seed, count],
         [picture, stats], "cascade")  # fmt: skip
    disable_without_class(label, guidance)


def build_demo(models: dict) -> gr.Blocks:
    names, texts, cascades = class_models(models), text_models(models), cascade_models(models)
    measured, clip_names = measured_methods_models(models), clip_actions.clip_models(models)
    if not names:
        raise SystemExit("No class-conditional or unconditional model to serve: the app needs at least one.")
    with gr.Blocks(title="guided-diffusers", delete_cache=(300, 900)) as demo:
        gr.Markdown("## guided-diffusers: guided diffusion sampling on our own models, on a CPU")
        for title, tab in [("Sample", sample_tab), ("Guidance sweep", sweep_tab), ("Thresholding", thresholding_tab),
                           ("Samplers", samplers_tab), ("Forward process", forward_tab), ("Inversion", inversion_tab)]:
            with gr.Tab(title):
                tab(models, names)
            if title == "Sample" and measured:  # the methods beside the tab that samples them one by one
                with gr.Tab("Guidance methods"):
                    methods_tab(models, measured)
        if texts:
            with gr.Tab("Text"):
                text_tab(models, texts)
        if clip_names:
            with gr.Tab("CLIP guidance"):
                clip_tab(models, clip_names)
        if cascades:
            with gr.Tab("Cascade"):
                cascade_tab(models, cascades)
        with gr.Tab("About"):
            gr.Markdown(about(models))
    return demo
