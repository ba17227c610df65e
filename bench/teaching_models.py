"""The teaching models over their training seeds: held-out top-1, the cue-conflict split and, for the
models that make tokens (the ViT and the fusion models), every token intervention of each kind, for the README.

Usage: ``python bench/teaching_models.py [--seeds 0 1 2] [--samples 2000] [--threads 1] [--attempts]``

Every model of ``train.teach.TEACHING_MODELS`` (the five architectures and the greedy control). Seed
0 is the shipped checkpoint (``checkpoints/NAME.pt``), seed S the one ``python -m train.teach
--seeds ...`` wrote to ``runs/seeds/S/NAME.pt`` (kept as figures here, not shipped). Writes
``bench/results/teaching_models.json`` (one row per model and seed, with the validation top-1 and learning
rate after each training epoch) with the date, commit, threads and
load average; ``python -m bench.report --write`` renders it (mean and sd over the seeds).

``--attempts``: the counter-measures tried and not shipped (``train.teach.ATTEMPTS``, from
``runs/attempts/S/NAME.pt``; those not trained from a seed are named and skipped) instead, measured the
same way into ``bench/results/teaching_attempts.json``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/ is a folder of the repository, not part of the installed library
from bench.provenance import provenance  # noqa: E402
from tokenfusion.checkpoint import load_checkpoint  # noqa: E402
from train.evaluate import evaluate_checkpoint  # noqa: E402
from train.teach import ATTEMPTS, MODELS, TEACHING_MODELS  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "teaching_models.json"
ATTEMPT_RESULTS = ROOT / "bench" / "results" / "teaching_attempts.json"


def checkpoint_of(name: str, seed: int, checkpoints: Path, seed_runs: Path, attempts: Path) -> Path:
    """Where the teaching model or attempt ``name`` of training seed ``seed`` lies (seed 0 ships)."""
    if name in ATTEMPTS:
        return attempts / str(seed) / f"{name}.pt"
    return checkpoints / f"{name}.pt" if seed == 0 else seed_runs / str(seed) / f"{name}.pt"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--seed-runs", type=Path, default=ROOT / "runs" / "seeds")
    parser.add_argument("--samples", type=int, default=2000, help="held-out and cue-conflict images (seed 12345)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--attempts", action="store_true", help="measure train.teach.ATTEMPTS instead")
    parser.add_argument("--attempt-runs", type=Path, default=ROOT / "runs" / "attempts")
    parser.add_argument("--out", type=Path, help="results file (default: bench/results/teaching_models.json, "
                                                 "or teaching_attempts.json with --attempts)")
    args = parser.parse_args(argv)
    models = ATTEMPTS if args.attempts else TEACHING_MODELS
    out = args.out or (ATTEMPT_RESULTS if args.attempts else RESULTS)
    torch.set_num_threads(args.threads)
    started = provenance(args.threads, shlex.join(["python", "bench/teaching_models.py",
                                                   *(argv if argv is not None else sys.argv[1:])]))
    rows = []
    for seed in args.seeds:
        for name in models:
            arch, options = MODELS[name]
            path = checkpoint_of(name, seed, args.checkpoints, args.seed_runs, args.attempt_runs)
            if args.attempts and not path.exists():  # an attempt may have been trained from fewer seeds
                print(f"{name:>12} seed {seed}: not trained ({path} missing)", flush=True)
                continue
            begin = time.perf_counter()
            result = evaluate_checkpoint(path, samples=args.samples, ablate_tokens=True)
            record = load_checkpoint(path).training
            row = {"model": name, "arch": arch, "options": list(options), "seed": seed, "checkpoint": path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT)
                   else str(path), **{k: result[k] for k in ("top1", "top5", "shape", "texture", "conflict")},
                   "interventions": result.get("interventions"), "train_seconds": record["train_seconds"],
                   "images_seen": record["epochs_done"] * record["train_samples"],
                   "history": [{k: h[k] for k in ("epoch", "top1", "lr")} for h in record["history"]],
                   "seconds": round(time.perf_counter() - begin, 1)}
            rows.append(row)
            print(f"{name:>12} seed {seed}: top-1 {row['top1']:.2f}%, cue conflict {row['conflict']['top1']:.2f}%"
                  + "".join(f", {kind} {values}" for kind, values in (row["interventions"] or {}).items()), flush=True)
    report = {
        **started, "torch": torch.__version__, "samples": args.samples, "heldout_seed": rows[0]["conflict"]["seed"],
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
