"""Run the seeded mutation fuzzer of ``tests/test_fuzz.py`` and record what it found.

Usage: ``python bench/bench_fuzz.py [--seed 1201] [--checkpoints 320] [--images 360] [--threads 1]``

Loads every mutated checkpoint and image exactly as the test does, and writes to
``bench/results/fuzz_cpu.json``: the number of cases, the outcomes (loaded / refused with the plain
error / failed with anything else) per file kind and per kind of mutation, the most common refusal
messages, the slowest cases, the peak memory a case added (resident set, from ``/proc/self/status``
after resetting its high-water mark; torch's allocations are invisible to ``tracemalloc``) and the
process's peak resident memory (``resource``), with the date, commit, threads and load average.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import re
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import PIL
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.provenance import load_average, provenance  # noqa: E402
from tests.test_fuzz import (  # noqa: E402
    CHECKPOINT_CASES,
    IMAGE_CASES,
    MEMORY_LIMIT_MB,
    SEED,
    TIME_LIMIT_S,
    Outcome,
    checkpoint_cases,
    image_cases,
    run_cases,
)

RESULTS = REPO / "bench" / "results" / "fuzz_cpu.json"


def _message_kind(message: str) -> str:
    """A refusal message without its particulars (file name, numbers, quoted values), to count kinds."""
    text = message.removeprefix("fuzzed.pt").strip(" :")
    text = re.split(r"[(:;]", text, maxsplit=1)[0]
    return re.sub(r"-?\d[\d,.e+-]*", "N", text).strip()[:80]


def summarise(outcomes: list[Outcome], seconds: float) -> dict[str, object]:
    """Counts, slowest cases and memory of one kind of file."""
    slowest = sorted(outcomes, key=lambda o: -o.seconds)[:5]
    heaviest = max(outcomes, key=lambda o: o.peak_mb)
    return {
        "cases": len(outcomes),
        "outcomes": dict(Counter(o.result for o in outcomes)),
        "outcomes_per_mutation": {
            family: dict(Counter(o.result for o in outcomes if o.case.family == family))
            for family in sorted({o.case.family for o in outcomes})
        },
        "refusals": dict(Counter(_message_kind(o.message) for o in outcomes if o.result == "refused").most_common(12)),
        "failures": [f"{o.case.name}: {o.message[:300]}" for o in outcomes if o.result == "failed"],
        "total_s": round(seconds, 2),
        "median_case_ms": round(1000 * sorted(o.seconds for o in outcomes)[len(outcomes) // 2], 2),
        "slowest": [{"case": o.case.name, "result": o.result, "seconds": round(o.seconds, 3)} for o in slowest],
        "peak_added_mb": round(heaviest.peak_mb, 1),
        "peak_added_by": heaviest.case.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--checkpoints", type=int, default=CHECKPOINT_CASES, help="mutated checkpoints")
    parser.add_argument("--images", type=int, default=IMAGE_CASES, help="mutated images")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # PIL warns about each damaged TIFF tag; the outcomes say what happened
    started = provenance(args.threads)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind, make, count in (("checkpoint", checkpoint_cases, args.checkpoints), ("image", image_cases, args.images)):
            start = time.perf_counter()
            cases = list(make(args.seed, count))
            made = time.perf_counter() - start
            start = time.perf_counter()
            outcomes = run_cases(iter(cases), Path(folder))
            report[kind] = {**summarise(outcomes, time.perf_counter() - start), "generate_s": round(made, 2)}
            print(f"{kind}: {len(outcomes)} cases {report[kind]['outcomes']} in {report[kind]['total_s']} s; "
                  f"slowest {report[kind]['slowest'][0]}; peak added {report[kind]['peak_added_mb']} MB", flush=True)
    scale = 1 if sys.platform == "darwin" else 1024
    record = {
        "benchmark": "seeded mutation fuzzing of checkpoints (load_checkpoint + one forward) and images (load_image)",
        **report,
        "seed": args.seed,
        "time_limit_s": TIME_LIMIT_S,
        "memory_limit_mb": MEMORY_LIMIT_MB,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1),
        **started,
        "load_average_after": load_average(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "pillow": PIL.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    failed = sum(len(report[k]["failures"]) for k in ("checkpoint", "image"))
    print(f"{failed} failures; load average {record['load_average']} -> {record['load_average_after']}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
