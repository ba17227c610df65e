"""The classroom notebooks: each runs top to bottom from a clean kernel, its checks fail on wrong
answers, and it is committed stripped.

Each notebook is executed with nbclient in ``notebooks/`` (as a student opens it), in the
exercises' solution mode (``TOKENFUSION_SOLUTIONS=1``: answers left at ``None`` are filled from
``notebooks/solutions.py`` and then checked), on the shipped checkpoints unless
``TOKENFUSION_CHECKPOINTS`` names another folder. Then, in the same kernel, the notebook is put in
student mode (``SOLUTIONS = False``) and every exercise's check cell is run again with each wrong
answer of ``WRONG_ANSWERS`` planted, and with no answer: each run must fail its ``assert`` (the
top-to-bottom run has shown that it passes on the reference answer). Wall times are printed;
``bench/bench_notebooks.py`` records the top-to-bottom ones.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # one cell; the training cells of 04 take ~1 minute on a quiet 2-core CPU


def _ids(path: Path) -> str:
    return path.stem


def test_the_five_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01_tokens", "02_fusion_strategies", "03_explanations", "04_train_and_compare", "05_analysis",
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
    assert 2 <= len(checks) <= 4, f"{path.name}: expected 2-4 exercise check cells, found {len(checks)}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "TOKENFUSION_CHECKPOINTS" in code, "checkpoints are read from $TOKENFUSION_CHECKPOINTS (default ../checkpoints)"
    assert "/work/" not in code and "/tmp/" not in code, "no machine-specific paths in a notebook"


def test_readme_lists_every_notebook() -> None:
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.name in readme, f"notebooks/README.md does not mention {path.name}"


# Wrong answers a student could give, per notebook and exercise (the variable its check cell fills),
# as code run in the notebook's kernel after it ran top to bottom. Several are the reference answer
# slightly off, so that a check must be sharp to reject them.
WRONG_ANSWERS: dict[str, dict[str, list[str]]] = {
    "01_tokens": {
        "rf_small": [
            "rf_small, jump_small = solutions.nb01_ex1(small_trunk); rf_small -= 16",
            "rf_small, jump_small = solutions.nb01_ex1(small_trunk); jump_small //= 2",
            "rf_small, jump_small = receptive_field(main_path(small_trunk)[1:])",
        ],
        "token_counts_96": ["token_counts_96 = solutions.nb01_ex2(size=64)",
                            "token_counts_96 = {**solutions.nb01_ex2(size=96), 'cls': 0}"],
        "pixels_per_patch_token": ["pixels_per_patch_token = solutions.nb01_ex3(create('vit', 'tiny').config)",
                                   "pixels_per_patch_token = 3 * solutions.nb01_ex3(create('vit', 'tiny', patch_size=16).config)"],
    },
    "02_fusion_strategies": {
        "late_fusion": ["late_fusion = solutions.nb02_ex1(fresh['late']); late_fusion['tokens'] -= 1",
                        "late_fusion = {**solutions.nb02_ex1(fresh['late']), 'cls': 1}"],
        "max_logit_difference": ["max_logit_difference = solutions.nb02_ex2(models['layerwise'], images)",
                                 "max_logit_difference = torch.tensor(0.0)"],
        "most_cnn_layer": [
            "most_cnn_layer = next(l for l in fusion_weights(models['early'], images).layers "
            "if l != solutions.nb02_ex3(models['early'], images))",
            "most_cnn_layer = 'blocks.9'",
        ],
    },
    "03_explanations": {
        "centre_hits": [
            "centre_hits = solutions.nb03_ex1(items, 0)",  # no tolerance
            # the image's centre pixel in the object
            "centre_hits = [i for i, (_, m, _) in enumerate(items) if m[m.shape[0] // 2, m.shape[1] // 2]]",
            # the misses
            "centre_hits = [i for i in range(len(items)) if i not in solutions.nb03_ex1(items, TOLERANCE)]",
            "centre_hits = list(range(len(items)))",
        ],
        "occlusion_scores": ["occlusion_scores = score(early, items, 'gradcam')"],
        "ig_check": [
            "ig_check = randomisation_check(early, x, lambda m, im: explain(m, im, 'integrated_gradients', "
            "target=label), steps=8, seed=0)",
            "ig_check = randomisation_check(early, x, lambda m, im: explain(m, im, 'integrated_gradients', "
            "target=label, n_steps=16), steps=4, seed=0)",
        ],
    },
    "04_train_and_compare": {
        "peak_lr_8gpu": ["peak_lr_8gpu = imagenet['lr']", "peak_lr_8gpu = solutions.nb04_ex1(imagenet, processes=32)"],
        "steps_per_run": ["steps_per_run = TRAIN_SAMPLES // recipe['batch_size']",
                          "steps_per_run = solutions.nb04_ex2(TRAIN_SAMPLES, recipe['batch_size'], EPOCHS) + 1"],
        "better": ["better = min(histories, key=lambda arch: histories[arch][-1]['top1'])", "better = 'vit'"],
    },
    "05_analysis": {
        "distance_by_hand": [
            "distance_by_hand = 0.8 * solutions.nb05_ex1(A[0, 0], 4, 64)",  # patch weights not renormalised
            "distance_by_hand = solutions.nb05_ex1(A[0, 0], 4, 64) / 16",  # in patches, not pixels
            "distance_by_hand = 16 / 12 * solutions.nb05_ex1(A[0, 0], 4, 64)",  # only the 12 queries with a patch below
        ],
        "lower_cue_without_cnn": [
            "lower_cue_without_cnn = {arch: {'shape': 'texture', 'texture': 'shape'}[cue] for arch, cue in "
            "solutions.nb05_ex2({a: models[a] for a in FUSION}, images, labels).items()}",  # every cue swapped
            "lower_cue_without_cnn = solutions.nb05_ex2({a: models[a] for a in FUSION}, images, labels); "
            "lower_cue_without_cnn['late'] = {'shape': 'texture', 'texture': 'shape'}[lower_cue_without_cnn['late']]",
            "lower_cue_without_cnn = solutions.nb05_ex2({a: models[a] for a in ('late', 'early')}, images, labels)",
        ],
        "linear_cka": [
            "linear_cka = cka",  # the unbiased estimator: invariant too, but another number
            "linear_cka = lambda x, y: float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))",  # not centred
            "linear_cka = lambda x, y: solutions.nb05_ex3(x, y) ** 0.5",  # the numerator's norm not squared
            "linear_cka = lambda x, y: 1.0",
        ],
        "cnn_free_from": [
            # one place earlier along the curve (the last site when the answer is "none")
            "places = results['models']['early']['ablation']['cnn']['sites'] + ['none']; "
            "cnn_free_from = places[places.index(solutions.nb05_ex4(models['early'], images, labels)) - 1]",
            "cnn_free_from = solutions.nb05_ex4(models['early'], images, labels, within=30)",
            "cnn_free_from = 'blocks.0'",
        ],
    },
}
_ANSWERED = re.compile(r"^if SOLUTIONS and (\w+) is None:", re.M)


def check_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The exercises' check cells, by the name of the answer they check (the one filled in solution mode)."""
    return {m.group(1): c for c in nb.cells if c.cell_type == "code" and (m := _ANSWERED.search(c.source))}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_checks_do_not_read_the_reference_answers(path: Path) -> None:
    """Only the solution-mode line of a check cell may call ``solutions``: the check computes its own
    expected answer, so a wrong reference answer fails it too."""
    cells = check_cells(nbformat.read(path, as_version=4))
    assert sorted(cells) == sorted(WRONG_ANSWERS[path.stem]), "every exercise needs wrong answers planted below"
    for name, cell in cells.items():
        _, filled, *check = cell.source.splitlines()
        assert "solutions." in filled and not any("solutions." in line for line in check), f"{path.name}: check of {name}"


def _run(client: NotebookClient, nb: nbformat.NotebookNode, source: str) -> str | None:
    """Run ``source`` as a new cell of ``nb``; the name of the error it raised, or None."""
    nb.cells.append(nbformat.v4.new_code_cell(source))
    try:
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    except CellExecutionError as error:
        return error.ename
    return None


def _kernel_cpu_s(client: NotebookClient, nb: nbformat.NotebookNode) -> float:
    """CPU seconds the kernel process has used so far."""
    _run(client, nb, "print(__import__('time').process_time())")
    return float(nb.cells[-1].outputs[0]["text"])


def execute_notebook(path: Path, wrong_answers: dict[str, list[str]] | None = None,
                     timeout: int = CELL_TIMEOUT_S) -> tuple[float, float, float, list[str]]:
    """Run ``path`` from a clean kernel in its own folder, then (``wrong_answers``) plant each wrong answer
    in student mode and rerun its check cell. Returns the wall seconds of both parts, the kernel's CPU
    seconds for the second, and the problems found: a wrong answer its check let through, or one it
    failed with an error other than ``AssertionError``. Raises ``CellExecutionError`` when the
    top-to-bottom run fails."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    problems: list[str] = []
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(list(nb.cells)):
            client.execute_cell(cell, index)
        top_to_bottom = time.perf_counter() - start
        start, cpu = time.perf_counter(), _kernel_cpu_s(client, nb)
        checks = check_cells(nb)
        for name, plants in (wrong_answers or {}).items():
            check = checks[name].source
            _run(client, nb, "SOLUTIONS = False")
            for plant in [f"{name} = None", *plants]:
                if (error := _run(client, nb, plant)) is not None:
                    problems.append(f"{name}: planting {plant!r} raised {error}")
                elif (error := _run(client, nb, check)) != "AssertionError":
                    problems.append(f"{name}: the check {'let' if error is None else f'raised {error} on'} {plant!r}")
        planted, planted_cpu = time.perf_counter() - start, _kernel_cpu_s(client, nb) - cpu
    return top_to_bottom, planted, planted_cpu, problems


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_top_to_bottom_and_its_checks_fail_on_wrong_answers(
        path: Path, monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    monkeypatch.setenv("TOKENFUSION_SOLUTIONS", "1")
    monkeypatch.setenv("TOKENFUSION_CHECKPOINTS", os.environ.get("TOKENFUSION_CHECKPOINTS", str(ROOT / "checkpoints")))
    # One intra-op thread unless told otherwise, as in tests/conftest.py: on a shared 2-core machine
    # a second OpenMP thread spins waiting for a core that another job holds.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    seconds, planted, planted_cpu, problems = execute_notebook(path, WRONG_ANSWERS[path.stem])
    record_property("wall_s", round(seconds, 1))
    record_property("wrong_answers_s", round(planted, 1))
    print(f"{path.name}: {seconds:.1f} s top to bottom; the wrong answers {planted:.1f} s "
          f"({planted_cpu:.1f} s of kernel CPU)")
    assert not problems, "\n".join(problems)
