"""The app in a real browser: ``streamlit run`` in a subprocess, driven by Debian's Chromium through
Playwright. Uploads an image through the real uploader, checks that the charts render and that no
exception shows, and saves a screenshot of every page to ``docs/screenshots/<page>.png``.

Runs whenever ``CI`` is set (and fails there if Chromium is missing); elsewhere it is skipped when
``/usr/bin/chromium`` or Playwright is absent.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.harness import CHROMIUM, CHROMIUM_ARGS, ServerError, start_server, wait_until_healthy

from .helpers import png

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
PAGES = {"explore": "Explore", "compare": "Compare", "learn": "Learn", "faithfulness": "Faithfulness",
         "model_card": "Model card"}
START_TIMEOUT = 120  # seconds for the server to answer and the first page to finish
RUN_TIMEOUT = 120_000  # milliseconds for one page's script run in the browser

if not os.environ.get("CI"):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI runs this test",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed; CI runs this test")
from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streamlit") / "server.log"


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path, server_log: Path) -> Iterator[str]:
    """``streamlit run app/main.py`` on a free port; yields its URL once its health check answers."""
    with server_log.open("w") as out:
        process, url = start_server(checkpoint_dir, output=out)
    try:
        try:
            wait_until_healthy(process, url, START_TIMEOUT, poll=0.5)
        except ServerError as e:
            pytest.fail(f"{e}:\n{server_log.read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(server)
        yield tab
        browser.close()


def settle(page: Page) -> None:
    """Wait until the script run has finished and its charts have been drawn."""
    quiet = 0
    deadline = time.monotonic() + RUN_TIMEOUT / 1000
    while quiet < 3 and time.monotonic() < deadline:  # three quiet checks in a row: no run in progress
        running = page.locator('[data-testid="stStatusWidget"], [data-testid="stSpinner"]').count()
        quiet = 0 if running else quiet + 1
        page.wait_for_timeout(400)
    page.wait_for_load_state("networkidle")


def no_exception(page: Page) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, shown.all_inner_texts()


def chart_titles(page: Page) -> list[str]:
    return page.locator(".js-plotly-plot .gtitle").all_text_contents()


def go_to(page: Page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=PAGES[name]).first.click()
    page.wait_for_function(f"document.querySelector('h1') && document.querySelector('h1').innerText.startsWith("
                           f"{PAGES[name].split()[0]!r})", timeout=RUN_TIMEOUT)
    settle(page)


def screenshot(page: Page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


@pytest.fixture
def diagnosed(page: Page, tmp_path: Path, server_log: Path) -> Iterator[Page]:
    """The page; when the test fails, a screenshot of it and the server's log are kept and named."""
    try:
        yield page
    finally:  # pytest shows this output only for a failed test
        page.screenshot(path=str(tmp_path / "last.png"))
        print(f"last screenshot: {tmp_path / 'last.png'}; server log: {server_log}")


def test_every_page_renders_and_an_uploaded_image_is_explained(diagnosed: Page, tmp_path: Path) -> None:
    page = diagnosed
    page.wait_for_selector("h1", timeout=RUN_TIMEOUT)
    settle(page)
    no_exception(page)
    assert page.locator("h1").first.inner_text().startswith("Explore")
    titles = chart_titles(page)
    assert any(t.startswith("CNN tokens") for t in titles) and any(t.startswith("patch tokens") for t in titles)
    assert "gradcam" in titles
    assert page.locator(".js-plotly-plot").count() >= 9  # top-k, attention, fusion weights, gallery, ablation
    screenshot(page, "explore")

    for name in ("compare", "learn", "faithfulness", "model_card"):
        go_to(page, name)
        no_exception(page)
        assert page.locator(".js-plotly-plot").count() >= 1, name
        if name == "learn":
            assert page.locator('[data-testid="stGraphVizChart"] svg').count() >= 1
        if name == "faithfulness":
            page.get_by_text("Run the model-randomisation test").click()
            page.wait_for_selector("text=Rank correlation of the", timeout=RUN_TIMEOUT)
            settle(page)
            no_exception(page)
            assert page.locator(".js-plotly-plot").count() == 3  # map, curves, randomisation
        screenshot(page, name)

    go_to(page, "explore")
    image = tmp_path / "upload.png"
    image.write_bytes(png((120, 90)))
    page.get_by_role("radiogroup", name="Image").get_by_text("Upload", exact=True).click()
    page.locator('[data-testid="stFileUploader"]', has_text="Upload an image").locator('input[type="file"]') \
        .set_input_files(str(image))
    page.wait_for_selector("text=upload upload.png", timeout=RUN_TIMEOUT)
    settle(page)
    no_exception(page)
    titles = chart_titles(page)
    assert any(t.startswith("CNN tokens") for t in titles) and "gradcam" in titles
    assert page.locator(".js-plotly-plot").count() >= 9

    bad = tmp_path / "broken.png"
    bad.write_bytes(png((256, 256))[:200])
    page.locator('[data-testid="stFileUploader"]', has_text="Upload an image").locator('input[type="file"]') \
        .set_input_files(str(bad))
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=RUN_TIMEOUT)
    settle(page)
    no_exception(page)
    assert "truncated" in page.locator('[data-testid="stAlertContentError"]').first.inner_text()
