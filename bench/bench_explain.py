"""Milliseconds per explanation on this CPU, batch 1: a ``tiny`` model at 48 px and a ``small``
model at 224 px (random weights: speed does not depend on them).

    nice python bench/bench_explain.py            # writes bench/results/explain_cpu.json

Targets (tiny): attention maps and fusion weights <= 20 ms, Grad-CAM <= 50 ms, Integrated
Gradients with 32 steps <= 500 ms. Each figure is the median of ``--repeats`` calls after one
warm-up, at ``--threads`` intra-op threads (1 by default: the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.provenance import provenance  # noqa: E402
from tokenfusion.explain import branch_ablation, explain, fusion_weights  # noqa: E402
from tokenfusion.models import create  # noqa: E402

TARGETS_MS = {"attention": 20, "rollout": 20, "fusion_weights": 20, "gradcam": 50, "integrated_gradients": 500}


def cases(model: torch.nn.Module, x: torch.Tensor, heavy: bool) -> dict[str, Callable[[], object]]:
    """The calls to time; ``heavy`` adds ScoreCAM, AblationCAM and Occlusion."""
    run = lambda method, **kw: (lambda: explain(model, x, method, **kw))  # noqa: E731
    calls = {
        "attention": run("attention"),
        "rollout": run("rollout"),
        "fusion_weights": lambda: fusion_weights(model, x),
        "branch_ablation": lambda: branch_ablation(model, x),
        "gradcam": run("gradcam"),
        "gradcam(patch tokens)": run("gradcam", kind="patch"),
        "gradcam++": run("gradcam++"),
        "layercam": run("layercam"),
        "eigencam": run("eigencam"),
        "integrated_gradients": run("integrated_gradients", n_steps=32, internal_batch_size=16),
        "smoothgrad": run("smoothgrad", n_samples=16),
    }
    if heavy:
        calls |= {"scorecam": run("scorecam", batch_size=16), "ablationcam": run("ablationcam", batch_size=16),
                  "occlusion": run("occlusion")}
    return calls


def time_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="early", help="architecture to time (a fusion model has every method)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--small-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/results/explain_cpu.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    command = shlex.join(["python", "bench/bench_explain.py", *(sys.argv[1:] if argv is None else argv)])
    started = provenance(torch.get_num_threads(), command)
    results: dict[str, dict[str, float]] = {}
    sizes = [("tiny", 48, args.repeats, True)]
    if not args.skip_small:
        sizes.append(("small", 224, args.small_repeats, False))
    for size, px, repeats, heavy in sizes:
        model = create(args.arch, size).eval()
        x = torch.randn(1, 3, px, px)
        results[size] = {}
        for name, fn in cases(model, x, heavy).items():
            ms = time_ms(fn, repeats)
            results[size][name] = round(ms, 2)
            target = TARGETS_MS.get(name) if size == "tiny" else None
            verdict = "" if target is None else (f"  (target <= {target} ms: {'ok' if ms <= target else 'MISSED'})")
            print(f"{args.arch:>9} {size:>5} {px:>3}px  {name:<22} {ms:9.1f} ms{verdict}", flush=True)
    report = {
        **started, "arch": args.arch, "batch": 1, "repeats": args.repeats,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "targets_ms": TARGETS_MS, "ms": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
