"""The view in the URL: the controls bound here are restored from ``st.query_params`` when a link is
opened, and written back after every run, so a link reopens the view it names (the page is the
URL's path, ``/compare``; the model, the image, the layer, the head and the methods its query)."""
from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import streamlit as st

__all__ = ["bind", "start", "write"]

_BOUND = "_url_bound"  # session key: URL parameter -> widget key, for this session's current view


def start() -> None:
    """Before a full run: forget the last view's bindings (each page binds its own)."""
    st.session_state[_BOUND] = {}


def _parse(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def bind(param: str, key: str, default: Any, valid: Collection[Any] | Callable[[Any], bool]) -> None:
    """Give the widget ``key`` its first value: the URL's ``param`` when it is ``valid`` (a collection
    of allowed values, or a predicate; every item of a list), else ``default``; from then on the
    widget owns its value, and :func:`write` mirrors it to ``param``. Call before drawing the widget,
    and draw it without a default of its own."""
    st.session_state.setdefault(_BOUND, {})[param] = key
    if key in st.session_state:
        return
    ok = valid if callable(valid) else (lambda v: v in valid)
    values = [_parse(v) for v in st.query_params.get_all(param)]
    value: Any = values if isinstance(default, list) else (values[0] if values else None)
    fits = bool(values) and (all(ok(v) for v in value) if isinstance(default, list) else ok(value))
    st.session_state[key] = value if fits else default


def write(*, prune: bool = False) -> None:
    """Every bound control's value into the URL (lists as repeated parameters); with ``prune`` (at
    the end of a full run, when every view has bound its controls) the parameters nothing bound go."""
    bound = st.session_state.get(_BOUND, {})
    for param in [p for p in st.query_params if prune and p not in bound]:
        del st.query_params[param]
    for param, key in bound.items():
        if key in st.session_state:
            value = st.session_state[key]
            st.query_params[param] = [str(v) for v in value] if isinstance(value, list) else str(value)
