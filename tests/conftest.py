"""Shared test set-up: one intra-op thread and a fixed seed per test.

One thread, not two: on the shared 2-core CI machine a second OpenMP thread spins waiting for a
core that another job holds, which made this suite ~7x slower (150 s against 20 s) with the same
results. The tests check values, not speed.
"""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, whatever ran before it."""
    torch.manual_seed(0)
