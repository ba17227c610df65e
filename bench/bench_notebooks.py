"""Time every classroom notebook from a clean kernel, the way ``tests/notebooks`` runs them.

Usage: ``nice python bench/bench_notebooks.py [--threads 1] [--checkpoints DIR] [--merge] [NAME ...]``

Each notebook of ``notebooks/`` runs top to bottom with nbclient in its own folder, in the
exercises' solution mode (``TOKENFUSION_SOLUTIONS=1``), on the shipped checkpoints (or
``--checkpoints``), with ``--threads`` intra-op threads (``OMP_NUM_THREADS``). For each the
script records the wall time, the CPU time of the kernel process (user + system, from
``getrusage(RUSAGE_CHILDREN)`` once the kernel has exited) and the load average before and
after. On a machine that other jobs share, wall time grows with the load while CPU time hardly
does: with one thread, the CPU time is close to the wall time the notebook takes on a quiet
machine. Results go to ``bench/results/notebooks_cpu.json``, with the date, the commit (and whether
the working tree differed from it), the threads and the load average; the target, each notebook
top to bottom within ``TARGET_WALL_S``, is recorded with them. With ``--merge`` and some ``NAME``s,
only those notebooks run: their rows replace theirs in the results file, each with its own command,
date, commit, threads and load average, and every other row is kept as it was.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.provenance import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "bench" / "results" / "notebooks_cpu.json"
TARGET_WALL_S = 180  # each notebook, top to bottom, on a 2-core laptop CPU


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_notebook(path: Path, timeout: int) -> dict[str, float]:
    """Execute ``path`` in a fresh kernel; wall and kernel CPU seconds, load averages (1 min)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    load_before, cpu_before = os.getloadavg()[0], _children_cpu_s()
    start = time.perf_counter()
    client.execute()  # starts the kernel, runs every cell, shuts the kernel down and waits for it
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 1),
        "kernel_cpu_s": round(_children_cpu_s() - cpu_before, 1),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the kernels")
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"), help="TOKENFUSION_CHECKPOINTS")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other notebooks' rows of --out; the rows run now carry their own provenance")
    args = parser.parse_args(argv)
    if args.merge and not args.names:
        parser.error("--merge needs the names of the notebooks to run")
    paths = [NOTEBOOKS / f"{n}.ipynb" for n in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    os.environ.update(TOKENFUSION_SOLUTIONS="1", TOKENFUSION_CHECKPOINTS=str(Path(args.checkpoints).resolve()),
                      OMP_NUM_THREADS=str(args.threads))
    started = provenance(args.threads, shlex.join(["python", "bench/bench_notebooks.py",
                                                   *(argv if argv is not None else sys.argv[1:])]))
    results = []
    for path in paths:
        row = {"notebook": path.name, **run_notebook(path, args.timeout)}
        if args.merge:
            row.update(started)
        print(f"{row['notebook']:>28}: {row['wall_s']:6.1f} s wall, {row['kernel_cpu_s']:6.1f} s kernel CPU, "
              f"load {row['load_1min_before']:.1f} -> {row['load_1min_after']:.1f}", flush=True)
        results.append(row)
    out = Path(args.out)
    if args.merge:
        report = json.loads(out.read_text())
        ran = {row["notebook"]: row for row in results}
        kept = [row for row in report["results"] if row["notebook"] not in ran]
        results = sorted([*kept, *ran.values()], key=lambda row: row["notebook"])
        report.update(results=results, total_wall_s=round(sum(r["wall_s"] for r in results), 1),
                      total_kernel_cpu_s=round(sum(r["kernel_cpu_s"] for r in results), 1))
        out.write_text(json.dumps(report, indent=2) + "\n")
        print("merged into", out)
        return
    report = {
        "benchmark": "classroom notebooks, top to bottom from a clean kernel (nbclient), exercises in solution mode",
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **started,
        "target_wall_s": TARGET_WALL_S,
        "note": "wall_s depends on the machine's load; kernel_cpu_s (user + system CPU of the kernel) "
                "approximates the wall time of a 1-thread run on a quiet machine",
        "results": results,
        "total_wall_s": round(sum(r["wall_s"] for r in results), 1),
        "total_kernel_cpu_s": round(sum(r["kernel_cpu_s"] for r in results), 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
