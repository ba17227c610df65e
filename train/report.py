"""``python -m train.report``: the tables of the shipped teaching models, from their files.

Prints two Markdown tables and, with ``--readme``, writes them into README.md between their
markers: ``results`` (held-out top-1, parameters, FLOPs, epochs, training time, from the
checkpoints) and ``explain-scores`` (a selection of the explanation scores and the issue's
targets checked on every row, from the JSON files of ``python bench/score_explanations.py``).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench.score_explanations import chance_level, summary_table, target_checks
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES, count_flops, count_parameters

__all__ = ["results_table", "scores_table", "fill_block", "main"]


def results_table(folder: str | Path) -> str:
    """One Markdown row per ``ARCH.pt`` in ``folder``, in the order of ``ARCHITECTURES``."""
    rows = [
        "| model | held-out top-1 | top-5 | shape alone | texture alone | params | MFLOPs | epochs | images seen "
        "| train time | train img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"| `{arch}` | {held['top1']:.1f}% | {held['top5']:.1f}% | {held['shape']:.1f}% | {held['texture']:.1f}% "
            f"| {count_parameters(ckpt.model) / 1e3:.0f} k "
            f"| {count_flops(ckpt.model) / 1e6:.0f} | {t['epochs_done']} | {t['epochs_done'] * t['train_samples'] / 1e3:.0f} k "
            f"| {t['train_seconds'] / 60:.1f} min | {speed:.0f} |"
        )
    note = ", ".join(f"{n} SynthShapes images of seed {s}" for s, n in sorted(seeds))
    return "\n".join(rows) + (f"\n\nHeld-out: {note}, never seen in training (seed 0) or validation (seed 1). "
                               "Shape (texture) alone: predictions whose shape (texture) is right, whatever the other cue.\n")


def scores_table(paths: list[Path]) -> str:
    """The summary of the score files ``paths``: the selected rows, then every target checked."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    rows = [row for report in reports for row in report["results"]]
    images = sorted({row["images"] for row in rows})
    scored = {(r["settings"]["images"], r["settings"]["seed"], load_checkpoint(path).config.img_size)
              for r in reports for path in r["settings"]["checkpoints"]}
    levels = [chance_level(*key) for key in sorted(scored)]
    chance = ", ".join(f"{100 * level['random']:.0f}%" for level in levels)
    blank = ", ".join(f"{level['blank_pointing']:.2f} on the pointing game and {level['blank_energy']:.2f} energy"
                      for level in levels)
    commands = "\n".join(f"    {report['command']}" for report in reports)
    return (f"{summary_table(rows)}\n\nChance: the objects cover {chance} of these images on average, so a map that "
            f"ignores the image scores about that on the pointing game and the energy. A blank map (constant, "
            f"such as Grad-CAM's when no weighted channel is positive) points nowhere: it scores {blank}. The "
            f"`blank` column counts the images whose map is blank; a row with b blank maps of n points into the "
            f"object at most 1 - b/n of the time.\n\n"
            f"Targets, checked on every scored method and layer ({', '.join(map(str, images))} "
            f"held-out images per model):\n\n" + "\n".join(target_checks(rows)) +
            f"\n\nEvery row: `bench/results/explain_scores_*.md`. Produced by\n\n{commands}\n")


def fill_block(text: str, name: str, content: str) -> str:
    """``text`` with everything between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} block to fill")
    return re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: f"{start}\n{content}{end}", text, flags=re.S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--scores", type=Path, nargs="*", help="score files (default: bench/results/explain_scores_*.json)")
    parser.add_argument("--readme", default=None, help="README.md to update between the results/explain-scores markers")
    args = parser.parse_args(argv)
    blocks = {"results": results_table(args.checkpoints)}
    scores = args.scores if args.scores is not None else sorted(Path("bench/results").glob("explain_scores_*.json"))
    if scores:
        blocks["explain-scores"] = scores_table(scores)
    print("\n".join(blocks.values()))
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        try:
            for name, content in blocks.items():
                text = fill_block(text, name, content)
        except ValueError as error:
            raise SystemExit(f"{readme}: {error}") from None
        readme.write_text(text)
        print(f"updated {readme}")


if __name__ == "__main__":
    main()
