"""One provenance layout for every results file: what :func:`bench.provenance.provenance` writes is
what every file in ``bench/results/`` holds and what :func:`bench.provenance.describe` reads."""
import json
from pathlib import Path

import pytest

from bench.provenance import KEYS, describe, provenance

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
#: Written by ``python -m tokenfusion.analyze`` (the library, which imports nothing from ``bench``).
NOT_A_BENCHMARK = {"analysis_synthshapes.json"}
#: Where results files kept their provenance before the one layout.
OLD_KEYS = {"load_average_before", "load_average_1min", "cpus"}


def _records(report: dict) -> list[dict]:
    """The provenance records of a results file: the file itself, or each part's ``provenance``."""
    parts = [part["provenance"] for part in report.values() if isinstance(part, dict) and "provenance" in part]
    return parts or [report]


def test_the_writer_takes_every_key_before_the_run():
    record = provenance(3, "python bench/x.py --y")
    assert tuple(record) == KEYS and record["threads"] == 3 and record["command"] == "python bench/x.py --y"
    assert len(record["load_average"]) == 3 and record["commit"]
    assert describe(record).startswith(f"run {record['date'][:10]} ") and ", 3 threads, load average " in describe(record)


@pytest.mark.parametrize("path", sorted(p for p in RESULTS.glob("*.json") if p.name not in NOT_A_BENCHMARK),
                         ids=lambda p: p.name)
def test_every_results_file_holds_its_provenance_in_the_one_layout(path: Path):
    for record in _records(json.loads(path.read_text())):
        assert {"command", "date", "commit", "load_average"} <= set(record), path.name
        assert not OLD_KEYS & set(record) and "load_average" not in record.get("machine", {}), path.name
        assert isinstance(record["load_average"], list)


def test_describe_names_what_a_record_does_not_hold():
    assert describe({}) == "date not recorded, commit not recorded, threads not recorded, load average not recorded"
    assert describe({"date": "2026-01-02T03:04:05+00:00", "commit": "0123456789-dirty", "threads": 1,
                     "load_average": [1.25]}) == "run 2026-01-02 03:04 UTC, commit 0123456-dirty, 1 thread, load average 1.2"
