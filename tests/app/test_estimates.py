"""Estimates from this machine, now (``app/estimates.py``): a model's forward is measured once in full,
then timed again as the load changes, and every estimate scales with that pace."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from app import estimates, state


def test_estimates_follow_the_pace_of_the_machine_now(checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = state.load_model(checkpoint_dir / "early.pt", "early")
    measured = estimates._measured(loaded)
    monkeypatch.setattr(estimates, "measure_forward", lambda model, **_: replace(measured, seconds=3 * measured.seconds))
    monkeypatch.setitem(estimates._PACES, loaded.key, (-math.inf, measured.seconds))  # timed long ago
    slower = estimates.forward_cost(loaded)  # the machine is three times slower now: timed again, and said
    assert slower.seconds == pytest.approx(3 * measured.seconds)
    assert slower.batched == pytest.approx(3 * measured.batched) and slower.channels == measured.channels
    assert estimates.forward_cost(loaded).seconds == pytest.approx(slower.seconds)  # recent: not timed again

    monkeypatch.setitem(estimates._PACES, loaded.key, (-math.inf, 2 * measured.seconds))
    with loaded.lock:  # a job holds the model: no timing waits for it, the last one stands
        assert estimates.forward_cost(loaded).seconds == pytest.approx(2 * measured.seconds)
