"""Where and when a benchmark ran, for its results file: date, commit, threads and load average.

``python -m train.report`` prints these beside every figure it writes into the docs.
"""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checked-out commit, with ``-dirty`` when the library, the training code or a benchmark differ from it
    (results files aside: a benchmark that stores each part as it finishes would mark its own later parts)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--", "tokenfusion", "train", "app", "bench", "notebooks",
                              ":(exclude)bench/results"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return head + ("-dirty" if changed else "")


def provenance(threads: int) -> dict[str, Any]:
    """Date (UTC), commit, intra-op threads, CPUs and the load average (1, 5, 15 min), taken now: call it
    before the measurement and store it with the figures."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
