"""Start the browser loading plotly's chart code while the server imports torch and the models.

The first chart of a session otherwise waits, after the server has sent it, for the browser to fetch
and compile Streamlit's plotly component (one of its largest modules); asked for first thing, that
happens while the server is still importing. Only ``streamlit`` is imported here, so it runs before anything heavy."""
from pathlib import Path

import streamlit as st

__all__ = ["CHART_MODULE", "preload_chart_module"]

#: Streamlit's lazily loaded plotly component, as its build names it (None if a release renames it).
CHART_MODULE = next(iter(sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))),
                    None)


def preload_chart_module() -> None:
    """Ask the browser to import :data:`CHART_MODULE` now (a dynamic ``import()``: the same module the
    first chart imports later, so that import finds it loaded)."""
    if CHART_MODULE is not None:
        st.html(f'<script type="module">import("./static/js/{CHART_MODULE.name}");</script>',
                unsafe_allow_javascript=True)
