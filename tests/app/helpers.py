"""Helpers shared by the app tests: test images, and what a run shows the user."""
from __future__ import annotations

import io
import json

from PIL import Image
from streamlit.testing.v1 import AppTest

__all__ = ["PREDICTION", "chart_titles", "charts", "no_exception", "open_view", "png", "texts", "tab_charts"]


#: The key of Explore's chart of the prediction (none for an image out of the model's distribution).
PREDICTION = "topk_fig"


def png(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """The bytes of a small PNG with a square in it."""
    image = Image.new("RGB", size, colour)
    image.paste((20, 20, 220), (8, 8, 32, 32))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def no_exception(at: AppTest) -> None:
    """The run raised nothing the user would see as a traceback."""
    assert not at.exception, [e.value for e in at.exception]


def open_view(at: AppTest, view: str) -> AppTest:
    """Click Explore's tab ``view`` ("Maps"): the page reruns with that view drawn."""
    at.session_state["view:view"] = view
    return at.run()


def tab_charts(at: AppTest) -> dict[str, int]:
    """Open each of Explore's tabs in turn, with no exception: the charts each shows (besides the prediction
    above the tabs); the first tab is open again afterwards."""
    shown = {}
    for view in [t.label for t in at.tabs]:
        no_exception(open_view(at, view))
        shown[view] = len([c for c in charts(at) if c.key != PREDICTION])
    open_view(at, next(iter(shown)))
    return shown


def charts(at: AppTest) -> list:
    """The plotly charts the run drew."""
    return list(at.get("plotly_chart"))


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def chart_titles(at: AppTest) -> list[str]:
    """The titles of the plotly charts of a run (empty string for an untitled chart)."""
    titles = []
    for chart in charts(at):
        layout = json.loads(chart.proto.spec).get("layout", {})
        titles.append((layout.get("title") or {}).get("text", ""))
    return titles
