"""Small display helpers shared by the pages, and the guard that keeps a traceback off every page."""
from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from tokenfusion.viz.duration import duration  # one way to write a duration, the docs' too

from . import timing, url
from .preload import wait_for_background
from .state import Timed

__all__ = ["DISPLAY_SIZE", "duration", "explain_line", "fragment", "guarded", "show_failure"]

_LOG = logging.getLogger("tokenfusion.app")
R = TypeVar("R")

#: Side in pixels at which images (and the maps over them) are shown.
DISPLAY_SIZE = 256


def explain_line(what: str, *timed: Timed) -> None:
    """One caption under a view: what it shows, and how long its computations took."""
    seconds = sum(t.seconds for t in timed)
    st.caption(f"{what} Computed in {duration(seconds)}.")


def show_failure(message: str, error: BaseException) -> None:
    """``message`` as an ``st.error``, with ``error``'s traceback folded in an expander below it."""
    st.error(message)
    with st.expander("Details (for a bug report)"):
        st.code("".join(traceback.format_exception(error)), language=None)


def guarded(draw: Callable[[], object], what: str) -> bool:
    """Run ``draw`` (a page, the sidebar); an unexpected error becomes a plain message with its
    details folded below, is logged, and the app keeps serving. True when ``draw`` finished.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``) passes through:
    it raises ``BaseException`` subclasses, not ``Exception``."""
    try:
        draw()
    except Exception as error:  # noqa: BLE001 - the last line of defence between an error and the user
        _LOG.exception("%s failed", what)
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines and len(lines[0]) <= 300 else type(error).__name__
        show_failure(
            f"Something went wrong while drawing {what}: {reason}. The rest of the app still works: "
            "try another model, image or option, or another page.", error,
        )
        return False
    return True


def fragment(draw: Callable[..., R] | None = None, *, run_every: float | None = None) -> Any:
    """``st.fragment`` for the pages, guarded as a page is: use it instead of ``@st.fragment``
    (``@fragment(run_every=seconds)`` for one that reruns on a timer).

    Streamlit shows an error raised inside a fragment as a traceback itself, and a fragment's own
    reruns do not pass through ``main.py``; here the fragment's body runs under :func:`guarded`, so
    an unexpected error is a plain message inside the fragment on every run; the view state goes
    to the URL after each run (:func:`app.url.write`)."""
    if draw is None:
        return functools.partial(fragment, run_every=run_every)

    @functools.wraps(draw)
    def guarded_draw(*args: Any, **kwargs: Any) -> R | None:
        with timing.run("fragment"):  # part of the page's run when the page draws it
            wait_for_background()  # a fragment's rerun skips main.py, which waits for them
            result: list[R] = []
            guarded(lambda: result.append(draw(*args, **kwargs)), "this view")
            guarded(url.write, "the link to this view")  # a fragment's rerun changes the view too
        return result[0] if result else None

    return st.fragment(guarded_draw, run_every=run_every)
