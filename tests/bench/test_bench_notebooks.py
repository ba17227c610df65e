"""``bench/bench_notebooks.py --merge``: it times only the notebooks named, keeps every other row of the
results file as it was, and the rows it writes carry their own command, date and commit, which
``python -m bench.report`` quotes for them."""
import datetime
import json

import nbformat
import pytest

import bench.bench_notebooks as bench_notebooks
from bench.provenance import commit
from bench.report.benchmarks import notebook_runtime, notebook_times


@pytest.fixture
def one_notebook(tmp_path, monkeypatch):
    """A folder of notebooks holding one that prints a line, and a results file of two earlier rows."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "02_b.ipynb")
    monkeypatch.setattr(bench_notebooks, "NOTEBOOKS", folder)
    for name in ("TOKENFUSION_SOLUTIONS", "TOKENFUSION_CHECKPOINTS", "OMP_NUM_THREADS"):  # main() sets them
        monkeypatch.setenv(name, "")
    earlier = {"command": "python bench/bench_notebooks.py --threads 1", "date": "2026-11-30T10:00:00+00:00",
               "commit": "a" * 40, "threads": 1, "load_average": [1.0, 1.0, 1.0], "target_wall_s": 180,
               "results": [{"notebook": name, "wall_s": 10.0, "kernel_cpu_s": 5.0, "load_1min_before": 1.0,
                            "load_1min_after": 1.0} for name in ("01_a.ipynb", "02_b.ipynb")]}
    out = tmp_path / "bench" / "results" / "notebooks_cpu.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(earlier))
    return tmp_path, out, earlier


def test_merge_replaces_only_the_rows_run_and_the_report_quotes_their_own_run(one_notebook):
    root, out, earlier = one_notebook
    bench_notebooks.main(["02_b", "--merge", "--threads", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    first, second = report["results"]
    assert first == earlier["results"][0]
    assert second["notebook"] == "02_b.ipynb" and second["kernel_cpu_s"] > 0 and second["threads"] == 1
    assert second["command"].endswith("--merge --threads 1 --out " + str(out))
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert second["date"][:10] == today and second["commit"] == commit()  # this run's own
    assert report["command"] == earlier["command"] and report["date"] == earlier["date"]
    assert report["total_kernel_cpu_s"] == pytest.approx(first["kernel_cpu_s"] + second["kernel_cpu_s"], abs=0.11)
    assert second["command"] in notebook_runtime(root, "02_b.ipynb")
    assert earlier["command"] in notebook_runtime(root, "01_a.ipynb")
    assert f"`02_b.ipynb`: `{second['command']}` (run {second['date'][:10]}" in notebook_times(root)


def test_merge_needs_the_notebooks_to_run(one_notebook):
    _, out, _ = one_notebook
    with pytest.raises(SystemExit):
        bench_notebooks.main(["--merge", "--out", str(out)])
