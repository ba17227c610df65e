"""What the app loads ahead of need, so that no click waits for it.

- In the browser, while the server imports torch and the models: Streamlit's plotly component, which
  the first chart otherwise fetches and compiles only after the server has sent that chart.
- On the server, once the first page of the first browser session is drawn: the explanation
  back-ends (:func:`~tokenfusion.explain.load_backends`, seconds), in a background thread, which the
  first map (the Maps tab, Compare, Faithfulness) would otherwise wait for. Script runs and fragment
  reruns wait for that thread first (:func:`wait_for_backends`), so no code imports beside it: two
  threads importing the modules of one package at once can each see the other's half-initialised.

Only ``streamlit`` and the standard library are imported here, so it runs before anything heavy."""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

__all__ = ["CHART_MODULE", "load_backends_in_background", "preload_chart_module", "wait_for_backends"]

#: Streamlit's lazily loaded plotly component, as its build names it (None if a release renames it).
CHART_MODULE = next(iter(sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))),
                    None)

_backends: threading.Thread | None = None
_starting = threading.Lock()


def preload_chart_module() -> None:
    """Ask the browser to import :data:`CHART_MODULE` now (a dynamic ``import()``: the same module the
    first chart imports later, so that import finds it loaded)."""
    if CHART_MODULE is not None:
        st.html(f'<script type="module">import("./static/js/{CHART_MODULE.name}");</script>',
                unsafe_allow_javascript=True)


def load_backends_in_background() -> None:
    """Start importing the explanation back-ends in a background thread, once per server, and only for a
    session with a browser (request headers): a person reads the first page before they click, where
    a test (``AppTest``) would go on at once and import beside the thread."""
    global _backends
    if not st.context.headers:
        return
    with _starting:
        if _backends is None:
            from tokenfusion.explain import load_backends

            _backends = threading.Thread(target=load_backends, name="load-explanation-backends", daemon=True)
            _backends.start()


def wait_for_backends() -> None:
    """Return once the background import (if any) is done."""
    if _backends is not None:
        _backends.join()
