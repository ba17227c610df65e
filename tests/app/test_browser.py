"""The app in a real browser: ``streamlit run`` in a subprocess, driven by Debian's Chromium through
Playwright. Uploads an image through the real uploader, checks that the charts render and that no
exception shows, and takes a screenshot of every page.

Screenshots go to a temporary folder; ``TOKENFUSION_SCREENSHOTS=docs/screenshots`` writes them
where the README shows them. Under CI (``CI`` set, as ``.ci/run`` does) a missing Chromium or
Playwright fails the test; elsewhere it is skipped.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.harness import CHROMIUM, CHROMIUM_ARGS, ServerError, browser_missing, start_server, stop_server, wait_for_script_run, \
    wait_until_healthy

from .helpers import png

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
PAGES = {"explore": "Explore", "compare": "Compare", "learn": "Learn", "faithfulness": "Faithfulness",
         "model_card": "Model card"}
# Generous: every wait returns as soon as its condition holds, so only a slow machine pays them.
START_TIMEOUT = 300  # seconds for the server to answer its health check
RUN_TIMEOUT = 300  # seconds for one script run (the first imports torch, captum and grad-cam)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``TOKENFUSION_SCREENSHOTS`` when set (to refresh ``docs/screenshots``), else a temporary folder."""
    chosen = os.environ.get("TOKENFUSION_SCREENSHOTS")
    folder = (REPO / chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
        stop_server(process, timeout=10)


@pytest.fixture(scope="module")
def page(request: pytest.FixtureRequest) -> Iterator[Page]:
    missing = browser_missing()
    if missing:  # CI must run this test: there a missing browser is a failure, never a skip
        if in_ci():
            pytest.fail(f"CI must run the browser test, but {missing}", pytrace=False)
        pytest.skip(f"{missing}; CI runs this test")
    from playwright.sync_api import sync_playwright

    server = request.getfixturevalue("server")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(RUN_TIMEOUT * 1000)
        tab.goto(server)
        yield tab
        browser.close()


def settle(page: Page) -> None:
    """Wait until the script run has finished (Streamlit's own run state) and the network is quiet."""
    wait_for_script_run(page, RUN_TIMEOUT)
    page.wait_for_load_state("networkidle")


PLOT = ".js-plotly-plot .svg-container > svg.main-svg:first-of-type"  # one per chart, once drawn


def wait_for_count(page: Page, selector: str, at_least: int) -> int:
    """Wait until ``selector`` matches ``at_least`` elements (charts draw after the run ends); the count."""
    page.wait_for_function(f"document.querySelectorAll({selector!r}).length >= {at_least}")
    return page.locator(selector).count()


def no_exception(page: Page) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, shown.all_inner_texts()


def chart_titles(page: Page) -> list[str]:
    return page.locator(".js-plotly-plot .gtitle").all_text_contents()


def start_if_asked(page: Page) -> None:
    """Click the start button of work estimated above a few seconds, when the page shows one."""
    button = page.get_by_role("button", name=re.compile(r"^Start \("))
    if button.count():
        button.first.click()
        settle(page)
        # the work runs on a thread of its own, behind a progress bar and a Stop button
        page.get_by_role("button", name="Stop").first.wait_for(state="detached", timeout=RUN_TIMEOUT * 1000)
        settle(page)


def go_to(page: Page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=PAGES[name]).first.click()
    page.wait_for_function(f"document.querySelector('h1') && document.querySelector('h1').innerText.startsWith("
                           f"{PAGES[name].split()[0]!r})")
    settle(page)


def open_tab(page: Page, name: str) -> None:
    """Click Explore's tab ``name``: the page reruns with that view drawn."""
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_function(f"document.querySelector('[role=tab][aria-selected=true]')?.innerText === {name!r}")
    settle(page)
    no_exception(page)


def screenshot(page: Page, folder: Path, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as it."""
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    settle(page)
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size(size)


@pytest.fixture
def diagnosed(page: Page, tmp_path: Path, server_log: Path) -> Iterator[Page]:
    """The page; when the test fails, a screenshot of it and the server's log are kept and named."""
    try:
        yield page
    finally:  # pytest shows this output only for a failed test
        page.screenshot(path=str(tmp_path / "last.png"))
        print(f"last screenshot: {tmp_path / 'last.png'}; server log: {server_log}")


def test_every_page_renders_and_an_uploaded_image_is_explained(diagnosed: Page, tmp_path: Path,
                                                                  screenshots: Path) -> None:
    page = diagnosed
    page.wait_for_selector("h1")
    settle(page)
    no_exception(page)
    assert page.locator("h1").first.inner_text().startswith("Explore")
    assert wait_for_count(page, PLOT, 3) == 3  # top-k and the attention tab's two maps: no other tab is drawn
    titles = chart_titles(page)
    assert any(t.startswith("CNN tokens") for t in titles) and any(t.startswith("patch tokens") for t in titles)
    screenshot(page, screenshots, "explore")
    for tab, charts in (("Inspector", 4), ("What-if", 5), ("Fusion", 3), ("Ablation", 2), ("Maps", 4)):
        open_tab(page, tab)
        assert wait_for_count(page, PLOT, charts) == charts, tab
    assert "gradcam" in chart_titles(page)
    screenshot(page, screenshots, "explore-maps")

    for name in ("compare", "learn", "faithfulness", "model_card"):
        go_to(page, name)
        start_if_asked(page)
        no_exception(page)
        wait_for_count(page, PLOT, 1)
        if name == "learn":  # Graphviz draws its svg in the browser, after the run has ended
            wait_for_count(page, '[data-testid="stGraphVizChart"] svg', 1)
        if name == "faithfulness":
            page.get_by_text("Run the model-randomisation test").click()
            page.wait_for_selector("text=Rank correlation of the")
            settle(page)
            no_exception(page)
            assert wait_for_count(page, PLOT, 3) == 3  # map, curves, randomisation
        screenshot(page, screenshots, name)
    assert set(PAGES) <= {p.stem for p in screenshots.glob("*.png")}  # the Analysis page takes its own

    go_to(page, "explore")
    image = tmp_path / "upload.png"
    image.write_bytes(png((120, 90)))
    page.get_by_role("radiogroup", name="Image").get_by_text("Upload", exact=True).click()
    settle(page)
    page.locator('[data-testid="stFileUploader"]', has_text="Upload an image").locator('input[type="file"]') \
        .set_input_files(str(image))
    page.wait_for_selector("text=upload upload.png")
    settle(page)
    no_exception(page)
    open_tab(page, "Maps")  # no bar chart of a prediction for an image out of the model's distribution
    assert wait_for_count(page, PLOT, 3) == 3 and "gradcam" in chart_titles(page)
    open_tab(page, "Attention")
    assert wait_for_count(page, PLOT, 2) == 2 and any(t.startswith("CNN tokens") for t in chart_titles(page))

    bad = tmp_path / "broken.png"
    bad.write_bytes(png((256, 256))[:200])
    page.locator('[data-testid="stFileUploader"]', has_text="Upload an image").locator('input[type="file"]') \
        .set_input_files(str(bad))
    page.wait_for_selector('[data-testid="stAlertContentError"]')
    settle(page)
    no_exception(page)
    assert "truncated" in page.locator('[data-testid="stAlertContentError"]').first.inner_text()

    page.get_by_role("radiogroup", name="Image").get_by_text("Photo", exact=True).click()
    page.wait_for_selector("text=photo ")
    settle(page)
    no_exception(page)
    wait_for_count(page, PLOT, 1)
    notice = page.locator('[data-testid="stAlert"]', has_text="Out of distribution").first
    assert "knows its 12 synthetic classes" in notice.inner_text()
    assert notice.bounding_box()["y"] < page.locator(PLOT).first.bounding_box()["y"]  # said before the prediction


# --- Explore as an instrument ------------------------------------------------------------------------

def _caption(page: Page, start: str) -> str:
    texts = [t for t in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts() if t.startswith(start)]
    assert texts, f"no caption starting with {start!r}"
    return texts[0]


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("h1")
    settle(page)
    no_exception(page)


def test_clicking_a_token_shows_where_it_looks(diagnosed: Page, server: str) -> None:
    page = diagnosed
    _open(page, f"{server}/?view=Inspector")
    assert "row 4, column 4" in _caption(page, "Attention of the CNN token")  # the 8x8 grid's centre to start
    picker = page.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".scatterlayer .point")).first
    picker.scroll_into_view_if_needed()
    for index, cell in ((45, "row 5, column 5"), (10, "row 1, column 2")):  # point i is cell divmod(i, 8)
        _click_until(page, picker.locator(".scatterlayer .point").nth(index), f"Attention of the CNN token at {cell}")
    assert "receptive field, measured" in _caption(page, "Attention of the CNN token at row 1, column 2")


def _prediction_change(page: Page) -> tuple[str, str]:
    caption = _caption(page, "Prediction, attention shares and rollout")
    before, after = re.findall(r"'[^']+' \d+%", caption)[:2]
    return before, after


def test_removing_cnn_tokens_moves_the_prediction(diagnosed: Page, server: str) -> None:
    page = diagnosed
    _open(page, f"{server}/?view=What-if")
    before, after = _prediction_change(page)  # from the first place on, by default
    assert before != after
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="From").get_by_role("slider")
    thumb.focus()
    thumb.press("End")  # remove them from the last place only
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
                           ".some(c => c.innerText.includes('replaced by their mean at blocks.3.'))")
    settle(page)
    no_exception(page)
    assert _prediction_change(page)[1] != after


def test_a_link_opens_the_view_it_names(diagnosed: Page, server: str) -> None:
    page = diagnosed
    _open(page, f"{server}/?model=late&view=Attention&layer=2&head=1")
    assert page.locator("h1").first.inner_text() == "Explore · late"
    layer = page.locator('[data-testid="stSlider"]').filter(has_text="Layer").first
    assert layer.locator('[data-testid="stSliderThumbValue"]').inner_text() == "2"
    assert "model=late" in page.url and "layer=2" in page.url and "head=1" in page.url
    _open(page, f"{server}/?model=late&view=Maps&methods=occlusion")
    assert page.get_by_role("tab", name="Maps", exact=True).get_attribute("aria-selected") == "true"
    assert wait_for_count(page, PLOT, 2) == 2 and "occlusion" in chart_titles(page)
    assert "view=Maps" in page.url and "methods=occlusion" in page.url


def test_a_page_link_opens_on_a_fresh_server(diagnosed: Page, checkpoint_dir: Path, tmp_path: Path) -> None:
    """A shared link to a page, opened before anyone opened the app's root, shows that page with the
    sidebar (a ``pages/`` folder beside main.py would make Streamlit run the page alone: a traceback)."""
    page = diagnosed
    with (tmp_path / "server.log").open("w") as out:
        process, url = start_server(checkpoint_dir, output=out)
    try:
        wait_until_healthy(process, url, START_TIMEOUT, poll=0.5)
        page.goto(f"{url}/model_card")
        settle(page)
        no_exception(page)
        assert page.locator("h1").first.inner_text().startswith("Model card · ")
        assert page.locator('[data-testid="stSidebar"]').get_by_text("Model", exact=True).count() >= 1
    finally:
        stop_server(process, timeout=10)


def test_the_analysis_page_draws_every_measure(diagnosed: Page, server: str, screenshots: Path) -> None:
    page = diagnosed
    _open(page, f"{server}/analysis?images=48")
    start_if_asked(page)
    page.wait_for_selector("text=Representation similarity (CKA)")
    settle(page)
    no_exception(page)
    for section in ("Ablation curves", "Mean attention distance", "Fusion weights over the images"):
        assert page.get_by_role("heading", name=section).count() == 1, section
    wait_for_count(page, PLOT, 4)
    assert any(t.startswith("CKA: ") for t in chart_titles(page))
    screenshot(page, screenshots, "analysis")


def _click_until(page: Page, target: Locator, caption: str) -> None:
    """Click ``target`` until a caption starts with ``caption`` (a click that lands while plotly is still
    wiring its chart, or while a run is ending, is lost)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    shows = ("(text) => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
             ".some(c => c.innerText.startsWith(text))")
    for attempt in range(3):
        target.click(force=True)
        try:
            page.wait_for_function(shows, arg=caption, timeout=60_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    settle(page)
    no_exception(page)


def _inspect(page: Page, kind: str, index: int, cell: str, folder: Path, name: str) -> None:
    """Click point ``index`` of the inspector's picker for ``kind`` tokens, wait for its caption, and
    take a picture of the inspector alone."""
    label = {"cnn": "CNN token", "patch": "patch token"}[kind]
    picker = page.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".scatterlayer .point")).first
    picker.scroll_into_view_if_needed()
    _click_until(page, picker.locator(".scatterlayer .point").nth(index), f"Attention of the {label} at {cell}")
    heading = page.get_by_role("heading", name=re.compile("^Token inspector"))
    inspector = page.locator('[data-testid="stVerticalBlock"]').filter(has=heading).last
    inspector.scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # the toolbar of the chart under the pointer would cover its title
    folder.mkdir(exist_ok=True)
    inspector.screenshot(path=str(folder / f"{name}.png"))


def test_the_token_inspector_in_three_clicks(diagnosed: Page, server: str, screenshots: Path) -> None:
    """The README's sequence: a patch token, a CNN token (early), then a patch token of layerwise with
    its cross-attention row over the CNN keys."""
    page, folder = diagnosed, screenshots / "inspector"  # beside the pages' pictures, not among them
    _open(page, f"{server}/?view=Inspector")
    query = page.get_by_role("radiogroup", name="Query token")
    _click_until(page, query.get_by_text("patch tokens", exact=True), "Attention of the patch token")
    _inspect(page, "patch", 10, "row 1, column 2", folder, "1-patch")
    _click_until(page, query.get_by_text("CNN tokens", exact=True), "Attention of the CNN token")
    _inspect(page, "cnn", 35, "row 4, column 3", folder, "2-cnn")
    assert "receptive field, measured" in _caption(page, "Attention of the CNN token at row 4, column 3")
    _open(page, f"{server}/?model=layerwise&view=Inspector")
    _inspect(page, "patch", 18, "row 2, column 2", folder, "3-cross")
    titles = chart_titles(page)
    assert any(t.startswith("cross-attention over CNN keys") for t in titles), titles


# --- one view state: tabs, pages, a reload and a shared link give back the same view ------------------

def _combo(page: Page, label: str) -> str:
    """The value a selectbox shows."""
    return page.get_by_role("combobox", name=label).first.input_value()


def _checked(page: Page, label: str) -> str:
    return page.get_by_role("radiogroup", name=label).locator("label:has(input:checked)").inner_text().strip()


def _slider(page: Page, label: str) -> str:
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).first
    return slider.locator('[data-testid="stSliderThumbValue"]').inner_text()


def _tags(page: Page, label: str) -> list[str]:
    chosen = page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).locator(".react-aria-ComboBox [data-tag]")
    return [tag.get_attribute("aria-label") for tag in chosen.all()]


def _open_tab(page: Page) -> list[str]:
    return page.locator("[role=tab][aria-selected=true]").all_inner_texts()


def _choose(page: Page, label: str, option: str | re.Pattern) -> None:
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=isinstance(option, str)).click()
    settle(page)


def _pick(page: Page, label: str, option: str) -> None:
    page.get_by_role("radiogroup", name=label).get_by_text(option, exact=True).click()
    settle(page)


def _add(page: Page, label: str, option: str) -> None:
    page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).locator("input").fill(option)  # one option
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    settle(page)


def _query(url: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)


def _explore_shows_the_view(page: Page) -> None:
    """Explore as :func:`test_every_view_keeps_its_settings` set it: rollout with max over heads open,
    and (a tab away) the gallery's methods and CAM layer and the inspector's query token."""
    assert _open_tab(page)[0] == "Attention"
    assert _checked(page, "Show") == "rollout" and _combo(page, "Heads") == "max over heads"
    open_tab(page, "Maps")
    assert _tags(page, "Methods")[-1] == "smoothgrad" and _combo(page, "CAM layer").startswith("trunk.stage1")
    open_tab(page, "Inspector")
    assert _checked(page, "Query token") == "patch tokens"
    open_tab(page, "Attention")


def _every_page_shows_the_view(page: Page) -> None:
    _explore_shows_the_view(page)
    go_to(page, "compare")
    assert _checked(page, "Map") == "rollout"
    go_to(page, "faithfulness")
    assert _checked(page, "Deleted pixels become") == "the mean colour"
    go_to(page, "learn")
    assert _open_tab(page)[0] == "late"
    go_to(page, "explore")


def test_every_view_keeps_its_settings(diagnosed: Page, server: str) -> None:
    """A non-default value in every view; then a tab and page round trip, a reload, and the copied URL
    opened in a new browser context each give back the same view (issue #23)."""
    page = diagnosed
    _open(page, server)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Layer").get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowLeft")
    thumb.press("ArrowLeft")  # layer 4 -> 2
    settle(page)
    _choose(page, "Heads", "head 1")
    assert _slider(page, "Layer") == "2" and any(t.endswith("blocks.1") for t in chart_titles(page))
    open_tab(page, "Inspector")
    _pick(page, "Query token", "patch tokens")
    open_tab(page, "Maps")
    _add(page, "Methods", "smoothgrad")
    _choose(page, "CAM layer", re.compile("^trunk.stage1"))
    go_to(page, "compare")
    _pick(page, "Map", "rollout")
    go_to(page, "faithfulness")
    _pick(page, "Deleted pixels become", "the mean colour")
    go_to(page, "learn")
    page.get_by_role("tab", name="late", exact=True).click()
    settle(page)
    go_to(page, "explore")
    assert _open_tab(page)[0] == "Maps"  # the tab left open, after the round trip
    open_tab(page, "Attention")
    assert _slider(page, "Layer") == "2" and _combo(page, "Heads") == "head 1"
    _pick(page, "Show", "rollout")
    _choose(page, "Heads", "max over heads")
    link = page.url
    assert {"layer": ["2"], "head": ["1"], "show": ["rollout"], "head_fusion": ["max"], "token_kind": ["patch"],
            "cam_layer": ["trunk.stage1:cnn"], "compare_map": ["rollout"], "baseline": ["mean"],
            "strategy": ["late"], "view": ["Attention"]}.items() <= _query(link).items()
    assert _query(link)["methods"][-1] == "smoothgrad"
    _explore_shows_the_view(page)
    assert _query(page.url) == _query(link)

    page.reload()
    settle(page)
    _explore_shows_the_view(page)
    assert _query(page.url) == _query(link)

    shared = page.context.browser.new_context(viewport=page.viewport_size)
    try:
        other = shared.new_page()
        other.set_default_timeout(RUN_TIMEOUT * 1000)
        _open(other, link)
        _every_page_shows_the_view(other)
        assert _query(other.url) == _query(link)
        _pick(other, "Show", "one layer")  # held while hidden
        assert _slider(other, "Layer") == "2" and _combo(other, "Heads") == "head 1"
    finally:
        shared.close()


def test_a_second_upload_keeps_the_layer_the_maps_show(diagnosed: Page, server: str, tmp_path: Path) -> None:
    """Upload one image, then another: the Layer slider and the maps stay at the same block, and the
    next control touched moves nothing else (issue #23)."""
    page = diagnosed
    _open(page, server)
    page.get_by_role("radiogroup", name="Image").get_by_text("Upload", exact=True).click()
    settle(page)
    uploader = page.locator('[data-testid="stFileUploader"]', has_text="Upload an image").locator('input[type="file"]')
    for name, colour in (("first.png", (200, 40, 40)), ("second.png", (40, 160, 60)), ("third.png", (40, 40, 200))):
        (tmp_path / name).write_bytes(png((90, 70), colour))
    uploader.set_input_files(str(tmp_path / "first.png"))
    page.wait_for_selector("text=upload first.png")
    settle(page)
    uploader.set_input_files(str(tmp_path / "second.png"))
    page.wait_for_selector("text=upload second.png")
    settle(page)
    no_exception(page)

    def at_block(block: int) -> bool:
        wait_for_count(page, PLOT, 2)
        return _slider(page, "Layer") == str(block + 1) and all(
            t.endswith(f"blocks.{block}") for t in chart_titles(page) if "tokens ·" in t)

    assert at_block(3)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Layer").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")  # layer 1
    settle(page)
    assert at_block(0)
    uploader.set_input_files(str(tmp_path / "third.png"))
    page.wait_for_selector("text=upload third.png")
    settle(page)
    assert at_block(0)
    _choose(page, "Heads", "head 0")  # the next control touched moves only the head
    assert at_block(0) and _combo(page, "Heads") == "head 0"
