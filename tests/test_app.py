"""The Gradio app: its plain functions directly, then through gradio_client against the app on localhost."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402
from app_models import launch_app, write_tiny_model, write_tiny_text_model  # noqa: E402

NO_PROGRESS = lambda *args, **kwargs: None  # noqa: E731
SAMPLE = dict(label="3", sampler="ddim", steps=4, eta=0.0, guidance=3.0, classifier_scale=0.0, thresholding="dynamic",
              percentile=99.5, seed=11, randomize=False, batch=2)  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "tiny-mnist")
    write_tiny_text_model(root / "tiny-text")
    pipelines = app.load_pipelines(str(root))
    return pipelines, app.load_datasets(pipelines)


def test_sampling_streams_one_frame_per_step_then_the_final_grid(models):
    pipelines, _ = models
    frames = list(app.sample(pipelines, "tiny-mnist", **SAMPLE, progress=NO_PROGRESS))
    assert len(frames) == SAMPLE["steps"] + 1
    assert all(frame[2] is None for frame in frames[:-1]) and frames[-1][2] is not None
    x_t, x0, final, seed, path = frames[-1]
    assert seed == 11 and Path(path).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "override,message",
    [({"steps": 0}, "steps must be an integer between 1 and 1000"), ({"batch": 99}, "batch size must be"),
     ({"guidance": -1}, "CFG scale must be"), ({"label": "eleven"}, "class must be"),
     ({"sampler": "euler"}, "sampler must be one of"), ({"thresholding": "soft"}, "thresholding must be one of")],
)  # fmt: skip
def test_out_of_range_controls_raise_gradio_errors(models, override, message):
    pipelines, _ = models
    with pytest.raises(gr.Error, match=message):
        next(app.sample(pipelines, "tiny-mnist", **{**SAMPLE, **override}, progress=NO_PROGRESS))


def test_the_other_tabs_return_images_and_measurements(models):
    pipelines, datasets = models
    noised, text = app.forward_process(pipelines, datasets, "tiny-mnist", 3, 20)
    assert noised.size[0] > 28 * 4 and "abar_t" in text and "1.000" in text  # marginal variance stays 1
    for function, args, expected in [
        (app.thresholding_comparison, ("tiny-mnist", "3", 15, 3, 0), "dynamic (p = 99.5%):"),
        (app.sampler_comparison, ("tiny-mnist", "3", 3, 0), "ddim-3:"),
        (app.guidance_sweep, ("tiny-mnist", "3", "0 3", 0), "accuracy"),
    ]:
        image, text = function(pipelines, *args)
        assert image.size[0] > 0 and expected in text
    _, text = app.thresholding_comparison(pipelines, "tiny-mnist", "3", 15, 3, 0, 80)
    assert "dynamic (p = 80%)" in text  # the Thresholding tab's percentile reaches the dynamic row


def test_inversion_tab_reconstructs_interpolates_and_varies(models):
    pipelines, datasets = models
    picture, text = app.inversion(pipelines, datasets, "tiny-mnist", 0, None, "3", 10, 2.0, 0)
    assert picture.size == (3 * (28 * app.SCALE + 1) + 1, 28 * app.SCALE + 2) and "Reconstruction MSE" in text
    mse = lambda text: float(text.rsplit(" ", 1)[1])  # noqa: E731
    exact = app.inversion(pipelines, datasets, "tiny-mnist", 0, None, "3", 10, 2.0, 5)[1]
    assert mse(exact) < mse(text)  # fixed-point iterations tighten the inversion
    strip, gif = app.interpolation(pipelines, datasets, "tiny-mnist", 0, None, 1, "3", "7", 4, 5)
    assert strip.size[0] == 4 * (28 * app.SCALE + 1) + 1
    with Image.open(gif) as animation:
        assert animation.n_frames == 4 + 2  # there and back
    grid = app.variations(pipelines, datasets, "tiny-mnist", 0, None, "8", 0.5, 3.0, 10, 0)
    assert grid.size[0] == 9 * (28 * app.SCALE + 1) + 1


def test_inversion_tab_fits_uploads_and_refuses_bad_controls(models):
    pipelines, datasets = models
    upload = Image.new("RGB", (40, 30), "white")  # any size and mode: fitted to 1x28x28
    assert app.inversion(pipelines, datasets, "tiny-mnist", 0, upload, "unconditional", 5, 1.0, 0)[0].size[0] > 0
    with pytest.raises(gr.Error, match="start_label"):  # one class and one unconditional end
        app.interpolation(pipelines, datasets, "tiny-mnist", 0, None, 1, "3", "unconditional", 4, 5)
    with pytest.raises(gr.Error, match="strength must be"):
        app.variations(pipelines, datasets, "tiny-mnist", 0, None, "8", 0, 3.0, 10, 0)
    with pytest.raises(gr.Error, match="num_train_timesteps|steps"):  # more steps than the tiny model was trained with
        app.inversion(pipelines, datasets, "tiny-mnist", 0, None, "3", 200, 1.0, 0)
    with pytest.raises(gr.Error, match="image index"):
        app.inversion(pipelines, datasets, "tiny-mnist", 500, None, "3", 5, 1.0, 0)


def test_model_cards_are_shown_without_links_into_the_model_folder():
    body = ("![sweep](evaluation/cfg/sweep_guidance_scale.png) grids: [0](evaluation/cfg/samples_0.png) "
            "[paper](https://arxiv.org/abs/2207.12598)")
    shown = app.card_for_display(body)
    assert "](evaluation" not in shown and "`evaluation/cfg/sweep_guidance_scale.png` in the model folder" in shown
    assert "0 (`evaluation/cfg/samples_0.png`)" in shown and "[paper](https://arxiv.org/abs/2207.12598)" in shown


def test_text_tab_generates_and_compares_thresholding(models):
    pipelines, _ = models
    picture, text = app.text_to_image(pipelines, "tiny-text", "a 4 to the left of a 9", "", 20.0, "dynamic", 3, 2, 0, True)
    assert picture.size == (2 * (56 * app.SCALE + 1) + 1, 3 * (28 * app.SCALE + 1) + 1)  # 2 images, 3 modes
    assert [line.split(":")[0] for line in text.splitlines()] == ["none", "static", "dynamic"]
    with pytest.raises(gr.Error, match="prompt"):
        app.text_to_image(pipelines, "tiny-text", "   ", "", 5.0, "dynamic", 3, 1, 0, False)
    with pytest.raises(gr.Error, match="model must be one of tiny-text"):  # a class model is not a text model
        app.text_to_image(pipelines, "tiny-mnist", "a seven", "", 5.0, "dynamic", 3, 1, 0, False)
    with pytest.raises(gr.Error, match="model must be one of tiny-mnist"):
        next(app.sample(pipelines, "tiny-text", **SAMPLE, progress=NO_PROGRESS))


def test_latent_models_stream_decoded_images(tmp_path):
    from app_models import write_tiny_latent_model

    write_tiny_latent_model(tmp_path / "tiny-latent")
    pipelines = app.load_pipelines(str(tmp_path))
    frames = list(app.sample(pipelines, "tiny-latent", **{**SAMPLE, "thresholding": "none"}, progress=NO_PROGRESS))
    x_t, x0, final, seed, path = frames[-1]
    assert final.size == (2 * (32 * app.SCALE + 1) + 1, 32 * app.SCALE + 2)  # decoded 32x32 images, not 16x16 latents
    picture, text = app.inversion(pipelines, {}, "tiny-latent", 0, Image.new("L", (32, 32)), "3", 5, 1.0, 0)
    assert picture.size[0] == 2 * (32 * app.SCALE + 1) + 1  # image and reconstruction (a latent x_T is no picture)
    # choosing a latent model switches thresholding off (it bounds pixels); a pixel model gets dynamic again
    write_tiny_model(tmp_path / "tiny-mnist")
    pipelines = app.load_pipelines(str(tmp_path))
    assert [app.default_thresholding(pipelines, name) for name in ("tiny-latent", "tiny-mnist")] == ["none", "dynamic"]
    write_tiny_text_model(tmp_path / "tiny-text")  # the Text tab's model menu asks the same
    assert app.default_thresholding(app.load_pipelines(str(tmp_path)), "tiny-text") == "dynamic"


# ------------------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("served")
    write_tiny_model(root / "tiny-mnist")
    write_tiny_text_model(root / "tiny-text")
    demo, url = launch_app(root)
    yield Client(url, verbose=False)
    demo.close()


def call_sample(client, **override):
    args = {**SAMPLE, **override}
    return client.predict("tiny-mnist", *args.values(), api_name="/sample")


def test_endpoints_are_listed(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/sample", "/forward", "/guidance_sweep", "/thresholding", "/samplers", "/invert", "/interpolate",
            "/variations", "/text_to_image"} <= set(endpoints)


def test_same_seed_same_png_bytes_and_another_seed_differs(client):
    png = lambda result: Path(result[2]).read_bytes()  # noqa: E731
    first, again, other = call_sample(client), call_sample(client), call_sample(client, seed=12)
    assert png(first) == png(again) and png(first) != png(other)


def test_a_streamed_run_sends_one_update_per_step(client):
    job = client.submit("tiny-mnist", *SAMPLE.values(), api_name="/sample")
    job.result()
    assert len(job.outputs()) == SAMPLE["steps"] + 1


def test_out_of_range_input_comes_back_as_an_error(client):
    with pytest.raises(Exception, match="greater than maximum value 1000"):  # the slider's own check
        call_sample(client, steps=5000)
    with pytest.raises(Exception, match="seed must be an integer between 0 and"):  # ours, server-side
        call_sample(client, seed=-5)


def test_eight_concurrent_clients_all_get_results(client):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda seed: call_sample(client, seed=seed, steps=2), range(8)))
    assert all(Path(result[2]).is_file() for result in results)


def test_concurrent_requests_with_different_samplers_do_not_disturb_each_other(client):
    """Each request steps its own scheduler: the same seed gives the same image alone and under concurrency."""
    alone = {sampler: Path(call_sample(client, sampler=sampler, steps=3)[2]).read_bytes() for sampler in ("ddim", "ddpm")}
    with ThreadPoolExecutor(4) as pool:
        mixed = list(pool.map(lambda sampler: (sampler, call_sample(client, sampler=sampler, steps=3)),
                              ["ddim", "ddpm", "ddim", "ddpm"]))  # fmt: skip
    assert all(Path(result[2]).read_bytes() == alone[sampler] for sampler, result in mixed)
