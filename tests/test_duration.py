"""One way to write a duration, for the app's captions and the docs' run times."""
import pytest

from tokenfusion.viz.duration import duration


@pytest.mark.parametrize(("seconds", "short", "spelled"), [
    (0.0123, "12 ms", "12 milliseconds"), (1.5, "1.5 s", "1.5 seconds"), (6.5, "6 s", "6 seconds"),
    (87.8, "88 s", "88 seconds"), (300, "5 min", "5 minutes"),
])
def test_a_duration_reads_in_the_unit_that_suits_it(seconds: float, short: str, spelled: str) -> None:
    assert duration(seconds) == short and duration(seconds, spelled=True) == spelled
