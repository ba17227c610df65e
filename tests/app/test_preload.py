"""The chart module the app asks the browser for first thing is the one Streamlit's first chart imports."""
from __future__ import annotations

from pathlib import Path

from app.preload import CHART_MODULE

from .helpers import no_exception


def test_the_preloaded_module_is_the_one_the_first_chart_imports() -> None:
    assert CHART_MODULE is not None and CHART_MODULE.is_file()
    entry = [p for p in Path(CHART_MODULE).parent.glob("index.*.js") if f"./{CHART_MODULE.name}" in p.read_text()]
    assert entry, f"no Streamlit entry module imports {CHART_MODULE.name}: the preload would load a module nobody uses"


def test_every_page_asks_for_it_before_drawing(app) -> None:
    at = app()
    no_exception(at)
    drawn = [e for e in at.main if e.type != "main"]  # the page's elements in order, after its container
    assert drawn[0].type == "html" and CHART_MODULE.name in drawn[0].proto.body
    assert drawn[0].proto.unsafe_allow_javascript
