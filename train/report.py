"""``python -m train.report``: the results table of the shipped teaching models, from their checkpoints.

Prints a Markdown table (held-out top-1, parameters, FLOPs, epochs, training time) and, with
``--readme``, writes it into README.md between the ``results`` markers.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES, count_flops, count_parameters

__all__ = ["results_table", "main"]

START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_table(folder: str | Path) -> str:
    """One Markdown row per ``ARCH.pt`` in ``folder``, in the order of ``ARCHITECTURES``."""
    rows = [
        "| model | held-out top-1 | held-out top-5 | params | MFLOPs | epochs | images seen | train time | train img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seeds = set()
    for arch in ARCHITECTURES:
        path = Path(folder) / f"{arch}.pt"
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        t, held = ckpt.training, ckpt.training["heldout"]
        seeds.add((held["seed"], held["samples"]))
        history = t["history"]
        speed = sum(h["images_per_s"] for h in history) / len(history)
        rows.append(
            f"| `{arch}` | {held['top1']:.1f}% | {held['top5']:.1f}% | {count_parameters(ckpt.model) / 1e3:.0f} k "
            f"| {count_flops(ckpt.model) / 1e6:.0f} | {t['epochs_done']} | {t['epochs_done'] * t['train_samples'] / 1e3:.0f} k "
            f"| {t['train_seconds'] / 60:.1f} min | {speed:.0f} |"
        )
    note = ", ".join(f"{n} SynthShapes images of seed {s}" for s, n in sorted(seeds))
    return "\n".join(rows) + f"\n\nHeld-out: {note}, never seen in training (seed 0) or validation (seed 1).\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--readme", default=None, help="README.md to update between the results markers")
    args = parser.parse_args(argv)
    table = results_table(args.checkpoints)
    print(table)
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        if START not in text or END not in text:
            raise SystemExit(f"{readme} has no {START} ... {END} block to fill")
        readme.write_text(re.sub(f"{re.escape(START)}.*?{re.escape(END)}", f"{START}\n{table}{END}", text, flags=re.S))
        print(f"updated {readme}")


if __name__ == "__main__":
    main()
