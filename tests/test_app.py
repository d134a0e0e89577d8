"""The Gradio app on tiny models: its actions called directly, then over HTTP with gradio_client. The app on the
shipped models is tested in test_app_shipped.py and, in a browser, in test_app_browser.py."""

import copy
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app_models import (  # noqa: E402
    add_tiny_clip, launch_app, write_tiny_cascade_model, write_tiny_latent_model, write_tiny_model, write_tiny_text_model,
)  # fmt: skip
from space import actions, clip_actions, controls, inversion_actions, method_actions  # noqa: E402
from space.guidance_methods import EXTRA_CONTROLS  # noqa: E402
from space.layout import build_demo  # noqa: E402
from space.models import UNCONDITIONAL, load_models  # noqa: E402
from guided_diffusers.training.model_card import read_model_card, write_card_metadata  # noqa: E402

NO_PROGRESS = None
SAMPLE = dict(label="3", sampler="ddim", steps=4, eta=0.0, guidance=3.0, classifier_scale=0.0, thresholding="static",
              percentile=99.5, seed=11, randomize=False, batch=2)  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "tiny-mnist")
    write_tiny_text_model(root / "tiny-text")
    return load_models(str(root))


def run_sample(models, **override):
    return list(actions.sample(models, "tiny-mnist", **{**SAMPLE, **override}, progress=NO_PROGRESS))


def is_png(path) -> bool:
    with Image.open(path) as image:
        image.verify()
    return Path(path).read_bytes()[:4] == b"\x89PNG"


def test_sampling_streams_one_frame_per_step_and_the_last_update_carries_every_picture(models):
    frames = run_sample(models)
    assert len(frames) == SAMPLE["steps"] + 1
    assert all(frame[2] is None for frame in frames[:-1])
    x_t, x0, final, seed, download = frames[-1]
    assert seed == 11 and all(is_png(path) for path in (x_t, x0, final, download))
    with Image.open(download) as grid:  # batch 2: one row of two 28 px images at 4x, 1 px padding
        assert grid.size == (2 * (28 * 4 + 1) + 1, 28 * 4 + 2)


def test_each_request_writes_into_a_folder_of_its_own(models):
    first, second = run_sample(models)[-1], run_sample(models)[-1]
    assert Path(first[4]).parent != Path(second[4]).parent
    assert Path(first[4]).read_bytes() == Path(second[4]).read_bytes()  # same seed, same image, separate files


@pytest.mark.parametrize(
    "override,message",
    [({"steps": 0}, "steps \\(for ddim\\) must be a whole number between 1 and 50"),
     ({"steps": 2.5}, "must be a whole number"),
     ({"sampler": "dpm2m", "steps": 50}, "steps \\(for dpm2m\\) must be a whole number between 1 and 49"),
     ({"batch": 99}, "batch size must be"), ({"guidance": -1}, "guidance scale must be"),
     ({"guidance": "abc"}, "guidance scale must be a number"), ({"guidance": math.nan}, "guidance scale must be"),
     ({"guidance": math.inf}, "guidance scale must be"), ({"label": "eleven"}, "class for tiny-mnist must be one of"),
     ({"label": "10"}, "class for tiny-mnist must be one of"), ({"sampler": "unipc"}, "sampler must be one of"),
     ({"thresholding": "soft"}, "thresholding must be one of"), ({"seed": -5}, "seed must be a whole number")],
)  # fmt: skip
def test_bad_controls_are_refused_with_a_sentence_before_any_work(models, override, message):
    with pytest.raises(gr.Error, match=message):
        run_sample(models, **override)


def test_a_request_over_the_cost_cap_is_refused_with_its_cost(models, monkeypatch):
    monkeypatch.setattr(controls, "MAX_IMAGE_EVALUATIONS", 2000)  # the tiny model has 50 steps, not 1,000
    with pytest.raises(gr.Error, match="needs 2,400 image evaluations \\(50 steps x 16 images x 3 passes\\)"):
        run_sample(models, steps=50, batch=16, classifier_scale=5.0)  # CFG (2 passes) + the classifier's gradient


def test_classes_are_taken_by_name_or_index_and_unconditional_only_with_a_null_class(models):
    by_name, by_index = run_sample(models, label="3")[-1], run_sample(models, label=3)[-1]
    assert Path(by_name[4]).read_bytes() == Path(by_index[4]).read_bytes()
    assert is_png(run_sample(models, label=UNCONDITIONAL)[-1][4])
    model = models["tiny-mnist"]
    assert model.class_choices == [str(d) for d in range(10)] + [UNCONDITIONAL] and model.default_class == "0"


def test_stop_ends_a_run_at_its_next_step(models, monkeypatch):
    monkeypatch.setattr(controls, "_stop_requests", {"local": float("inf")})
    with pytest.raises(gr.Error, match="Stopped"):
        run_sample(models)


def test_the_comparison_tabs_return_labelled_pictures_and_one_statistic_per_column(models):
    picture, text = actions.guidance_sweep(models, "tiny-mnist", "3", "0 3", 0)
    assert is_png(picture) and "| w = 0 |" in text and "| w = 3 |" in text and "accuracy" in text
    picture, text = actions.thresholding_comparison(models, "tiny-mnist", "3", 15, 3, 0, 80)
    assert [line.split("|")[1].strip() for line in text.splitlines()[2:]] == ["none", "static", "dynamic, p = 80%"]
    picture, text = actions.sampler_comparison(models, "tiny-mnist", "3", 3, 0)
    assert "ddim, 3 steps" in text and "ddpm, 50 steps" not in text  # DDPM over every step is opt-in
    assert "ddpm, 50 steps" in actions.sampler_comparison(models, "tiny-mnist", "3", 3, 0, True)[1]
    with pytest.raises(gr.Error, match="guidance scale w: give 1 to 6 numbers"):
        actions.guidance_sweep(models, "tiny-mnist", "3", "0 1 2 3 4 5 6", 0)


@pytest.mark.parametrize("method", ["cfg", "apg", "cfg-zero-star", "tcfg"])
def test_every_guidance_method_samples_and_sweeps_with_its_unet_cost(models, method):
    frames = run_sample(models, method=method, apg_momentum=-0.25, zero_init_steps=1)
    assert is_png(frames[-1][4])
    picture, text = actions.guidance_sweep(models, "tiny-mnist", "3", "1 3", 0, method)
    evaluations = [line.split("|")[2].strip() for line in text.splitlines()[2:]]
    steps = models["tiny-mnist"].defaults["num_inference_steps"]
    assert evaluations == [str(steps), str(2 * steps)]  # w = 1: the conditional model alone; w = 3: both halves


@pytest.mark.parametrize("method", ["apg-x0", "mag", "autoguidance-diffusers"])
def test_the_issue_24_methods_sample_and_sweep_with_their_unet_cost(models, method):
    frames = run_sample(models, method=method, apg_x0_eta=0.5, mag_alpha=20)
    assert is_png(frames[-1][4])
    _, text = actions.guidance_sweep(models, "tiny-mnist", "3", "1 3", 0, method)
    evaluations = [line.split("|")[2].strip() for line in text.splitlines()[2:]]
    steps = models["tiny-mnist"].defaults["num_inference_steps"]
    assert evaluations == [str(steps), str(2 * steps)]  # w = 1: the conditional model alone (diffusers' guiders too)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_scheduled_cfg_in_the_sample_tab_is_the_schedule_at_mean_w(models, schedule):
    options = actions.sampling_options(models["tiny-mnist"], "3", "ddim", 4, 0, 2.5, 0, "static", 99.5, 2,
                                       f"scheduled-{schedule}")  # fmt: skip
    guider = options["guider"]
    assert type(guider).__name__ == "ScheduledCFG" and guider.schedule == schedule and guider.guidance_scale == 2.5
    assert is_png(run_sample(models, method=f"scheduled-{schedule}")[-1][4])


def test_the_x0_apg_and_mag_controls_reach_their_guiders_and_bad_values_are_refused(models):
    options = actions.sampling_options(models["tiny-mnist"], "3", "ddim", 4, 0, 2.5, 0, "static", 99.5, 2, "apg-x0",
                                       {"apg_x0_eta": 0.25})  # fmt: skip
    assert (options["guider"].space, options["guider"].eta, options["guider"].guidance_scale) == ("x0", 0.25, 2.5)
    options = actions.sampling_options(models["tiny-mnist"], "3", "ddim", 4, 0, 4, 0, "static", 99.5, 2, "mag",
                                       {"mag_alpha": 50})  # fmt: skip
    assert type(options["guider"]).__name__ == "MagnitudeAwareGuidance" and options["guider"].alpha == 50
    with pytest.raises(gr.Error, match="guidance_scale"):  # x0 APG is D_c + (w - 1) update: w >= 1
        run_sample(models, method="apg-x0", guidance=0.5)
    with pytest.raises(gr.Error, match="MAG alpha must"):
        run_sample(models, method="mag", mag_alpha=-1)


def test_diffusers_autoguidance_on_a_unet_without_mid_block_attention_is_refused_before_sampling(models):
    mid_block = models["tiny-mnist"].pipe.unet.mid_block
    attentions = mid_block.attentions  # a submodule: monkeypatch would delete it on undo, not restore it
    mid_block.attentions = torch.nn.ModuleList([None])  # what diffusers builds with add_attention=False
    try:
        with pytest.raises(gr.Error, match="no `unet.mid_block.attentions.0`, which diffusers' AutoGuidance"):
            run_sample(models, method="autoguidance-diffusers")
    finally:
        mid_block.attentions = attentions


def test_autoguidance_samples_and_sweeps_with_the_weak_models_cost_apart(models):
    frames = run_sample(models, method="autoguidance")
    assert is_png(frames[-1][4])
    picture, text = actions.guidance_sweep(models, "tiny-mnist", "3", "1 3", 0, "autoguidance")
    evaluations = [line.split("|")[2].strip() for line in text.splitlines()[2:]]
    served = models["tiny-mnist"]
    steps = served.defaults["num_inference_steps"]
    scheduler = copy.deepcopy(served.with_sampler(served.defaults.get("sampler")).scheduler)
    scheduler.set_timesteps(steps)
    abar = scheduler.alphas_cumprod[scheduler.timesteps]
    guided = int((((1 - abar) / abar).sqrt() > 0.6).sum())  # the weak model only above sigma_lo's default, 0.6
    assert 0 < guided < steps
    assert evaluations == [str(steps), f"{steps} + {guided} weak"]  # w = 1: the good model alone


def test_autoguidance_on_a_model_without_a_weak_unet_is_refused_by_name(models, monkeypatch):
    monkeypatch.setattr(models["tiny-mnist"].pipe, "weak_unet", None)
    with pytest.raises(gr.Error, match="tiny-mnist has no `weak_unet`, which Autoguidance .* needs"):
        run_sample(models, method="autoguidance")


def test_cfg_plus_plus_and_universal_guidance_sample_and_count_their_cost(models, monkeypatch):
    assert is_png(run_sample(models, method="cfg++", cfgpp_lambda=0.3)[-1][4])
    with pytest.raises(gr.Error, match="CFGPlusPlus is CFG\\+\\+'s DDIM update"):
        run_sample(models, method="cfg++", sampler="ddpm")
    picture, text = actions.guidance_sweep(models, "tiny-mnist", "3", "0 3", 0, "universal")
    evaluations = [line.split("|")[2].strip() for line in text.splitlines()[2:]]
    steps = models["tiny-mnist"].defaults["num_inference_steps"]
    assert evaluations == [f"{steps} + {steps} forward+backward", f"{2 * steps} + {steps} forward+backward"]
    monkeypatch.setattr(models["tiny-mnist"].pipe, "clean_classifier", None)
    with pytest.raises(gr.Error, match="tiny-mnist has no `clean_classifier`, which Universal guidance .* needs"):
        run_sample(models, method="universal")


def test_the_cfg_plus_plus_sweep_varies_lambda_in_place_of_w(models, monkeypatch):
    picture, text = actions.guidance_sweep(models, "tiny-mnist", "3", "0 0.4", 0, "cfg++")
    rows = [line.split("|")[1].strip() for line in text.splitlines()[2:]]
    assert is_png(picture) and rows == ["lambda = 0", "lambda = 0.4"]
    monkeypatch.setattr(actions, "compared", lambda served, settings, *rest: settings)
    settings = actions.guidance_sweep(models, "tiny-mnist", "3", "0.1 0.6", 0, "cfg++")
    assert [options["guider"].guidance_scale for _, _, options in settings] == [0.1, 0.6]  # lambda is what varies
    with pytest.raises(gr.Error, match="CFG\\+\\+ lambda \\(in place of w\\) must be a number between 0 and 1"):
        actions.guidance_sweep(models, "tiny-mnist", "3", "0 3", 0, "cfg++")


def test_the_w_controls_follow_whether_the_method_reads_w(models):
    from space.layout import follow_sweep_scale, reads_w

    assert reads_w(models, "tiny-mnist", "cfg") and not reads_w(models, "tiny-mnist", "cfg++")
    assert follow_sweep_scale("cfg++", "0 1 3 5") == gr.update(label=follow_sweep_scale("cfg++", "")["label"],
                                                               value="0 0.2 0.4 0.8")  # out of [0, 1]: the defaults
    assert follow_sweep_scale("cfg++", "0.1 0.3")["value"] == "0.1 0.3"  # typed values that fit are kept
    assert "lambda" in follow_sweep_scale("cfg++", "")["label"] and "w" in follow_sweep_scale("apg", "0 1")["label"]


def samples_of(frames) -> np.ndarray:
    with Image.open(frames[-1][2]) as image:
        return np.asarray(image)


def test_an_interval_covering_every_noise_level_is_plain_cfg_and_a_reversed_one_is_refused(models):
    assert np.array_equal(samples_of(run_sample(models, method="interval", sigma_lo=0, sigma_hi=160)),
                          samples_of(run_sample(models, method="cfg")))  # fmt: skip
    with pytest.raises(gr.Error, match="sigma_lo"):
        run_sample(models, method="interval", sigma_lo=5, sigma_hi=1)


def test_the_sample_actions_method_controls_are_the_methods_table_in_order():
    import inspect

    parameters = list(inspect.signature(actions.sample).parameters)
    after_method = parameters[parameters.index("method") + 1 : parameters.index("progress")]
    assert after_method == [control.name for control in EXTRA_CONTROLS]


def test_the_chosen_method_is_the_guider_the_pipeline_gets(models):
    options = actions.sampling_options(models["tiny-mnist"], "3", "ddim", 4, 0, 2.5, 1.0, "static", 99.5, 2, "apg",
                                       {"apg_eta": 0.5, "apg_momentum": 0})  # fmt: skip
    apg, classifier = options["guider"]
    assert type(apg).__name__ == "AdaptiveProjectedGuidance" and apg.guidance_scale == 2.5 and apg.eta == 0.5
    assert apg.adaptive_projected_guidance_momentum is None  # 0 on the slider: no momentum
    assert classifier.classifier_scale == 1.0 and actions.passes(options) == 3
    unconditional = actions.sampling_options(models["tiny-mnist"], UNCONDITIONAL, "ddim", 4, 0, 2.5, 0, "static", 99.5,
                                             2, "apg")  # fmt: skip
    assert unconditional["guider"] is None and unconditional["class_labels"] is None
    with pytest.raises(gr.Error, match="guidance method must be one of"):
        run_sample(models, method="pag")
    with pytest.raises(gr.Error, match="APG norm threshold r must"):
        run_sample(models, method="apg", apg_threshold=-1)


def test_forward_process_keeps_the_marginal_variance_at_one(models):
    picture, text = actions.forward_process(models, "tiny-mnist", 3, 20)
    assert is_png(picture) and "abar_t" in text and "1.000 (stays 1)" in text


def test_inversion_tab_reconstructs_interpolates_and_varies(models):
    inv = inversion_actions
    source = ("dataset image", 0, None, "auto")
    picture, text = inv.inversion(models, "tiny-mnist", *source, "3", 10, 2.0, 0)
    exact = inv.inversion(models, "tiny-mnist", *source, "3", 10, 2.0, 5)[1]
    mse = lambda text: float(text.rsplit(" ", 1)[1])  # noqa: E731
    assert is_png(picture) and mse(exact) < mse(text)  # fixed-point iterations tighten the inversion
    strip, gif, _ = inv.interpolation(models, "tiny-mnist", *source, 1, "3", "7", 4, 5)
    with Image.open(gif) as animation:
        assert animation.n_frames == 4 + 2  # there and back
    assert is_png(inv.variations(models, "tiny-mnist", *source, "8", 0.5, 3.0, 10, 0)[0])
    with pytest.raises(gr.Error, match="for both images, or for neither"):
        inv.interpolation(models, "tiny-mnist", *source, 1, "3", UNCONDITIONAL, 4, 5)
    with pytest.raises(gr.Error, match="strength must be"):
        inv.variations(models, "tiny-mnist", *source, "8", 0, 3.0, 10, 0)
    with pytest.raises(gr.Error, match="dataset image must be"):
        inv.inversion(models, "tiny-mnist", "dataset image", 500, None, "auto", "3", 5, 1.0, 0)


def test_uploads_are_brought_to_the_datas_polarity_and_the_choice_is_shown(models, tmp_path):
    dark_on_light = Image.new("L", (28, 28), 255)
    dark_on_light.paste(0, (10, 4, 18, 24))  # a black stroke on white paper
    path = tmp_path / "digit.png"
    dark_on_light.save(path)
    image, said = inversion_actions.source_image(models["tiny-mnist"], "upload", 0, str(path), "auto")
    assert "inverted" in said and image[0, 0, 0, 0] == 0 and image[0, 0, 14, 14] == 1  # background black, stroke white
    image, said = inversion_actions.source_image(models["tiny-mnist"], "upload", 0, str(path), "keep")
    assert said == "upload used as is" and image[0, 0, 0, 0] == 1
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(gr.Error, match="not an image that can be read"):
        inversion_actions.source_image(models["tiny-mnist"], "upload", 0, str(not_an_image), "auto")
    with pytest.raises(gr.Error, match="no image was uploaded"):
        inversion_actions.source_image(models["tiny-mnist"], "upload", 0, None, "auto")


def test_text_tab_generates_and_compares_thresholding(models):
    picture, text = actions.text_to_image(models, "tiny-text", "a 4 to the left of a 9", "", 20.0, "dynamic", 3, 2, 0, True)
    assert is_png(picture) and [line.split("|")[1].strip() for line in text.splitlines()[2:]] == ["none", "static", "dynamic"]
    with pytest.raises(gr.Error, match="prompt"):
        actions.text_to_image(models, "tiny-text", "   ", "", 5.0, "dynamic", 3, 1, 0, False)
    with pytest.raises(gr.Error, match="model must be one of tiny-text"):  # a class model is not a text model
        actions.text_to_image(models, "tiny-mnist", "a seven", "", 5.0, "dynamic", 3, 1, 0, False)
    with pytest.raises(gr.Error, match="model must be one of tiny-mnist"):
        next(actions.sample(models, "tiny-text", **SAMPLE, progress=NO_PROGRESS))


def test_defaults_come_from_the_model_folder(tmp_path):
    folder = write_tiny_model(tmp_path / "tiny-mnist")
    assert load_models(str(tmp_path))["tiny-mnist"].defaults["thresholding"] == "static"  # no demo section: fallbacks
    metadata = read_model_card(folder)[0]
    metadata["demo"] = {"sampler": "ddpm", "num_inference_steps": 13, "guidance_scale": 7.0, "thresholding": "none"}
    write_card_metadata(folder, metadata)
    models = load_models(str(tmp_path))
    assert models["tiny-mnist"].defaults == {"sampler": "ddpm", "num_inference_steps": 13, "guidance_scale": 7.0,
                                             "classifier_scale": 0.0, "thresholding": "none"}  # fmt: skip
    values = {}  # the Sample tab's controls: the first of each label
    for block in build_demo(models).blocks.values():
        if getattr(block, "label", None):
            values.setdefault(block.label, getattr(block, "value", None))
    assert values["guidance scale w"] == 7.0 and values["steps"] == 13 and values["sampler"] == "ddpm"
    assert values["thresholding of x0"] == "none"


def test_latent_models_stream_decoded_images_and_default_to_no_thresholding(tmp_path):
    write_tiny_latent_model(tmp_path / "tiny-latent")
    models = load_models(str(tmp_path))
    assert models["tiny-latent"].defaults["thresholding"] == "none"
    x_t, x0, final, seed, download = list(actions.sample(models, "tiny-latent", **{**SAMPLE, "thresholding": "none"},
                                                         progress=NO_PROGRESS))[-1]  # fmt: skip
    with Image.open(download) as grid:
        assert grid.size == (2 * (32 * 4 + 1) + 1, 32 * 4 + 2)  # decoded 32x32 images, not 16x16 latents


def test_a_broken_model_folder_is_skipped_and_nothing_loadable_is_a_sentence(tmp_path, caplog):
    write_tiny_model(tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    assert list(load_models(str(tmp_path))) == ["good"]
    assert "skipping model" in caplog.text and "broken" in caplog.text
    with pytest.raises(SystemExit, match="could be loaded"):
        load_models(str(broken))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="No models found"):
        load_models(str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="could be loaded"):  # not a folder: tried as a Hub id, offline
        load_models(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    write_tiny_model(root / "tiny-mnist")
    write_tiny_text_model(root / "tiny-text")
    demo, url = launch_app(root)
    yield url
    demo.close()


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)  # a Client is one visitor (one session)


def call_sample(url, **override):
    return client(url).predict("tiny-mnist", *{**SAMPLE, **override}.values(), api_name="/sample")


def test_the_api_names_its_outputs_types_whole_numbers_and_returns_files(served):
    endpoints = client(served).view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/sample", "/forward", "/guidance_sweep", "/thresholding", "/samplers", "/invert", "/interpolate",
            "/variations", "/text_to_image"} <= set(endpoints)  # fmt: skip
    sample = endpoints["/sample"]
    types = {p["parameter_name"]: p["python_type"]["type"] for p in sample["parameters"]}
    assert types["steps"] == types["batch"] == types["seed"] == "int"
    assert [r["label"] for r in sample["returns"]] == ["x_t", "predicted x0", "samples", "seed used", "download PNG"]
    assert all(not r["label"].startswith("value_") for e in endpoints.values() for r in e["returns"])
    result = call_sample(served)
    assert all(is_png(path) for path in (result[0], result[1], result[2], result[4]))


def test_same_seed_same_png_bytes_and_another_seed_differs(served):
    png = lambda result: Path(result[4]).read_bytes()  # noqa: E731
    first, again, other = call_sample(served), call_sample(served), call_sample(served, seed=12)
    assert png(first) == png(again) and png(first) != png(other)


def test_errors_reach_the_client_as_sentences(served):
    with pytest.raises(Exception, match="steps \\(for ddim\\) must be a whole number between 1 and 50"):
        call_sample(served, steps=5000)
    with pytest.raises(Exception, match="guidance scale w must be a number; got 'abc'"):  # refused by the control itself
        call_sample(served, guidance="abc")
    with pytest.raises(Exception, match="class for tiny-mnist must be one of"):
        call_sample(served, label="T-shirt/top")


def test_concurrent_visitors_with_one_seed_each_get_their_own_images(served):
    """24 visitors at once, each with its own seed, get the image that seed gives alone (no shared file names)."""
    seeds = list(range(24))
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda seed: call_sample(served, seed=seed, steps=2), seeds))
    alone = {seed: Path(call_sample(served, seed=seed, steps=2)[4]).read_bytes() for seed in (0, 7, 23)}
    assert all(Path(result[4]).read_bytes() == alone[seed] for seed, result in zip(seeds, together) if seed in alone)
    assert len({Path(result[4]).read_bytes() for result in together}) == len(seeds)


def test_thirty_streamed_runs_in_a_row_send_no_broken_image(served):
    """Each streamed preview is its own file, copied atomically into Gradio's cache (writing the same cached file
    while serving it was the 'Too much data for declared Content-Length' race)."""
    visitor = client(served)
    for seed in range(30):
        job = visitor.submit("tiny-mnist", *{**SAMPLE, "seed": seed % 3, "steps": 3}.values(), api_name="/sample")
        job.result()
        for update in job.outputs():
            assert all(is_png(path) for path in (update[0], update[1]) if path)


def test_input_errors_are_logged_as_one_line_without_a_traceback(models, caplog):
    with pytest.raises(gr.Error):
        run_sample(models, steps=0)
    refused = [record for record in caplog.records if record.getMessage().startswith("refused:")]
    assert len(refused) == 1 and refused[0].exc_info is None and "\n" not in refused[0].getMessage()


def test_one_visitor_runs_one_action_at_a_time(models):
    class Visitor:
        session_hash = "visitor-1"

    with controls.one_run_per_visitor(Visitor()):
        with pytest.raises(gr.Error, match="already have a run in progress"):
            next(actions.sample(models, "tiny-mnist", **SAMPLE, progress=NO_PROGRESS, request=Visitor()))
    assert is_png(list(actions.sample(models, "tiny-mnist", **SAMPLE, progress=NO_PROGRESS, request=Visitor()))[-1][4])


def test_uploads_over_the_size_limit_are_refused(served):
    import httpx

    too_big = b"\x89PNG" + bytes(3 * 1024 * 1024)
    response = httpx.post(f"{served}gradio_api/upload", files={"files": ("big.png", too_big, "image/png")})
    assert response.status_code == 413


@pytest.fixture(scope="module")
def with_cascade(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade-models")
    write_tiny_model(root / "tiny-mnist")
    write_tiny_cascade_model(root / "tiny-cascade")
    return load_models(str(root))


def test_the_cascade_tab_shows_base_upsampled_and_super_resolved_rows_with_each_stages_cost(with_cascade):
    picture, text = actions.cascade(with_cascade, "tiny-cascade", "3", 3.0, 4, 0.3, 5, 7, 2, progress=NO_PROGRESS)
    assert is_png(picture)
    with Image.open(picture) as image:  # three labelled strips of 2 images, each about 112 px tall
        assert image.height >= 3 * 112
    assert "| base | 8 | 14x14 |" in text and "| super-resolution | 5 | 28x28 |" in text  # CFG: 2 per base step
    again, _ = actions.cascade(with_cascade, "tiny-cascade", "3", 3.0, 4, 0.3, 5, 7, 2, progress=NO_PROGRESS)
    assert Path(again).read_bytes() == Path(picture).read_bytes()  # same seed, same picture
    _, unconditional = actions.cascade(with_cascade, "tiny-cascade", UNCONDITIONAL, 3.0, 4, 0.3, 5, 7, 1,
                                       progress=NO_PROGRESS)  # fmt: skip
    assert "| base | 4 | 14x14 |" in unconditional  # no class: nothing to guide towards


@pytest.mark.parametrize("override, message", [({"augmentation_level": 1.5}, "augmentation level must be a number between 0 and 1"),
                                               ({"super_resolution_steps": 0}, "super-resolution steps must be a whole number"),
                                               ({"model": "tiny-mnist"}, "model must be one of")])  # fmt: skip
def test_bad_cascade_controls_are_refused_with_a_sentence(with_cascade, override, message):
    controls_ = dict(model="tiny-cascade", label="3", guidance=3.0, steps=4, augmentation_level=0.2,
                     super_resolution_steps=4, seed=0, count=1, **{})  # fmt: skip
    controls_.update(override)
    with pytest.raises(gr.Error, match=message):
        actions.cascade(with_cascade, **controls_, progress=NO_PROGRESS)


def test_a_cascade_is_served_in_its_own_tab_only(with_cascade):
    with pytest.raises(gr.Error, match="model must be one of"):
        list(actions.sample(with_cascade, "tiny-cascade", **SAMPLE, progress=NO_PROGRESS))
    demo = build_demo(with_cascade)
    api_names = {dependency.get("api_name") for dependency in demo.config["dependencies"]}
    assert "cascade" in api_names and "sample" in api_names


def test_labelled_rows_keep_every_label_clear_of_the_pictures():
    import torch

    from space.pictures import labelled_rows

    label = "super-resolved, a long label\na = 0.2"  # wider than the default margin
    canvas = np.asarray(labelled_rows([-torch.ones(2, 1, 8, 8)], [label]).convert("L"))
    picture_columns = np.flatnonzero((canvas <= 128).all(axis=0))  # black samples in grey frames: whole columns
    text_columns = np.flatnonzero((canvas[:, : picture_columns[0]] < 128).any(axis=0))
    assert len(text_columns) and text_columns[-1] < picture_columns[0] - 4  # white space between the two


# ---------------------------------------------------------------------------------------- Guidance methods tab
def sweep_point(guider, accuracy, fd_own, unet=8, fd_efficientnet=10.0, **costs):
    return {"guider": guider, "sampler": "ddim", "num_inference_steps": 4, "thresholding": "static", "eta": 0.0,
            "accuracy": accuracy, "fd_own": fd_own, "fd_efficientnet": fd_efficientnet, "precision": 0.9, "recall": 0.8,
            "unet_per_image": unet, **costs}  # fmt: skip


SWEEP = {"arguments": {"dataset_name": "mnist", "num_samples": 1000},
         "real_data_floor": {"fd_own": 0.25, "fd_efficientnet": 10.0, "accuracy": 0.99, "precision": 0.9, "recall": 0.9},
         "rows": [sweep_point("cfg:guidance_scale=3", 0.999, 0.3), sweep_point("cfg:guidance_scale=5", 1.0, 0.5),
                  sweep_point("interval:guidance_scale=5", 0.995, 0.28, unet=6),
                  sweep_point("autoguidance:guidance_scale=3", 0.996, 0.2, unet=4, fd_efficientnet=30.0,
                              weak_unet_per_image=4),
                  sweep_point("apg:guidance_scale=3,eta=0", 0.98, 0.3)]}  # fmt: skip


@pytest.fixture(scope="module")
def with_sweep(tmp_path_factory):
    """The tiny model with a guider sweep's results.json in its folder (rows written here, in the format
    training/evaluate.py writes), a copy without its weak UNet, and the tiny model without a sweep."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("swept-models")
    for name in ("tiny-swept", "tiny-swept-no-weak"):
        folder = write_tiny_model(root / name)
        (folder / "evaluation" / f"{name}-guidance-methods").mkdir(parents=True)
        (folder / "evaluation" / f"{name}-guidance-methods" / "results.json").write_text(json.dumps(SWEEP))
    shutil.rmtree(root / "tiny-swept-no-weak" / "weak_unet")
    index = root / "tiny-swept-no-weak" / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "weak_unet": [None, None]}))
    write_tiny_model(root / "tiny-mnist")
    return load_models(str(root))


def test_the_guidance_methods_tab_shows_each_method_at_its_best_measured_setting(with_sweep):
    picture, text = method_actions.guidance_methods(with_sweep, "tiny-swept", "3", 5, 2, progress=NO_PROGRESS)
    with Image.open(picture) as image:  # four labelled strips of two images
        assert image.height >= 4 * 112
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # by the worse FD ratio: interval (1.12x own), cfg at w = 3 (1.2x), autoguidance (0.8x own but 3x EfficientNet),
    # then APG, short of 99%
    assert [line.split(" | ")[0] for line in lines] == ["| interval, w=5", "| cfg, w=3", "| autoguidance, w=3",
                                                        "| apg, w=3,eta=0"]  # fmt: skip
    assert "| 99.5% | 1.12x / 1.00x | 0.800 | 6 |" in lines[0]  # measured numbers, then this run's evaluations
    assert lines[2].endswith("| 4 + 4 weak UNet |") and "98.0% (short of the goal)" in lines[3]
    again, _ = method_actions.guidance_methods(with_sweep, "tiny-swept", "3", 5, 2, progress=NO_PROGRESS)
    assert Path(again).read_bytes() == Path(picture).read_bytes()  # same seed, same rows


def test_the_guidance_methods_tab_skips_what_a_copy_cannot_run_and_refuses_without_a_sweep(with_sweep):
    _, text = method_actions.guidance_methods(with_sweep, "tiny-swept-no-weak", "3", 0, 1, progress=NO_PROGRESS)
    assert "autoguidance, w=3" not in text and "Not shown: autoguidance (this copy of tiny-swept-no-weak has no " \
        "`weak_unet`)" in text  # fmt: skip
    with pytest.raises(gr.Error, match="tiny-mnist has no measured sweep of guidance methods"):
        method_actions.guidance_methods(with_sweep, "tiny-mnist", "3", 0, 1, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="choose one"):
        method_actions.guidance_methods(with_sweep, "tiny-swept", UNCONDITIONAL, 0, 1, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="images per method must be a whole number"):
        method_actions.guidance_methods(with_sweep, "tiny-swept", "3", 0, 9, progress=NO_PROGRESS)
    demo = build_demo(with_sweep)
    assert "guidance_methods" in {dependency.get("api_name") for dependency in demo.config["dependencies"]}
    assert "guidance_methods" not in {d.get("api_name") for d in build_demo(
        {"tiny-mnist": with_sweep["tiny-mnist"]}).config["dependencies"]}  # no sweep, no tab


# ------------------------------------------------------------------------------------------- CLIP guidance tab
@pytest.fixture(scope="module")
def with_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-models")
    add_tiny_clip(write_tiny_model(root / "tiny-mnist-clip"))
    add_tiny_clip(write_tiny_text_model(root / "tiny-text-clip"))
    write_tiny_model(root / "tiny-mnist")
    return load_models(str(root))


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_the_clip_tab_runs_glides_comparison_on_a_text_model_with_each_rows_cost(with_clip):
    picture, text = clip_actions.clip_comparison(with_clip, "tiny-text-clip", "a 4 to the left of a 9", 10, 3, 5, 2, 0,
                                                 progress=NO_PROGRESS)  # fmt: skip
    with Image.open(picture) as image:  # four labelled strips
        assert image.height >= 4 * 112
    costs = [line.split(" | ")[:3] for line in table_lines(text)]
    assert costs == [["| no guidance (w = 1)", "5", "0"], ["| CLIP s = 10", "5", "5"], ["| CFG w = 3", "10", "0"],
                     ["| CFG w = 3 + CLIP s = 10", "10", "5"]]  # fmt: skip


def test_the_clip_tab_steers_a_class_models_unconditional_mode_and_scale_0_changes_nothing(with_clip):
    _, text = clip_actions.clip_comparison(with_clip, "tiny-mnist-clip", "a picture of the numeral seven", 10, 3, 5, 1,
                                           0, progress=NO_PROGRESS)  # fmt: skip
    assert [line.split(" | ")[:3] for line in table_lines(text)] == [["| unconditional", "5", "0"],
                                                                     ["| CLIP s = 10", "5", "5"]]  # fmt: skip
    picture, _ = clip_actions.clip_comparison(with_clip, "tiny-mnist-clip", "a seven", 0, 3, 5, 1, 0, progress=NO_PROGRESS)
    pixels, height = np.asarray(Image.open(picture).convert("L")), 28 * 4 + 2  # strips of one 112 px image
    unguided, guided = pixels[-2 * height : -height, -height:], pixels[-height:, -height:]
    assert np.array_equal(unguided, guided)  # s = 0: the unconditional row's image, bit for bit


@pytest.mark.parametrize("override, message", [({"prompt": "  "}, "prompt must be a few words"),
                                               ({"model": "tiny-mnist"}, "the models with a clip_model"),
                                               ({"clip_scale": float("nan")}, "CLIP guidance scale s must be a number"),
                                               ({"count": 9}, "images must be a whole number")])  # fmt: skip
def test_bad_clip_tab_controls_are_refused_before_any_work(with_clip, override, message):
    controls_ = dict(model="tiny-mnist-clip", prompt="a seven", clip_scale=10, guidance=3, steps=5, count=1, seed=0)
    with pytest.raises(gr.Error, match=message):
        clip_actions.clip_comparison(with_clip, **{**controls_, **override}, progress=NO_PROGRESS)


def test_the_clip_tab_is_served_only_with_a_clip_model(with_clip):
    names = lambda models: {d.get("api_name") for d in build_demo(models).config["dependencies"]}  # noqa: E731
    assert "clip_guidance" in names(with_clip)
    assert "clip_guidance" not in names({"tiny-mnist": with_clip["tiny-mnist"]})


def test_a_method_row_label_names_the_scale_the_method_takes():
    assert method_actions.point_label("cfg:guidance_scale=3") == "cfg\nw=3"
    assert method_actions.point_label("cfg++:guidance_scale=0.4") == "cfg++\nlambda=0.4"  # CFG++'s lambda, not a w
    assert method_actions.point_label("classifier:classifier_scale=10,prediction=pred_uncond") == "classifier\ns=10 (uncond)"
    assert method_actions.point_label("cfg:guidance_scale=3,guidance_rescale=0.7") == "cfg-rescale\nw=3,phi=0.7"
    # a schedule left at its default is named, so that the linear ramp is not read as a constant w
    assert method_actions.point_label("scheduled:guidance_scale=3") == "scheduled\nw=3,schedule=linear"
    assert method_actions.point_label("scheduled:guidance_scale=3,schedule=cosine") == "scheduled\nw=3,schedule=cosine"
