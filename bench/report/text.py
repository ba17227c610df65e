"""How the report words a figure: a target met or missed, mean ± sd, milliseconds."""
from __future__ import annotations

import statistics

__all__ = ["mean_sd", "met", "ms", "pm"]


def met(value: float, target: float, at_most: bool = True) -> str:
    """``met`` when ``value`` is at most (``at_most``) or at least ``target``, else a bold ``missed``."""
    return "met" if (value <= target if at_most else value >= target) else "**missed**"


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: list[float]) -> str:
    """``mean ± sd``, or the one value alone (one seed has no spread)."""
    mean, sd = mean_sd(values)
    return f"{mean:.1f} ± {sd:.1f}" if len(values) > 1 else f"{mean:.1f}"


def ms(seconds: float) -> str:
    """Milliseconds always, so that the rows of a table compare (prose picks its unit with
    :func:`tokenfusion.viz.duration.duration`)."""
    return f"{seconds * 1000:.0f} ms"

