"""Estimates from this machine, now (``app/estimates.py``): a model's forward is measured once in full,
then timed again as the load changes, and every estimate scales with that pace."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from app import estimates, state
from tokenfusion.explain import Request


def test_estimates_follow_the_pace_of_the_machine_now(checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = state.load_model(checkpoint_dir / "early.pt", "early")
    estimates._measured(loaded, batched=False)
    measured = estimates._measured(loaded, batched=True)
    monkeypatch.setattr(estimates, "measure_forward", lambda model, **_: replace(measured, seconds=3 * measured.seconds))
    monkeypatch.setitem(estimates._PACES, loaded.key, (-math.inf, measured.seconds))  # timed long ago
    slower = estimates.forward_cost(loaded)  # the machine is three times slower now: timed again, and said
    assert slower.seconds == pytest.approx(3 * measured.seconds)
    assert slower.batched == pytest.approx(3 * measured.batched) and slower.channels == measured.channels
    assert estimates.forward_cost(loaded).seconds == pytest.approx(slower.seconds)  # recent: not timed again

    monkeypatch.setitem(estimates._PACES, loaded.key, (-math.inf, 2 * measured.seconds))
    with loaded.lock:  # a job holds the model: no timing waits for it, the last one stands
        assert estimates.forward_cost(loaded).seconds == pytest.approx(2 * measured.seconds)


def test_a_batch_is_timed_only_for_work_that_runs_in_batches(checkpoint_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = state.load_model(checkpoint_dir / "late.pt", "late")
    budgets = []
    real = estimates.measure_forward
    monkeypatch.setattr(estimates, "measure_forward",
                        lambda model, **kw: budgets.append(kw.get("budget")) or real(model, **kw))
    estimates._measured.clear()
    monkeypatch.delitem(estimates._PACES, loaded.key, raising=False)
    one = estimates.forward_cost(loaded, Request("gradcam"))  # one forward and one backward: no batch
    assert budgets == [0.0] and one.batch == 1  # timed once, and not again for the pace
    many = estimates.forward_cost(loaded, Request("occlusion"))  # windows sent in batches
    assert budgets == [0.0, None] and many.batch > 1 and many.batched < many.seconds
    assert estimates.forward_cost(loaded).batch == many.batch  # no request: the batched timing
