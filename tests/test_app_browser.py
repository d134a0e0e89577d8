"""The app in a real browser: headless Debian Chromium driven by Playwright (no browser download: the system one)."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from app_models import launch_app, write_tiny_model  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian package chromium is not installed")
# as the workplace's own probe starts it: no sandbox as root, and no background connections on a closed network
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_clicking_sample_in_a_browser_shows_the_samples(tmp_path):
    from playwright.sync_api import sync_playwright

    write_tiny_model(tmp_path / "models" / "tiny-mnist")
    demo, url = launch_app(tmp_path / "models")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url, wait_until="networkidle")
            page.get_by_label("seed", exact=True).first.fill("5")
            page.get_by_role("button", name="Sample", exact=True).click()
            seed_used = page.get_by_label("seed used")
            page.wait_for_function("el => el.value === '5'", arg=seed_used.element_handle(), timeout=60_000)
            # x_t and predicted x0 stream in; the final samples image comes last
            page.wait_for_function("document.querySelectorAll(\"img[src*='file=']\").length >= 3", timeout=60_000)
            screenshot = tmp_path / "app.png"
            page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
        assert screenshot.stat().st_size > 10_000
        if os.environ.get("APP_SCREENSHOT"):
            shutil.copy(screenshot, os.environ["APP_SCREENSHOT"])
    finally:
        demo.close()
