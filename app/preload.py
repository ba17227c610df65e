"""What the app loads ahead of need, so that no click waits for it.

- In the browser, while the server imports torch and the models: Streamlit's plotly component, which
  the first chart otherwise fetches and compiles only after the server has sent that chart.
- On the server, once the first page of the first browser session is drawn, in a background thread:
  the explanation back-ends (:func:`~tokenfusion.explain.load_backends`, seconds), which the first
  map (the Maps tab, Compare, Faithfulness) would otherwise wait for, then the other listed
  checkpoints (a fraction of a second each), which the model picker and Compare would. Script runs
  and fragment reruns wait for that thread first (:func:`wait_for_background`), so no code imports
  beside it: two threads importing the modules of one package at once can each see the other's
  half-initialised.

Only ``streamlit`` and the standard library are imported here, so it runs before anything heavy."""
from __future__ import annotations

import gc
import threading
from collections.abc import Mapping
from pathlib import Path

import streamlit as st

from . import timing

__all__ = ["AHEAD_DELAY_S", "AHEAD_MB", "CHART_MODULE", "load_ahead", "load_ahead_now", "preload_chart_module",
           "wait_for_background"]

#: Streamlit's lazily loaded plotly component, as its build names it (None if a release renames it).
CHART_MODULE = next(iter(sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))),
                    None)

#: Checkpoints are loaded ahead while their files come to at most this many MB (the teaching models; not a
#: folder of ImageNet models, which would hold gigabytes of memory nobody may ask for).
AHEAD_MB = 100

#: Seconds between the end of the first page's run and the start of loading ahead, for the server to send
#: that page's last messages first: an importing thread holds the interpreter lock most of the time.
AHEAD_DELAY_S = 1.0

_background: threading.Thread | None = None
_starting = threading.Lock()


def preload_chart_module() -> None:
    """Ask the browser to import :data:`CHART_MODULE` now (a dynamic ``import()``: the same module the
    first chart imports later, so that import finds it loaded)."""
    if CHART_MODULE is not None:
        st.html(f'<script type="module">import("./static/js/{CHART_MODULE.name}");</script>',
                unsafe_allow_javascript=True)


def load_ahead(checkpoints: Mapping[str, Path]) -> None:
    """Start loading ahead in a background thread, once per server, and only for a session with a
    browser (request headers): a person reads the first page before they click, where a test
    (``AppTest``) would go on at once and import beside the thread. ``checkpoints``: the listed
    ``{name: path}``, loaded in order up to :data:`AHEAD_MB`."""
    global _background
    if not st.context.headers:
        return
    with _starting:
        if _background is None:
            _background = threading.Timer(AHEAD_DELAY_S, load_ahead_now, args=(dict(checkpoints),))
            _background.daemon, _background.name = True, "load-ahead"
            _background.start()


def load_ahead_now(checkpoints: Mapping[str, Path]) -> None:
    """What :func:`load_ahead`'s thread runs: the explanation back-ends, then ``checkpoints`` in order
    up to :data:`AHEAD_MB` of files; then every object alive is moved out of the garbage collector's
    reach (``gc.freeze``): the modules and models stay for the server's life, and a full collection
    walking them all would otherwise stall whichever click it fell in."""
    from tokenfusion.explain import load_backends

    from .state import load_model

    load_backends()
    budget = AHEAD_MB * 2**20
    for name, path in checkpoints.items():
        budget -= path.stat().st_size if path.is_file() else 0
        if budget < 0:
            break
        try:
            load_model(path, name)
        except Exception:  # noqa: BLE001 - not cached: the page that loads it says what is wrong with it
            continue
    gc.freeze()


def wait_for_background() -> None:
    """Return once the background loading (if any) is done."""
    if _background is not None:
        with timing.phase("wait"):
            _background.join()
