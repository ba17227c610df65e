"""Small display helpers shared by the pages."""
from __future__ import annotations

import streamlit as st

from .state import Timed

__all__ = ["DISPLAY_SIZE", "duration", "explain_line"]

#: Side in pixels at which images (and the maps over them) are shown.
DISPLAY_SIZE = 256


def duration(seconds: float) -> str:
    """``0.0123`` -> ``"12 ms"``, ``1.5`` -> ``"1.5 s"``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def explain_line(what: str, *timed: Timed) -> None:
    """One caption under a view: what it shows, and how long its computations took."""
    seconds = sum(t.seconds for t in timed)
    st.caption(f"{what} Computed in {duration(seconds)}.")
