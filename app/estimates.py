"""Slow work said before it starts: each model's measured forward, and a gate that shows the
estimated time of anything longer than :data:`SLOW_SECONDS` and waits for the user to start it."""
from __future__ import annotations

import streamlit as st

from tokenfusion.explain import ForwardCost, measure_forward

from .state import LoadedModel, exclusive
from .ui import duration

__all__ = ["SLOW_SECONDS", "forward_cost", "may_start"]

#: Work estimated above this many seconds waits for a click.
SLOW_SECONDS = 5.0
_STARTED = "_slow_work_started"


@st.cache_resource(max_entries=32, show_spinner=False, hash_funcs={LoadedModel: lambda loaded: loaded.key})
def forward_cost(loaded: LoadedModel) -> ForwardCost:
    """The model's forward, measured once per model (see :func:`~tokenfusion.explain.measure_forward`)."""
    with exclusive(loaded) as model:
        return measure_forward(model)


def may_start(request: tuple, seconds: float, what: str,
              basis: str = "the measured time of one forward pass times the passes it needs") -> bool:
    """True when the work named by ``request`` (a hashable description: model, image, method...)
    is quick (estimated ``seconds`` at most :data:`SLOW_SECONDS`) or was started before in this
    session (its results are cached); otherwise shows ``what`` with its estimated time (from ``basis``)
    and a button, and is True only on the run its button was clicked."""
    started = st.session_state.setdefault(_STARTED, set())
    if seconds <= SLOW_SECONDS or request in started:
        return True
    st.info(f"{what} takes about {duration(seconds)} on this machine (estimated from {basis}).",
            icon=":material/schedule:")
    if st.button(f"Start ({duration(seconds)})", key=f"start:{hash(request)}"):
        started.add(request)
        return True
    return False
