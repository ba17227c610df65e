"""``python -m tokenfusion.analyze``: how each model uses its tokens, measured over a data set.

    python -m tokenfusion.analyze --checkpoints checkpoints/ --data synthshapes --images 2000 --out runs/analysis
    python -m tokenfusion.analyze --checkpoints a.pt b.pt --data /data/imagenet --images 5000 --batch-size 64 --out DIR

Runs every checkpoint over the same images (held-out SynthShapes, or a random subset of an
ImageFolder root's ``val/``) in batches, on the GPU when there is one, and writes
``DIR/analysis.json`` (and every figure in ``DIR/figures.html``): per model the mean attention distance per layer, head and query kind -> key
kind (pixels), the fusion weights over the set (mean, spread, per class), the ablation curves (top-1
with each kind of token replaced from layer k onward, for every k; per class and per cue), and the
minibatch CKA between every pair of layers of all models; with ``--measures ... class_sensitivity``
also how much each explanation method's map changes between the predicted class and the runner-up.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from .analysis import DEFAULT_MEASURES, MEASURES, MODES, AnalysisError, analyze, open_data
from .checkpoint import CheckpointError, load_checkpoint
from .data import HELDOUT_SEED

__all__ = ["main", "write_figures"]


def _checkpoint_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        found = sorted(path.glob("*.pt")) if path.is_dir() else [path]
        if not found:
            raise AnalysisError(f"{path} holds no *.pt checkpoint")
        files += found
    return files


def write_figures(report: dict, path: Path) -> None:
    """One HTML page (plotly.js embedded: it opens offline) with every figure of ``report``."""
    from .viz.analysis import (
        ablation_curves_figure, attention_distance_figure, cka_figure, fusion_share_figure, uniform_reference,
    )

    figures = []
    for name, model in report["models"].items():
        if "ablation" in model:
            figures.append((f"{name}: ablation curves", ablation_curves_figure(model["ablation"])))
        if model.get("attention_distance"):
            figures.append((f"{name}: mean attention distance",
                            attention_distance_figure(model["attention_distance"], uniform_reference(model))))
        if "fusion_weights" in model and "cnn" in model["fusion_weights"]:
            figures.append((f"{name}: fusion weights", fusion_share_figure(model["fusion_weights"])))
    for comparison in report.get("cka", {}).get("comparisons", []):
        figures.append((f"CKA {comparison['a']} vs {comparison['b']}", cka_figure(comparison)))
    parts = [f"<h3>{title}</h3>" + fig.to_html(full_html=False, include_plotlyjs=i == 0)
             for i, (title, fig) in enumerate(figures)]
    path.write_text("<html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m tokenfusion.analyze", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="checkpoint files or folders of *.pt")
    parser.add_argument("--data", default="synthshapes", help="'synthshapes' or an ImageFolder root holding val/")
    parser.add_argument("--images", type=int, default=2000, help="number of images")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help="SynthShapes seed / subset seed")
    parser.add_argument("--batch-size", type=int, default=250, help="images per batch (also the CKA minibatch)")
    parser.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), choices=MEASURES,
                        help="default: all but class_sensitivity (image by image, on --sensitivity-images)")
    parser.add_argument("--sensitivity-images", type=int, default=32, help="images explained for class_sensitivity")
    parser.add_argument("--ablation-modes", nargs="+", default=["mean"], choices=MODES)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--threads", type=int, default=None, help="intra-op CPU threads")
    parser.add_argument("--out", type=Path, required=True, help="folder for analysis.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        checkpoints = {}
        for path in _checkpoint_files(args.checkpoints):
            if path.stem in checkpoints:
                raise AnalysisError(f"Two checkpoints are named {path.stem!r}; give them different file names")
            checkpoints[path.stem] = load_checkpoint(path)
        names = {tuple(c.class_names) for c in checkpoints.values()}
        if len(names) != 1:
            raise AnalysisError("The checkpoints have different classes; analyse models of one data set together")
        data = open_data(args.data, [c.config for c in checkpoints.values()], list(names.pop()), args.images, args.seed)
        result = analyze({n: c.model for n, c in checkpoints.items()}, data, batch_size=args.batch_size,
                         device=args.device, measures=tuple(args.measures), ablation_modes=tuple(args.ablation_modes),
                         workers=args.workers, sensitivity_images=args.sensitivity_images)
    except (AnalysisError, CheckpointError) as e:
        raise SystemExit(f"error: {e}") from None
    report = {
        "command": shlex.join(["python", "-m", "tokenfusion.analyze", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "checkpoints": {n: str(c.path) for n, c in checkpoints.items()},
        **result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analysis.json").write_text(json.dumps(report, indent=1))
    write_figures(report, args.out / "figures.html")
    print(f"wrote {args.out / 'analysis.json'} and figures.html ({result['images']} images, {len(checkpoints)} models)")
    return report


if __name__ == "__main__":
    main()
