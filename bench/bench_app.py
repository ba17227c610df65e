"""Benchmark the Streamlit app on this machine's CPU.

Usage: ``nice python bench/bench_app.py [--parts startup,pages,controls,methods] [--before REV] [--threads 1]``

Parts (each is written to ``bench/results/app_cpu.json`` with its own command, date, commit, threads and
load average; a run replaces only the parts it measured):

1. **startup**: ``streamlit run app/main.py`` until its health endpoint answers, and until a headless
   Chromium (Playwright, ``/usr/bin/chromium``) shows the finished Explore page (its opening tab: the
   prediction and the attention maps, every chart drawn, no script run in progress). The browser is started first, so its own start is not counted.
   Target: first page finished within 4 s.
2. **browser**: in Chromium's clock, against a fresh server: a deep link to ``/compare``, then page
   switches through the navigation, model and example changes in the sidebar and Explore's Layer
   slider, each until the page has settled (Streamlit's run state, every chart drawn); median and worst
   against the targets (5 s, 1 s, 0.5 s, 0.5 s, 300 ms), and by how much the median misses. Where the
   time goes: the server records each script run's phases (``app/timing.py``, switched on for this
   server by ``TOKENFUSION_TIMINGS``), and each action is split into the browser before the server's
   run, those phases, the rest of the run, and the browser after it (transfer and drawing):
   :func:`where_time_goes`, the median of each part stored beside the total.
3. **pages**: the Explore page (``AppTest``, its opening tab) on the default ``early`` model, each repeat on a SynthShapes
   image never seen before (every view computed and drawn); the same for an ``early`` model at size
   ``small`` (224 px, random weights); Compare over every model. Targets 1 s, 5 s, 2 s.
4. **controls**: server time of each Explore control on the ``tiny`` models, once the page is loaded
   and warm: each control is set in turn to several values never shown before, and each change is
   timed as the server runs it: a control inside a fragment (``app.ui.fragment``) reruns that
   fragment only (AppTest is told the fragment, as the browser tells the server), a sidebar control
   or a tab the whole page (which computes only the open tab); a token click is sent as the picker
   chart's selection. Tab by tab: the tab opened, its controls, then a new SynthShapes example with
   it open; then class, photo, image source and model with the opening tab open and with the map
   gallery's (their rows say which). Median and worst per control, wall clock and CPU time (on a
   loaded machine the wall clock also counts waiting for a core); target 300 ms each.
5. **methods**: every explanation method once on an ``early`` model at size ``small`` (224 px, random
   weights) through one ``tokenfusion.explain.Explainer`` session, beside the estimate the app shows
   before it starts (``tokenfusion.explain.estimate_seconds`` from the measured forward), cheapest
   first, each row stored as it finishes (with its date and load average); ``--methods a,b`` times
   only those and keeps the other rows.

``--before REV`` also measures the parts ``startup``, ``browser`` and ``controls`` on the code of ``REV`` (a
git worktree), each right before the same part on the working tree, and records both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_REPO = Path(__file__).resolve().parents[1]
# --code-root DIR measures the app and library of DIR (a worktree of another commit) with this script
_ROOT_FLAG = "--code-root"
REPO = Path(sys.argv[sys.argv.index(_ROOT_FLAG) + 1]).resolve() if _ROOT_FLAG in sys.argv else BENCH_REPO
sys.path.insert(0, str(BENCH_REPO))
from bench.provenance import commit, load_average, provenance  # noqa: E402

sys.path.insert(0, str(REPO))  # the app and library measured

RESULTS = BENCH_REPO / "bench" / "results" / "app_cpu.json"
PARTS = ("startup", "browser", "pages", "controls", "methods")
BEFORE_PARTS = ("startup", "browser", "controls")  # measured on --before REV too
TARGETS = {"explore_tiny_s": 1.0, "explore_small_s": 5.0, "compare_s": 2.0}
STARTUP_TARGET_S = 4.0
FIRST_PAGE_CHARTS = 3  # Explore's opening tab: the top-k chart and the attention maps of both kinds of token
#: In the browser: a title, at least ``n`` charts, every chart drawn, and no script run in progress.
FINISHED = ("(n) => { const charts = [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')];"
            " return document.querySelector('h1') && charts.length >= n"
            " && charts.every(c => c.querySelector('.main-svg'))"
            " && !document.querySelector('[data-testid=\"stStatusWidget\"]'); }")
CONTROL_TARGET_S = 0.3
#: Targets in the browser's clock (issue #23): a deep link on a fresh server, a page switch, a model or
#: example change on the shipped models, a control inside a view.
BROWSER_TARGETS = {"deep_link_s": 5.0, "page_switch_s": 1.0, "model_change_s": 0.5, "example_change_s": 0.5,
                   "control_s": 0.3}
#: In the browser: the script run over (Streamlit's own run state), a title, every chart drawn.
SETTLED = ("() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
           " const charts = [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')];"
           " return app && app.getAttribute('data-test-script-state') === 'notRunning'"
           " && document.querySelector('h1') && charts.every(c => c.querySelector('.main-svg')); }")


# --- startup -----------------------------------------------------------------------------------------

def startup(checkpoints: Path, threads: int, timeout: float = 300) -> dict[str, Any]:
    """Seconds from ``streamlit run`` to a healthy server, to the page's websocket (the first run starts),
    and to the first finished page in Chromium."""
    from playwright.sync_api import sync_playwright

    from app.harness import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server, wait_until_healthy

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        connected: list[float] = []  # when the page opens its websocket: the server starts the first run
        page.on("websocket", lambda _: connected.append(time.perf_counter() - start))
        process, url = start_server(checkpoints, threads)
        try:
            wait_until_healthy(process, url, timeout)
            healthy = time.perf_counter() - start
            page.goto(url)
            page.wait_for_function(FINISHED, arg=FIRST_PAGE_CHARTS, timeout=timeout * 1000, polling=50)
            finished = time.perf_counter() - start
        finally:
            stop_server(process)
            browser.close()
    first_page, first_map = imports(threads)
    return {"health_s": round(healthy, 2), "connected_s": round(connected[0], 2), "first_page_s": round(finished, 2),
            "target_s": STARTUP_TARGET_S, "imports_s": first_page, "first_map_imports_s": first_map}


def _timed(page, act: Callable[[], None], shown: str, arg: Any = None, timeout: float = 300) -> float:
    """Seconds from ``act()`` until the JavaScript predicate ``shown(arg)`` holds and the page has
    settled (:data:`SETTLED`), polled every 20 ms."""
    start = time.perf_counter()
    act()
    page.wait_for_function(shown, arg=arg, timeout=timeout * 1000, polling=20)
    page.wait_for_function(SETTLED, timeout=timeout * 1000, polling=20)
    return time.perf_counter() - start


#: The variable that makes the server record its runs (``app.timing.ENV``; named here, so that the code
#: of an older commit, which has no recorder, is measured too).
TIMINGS_ENV = "TOKENFUSION_TIMINGS"
#: Where an action's time goes: the browser until the server's first run starts (for a deep link: the
#: page, its scripts and the websocket), each phase of the server's runs (:data:`app.timing.PHASES`),
#: the rest of those runs, and the browser after the last run (transfer and drawing).
BREAKDOWN = ("until_run", "imports", "wait", "load", "compute", "estimates", "figures", "charts", "other", "after_run")


def where_time_goes(runs: list[dict[str, Any]], begun: float, seconds: float) -> dict[str, float]:
    """Split an action that began at ``begun`` (``time.time()``) and took ``seconds`` into
    :data:`BREAKDOWN`, from the server's ``runs`` (:mod:`app.timing` records) that began within it:
    the parts add up to ``seconds``."""
    ended = begun + seconds
    mine = sorted((r for r in runs if begun <= r["start"] <= ended), key=lambda r: r["start"])
    parts = dict.fromkeys(BREAKDOWN, 0.0)
    for r in mine:
        for name, spent in r["phases"].items():
            parts[name] += spent
        parts["other"] += r["seconds"] - sum(r["phases"].values())
    parts["until_run"] = mine[0]["start"] - begun if mine else seconds
    parts["after_run"] = seconds - sum(parts.values())
    return {name: round(spent, 3) for name, spent in parts.items()}


def _records(path: Path) -> list[dict[str, Any]]:
    """The runs the server recorded so far in ``path`` (:mod:`app.timing`)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def browser(checkpoints: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Seconds in Chromium's clock: a deep link to ``/compare`` on a fresh server, then page switches
    through the navigation, model and example changes in the sidebar, and the Layer slider of Explore's
    attention view; each against :data:`BROWSER_TARGETS`, medians and worst of ``repeats``."""
    from playwright.sync_api import sync_playwright

    from app.harness import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server, wait_until_healthy

    heading = "(start) => (document.querySelector('h1')?.innerText || '').startsWith(start)"
    caption = ("(before) => [...document.querySelectorAll('[data-testid=\"stSidebar\"] "
               "[data-testid=\"stCaptionContainer\"]')].map(c => c.innerText).join('|') !== before")
    titled = "(end) => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(t => t.textContent.endsWith(end))"
    runs: dict[str, list[float]] = {name: [] for name in BROWSER_TARGETS}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in BROWSER_TARGETS}
    timings = Path(tempfile.mkdtemp(prefix="bench-app-timings-")) / "runs.jsonl"

    def timed(name: str, *how: Any) -> None:
        begun = time.time()
        runs[name].append(_timed(page, *how))
        parts[name].append(where_time_goes(_records(timings), begun, runs[name][-1]))

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        os.environ[TIMINGS_ENV] = str(timings)  # the server records its runs (older code ignores it)
        try:
            process, url = start_server(checkpoints, threads)
        finally:
            del os.environ[TIMINGS_ENV]
        try:
            wait_until_healthy(process, url, 300)
            timed("deep_link_s", lambda: page.goto(f"{url}/compare"), heading, "Compare")
            nav = page.locator('[data-testid="stSidebarNav"] a')
            for _ in range(repeats):
                for title, start in (("Explore", "Explore"), ("Learn", "Learn"), ("Compare", "Compare")):
                    timed("page_switch_s", nav.filter(has_text=title).first.click, heading, start)
            _timed(page, nav.filter(has_text="Explore").first.click, heading, "Explore")
            sidebar = page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]')
            for _ in range(repeats):
                before = "|".join(sidebar.all_inner_texts())
                timed("example_change_s", page.locator('[data-testid="stNumberInputStepUp"]').first.click, caption,
                      before)
            for name in ["late", "early"] * ((repeats + 1) // 2):  # back on early, whose slider is timed next
                def choose(name: str = name) -> None:
                    page.get_by_role("combobox", name="Model").first.click()
                    page.get_by_role("option", name=name, exact=True).click()
                timed("model_change_s", choose, heading, f"Explore · {name}")
            thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Layer").get_by_role("slider")
            for i in range(repeats):
                key, block = ("ArrowLeft", 2) if i % 2 == 0 else ("ArrowRight", 3)
                timed("control_s", lambda key=key: thumb.press(key), titled, f"blocks.{block}")
        finally:
            stop_server(process)
            chromium.close()
    recorded = bool(_records(timings))
    shutil.rmtree(timings.parent, ignore_errors=True)
    figures: dict[str, Any] = {}
    for name, seconds in runs.items():
        median, worst, target = statistics.median(seconds), max(seconds), BROWSER_TARGETS[name]
        figures[name] = {"runs_s": [round(s, 3) for s in seconds], "median_s": round(median, 3),
                         "worst_s": round(worst, 3), "target_s": target,
                         "over_target_s": round(max(median - target, 0.0), 3)}
        if recorded:  # the median of each part beside the total (older code records nothing)
            figures[name]["phases_s"] = {part: round(statistics.median(p[part] for p in parts[name]), 3)
                                         for part in BREAKDOWN}
        print(f"  {name}: median {median:.2f} s, worst {worst:.2f} s (target {target} s); "
              + ", ".join(f"{part} {spent:.2f}" for part, spent in figures[name].get("phases_s", {}).items()
                          if spent >= 0.005), flush=True)
    return figures


#: What the first Explore page imports, in order: each figure is what that import adds to those before it.
FIRST_PAGE_IMPORTS = ("streamlit", "torch", "torchvision", "tokenfusion.models", "plotly.graph_objects",
                      "tokenfusion.explain", "app.sidebar", "app.state")
#: What the first CAM or attribution map imports after them (the Maps tab; earlier code: the first page).
FIRST_MAP_IMPORTS = ("captum.attr", "pytorch_grad_cam")


def imports(threads: int) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds each module of :data:`FIRST_PAGE_IMPORTS`, then of :data:`FIRST_MAP_IMPORTS`, adds,
    imported in that order in a fresh interpreter."""
    code = ("import json, sys, time; sys.path.insert(0, sys.argv[1]); out = {}\n"
            "for name in sys.argv[2:]:\n"
            "    start = time.perf_counter(); __import__(name); out[name] = round(time.perf_counter() - start, 2)\n"
            "print(json.dumps(out))")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code, str(REPO), *FIRST_PAGE_IMPORTS, *FIRST_MAP_IMPORTS],
                          capture_output=True, text=True, check=True, cwd=REPO, env=env)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    return ({name: seconds[name] for name in FIRST_PAGE_IMPORTS},
            {name: seconds[name] for name in FIRST_MAP_IMPORTS})


# --- pages -------------------------------------------------------------------------------------------

@contextmanager
def server_like() -> Iterator[None]:
    """AppTest as the server runs the app: one script cache for every run (AppTest makes a new one per
    run, so each rerun would compile the page scripts again: about 80 ms here)."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test

    shared = ScriptCache()
    app_test.ScriptCache = lambda: shared
    try:
        yield
    finally:
        app_test.ScriptCache = ScriptCache


def _apptest(checkpoints: Path):
    from streamlit.testing.v1 import AppTest

    os.environ["TOKENFUSION_CHECKPOINTS"] = str(checkpoints)
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=600).run()
    _no_error(at)
    return at


def _no_error(at) -> None:
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]


def _page_times(checkpoints: Path, page: str | None, repeats: int) -> tuple[list[float], float]:
    """Wall-clock seconds of reruns of ``page`` (None: Explore), each on a new SynthShapes image,
    after one warm run; and the seconds of a rerun on an image already computed."""
    at = _apptest(checkpoints)
    if page:
        at.switch_page(page).run()
    _no_error(at)
    times = []
    for i in range(1, repeats + 1):
        before = [c.value for c in at.sidebar.caption]
        _widget(at.sidebar, "number_input", "synth_example").set_value(100 + i)  # the widget of the latest run
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
        assert not at.exception, [e.value for e in at.exception]
        assert [c.value for c in at.sidebar.caption] != before, "the image did not change"
    start = time.perf_counter()
    at.run()
    return times, time.perf_counter() - start


def _small_checkpoint(folder: Path) -> Path:
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.models import create

    torch.manual_seed(0)
    model = create("early", "small")
    save_checkpoint(folder / "early.pt", model, class_names=[f"class {i}" for i in range(model.config.num_classes)])
    return folder


def pages(checkpoints: Path, repeats: int) -> dict[str, Any]:
    runs = {}
    with server_like():
        for name, folder, page in [
            ("explore_tiny", checkpoints, None),
            ("explore_small", _small_checkpoint(Path(tempfile.mkdtemp(prefix="bench-app-small-"))), None),
            ("compare", checkpoints, "views/compare.py"),
        ]:
            times, cached = _page_times(folder, page, repeats)
            runs[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                          "cached_rerun_s": round(cached, 3), "target_s": TARGETS[f"{name}_s"]}
            print(f"{name}: median {runs[name]['median_s']:.2f} s over {repeats} new images "
                  f"(target <= {TARGETS[f'{name}_s']} s; cached rerun {cached:.2f} s)", flush=True)
    return runs


# --- controls ----------------------------------------------------------------------------------------

class _Fragments:
    """Makes AppTest send a rerun as the browser does: scoped to the fragment that drew the changed
    widget (``scope``), with extra widget states (a chart's selection) added to those of the tree."""

    def __init__(self) -> None:
        self.of_widget: dict[str, str] = {}  # widget id -> id of the fragment that drew it ("" outside any)
        self.scope: str | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        from dataclasses import replace

        from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
        from streamlit.testing.v1 import local_script_runner as lsr

        parse, request = lsr.parse_tree_from_messages, ScriptRequests._request_rerun_locked
        fragments = self

        def parse_and_note(messages):
            for msg in messages:
                if msg.HasField("delta") and msg.delta.WhichOneof("type") == "new_element":
                    element = msg.delta.new_element
                    proto = getattr(element, element.WhichOneof("type"))
                    if getattr(proto, "id", ""):
                        fragments.of_widget[proto.id] = msg.delta.fragment_id
            return parse(messages)

        def scoped(requests: ScriptRequests, data: RerunData) -> bool:
            # AppTest's runner asks for a full run when it is made and again in run(): both carry the scope
            return request(requests, replace(data, fragment_id=fragments.scope) if fragments.scope else data)

        lsr.parse_tree_from_messages = parse_and_note
        ScriptRequests._request_rerun_locked = scoped
        try:
            yield
        finally:
            lsr.parse_tree_from_messages, ScriptRequests._request_rerun_locked = parse, request


def _timed_change(at, fragments: _Fragments, widget_id: str, extra: list | None = None) -> tuple[float, float, str]:
    """Rerun after a change of the widget ``widget_id`` (its new value already set on the tree, or
    given in ``extra``) as the server would: wall-clock seconds, CPU seconds of this process (every
    thread: on a loaded machine the wall clock also counts waiting for a core), and the scope
    (``"fragment"`` or ``"page"``). Afterwards one untimed full rerun, so the tree holds the whole page."""
    states = at._tree.get_widget_states()
    if extra:
        states.widgets.extend(extra)
    fragment = fragments.of_widget.get(widget_id, "")
    fragments.scope = fragment or None
    start, cpu = time.perf_counter(), time.process_time()
    at._run(states)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    fragments.scope = None
    _no_error(at)
    if fragment:
        at.run()
        _no_error(at)
    return seconds, cpu, "fragment" if fragment else "page"


def _picker_click(at, index: int) -> list:
    """The widget state a click on point ``index`` of the token picker chart sends."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    state = WidgetState(id=_picker_id(at))
    state.string_value = json.dumps({"selection": {"points": [{"point_index": index}], "point_indices": [index],
                                                   "box": [], "lasso": []}})
    return [state]


#: The view-state parameter (widget key ``view:<param>``, ``app/url.py``) of each control's key before it.
VIEW_PARAMS = {
    "att_layer": "layer", "att_head": "head", "att_mode": "show", "att_discard": "discard", "att_fusion": "head_fusion",
    "tok_layer": "token_layer", "tok_head": "token_head", "tok_kind": "token_kind", "wi_kind": "remove",
    "wi_mode": "replace", "wi_across": "across", "wi_down": "down", "wi_from": "from", "fusion_query": "queries",
    "gallery_layer": "cam_layer", "gallery_methods": "methods", "synth_example": "example", "synth_class": "class",
    "image_source": "image", "photo_name": "photo", "model_name": "model", "explore_view": "view",
}


def _widget(at, kind: str, key: str):
    """The widget of ``kind`` with ``key`` (``att_layer:early``) on the page, under the view state's key
    (``view:layer``) on code that has one; None when the page lacks the control (older code may)."""
    for name in (f"view:{VIEW_PARAMS.get(key.split(':')[0], '')}", key):
        try:
            return getattr(at, kind)(key=name)
        except KeyError:
            continue
    return None


def _open_tab_key(at) -> str:
    """The session key of Explore's open tab in the code measured."""
    return "view:view" if "view:view" in at.session_state else "explore_view"


def controls(checkpoints: Path, values: int) -> dict[str, Any]:
    """Server seconds per change of every Explore control on the tiny models (see the module docstring)."""
    from tokenfusion.checkpoint import load_checkpoint

    fragments = _Fragments()
    rows: dict[str, dict[str, Any]] = {}

    def record(name: str, at, kind: str, key: str, choices: list) -> None:
        for value in choices:
            widget = _widget(at, kind, key)
            if widget is None:
                print(f"  {name}: no such control on this page", flush=True)
                return
            if widget.value == value:
                continue
            widget.set_value(value)
            note(name, key.split(":")[0], str(value), *_timed_change(at, fragments, widget.id))

    def note(name: str, key: str, value: str, seconds: float, cpu: float, scope: str) -> None:
        row = rows.setdefault(name, {"key": key, "scope": scope, "runs_s": [], "cpu_s": [], "values": []})
        row["runs_s"].append(round(seconds, 3))
        row["cpu_s"].append(round(cpu, 3))
        row["values"].append(value)
        print(f"  {name} = {value}: {seconds * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms ({scope})", flush=True)

    def options(at, kind: str, key: str) -> list:
        widget = _widget(at, kind, key)
        if widget is None:
            return []
        if kind == "slider":
            return list(range(int(widget.min), int(widget.max) + 1))
        return list(widget.options)

    def open_tab(at, tab: str) -> bool:
        """Click Explore's tab ``tab`` (a rerun of the page), timed; False when the page has no such tab
        (older code drew every view on one page)."""
        if tab not in [t.label for t in at.tabs]:
            return False
        if at.session_state[_open_tab_key(at)] != tab:
            at.session_state[_open_tab_key(at)] = tab
            start, cpu = time.perf_counter(), time.process_time()
            at.run()
            note(f"tab: open {tab}", "explore_view", tab, time.perf_counter() - start, time.process_time() - cpu,
                 "page")
            _no_error(at)
        return True

    with server_like(), fragments.installed():
        at = _apptest(checkpoints)
        m = _widget(at.sidebar, "selectbox", "model_name").value
        at.run()  # warm: every view of the opening page computed once
        ahead_s = _load_ahead(checkpoints)
        model = load_checkpoint(checkpoints / f"{m}.pt").model  # the raw options of the formatted controls
        heads = ["max", *range(model.config.num_heads)]
        structure = getattr(model, "structure", None)  # older code (--before) may not declare one
        kinds = list(structure.token_kinds) if structure else ["cnn", "patch"]
        cam_targets = [(t.layer, t.kind) for t in structure.cam_targets] if structure else []
        layers = structure.attention_layers() if structure and hasattr(structure, "attention_layers") else []
        examples = iter(range(200, 10_000))  # SynthShapes examples never shown before

        def attention() -> None:  # one layer (layer slider, heads), then rollout (discard slider, head fusion)
            record("attention: layer", at, "slider", f"att_layer:{m}", options(at, "slider", f"att_layer:{m}")[:values])
            record("attention: heads", at, "selectbox", f"att_head:{m}", heads[:values])
            record("attention: one layer / rollout", at, "radio", f"att_mode:{m}", ["rollout"])
            record("rollout: discard", at, "slider", f"att_discard:{m}", [0.1, 0.3, 0.5, 0.9][:values])
            record("rollout: heads", at, "selectbox", f"att_fusion:{m}", ["max", "min", "mean"][:values])
            record("attention: one layer / rollout", at, "radio", f"att_mode:{m}", ["one layer"])

        def inspector() -> None:  # layer, heads, kind of query token, a click on a token
            record("inspector: layer", at, "select_slider", f"tok_layer:{m}", layers[:values])
            record("inspector: heads", at, "selectbox", f"tok_head:{m}", heads[:values])
            record("inspector: query token", at, "radio", f"tok_kind:{m}", kinds[::-1])
            for index in (0, 5, 17, 30)[:values] if _picker_id(at) else ():
                note("inspector: click a token", "tok_picker", f"token {index}",
                     *_timed_change(at, fragments, _picker_id(at), _picker_click(at, index)))

        def what_if() -> None:  # kind removed, replaced by, from which place
            record("what-if: remove", at, "radio", f"wi_kind:{m}", kinds[::-1])
            record("what-if: replace by", at, "radio", f"wi_mode:{m}", ["zero", "mean"])
            if len(options(at, "radio", f"wi_kind:{m}")) > len(kinds):  # "region": the tokens under it, of both kinds
                record("what-if: remove", at, "radio", f"wi_kind:{m}", ["region"])
                record("what-if: region", at, "slider", f"wi_across:{m}", [(0.0, 0.5), (0.5, 1.0)][:values])
                record("what-if: region", at, "slider", f"wi_down:{m}", [(0.0, 0.5), (0.5, 1.0)][:values])
                record("what-if: remove", at, "radio", f"wi_kind:{m}", [kinds[0]])
            places = options(at, "select_slider", f"wi_from:{m}")
            record("what-if: from", at, "select_slider", f"wi_from:{m}", places[1:values + 1])

        def fusion() -> None:
            record("fusion: queries", at, "radio", f"fusion_query:{m}", ["mean", "cls"])

        def gallery() -> None:  # CAM layer with the opening methods, then methods added and removed
            record("gallery: CAM layer", at, "selectbox", f"gallery_layer:{m}", cam_targets[:values])
            chosen = list(_widget(at, "multiselect", f"gallery_methods:{m}").value)  # a gallery on every version
            extra = [n for n in options(at, "multiselect", f"gallery_methods:{m}") if n not in chosen]
            record("gallery: methods", at, "multiselect", f"gallery_methods:{m}",
                   [chosen + [n] for n in extra[:values]] + [chosen])

        # each tab: opened, its controls, then a new image with it open (only the open tab is computed)
        tabs = {"Attention": attention, "Inspector": inspector, "What-if": what_if, "Fusion": fusion, "Maps": gallery,
                "Ablation": lambda: None}
        for tab, controls_of in tabs.items():
            tabbed = open_tab(at, tab)
            controls_of()
            if tabbed:
                record(f"sidebar: example ({tab} open)", at, "number_input", "synth_example",
                       [next(examples) for _ in range(values)])
            elif tab == "Ablation":  # older code: every view on one page
                record("sidebar: example", at, "number_input", "synth_example", [next(examples) for _ in range(values)])
        # the rest of the sidebar, on the opening tab and on the gallery's: class, source, photo, then model
        for i, tab in enumerate(("Attention", "Maps")):
            suffix = f" ({tab} open)" if open_tab(at, tab) else ""
            if not suffix and tab == "Maps":
                break
            record(f"sidebar: class{suffix}", at, "selectbox", "synth_class",
                   options(at, "selectbox", "synth_class")[1 + i * values:1 + (i + 1) * values])
            record(f"sidebar: image source{suffix}", at, "radio", "image_source", ["Photo"])
            record(f"sidebar: photo{suffix}", at, "selectbox", "photo_name",
                   [p for p in options(at, "selectbox", "photo_name")
                    if p != _widget(at, "selectbox", "photo_name").value][:values])
            record(f"sidebar: image source{suffix}", at, "radio", "image_source", ["SynthShapes"])
            record(f"sidebar: model{suffix}", at, "selectbox", "model_name",
                   [n for n in options(at, "selectbox", "model_name") if n != m] + [m])
    for row in rows.values():
        for what, values in (("", row["runs_s"]), ("_cpu", row["cpu_s"])):
            row[f"median{what}_s"], row[f"worst{what}_s"] = round(statistics.median(values), 3), round(max(values), 3)
    every = [t for row in rows.values() for t in row["runs_s"]]
    cpu = [t for row in rows.values() for t in row["cpu_s"]]
    return {"controls": rows, "median_s": round(statistics.median(every), 3), "worst_s": round(max(every), 3),
            "median_cpu_s": round(statistics.median(cpu), 3), "worst_cpu_s": round(max(cpu), 3),
            "changes": len(every), "target_s": CONTROL_TARGET_S, "model": m, "ahead_s": ahead_s}


def _load_ahead(checkpoints: Path) -> float | None:
    """Seconds to load what the server loads ahead, in the background once the first page of a browser
    session is drawn (``app/preload.py``: the explanation back-ends, the listed checkpoints); AppTest
    has no browser, so it is done here. None for older code, which loaded them when first asked."""
    try:
        from app.preload import load_ahead_now
        from app.sources import list_checkpoints
    except ImportError:
        return None
    start = time.perf_counter()
    load_ahead_now(list_checkpoints(checkpoints))
    return round(time.perf_counter() - start, 2)


def _picker_id(at) -> str:
    """The id of the token inspector's picker chart ("" when the page has none)."""
    charts = [e for e in at.main if getattr(getattr(e, "proto", None), "id", "") and "tok_picker" in e.proto.id]
    return charts[0].proto.id if charts else ""


# --- methods at 224 px ------------------------------------------------------------------------------

def methods(names: list[str] | None, earlier: dict[str, Any], save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Seconds of every method (or those ``names``) once at 224 px, its own time beyond the session's
    traced forward, beside the app's estimate for it; each row with its date and load average. Rows
    of ``earlier`` (the part stored before) for methods not measured now are kept; ``save`` gets the
    part after each method, so a long run keeps what it has done."""
    import datetime

    import torch

    from app.sources import synthshapes_image
    from tokenfusion.data.transforms import preprocess
    from tokenfusion.explain import (
        Explainer,
        Request,
        available_methods,
        estimate_seconds,
        forward_passes,
        load_backends,
        measure_forward,
    )
    from tokenfusion.models import create

    torch.manual_seed(0)
    model = create("early", "small").eval()
    x = preprocess(synthshapes_image(9 * 12, model.config.img_size).image, model.config)
    cost = measure_forward(model)
    start = time.perf_counter()
    session = Explainer(model, x)
    traced = time.perf_counter() - start
    load_backends()  # the app loads them ahead (app/preload.py): importing them is no method's cost
    infos = available_methods(model)
    every = [info.name for info in infos]
    rows = {r["method"]: r for r in earlier.get("methods", []) if r["method"] in every}
    part = {"arch": "early", "size": "small", "img_size": model.config.img_size, "traced_forward_s": round(traced, 3),
            "forward_s": round(cost.seconds, 4), "forward_batched_s": round(cost.batched, 4), "batch": cost.batch,
            "every_method": every, "methods": []}
    def estimated(info) -> tuple[float | None, int | None]:
        try:
            request = Request(info.name, *info.default)
            return estimate_seconds(model, cost, request), forward_passes(model, cost, request).equivalent
        except NotImplementedError:
            return None, None

    chosen = [(info, *estimated(info)) for info in infos if not names or info.name in names]
    cheapest_first = sorted(chosen, key=lambda c: c[1] or 0.0)  # a run cut short has the most rows
    for info, estimate, passes in cheapest_first:
        layer, kind = info.default
        load = round(os.getloadavg()[0], 2)
        start = time.perf_counter()
        session.explain(info.name, layer, kind=kind)
        seconds = time.perf_counter() - start
        rows[info.name] = {
            "method": info.name, "layer": layer, "kind": kind, "seconds": round(seconds, 3),
            "estimate_s": None if estimate is None else round(estimate, 3), "forward_equivalents": passes,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "load_average": load}
        print(f"  {info.name}: {seconds:.2f} s (estimate {'none' if estimate is None else f'{estimate:.2f} s'})",
              flush=True)
        model.eval().zero_grad(set_to_none=True)
        part["methods"] = [rows[n] for n in every if n in rows]
        save(part)
    return part


# --- running the parts -------------------------------------------------------------------------------

def _default_checkpoints() -> Path:
    """The shipped checkpoints when all five are there, else tiny random-weight ones in a temporary folder."""
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.data import CLASS_NAMES
    from tokenfusion.models import ARCHITECTURES, create

    shipped = BENCH_REPO / "checkpoints"
    if all((shipped / f"{arch}.pt").is_file() for arch in ARCHITECTURES):
        return shipped
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        save_checkpoint(folder / f"{arch}.pt", create(arch, "tiny"), class_names=list(CLASS_NAMES))
    return folder


def _stamp(threads: int, command: str, code: str) -> dict[str, Any]:
    """:func:`bench.provenance.provenance`, with the code measured and the versions of the app's libraries."""
    import streamlit
    import torch

    return {**provenance(threads, command), "code": code, "torch": torch.__version__,
            "streamlit": streamlit.__version__, "python": platform.python_version()}


def measure(part: str, args: argparse.Namespace, checkpoints: Path, earlier: dict[str, Any]) -> dict[str, Any]:
    """One part on the code of ``REPO``, in this process, with its provenance."""
    code = "working tree" if REPO == BENCH_REPO else commit(REPO)
    stamp = _stamp(args.threads, shlex.join(["python", *sys.argv]), code)
    print(f"{part} ({code}):", flush=True)
    if part == "startup":
        figures = startup(checkpoints, args.threads)
        print(f"  healthy after {figures['health_s']} s, first page finished after {figures['first_page_s']} s; "
              f"imports {figures['imports_s']}")
    elif part == "browser":
        figures = browser(checkpoints, args.threads, args.repeats)
    elif part == "pages":
        figures = pages(checkpoints, args.repeats)
    elif part == "controls":
        figures = controls(checkpoints, args.values)
        print(f"  every change: median {figures['median_s'] * 1000:.0f} ms, worst {figures['worst_s'] * 1000:.0f} ms")
    else:
        def save(part: dict[str, Any]) -> None:
            _write(args.out, "methods", {**part, "provenance": {**stamp, "load_average_after": None}})

        figures = methods(args.methods.split(",") if args.methods else None, earlier.get("methods", {}), save)
    stamp["load_average_after"] = load_average()
    return {**figures, "provenance": stamp}


def _write(out: Path, part: str, figures: dict[str, Any]) -> None:
    """Store ``part`` in ``out``, keeping the other parts there (a run of other parts may write meanwhile)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(out.read_text()) if out.is_file() else {}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({**current, part: figures}, indent=2) + "\n")
    tmp.replace(out)


def _in_subprocess(part: str, root: Path, args: argparse.Namespace, checkpoints: Path) -> dict[str, Any]:
    """``part`` measured by this script in a fresh interpreter on the code under ``root``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "part.json"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), _ROOT_FLAG, str(root), "--parts", part,
                        "--threads", str(args.threads), "--values", str(args.values), "--repeats", str(args.repeats),
                        "--checkpoints", str(checkpoints), "--out", str(out)], check=True)
        figures = json.loads(out.read_text())[part]
    figures["provenance"]["command"] = shlex.join(["python", *sys.argv])  # the command to run again, not its child
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="startup,pages,controls", help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: checkpoints/ (else random tiny ones)")
    parser.add_argument("--repeats", type=int, default=5, help="pages: new images per page")
    parser.add_argument("--values", type=int, default=3, help="controls: values per control (at most)")
    parser.add_argument("--methods", default=None, help="methods: only these (comma-separated); the other rows kept")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the 2 cores are shared)")
    parser.add_argument("--before", default=None, help="also measure startup, browser and controls on this git revision")
    parser.add_argument(_ROOT_FLAG, type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; expected some of {PARTS}")
    checkpoints = args.checkpoints or _default_checkpoints()
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp(prefix="bench-app-before-")) / "tree"
        subprocess.run(["git", "-C", str(BENCH_REPO), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
    try:
        for part in parts:
            if worktree is not None and part in BEFORE_PARTS:
                try:
                    before = _in_subprocess(part, worktree, args, checkpoints)
                except subprocess.CalledProcessError as error:  # the old code could not be measured: say so, go on
                    print(f"{part} on {args.before} failed ({error}); recorded without a before", flush=True)
                    before = None
                after = _in_subprocess(part, BENCH_REPO, args, checkpoints)
                report[part] = {**after, **({"before": before} if before else {})}
            else:
                report[part] = measure(part, args, checkpoints, report)
            _write(args.out, part, report[part])
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(BENCH_REPO), "worktree", "remove", "--force", str(worktree)], check=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
