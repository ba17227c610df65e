"""Where a script run's time goes: an opt-in recorder for the app's benchmark (``bench/bench_app.py``).

Off unless the environment variable :data:`ENV` names a file when the server starts; then every script
run (``main.py``) and fragment rerun (:func:`app.ui.fragment`) appends one JSON line to it: its kind,
its start and end (``time.time()``, the clock the benchmark reads too), its seconds, and the seconds of
each phase it went through (:data:`PHASES`). Off, :func:`phase` and :func:`run` return one shared
no-op context: nothing is timed or written. Standard library only.

Phases are timed where they start and end; one inside another counts toward the outer one only
(a model loaded while a map is computed is "compute"), so the phases of a run never overlap.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

__all__ = ["ENV", "PHASES", "enabled", "phase", "run"]

#: The environment variable naming the file of records; unset: the recorder is off.
ENV = "TOKENFUSION_TIMINGS"
#: What the app times: importing its modules (the first run of a server), waiting for the background
#: loading (``app/preload.py``), loading checkpoints, computing through ``tokenfusion`` (predictions,
#: maps, agreement), timing forwards for the estimates of slow work (``app/estimates.py``), building
#: plotly figures, and handing them to Streamlit (``plotly_chart``: the figure serialised and sent).
PHASES = ("imports", "wait", "load", "compute", "estimates", "figures", "charts")

_FILE: Path | None = Path(os.environ[ENV]) if os.environ.get(ENV) else None
_OFF = nullcontext()
_local = threading.local()  # each session's script runs on a thread of its own
_writing = threading.Lock()


def enabled() -> bool:
    """Whether this server records its runs."""
    return _FILE is not None


def run(kind: str) -> AbstractContextManager[None]:
    """A script run (``"page"``) or a fragment rerun (``"fragment"``), recorded when it ends, however it
    ends (``st.rerun`` and ``st.stop`` raise); one inside another (a fragment drawn by its page) is part
    of the outer one."""
    if _FILE is None or getattr(_local, "record", None) is not None:
        return _OFF
    return _run(kind)


def phase(name: str) -> AbstractContextManager[None]:
    """The seconds spent inside, added to phase ``name`` (one of :data:`PHASES`) of the current run."""
    if _FILE is None or getattr(_local, "record", None) is None or getattr(_local, "inside", False):
        return _OFF
    return _phase(name)


@contextmanager
def _run(kind: str) -> Iterator[None]:
    record: dict[str, Any] = {"kind": kind, "start": time.time(), "phases": dict.fromkeys(PHASES, 0.0)}
    _local.record, started = record, time.perf_counter()
    try:
        yield
    finally:
        _local.record = None
        record["seconds"] = round(time.perf_counter() - started, 4)
        record["end"] = record["start"] + record["seconds"]
        record["phases"] = {k: round(v, 4) for k, v in record["phases"].items()}
        with _writing, _FILE.open("a") as out:
            out.write(json.dumps(record) + "\n")


@contextmanager
def _phase(name: str) -> Iterator[None]:
    _local.inside, started = True, time.perf_counter()
    try:
        yield
    finally:
        _local.inside = False
        _local.record["phases"][name] += time.perf_counter() - started
