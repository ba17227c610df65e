"""Where and when a benchmark ran: the one provenance layout of every results file in ``bench/results/``.

Every results file carries the keys of :data:`KEYS` beside its figures, written by :func:`provenance`
before the measurement starts (a file whose parts run separately, such as ``app_cpu.json``, holds them
under each part's ``provenance``; a row added by a partial rerun holds its own). ``load_average`` is
the 1, 5 and 15 minute load average; a benchmark that also records it after the run adds
``load_average_after``. :func:`describe` is the one reader: ``python -m bench.report`` prints it beside
every figure it writes into the docs.
"""
from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["KEYS", "ROOT", "commit", "describe", "load_average", "provenance"]

ROOT = Path(__file__).resolve().parents[1]

#: The provenance keys of a results file (or of each separately run part of one).
KEYS = ("command", "date", "commit", "threads", "cpu_count", "load_average")


def commit(root: Path = ROOT) -> str:
    """The commit checked out in ``root``, with ``-dirty`` when the library, the training code, the app, a
    benchmark or a notebook differ from it (results files aside: a benchmark that stores each part as it
    finishes would mark its own later parts)."""
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--", "tokenfusion", "train", "app", "bench", "notebooks",
                              ":(exclude)bench/results"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return head + ("-dirty" if changed else "")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load average now, to two decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def provenance(threads: int, command: str | None = None) -> dict[str, Any]:
    """:data:`KEYS`, taken now: the command (default: this process's, as ``python ...``), date (UTC),
    commit, intra-op threads, CPUs and load average. Call it before the measurement; store it with the
    figures."""
    return {
        "command": command or shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
    }


def describe(record: dict[str, Any]) -> str:
    """``run 2026-12-07 10:34 UTC, commit 03b04de, 1 thread, load average 0.4``: the date, commit,
    threads and 1-minute load average of ``record``, naming each it does not hold."""
    threads, load = record.get("threads"), record.get("load_average")
    parts = [
        f"run {record['date'][:16].replace('T', ' ')} UTC" if record.get("date") else "date not recorded",
        f"commit {record['commit'][:7]}{'-dirty' * record['commit'].endswith('-dirty')}" if record.get("commit")
        else "commit not recorded",
        f"{threads} thread{'s' * (threads != 1)}" if threads else "threads not recorded",
        f"load average {load[0]:.1f}" if load else "load average not recorded",
    ]
    return ", ".join(parts)
