"""Benchmark SynthShapes generation speed on one CPU core.

Usage: ``python bench/bench_synthshapes.py [--sizes 48 64] [--num 1000] [--repeats 10]``

Prints images/s for ``render_sample`` (raw numpy sample) and ``SynthShapes.__getitem__``
(float tensor) per image size, and writes them to ``bench/results/synthshapes.json``.
The reported figure is the best of ``--repeats`` timed runs (the least disturbed by other
processes); the median and the rate per CPU second (``time.process_time``, which other
processes on a shared machine disturb less) are recorded too.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.provenance import provenance  # noqa: E402
from tokenfusion.data.synthshapes import SynthShapes, render_sample  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "synthshapes.json"


def _rates(fn: Callable[[int], object], num: int, repeats: int) -> tuple[list[float], list[float]]:
    """Images per wall-clock second and per CPU second of ``fn(i) for i in range(num)``, once per repeat."""
    for i in range(min(num, 100)):
        fn(i)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(num):
            fn(i)
        wall.append(num / (time.perf_counter() - start))
        cpu.append(num / (time.process_time() - start_cpu))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 64])
    parser.add_argument("--num", type=int, default=1000, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(1)
    started = provenance(1)

    results = []
    for size in args.sizes:
        dataset = SynthShapes(args.num, image_size=size)
        for name, fn in (
            ("render_sample", lambda i, size=size: render_sample(0, i, size)),
            ("dataset_getitem", dataset.__getitem__),
        ):
            wall, cpu = _rates(fn, args.num, args.repeats)
            best, median, best_cpu = max(wall), statistics.median(wall), max(cpu)
            results.append(
                {
                    "image_size": size,
                    "function": name,
                    "images_per_s": round(best, 1),
                    "median_images_per_s": round(median, 1),
                    "images_per_cpu_s": round(best_cpu, 1),
                    "us_per_image": round(1e6 / best, 1),
                }
            )
            print(
                f"{size:4d} px  {name:16s} {best:6.0f} images/s  (median {median:.0f}; "
                f"{best_cpu:.0f} per CPU second; {1e6 / best:.0f} us/image)"
            )

    record = {
        "benchmark": "SynthShapes generation, single thread, one core",
        "results": results,
        "num_per_run": args.num,
        "repeats": args.repeats,
        "statistic": "best of repeats, wall clock (median and per-CPU-second rates also given)",
        **started,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
