"""Helpers shared by the app tests: test images, and what a run shows the user."""
from __future__ import annotations

import io
import json

from PIL import Image
from streamlit.testing.v1 import AppTest

__all__ = ["chart_titles", "charts", "no_exception", "png", "texts"]


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
