"""The explanation scores' summary and how long scoring took, from ``bench/results/explain_scores_*.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bench.score_explanations import commands, controls_note, summary_table, target_checks
from tokenfusion.explain import mask_energy, pointing_game
from tokenfusion.viz.duration import duration

from .sources import RESULTS

__all__ = ["score_times", "scores_table"]


def scores_table(paths: list[Path]) -> str:
    """The summary of the score files ``paths``: the selected rows with each model's two controls,
    the tolerance and the controls in words with the figures the files measured, then every target
    checked."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    rows = [row for report in reports for row in report["results"]]
    images = sorted({row["images"] for row in rows})
    made = "\n".join(f"    {command}" for report in reports for command in commands(report))
    blank = torch.zeros(2, 2)
    on_object = torch.ones(2, 2, dtype=torch.bool)  # the most favourable mask: the whole image
    return (f"{summary_table(rows)}\n\n{controls_note(rows)} A blank map (constant, which the methods draw all "
            f"zero, such as Grad-CAM's when no weighted channel is positive) points nowhere and has no mass: it "
            f"scores {pointing_game(blank, on_object):.2f} on the pointing game and "
            f"{mask_energy(blank, on_object):.2f} energy, whatever the mask. The `blank` column counts the images "
            f"whose map is blank; a row with b blank maps of n points into the object at most 1 - b/n of the time."
            f"\n\n"
            f"Targets, checked on every scored method and layer ({', '.join(map(str, images))} "
            f"held-out images per model):\n\n" + "\n".join(target_checks(rows)) +
            f"\n\nEvery row: `bench/results/explain_scores_*.md`. Produced by\n\n{made}\n")


def score_times(root: Path) -> str:
    """How long each explanation-score file took to make, from its ``seconds``."""
    reports = {p.stem.removeprefix("explain_scores_"): json.loads(p.read_text())
               for p in sorted((root / RESULTS).glob("explain_scores_*.json"))}
    def scoring(arch: str, report: dict[str, Any]) -> str:
        updates = "".join(f", then {duration(u['seconds'])} rescoring {', '.join(u['settings']['methods'])}"
                          for u in report.get("updates", []))
        return f"{duration(report['seconds'])} for `{arch}`{updates}"
    return ("Scoring took " + "; ".join(scoring(arch, r) for arch, r in reports.items())
            + " (the `seconds` of each file).\n")

