"""Every measure of ``python -m tokenfusion.analyze`` over held-out SynthShapes, on this CPU.

    python bench/bench_analysis.py                  # writes bench/results/analysis_cpu.json

Three runs of the real command, each in its own one-thread process (its wall time, CPU time and
peak resident memory read from ``os.wait4``): first, alone, the five shipped models over ``--images``
(2,000) images (target: at most 2 minutes on the 2-core CPU); then, side by side, the same over ``--memory-images``
(20,000) to show that memory stays flat (target: peak within 10% of the first run's); and the five
``small`` models at 224 px with random weights over ``--small-images`` (64) images, to size a run
over ImageNet ``val/`` (seconds per image and model). The machine is shared: the load average
before the runs is recorded, and the CPU time (user + system) beside the wall time says how much of
the wall was spent waiting for a core. The results file is written again as each run ends, so a run
cut short keeps those that finished (``unfinished`` names the others). Each run's per-measure seconds come
from its ``analysis.json``; the first run's is kept as ``bench/results/analysis_synthshapes.json``
(the README's "What the shipped models show over a data set" is written from it).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.provenance import provenance  # noqa: E402
from tokenfusion.checkpoint import save_checkpoint  # noqa: E402
from tokenfusion.data import CLASS_NAMES  # noqa: E402
from tokenfusion.models import ARCHITECTURES, create  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "analysis_cpu.json"
ANALYSIS = ROOT / "bench" / "results" / "analysis_synthshapes.json"  # the 2,000-image run's analysis.json
TARGETS = {"seconds_2000_max": 120, "peak_rss_ratio_max": 1.10}


#: How the runs share the machine.
ORDER = "tiny alone, then tiny_memory and small side by side"


def start(checkpoints: list[Path], images: int, batch_size: int, threads: int, out: Path) -> dict:
    """Start one ``python -m tokenfusion.analyze`` process; :func:`finish` reads it back."""
    command = [sys.executable, "-m", "tokenfusion.analyze", "--checkpoints", *map(str, checkpoints),
               "--images", str(images), "--batch-size", str(batch_size), "--threads", str(threads),
               "--device", "cpu", "--out", str(out)]
    child = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                             stderr=subprocess.DEVNULL)
    return {"child": child, "out": out, "images": images, "batch_size": batch_size, "load": os.getloadavg()[0],
            "start": time.perf_counter()}


def finish(runs: dict[str, dict], write: Callable[[dict[str, dict]], None]) -> dict[str, dict]:
    """Wait for every started run (``os.wait4`` on whichever ends first: its own wall time, CPU time and
    peak RSS); ``write(rows so far)`` after each."""
    rows = {}
    by_pid = {run["child"].pid: name for name, run in runs.items()}
    while by_pid:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in by_pid:
            continue
        name = by_pid.pop(pid)
        run = runs[name]
        wall = time.perf_counter() - run["start"]
        if status != 0:
            raise SystemExit(f"the {name} run failed ({status})")
        report = json.loads((run["out"] / "analysis.json").read_text())
        rows[name] = {"images": run["images"], "batch_size": run["batch_size"], "models": list(report["models"]),
                      "wall_s": round(wall, 1), "per_measure_s": {k: round(v, 1) for k, v in report["seconds"].items()},
                      "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                      "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_1min_before": run["load"]}
        print(name, json.dumps(rows[name]), flush=True)
        write(rows)
    return rows


def import_rss_mb(threads: int) -> float:
    """Peak resident memory of a process that only imports the command (torch, torchvision, the
    explanation libraries): the floor under every run's peak."""
    child = subprocess.Popen([sys.executable, "-c", "import tokenfusion.analyze"], cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit("importing tokenfusion.analyze failed")
    return round(usage.ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--memory-images", type=int, default=20000)
    parser.add_argument("--small-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--small-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--analysis-out", type=Path, default=ANALYSIS, help="where the first run's analysis.json goes")
    args = parser.parse_args(argv)
    shipped = [ROOT / "checkpoints" / f"{arch}.pt" for arch in ARCHITECTURES]
    started = provenance(args.threads, shlex.join(["python", "bench/bench_analysis.py",
                                                   *(sys.argv[1:] if argv is None else argv)]))
    floor = import_rss_mb(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = []
        if args.small_images:
            for arch in ARCHITECTURES:
                torch.manual_seed(0)
                small.append(save_checkpoint(tmp / "small" / f"{arch}.pt", create(arch, "small", num_classes=12),
                                             class_names=CLASS_NAMES))
        planned = ["tiny", "tiny_memory", *(["small"] if small else [])]
        rows: dict[str, dict] = {}

        def write(done: dict[str, dict]) -> None:
            rows.update(done)
            report = {
                **started, "torch": torch.__version__, "order": ORDER, "targets": TARGETS, **rows,
                "unfinished": [name for name in planned if name not in rows], "import_rss_mb": floor,
                "rss_growth_over_import_mb": {k: round(rows[k]["peak_rss_mb"] - floor, 1) for k in rows},
            }
            if "tiny" in rows and "tiny_memory" in rows:
                report["peak_rss_ratio"] = round(rows["tiny_memory"]["peak_rss_mb"] / rows["tiny"]["peak_rss_mb"], 3)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))
            if "tiny" in rows:
                shutil.copyfile(tmp / "tiny" / "analysis.json", args.analysis_out)

        # the timed run alone (its target is wall time), then the memory run and the small models together
        finish({"tiny": start(shipped, args.images, args.batch_size, args.threads, tmp / "tiny")}, write)
        rest = {"tiny_memory": start(shipped, args.memory_images, args.batch_size, args.threads, tmp / "memory")}
        if small:
            rest["small"] = start(small, args.small_images, args.small_batch_size, args.threads, tmp / "small_out")
        finish(rest, write)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
