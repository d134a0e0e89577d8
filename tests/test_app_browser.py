"""The app on the shipped models in a real browser: headless Debian Chromium driven by Playwright (no browser
download: the system one), on a 1400x1000 screen. Screenshots of every tab go to a temporary folder (and to
$APP_SCREENSHOTS, when set, for people to look at)."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from app_models import launch_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian package chromium is not installed")
# as the workplace's own probe starts it: no sandbox as root, and no background connections on a closed network
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
# every tab's main action, run with its defaults
ACTIONS = {"Guidance methods": "Compare methods", "Guidance sweep": "Sweep", "Thresholding": "Compare", "Samplers": "Compare", "Forward process": "Show",
           "Inversion": "Invert and reconstruct", "Text": "Generate",
           "CLIP guidance": "Compare"}  # fmt: skip
NO_PROGRESS = "!document.querySelector('.progress-text, .eta-bar, .progress-level')"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    demo, url = launch_app(CHECKPOINTS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="networkidle")
        yield page
        browser.close()
    demo.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    if os.environ.get("APP_SCREENSHOTS"):
        shutil.copytree(folder, os.environ["APP_SCREENSHOTS"], dirs_exist_ok=True)


def choose(page, label: str, option: str):
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def class_options(page) -> list[str]:
    page.get_by_label("class", exact=True).first.click()
    options = page.get_by_role("option").all_inner_texts()
    page.get_by_role("heading").first.click()  # closes the menu
    return [option.replace("✓", "").strip() for option in options]  # the chosen one is ticked


def errors_on(page) -> int:
    return page.get_by_text("Error", exact=True).count()


def test_the_class_list_follows_the_model_and_sampling_a_class_shows_its_grid(page, shots):
    choose(page, "model", "mnist")
    page.wait_for_timeout(500)
    assert class_options(page) == [str(d) for d in range(10)] + ["unconditional"]
    choose(page, "class", "7")
    page.get_by_role("button", name="Sample", exact=True).click()
    page.get_by_text("guided-diffusers-mnist-0").wait_for(timeout=120_000)  # the download arrives last
    page.wait_for_function(NO_PROGRESS, timeout=30_000)
    assert page.locator(".result img").count() >= 3 and errors_on(page) == 0  # samples, x_t, predicted x0
    # the Sample button and the samples are on the first screen, without scrolling
    for element in (page.get_by_role("button", name="Sample", exact=True), page.locator(".result img").first):
        box = element.bounding_box()
        assert box["y"] + box["height"] <= 1000
    page.screenshot(path=str(shots / "sample-mnist.png"))
    choose(page, "model", "fashion-mnist")
    page.wait_for_timeout(500)
    options = class_options(page)
    assert "Trouser" in options and "7" not in options and options[-1] == "unconditional"


def test_choosing_a_guidance_method_shows_its_controls_and_samples_with_it(page, shots):
    page.get_by_role("tab", name="Sample", exact=True).click()
    choose(page, "model", "mnist")
    choose(page, "guidance method", "Adaptive projected guidance (APG), on the outputs")
    page.wait_for_timeout(500)
    assert page.get_by_text("APG norm threshold r", exact=True).first.is_visible()
    assert not page.get_by_text("CFG rescale phi", exact=True).first.is_visible()
    assert page.get_by_text("Sadat et al. 2024").first.is_visible()
    page.get_by_label("seed", exact=True).first.fill("5")  # a new download name: the previous run's is still shown
    page.get_by_role("button", name="Sample", exact=True).click()
    page.get_by_text("guided-diffusers-mnist-5").wait_for(timeout=120_000)
    page.wait_for_function(NO_PROGRESS, timeout=30_000)
    assert errors_on(page) == 0
    page.screenshot(path=str(shots / "sample-apg.png"))
    choose(page, "guidance method", "Classifier-free guidance (CFG)")  # back to the default for the other tests
    page.get_by_role("tab", name="Guidance sweep", exact=True).click()  # its menu has no sliders to show
    page.get_by_role("tabpanel").get_by_label("guidance method", exact=True).click()
    page.get_by_role("option", name="CFG-Zero*", exact=True).click()
    page.get_by_text("Fan et al. 2025").first.wait_for(timeout=10_000)
    assert errors_on(page) == 0
    page.get_by_role("tab", name="Sample", exact=True).click()


def test_autoguidance_samples_with_the_shipped_weak_model_and_the_sweep_counts_its_passes(page, shots):
    page.get_by_role("tab", name="Sample", exact=True).click()
    choose(page, "model", "fashion-mnist")
    page.wait_for_timeout(500)
    choose(page, "class", "Bag")
    choose(page, "guidance method", "Autoguidance (a weak model)")
    page.get_by_text("Karras et al. 2024").first.wait_for(timeout=10_000)
    page.get_by_label("seed", exact=True).first.fill("6")
    page.get_by_role("button", name="Sample", exact=True).click()
    page.get_by_text("guided-diffusers-fashion-mnist-6").wait_for(timeout=120_000)
    page.wait_for_function(NO_PROGRESS, timeout=30_000)
    assert errors_on(page) == 0
    page.screenshot(path=str(shots / "sample-autoguidance.png"))
    choose(page, "guidance method", "Classifier-free guidance (CFG)")
    page.get_by_role("tab", name="Guidance sweep", exact=True).click()
    panel = page.get_by_role("tabpanel")
    panel.get_by_label("model", exact=True).click()
    page.get_by_role("option", name="fashion-mnist", exact=True).click()
    panel.get_by_label("guidance method", exact=True).click()
    page.get_by_role("option", name="Autoguidance (a weak model)", exact=True).click()
    panel.get_by_role("button", name="Sweep", exact=True).click()
    panel.get_by_text("weak", exact=False).last.wait_for(timeout=180_000)
    page.wait_for_function(NO_PROGRESS, timeout=180_000)
    assert errors_on(page) == 0 and panel.get_by_text("+ 17 weak").count() >= 1  # 17 of the 20 steps above sigma 0.6
    page.screenshot(path=str(shots / "sweep-autoguidance.png"), full_page=True)
    panel.get_by_label("guidance method", exact=True).click()
    page.get_by_role("option", name="Classifier-free guidance (CFG)", exact=True).click()
    page.get_by_role("tab", name="Sample", exact=True).click()


@pytest.mark.parametrize("tab", list(ACTIONS))
def test_every_tab_runs_its_main_action_with_its_defaults(page, shots, tab):
    page.get_by_role("tab", name=tab, exact=True).click()
    panel = page.get_by_role("tabpanel")
    panel.get_by_role("button", name=ACTIONS[tab], exact=True).first.click()
    panel.locator(".result img").first.wait_for(timeout=180_000)
    page.wait_for_function(NO_PROGRESS, timeout=180_000)
    assert errors_on(page) == 0
    page.screenshot(path=str(shots / f"{tab.lower().replace(' ', '-')}.png"), full_page=True)


def test_an_upload_steered_to_a_class_gives_variations_without_error(page, shots, tmp_path):
    """The Inversion tab from an upload (a dark-on-light 7, which "auto" inverts to the data's light-on-dark), with a
    class chosen for the variations: choosing the class enables its CFG scale, and Variations runs."""
    from PIL import Image, ImageDraw

    drawing = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(drawing).line((60, 40, 140, 40, 90, 170), fill=0, width=18)
    drawing.save(tmp_path / "seven.png")
    page.get_by_role("tab", name="Inversion", exact=True).click()
    panel = page.get_by_role("tabpanel")
    panel.get_by_label("model", exact=True).click()
    page.get_by_role("option", name="mnist", exact=True).click()
    panel.get_by_label("upload", exact=True).check()
    panel.locator("input[type=file]").first.set_input_files(str(tmp_path / "seven.png"))
    page.wait_for_timeout(1500)
    panel.get_by_label("class to steer towards").click()
    page.get_by_role("option", name="7", exact=True).click()
    page.wait_for_timeout(500)
    panel.get_by_role("button", name="Variations", exact=True).click()
    page.get_by_text("upload inverted").wait_for(timeout=120_000)
    page.wait_for_function(NO_PROGRESS, timeout=120_000)
    assert errors_on(page) == 0
    page.screenshot(path=str(shots / "inversion-upload.png"), full_page=True)
