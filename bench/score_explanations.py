"""Score every explanation method on every checkpoint against SynthShapes masks.

    python bench/score_explanations.py --checkpoints checkpoints/ --images 500 --seed 12345 \\
        --out bench/results/explain_scores.json --markdown

For every checkpoint, every method that applies (:func:`available_methods`) at its default
layer, plus the last layer of each other token kind, explains the ``--target`` class (default:
the true label) of ``--images`` held-out SynthShapes images (``--seed``; training uses other
seeds) and records: pointing game (a blank map is a miss) and energy inside the object mask, the
number of blank maps, deletion and insertion AUC (target probability, ``--steps`` steps,
``--baseline``), the mean Spearman correlation of the cascading randomisation check (lower is
better) over those of the first ``--random-images`` images whose trained map is not blank (a
constant map has no ranks to correlate), and milliseconds per explanation. The JSON file also holds the command, date, commit, threads and
load average; ``python -m train.report`` puts :func:`summary_table` and :func:`target_checks` of
the files into the README.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data import SynthShapes
from tokenfusion.explain import MethodInfo, available_methods, explain
from tokenfusion.explain.metrics import (
    deletion_curve, insertion_curve, is_blank, mask_energy, pointing_game, randomisation_check,
)
from tokenfusion.models import ARCHITECTURES, TokenFusionModel

__all__ = ["variants", "chance_level", "score_checkpoint", "markdown_table", "summary_table", "target_checks", "main"]

COLUMNS = ("pointing_game", "mask_energy", "deletion_auc", "insertion_auc", "randomisation_spearman", "ms_per_image")
#: Methods whose map is computed from gradients: the randomisation check should decorrelate them.
GRADIENT_METHODS = frozenset({"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigengradcam",
                              "gradcam-elementwise", "integrated_gradients", "smoothgrad"})
#: The rows of :func:`summary_table` per model: (method, target), the target ``"default"``, ``"all"``
#: or a token kind (every target of that kind).
SUMMARY = (("rollout", "all"), ("gradcam", "default"), ("gradcam", "patch"), ("layercam", "default"),
           ("scorecam", "default"), ("integrated_gradients", "default"), ("occlusion", "default"))


def variants(
    model: TokenFusionModel, methods: list[str] | None = None
) -> list[tuple[MethodInfo, str | None, str | None]]:
    """``(method, layer, kind)`` to score: each method's default target, then the last target of
    each other token kind (so fusion models are scored on CNN and patch tokens alike)."""
    chosen = []
    for info in available_methods(model):
        if methods is not None and info.name not in methods:
            continue
        pairs = [info.default] + [[t for t in info.targets if t[1] == kind][-1] for kind in info.kinds]
        chosen += [(info, layer, kind) for layer, kind in dict.fromkeys(pairs)]
    return chosen


def chance_level(images: int, seed: int, image_size: int) -> dict[str, float]:
    """What maps that ignore the image score on average over the first ``images`` SynthShapes
    images of ``seed``. ``random``: a map of random values scores the mean share of the image the
    objects cover, in pointing game (no tolerance) and mask energy alike. ``blank_pointing``,
    ``blank_energy``: the scores of a blank (all-zero) map, :func:`pointing_game` and
    :func:`mask_energy` applied to it."""
    data = SynthShapes(images, image_size=image_size, seed=seed)
    masks = [torch.from_numpy(data.sample(i).mask) for i in range(images)]
    blank = torch.zeros(image_size, image_size)
    return {"random": sum(float(m.float().mean()) for m in masks) / images,
            "blank_pointing": sum(pointing_game(blank, m) for m in masks) / images,
            "blank_energy": sum(mask_energy(blank, m) for m in masks) / images}


def score_checkpoint(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per ``(method, layer, kind)`` with the mean of each score over the images."""
    checkpoint = load_checkpoint(path)
    model = checkpoint.model.eval()
    config = model.config
    data = SynthShapes(args.images, image_size=config.img_size, seed=args.seed)
    chosen = variants(model, args.methods)
    sums: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i in tqdm(range(len(data)), desc=path.name, unit="img"):
        image, label = data[i]
        mask = torch.from_numpy(data.sample(i).mask)
        x = TF.normalize(image, list(config.mean), list(config.std))[None]
        with torch.no_grad():
            predicted = int(model(x).argmax())
        target = label if args.target == "label" else predicted
        for info, layer, kind in chosen:
            options = {"kind": kind} if kind is not None else {}
            e = explain(model, x, info.name, layer, target, **options)
            row = sums[(info.name, e.layer if info.name != "rollout" else None, kind)]
            blank = is_blank(e.map)
            row["pointing_game"].append(pointing_game(e.map, mask, args.tolerance))
            row["blank_maps"].append(float(blank))
            row["mask_energy"].append(mask_energy(e.map, mask))
            curve = dict(steps=args.steps, baseline=args.baseline)
            row["deletion_auc"].append(deletion_curve(model, x, e.map, target, **curve).auc)
            row["insertion_auc"].append(insertion_curve(model, x, e.map, target, **curve).auc)
            row["ms_per_image"].append(1000 * e.seconds)
            row["correct"].append(float(predicted == label))
            if i < args.random_images and not blank:  # a blank map has no ranks to correlate
                fn = lambda m, x, n=info.name, l=layer, o=options: explain(m, x, n, l, target, **o)  # noqa: E731
                check = randomisation_check(model, x, fn, steps=args.random_steps, seed=args.seed, reference=e)
                row["randomisation_spearman"].append(check.mean)
    rows = []
    for (method, layer, kind), values in sums.items():
        row = dict(checkpoint=path.name, arch=config.arch, size=config.size, method=method, layer=layer, kind=kind,
                   images=len(values["ms_per_image"]), accuracy=_mean(values["correct"]),
                   blank_maps=int(sum(values["blank_maps"])),
                   randomisation_images=len(values["randomisation_spearman"]))
        row.update({c: _mean(values[c]) for c in COLUMNS})
        rows.append(row)
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (pointing game and energy: higher is better; deletion AUC and
    randomisation Spearman: lower is better; insertion AUC: higher is better; blank: images whose
    map is blank, each a miss in the pointing game)."""
    head = ["checkpoint", "method", "layer", "kind", "pointing ↑", "blank", "energy ↑", "deletion ↓",
            "insertion ↑", "rand. ρ ↓", "ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["checkpoint"], r["method"], r["layer"] or "", r["kind"] or ""]
        cells += _score_cells(r, ".3f") + [f"{r['ms_per_image']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _score_cells(row: dict[str, Any], spec: str) -> list[str]:
    """Pointing game, blank maps (of the row's images), then the other scores but time, formatted by ``spec``."""
    cells = ["" if row[c] is None else format(row[c], spec) for c in COLUMNS[:-1]]
    blank = "" if row.get("blank_maps") is None else f"{row['blank_maps']}/{row['images']}"  # absent in old files
    return cells[:1] + [blank] + cells[1:]


def _target_name(row: dict[str, Any]) -> str:
    if row["layer"] is None:
        return f"{row['kind']} tokens" if row["kind"] else "pixels"
    if row["layer"].startswith("trunk."):
        return "CNN feature map"
    return f"{row['kind']} tokens, `{row['layer']}`"


def _default_rows(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """The row of ``method`` at its default target, per checkpoint (:func:`score_checkpoint`
    writes each method's default target first)."""
    first: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["method"] == method:
            first.setdefault(r["checkpoint"], r)
    return list(first.values())


def _summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen = []
    rows = sorted(rows, key=lambda r: ARCHITECTURES.index(r["arch"]))
    for checkpoint in dict.fromkeys(r["checkpoint"] for r in rows):
        mine = [r for r in rows if r["checkpoint"] == checkpoint]
        for method, which in SUMMARY:
            if which == "default":
                candidates = _default_rows(mine, method)
            else:
                candidates = [r for r in mine if r["method"] == method and which in ("all", r["kind"])]
            chosen += [r for r in candidates if r not in chosen]
    return chosen


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A selection of ``rows`` (from one or several score files) for the README: per model,
    rollout per token kind, Grad-CAM at its default layer and on the last patch tokens, LayerCAM,
    ScoreCAM, Integrated Gradients and Occlusion, with the count of blank maps."""
    head = ("| model (top-1 here) | method | target | pointing ↑ | blank | energy ↑ | deletion ↓ | insertion ↑ "
            "| rand. ρ ↓ | ms |")
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _summary_rows(rows):
        cells = [f"`{r['arch']}` ({100 * r['accuracy']:.0f}%)", r["method"], _target_name(r)]
        cells += _score_cells(r, ".2f") + [f"{r['ms_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_checks(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, checked on every row: Grad-CAM pointing game >= 0.90 (default layer),
    insertion AUC > deletion AUC, randomisation correlation < 0.3 for gradient methods. One
    Markdown bullet per target, naming every miss."""
    def where(r: dict[str, Any]) -> str:
        return f"`{r['arch']}` {r['method']} on {_target_name(r)}"

    checks = [
        ("Grad-CAM pointing game >= 0.90 (default layer)", _default_rows(rows, "gradcam"), lambda r: r["pointing_game"] >= 0.9,
         lambda r: f"{r['pointing_game']:.2f}"),
        ("insertion AUC > deletion AUC", rows, lambda r: r["insertion_auc"] > r["deletion_auc"],
         lambda r: f"{r['insertion_auc']:.2f} vs {r['deletion_auc']:.2f}"),
        ("randomisation ρ < 0.3 for gradient-based methods",
         [r for r in rows if r["method"] in GRADIENT_METHODS and r["randomisation_spearman"] is not None],
         lambda r: r["randomisation_spearman"] < 0.3, lambda r: f"{r['randomisation_spearman']:.2f}"),
    ]
    lines = []
    for name, subset, passes, value in checks:
        misses = [r for r in subset if not passes(r)]
        line = f"- {name}: met by {len(subset) - len(misses)} of {len(subset)}"
        lines.append(line + (". Missed by " + "; ".join(f"{where(r)} ({value(r)})" for r in misses) if misses else "") + ".")
    return lines


def _commit() -> str | None:
    """The repository's HEAD commit, None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/score_explanations.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="checkpoint files or folders of *.pt")
    p.add_argument("--images", type=int, default=500, help="held-out SynthShapes images per checkpoint")
    p.add_argument("--seed", type=int, default=12345, help="SynthShapes seed of the held-out images")
    p.add_argument("--out", type=Path, default=Path("bench/results/explain_scores.json"))
    p.add_argument("--markdown", action="store_true", help="print the table and write it beside --out as .md")
    p.add_argument("--methods", nargs="+", help="only these methods (default: every method that applies)")
    p.add_argument("--target", choices=["label", "pred"], default="label", help="class to explain")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    p.add_argument("--baseline", choices=["blur", "mean"], default="blur", help="deletion/insertion baseline")
    p.add_argument("--tolerance", type=int, default=0, help="pointing-game tolerance in pixels")
    p.add_argument("--random-images", type=int, default=20, help="first images that get the randomisation check (blank maps skipped)")
    p.add_argument("--random-steps", type=int, default=4, help="cascade cuts per randomisation check")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = []
    for p in args.checkpoints:
        paths += sorted(p.glob("*.pt")) if p.is_dir() else [p]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        print(f"error: no checkpoints to score (missing: {missing or [str(p) for p in args.checkpoints]}). "
              "Pass .pt files or a folder holding them.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = [row for path in paths for row in score_checkpoint(path, args)]
    report = {
        "command": "python bench/score_explanations.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "settings": {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "checkpoints" else v)
                     for k, v in vars(args).items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average": os.getloadavg()},
        "seconds": time.perf_counter() - start,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    if args.markdown:
        table = markdown_table(rows)
        args.out.with_suffix(".md").write_text(f"`{report['command']}`\n\n{table}\n")
        print(table)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
