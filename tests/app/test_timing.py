"""The opt-in recorder of where a script run's time goes (``app/timing.py``): off unless asked, and
when on, one record per run with the seconds of each phase."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app import timing


def test_off_by_default_it_times_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "_FILE", None)
    assert not timing.enabled()
    assert timing.run("page") is timing.phase("compute") is timing._OFF  # one shared no-op, nothing timed
    with timing.run("page"), timing.phase("compute"):
        pass


def test_on_it_records_each_run_and_its_phases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    records = tmp_path / "runs.jsonl"
    monkeypatch.setattr(timing, "_FILE", records)
    assert timing.phase("compute") is timing._OFF  # outside a run: nothing to add to
    before = time.time()
    with timing.run("page"):
        with timing.phase("load"):
            time.sleep(0.02)
            with timing.phase("compute"):  # inside another phase: the outer one's
                time.sleep(0.02)
        with timing.run("fragment"):  # a fragment drawn by its page: part of the page's run
            with timing.phase("figures"):
                time.sleep(0.01)
        time.sleep(0.01)  # in no phase
    with pytest.raises(RuntimeError), timing.run("fragment"):  # ended by an exception (st.rerun raises): recorded
        raise RuntimeError
    page, fragment = [json.loads(line) for line in records.read_text().splitlines()]
    assert page["kind"] == "page" and fragment["kind"] == "fragment"
    assert set(page["phases"]) == set(timing.PHASES)
    assert page["phases"]["load"] >= 0.04 and page["phases"]["compute"] == 0.0
    assert page["phases"]["figures"] >= 0.01
    assert page["seconds"] >= sum(page["phases"].values()) + 0.01
    assert before <= page["start"] < page["end"] <= fragment["start"] <= time.time()
