"""``bench/bench_app.py``'s split of a browser action's time into the server's phases and the browser's rest."""
from __future__ import annotations

import pytest

from app.timing import ENV, PHASES
from bench.bench_app import BREAKDOWN, TIMINGS_ENV, where_time_goes


def _run(start: float, seconds: float, **phases: float) -> dict:
    return {"kind": "page", "start": start, "end": start + seconds, "seconds": seconds,
            "phases": {**dict.fromkeys(PHASES, 0.0), **phases}}


def test_the_parts_are_the_app_phases_and_the_browser_around_them() -> None:
    assert BREAKDOWN == ("until_run", *PHASES, "other", "after_run") and TIMINGS_ENV == ENV


def test_an_action_is_split_into_parts_that_add_up() -> None:
    earlier = _run(90.0, 5.0, imports=4.0)  # a run of an earlier action: not this one's
    runs = [earlier, _run(100.5, 2.0, load=0.5, compute=1.0), _run(103.0, 0.5, figures=0.2)]
    parts = where_time_goes(runs, begun=100.0, seconds=4.0)
    assert parts == pytest.approx({**dict.fromkeys(BREAKDOWN, 0.0), "until_run": 0.5, "load": 0.5, "compute": 1.0,
                                   "figures": 0.2, "other": 0.8, "after_run": 1.0})
    assert sum(parts.values()) == pytest.approx(4.0)
    nothing = where_time_goes([earlier], begun=100.0, seconds=0.3)  # no run: all of it in the browser
    assert nothing["until_run"] == pytest.approx(0.3) and sum(nothing.values()) == pytest.approx(0.3)
