"""Held-out top-1 of each shipped fusion model with every CNN token, or every patch token, replaced by
their mean (``train.evaluate``'s branch ablation), for the README.

Usage: ``python bench/branch_ablation.py [--checkpoints DIR] [--samples 2000] [--threads 1]``

Writes ``bench/results/branch_ablation.json`` with the date, commit, threads and load average;
``python -m train.report --write`` quotes it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/ is a folder of the repository, not part of the installed library
from bench.provenance import provenance  # noqa: E402
from train.evaluate import evaluate_checkpoint  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "branch_ablation.json"
FUSION = ("late", "early", "layerwise")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    parser.add_argument("--samples", type=int, default=2000, help="held-out SynthShapes images (seed 12345)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = provenance(args.threads)
    rows = []
    for arch in FUSION:
        result = evaluate_checkpoint(Path(args.checkpoints) / f"{arch}.pt", samples=args.samples, ablate_tokens=True)
        rows.append({"arch": arch, **{k: result[k] for k in ("top1", "top1_without_cnn_tokens", "top1_without_patch_tokens")}})
        print(f"{arch:>10}: top-1 {rows[-1]['top1']:.2f}%, without CNN tokens {rows[-1]['top1_without_cnn_tokens']:.2f}%, "
              f"without patch tokens {rows[-1]['top1_without_patch_tokens']:.2f}%", flush=True)
    report = {
        "command": shlex.join(["python", "bench/branch_ablation.py", *(argv if argv is not None else sys.argv[1:])]),
        **started, "torch": torch.__version__,
        "samples": args.samples, "results": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
