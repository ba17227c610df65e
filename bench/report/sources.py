"""The files the report reads: results files in ``bench/results/`` and the shipped checkpoints."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES

__all__ = ["RESULTS", "checkpoints", "load"]


#: Where the benchmarks write their results files, relative to the repository.
RESULTS = Path("bench/results")


def load(root: Path, name: str) -> dict[str, Any]:
    """The results file ``name`` of the repository at ``root``."""
    return json.loads((root / RESULTS / name).read_text())


@functools.lru_cache(maxsize=2)
def checkpoints(root: Path) -> dict[str, Any]:
    """The shipped checkpoints under ``root``, loaded once per render."""
    return {arch: load_checkpoint(root / "checkpoints" / f"{arch}.pt") for arch in ARCHITECTURES
            if (root / "checkpoints" / f"{arch}.pt").exists()}

