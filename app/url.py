"""The view state: every setting of every page, held in ``st.session_state`` under keys of its own and
mirrored in the URL's query (``st.query_params``), so a tab switch, a page round trip, a reload and a
shared link all give back the same view (the page itself is the URL's path, ``/compare``).

Streamlit drops a widget's value when the widget is not drawn in a run, so no widget owns a setting:
:func:`bind` gives the widget its value from the setting on every run, and holds what the user set in
it since. Only what the user set (or a link gave) is held and written to the URL; every other setting
follows its default, which may depend on the model. A held value that does not apply to the model or
image of this run (layer 4 of a 2-layer model) is dropped, and a toast says so. A setting of many values
left empty is held too, and written as its parameter with no value (``?methods=``): a link gives back the
empty choice, where a link without the parameter gives the default.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

__all__ = ["Parse", "as_text", "bind", "current", "keep", "within", "write"]

Parse = Callable[[str], Any]  # the URL's text of a value -> the value, or None when it is not allowed
_HELD = "_view_held"  # param -> (value, its texts in the URL), for what the user set
_LINK = "_view_link"  # param -> the opening link's texts that no page has read yet
_SHOWN = "_view_shown"  # param -> the value its widget was last given
_NONE = ""  # the URL's one text of an empty list (``?methods=``): none chosen, unlike no parameter (the default)


def as_text(value: Any) -> str:
    """A value as the URL writes it: ``0.3``, ``head``, a tuple's present parts joined by ``:``
    (``("blocks.3", "patch")`` -> ``blocks.3:patch``, ``("gradcam", "stage2", None)`` -> ``gradcam:stage2``)."""
    if isinstance(value, tuple):
        return ":".join(as_text(part) for part in value if part is not None)
    return f"{value:g}" if isinstance(value, float) else str(value)


def within(low: float, high: float, kind: type = float, count: int = 1) -> Parse:
    """A parser of ``count`` numbers of ``kind`` from ``low`` to ``high`` (several: joined by ``:``,
    given as a tuple); floats are rounded to 6 decimals, so a slider's ``0.30000000000000004`` is ``0.3``."""
    def parse(written: str) -> Any:
        try:
            numbers = tuple(round(kind(part), 6) if kind is float else kind(part) for part in written.split(":"))
        except ValueError:
            return None
        if len(numbers) != count or not all(low <= n <= high for n in numbers):
            return None
        return numbers if count > 1 else numbers[0]

    return parse


def _held() -> dict[str, tuple[Any, list[str]]]:
    """The held settings; on a session's first run, the link it was opened with becomes pending."""
    if _HELD not in st.session_state:
        st.session_state[_HELD] = {}
        st.session_state[_LINK] = {param: st.query_params.get_all(param) for param in st.query_params}
    return st.session_state[_HELD]


def _parser(allowed: Sequence[Any] | Parse, text: Callable[[Any], str]) -> Parse:
    if callable(allowed):
        return allowed
    by_text = {text(option): option for option in allowed}
    return by_text.get


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _texts(value: Any, text: Callable[[Any], str]) -> list[str]:
    return [text(v) for v in _listed(value)] or [_NONE]


def current(param: str, default: Any, allowed: Sequence[Any] | Parse, *, text: Callable[[Any], str] = as_text,
            what: str | None = None) -> Any:
    """The value of the setting ``param`` in this run: the one held, else the opening link's (read
    once), else ``default``. ``allowed``: the values that apply here, or a parser of the URL's text
    (None: not allowed); a list ``default`` makes a setting of many values, each checked. A held value
    that does not apply here is dropped (the items of a list that do not) and a toast names it
    (``what``: the setting in words; default ``param``)."""
    held, parse = _held(), _parser(allowed, text)
    many = isinstance(default, list)
    link = st.session_state[_LINK].pop(param, None)
    if link is not None and param not in held:
        values = [v for v in map(parse, link) if v is not None]
        if values:
            keep(param, values if many else values[0], text)
        elif many and link == [_NONE]:
            keep(param, [], text)
    if param not in held:
        return default
    values = _listed(held[param][0])
    checked = [(v, parse(text(v))) for v in values]
    fits = [c for _, c in checked if c is not None]
    dropped = [v for v, c in checked if c is None]
    if dropped:
        lost = ", ".join(text(v) for v in dropped)
        if fits and many:
            keep(param, fits, text)
        else:
            del held[param]
        st.toast(f"{what or param.capitalize()} {lost} does not apply to this model or image: "
                 + (f"kept {', '.join(text(v) for v in fits)}." if fits and many else
                    f"back to {', '.join(_texts(default, text)) or 'none'}."), icon=":material/sync_problem:")
    if many:
        return fits if fits or not values else default  # an empty list held: none chosen
    return fits[0] if fits else default


def keep(param: str, value: Any, text: Callable[[Any], str] = as_text) -> None:
    """Hold ``value`` as the setting ``param`` (what the user chose without a widget: a clicked token)."""
    _held()[param] = (value, _texts(value, text))


def bind(param: str, default: Any, allowed: Sequence[Any] | Parse, *, text: Callable[[Any], str] = as_text,
         what: str | None = None) -> str:
    """The key that binds the widget drawn next to the setting ``param`` (see :func:`current`, whose
    arguments these are): the widget is given the setting's value, and a value the user set in it
    since it was last drawn is held first. Draw the widget with no default of its own."""
    key, shown = f"view:{param}", st.session_state.setdefault(_SHOWN, {})
    if key in st.session_state and (param not in shown or st.session_state[key] != shown[param]):
        parse = _parser(allowed, text)
        chosen = [c for v in _listed(st.session_state[key]) if (c := parse(text(v))) is not None]
        if chosen or isinstance(default, list):
            keep(param, chosen if isinstance(default, list) else chosen[0], text)
    st.session_state[key] = shown[param] = current(param, default, allowed, text=text, what=what)
    return key


def write() -> None:
    """Every held setting, and what the link gave that no page has read yet, into the URL (lists as
    repeated parameters); nothing else. Only a change is sent."""
    held = _held()
    wanted = {**st.session_state[_LINK], **{param: texts for param, (_, texts) in held.items()}}
    now = {param: st.query_params.get_all(param) for param in st.query_params}
    if now != wanted:
        st.query_params.from_dict(wanted)
