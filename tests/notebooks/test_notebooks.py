"""The classroom notebooks: each runs top to bottom from a clean kernel, and is committed stripped.

Each notebook is executed with nbclient in ``notebooks/`` (as a student opens it), in the
exercises' solution mode (``TOKENFUSION_SOLUTIONS=1``: answers left at ``None`` are filled from
``notebooks/solutions.py`` and then checked), on the shipped checkpoints unless
``TOKENFUSION_CHECKPOINTS`` names another folder. Wall times are printed; ``bench/bench_notebooks.py``
records them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # one cell; the training cells of 04 take ~1 minute on a quiet 2-core CPU


def _ids(path: Path) -> str:
    return path.stem


def test_the_four_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01_tokens", "02_fusion_strategies", "03_explanations", "04_train_and_compare",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has outputs; strip them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count; strip it"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in the metadata; strip it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_opens_with_goals_and_ends_with_checked_exercises(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "Learning goals" in nb.cells[0].source
    checks = [c for c in nb.cells if c.cell_type == "code" and "if SOLUTIONS and" in c.source and "assert" in c.source]
    assert 2 <= len(checks) <= 3, f"{path.name}: expected 2-3 exercise check cells, found {len(checks)}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "TOKENFUSION_CHECKPOINTS" in code, "checkpoints are read from $TOKENFUSION_CHECKPOINTS (default ../checkpoints)"
    assert "/work/" not in code and "/tmp/" not in code, "no machine-specific paths in a notebook"


def test_readme_lists_every_notebook() -> None:
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.name in readme, f"notebooks/README.md does not mention {path.name}"


def execute_notebook(path: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Run ``path`` from a clean kernel in its own folder; returns the wall time in seconds.
    Raises ``nbclient.exceptions.CellExecutionError`` (with the cell's traceback) on any error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    monkeypatch.setenv("TOKENFUSION_SOLUTIONS", "1")
    monkeypatch.setenv("TOKENFUSION_CHECKPOINTS", os.environ.get("TOKENFUSION_CHECKPOINTS", str(ROOT / "checkpoints")))
    # One intra-op thread unless told otherwise, as in tests/conftest.py: on a shared 2-core machine
    # a second OpenMP thread spins waiting for a core that another job holds.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    seconds = execute_notebook(path)
    record_property("wall_s", round(seconds, 1))
    print(f"{path.name}: {seconds:.1f} s")
