"""Results as plain data: what a view exports as JSON, and what a notebook can save or compare.

:func:`to_plain` turns any result of the library (an :class:`~tokenfusion.explain.Explanation`, a
``Prediction``, ``FusionWeights``, a ``WhatIf``...) into dicts, lists, numbers and strings that
:func:`json.dumps` accepts, reading every tensor once, on the CPU.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["to_plain"]


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN or infinity


def to_plain(value: Any) -> Any:
    """``value`` with every dataclass as a dict of its fields, every tensor or array as nested lists
    (a 0-d one as a number), tuples as lists, paths as strings, and NaN or infinity as None."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, (np.generic,)):
        return to_plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Path):
        return str(value)
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)
