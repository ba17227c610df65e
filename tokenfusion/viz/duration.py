"""One way to write a duration for people: the app's timings, the docs' run times."""
from __future__ import annotations

__all__ = ["duration"]


def duration(seconds: float, *, spelled: bool = False) -> str:
    """``0.0123`` -> ``"12 ms"``, ``1.5`` -> ``"1.5 s"``, ``88`` -> ``"88 s"``, ``300`` -> ``"5 min"``: a
    tenth of a second only under 5 s, where it is worth reading; ``spelled`` writes the unit out
    (``"88 seconds"``, ``"5 minutes"``) for prose."""
    if seconds < 1:
        value, unit = f"{seconds * 1000:.0f}", "milliseconds" if spelled else "ms"
    elif seconds < 5:
        value, unit = f"{seconds:.1f}", "seconds" if spelled else "s"
    elif seconds < 120:
        value, unit = f"{seconds:.0f}", "seconds" if spelled else "s"
    else:
        value, unit = f"{seconds / 60:.0f}", "minutes" if spelled else "min"
    return f"{value} {unit}"
