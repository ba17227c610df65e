"""``python -m train.teach``: train the five shipped teaching models on SynthShapes and write them
to ``checkpoints/`` (fp16 weights, a few MB in all), each with its held-out top-1.

Each model trains with ``python -m train --arch ARCH --preset synthshapes-tiny`` into
``runs/teach/ARCH`` and resumes there if the command is run again after an interruption.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tokenfusion.checkpoint import load_checkpoint, save_checkpoint
from tokenfusion.models import ARCHITECTURES

from .engine import get_args_parser, main as train_main
from .evaluate import heldout_accuracy

__all__ = ["main"]

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--out", default="checkpoints", help="where the shipped checkpoints go")
    parser.add_argument("--runs", default="runs/teach", help="where each training run keeps its files")
    parser.add_argument("--heldout-samples", type=int, default=2000)
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="after --, options passed to python -m train")
    args = parser.parse_args(argv)
    extra = [a for a in args.train_args if a != "--"]
    command = shlex.join(["python", "-m", "train.teach", *(argv if argv is not None else sys.argv[1:])])
    for arch in args.archs:
        run = Path(args.runs) / arch
        argv = ["--arch", arch, "--preset", "synthshapes-tiny", "--output-dir", str(run), "--resume", "auto", *extra]
        train_args = get_args_parser().parse_args(argv)
        train_args.argv = argv
        print(f"== {arch}: python -m train {shlex.join(argv)}", flush=True)
        train_main(train_args)
        trained = load_checkpoint(run / "model.pt")
        half = {k: v.half() if v.is_floating_point() else v for k, v in trained.model.state_dict().items()}
        trained.model.load_state_dict(half)  # evaluate exactly the weights that ship
        heldout = heldout_accuracy(trained.model, args.heldout_samples)
        print(f"   {arch}: held-out top-1 {heldout['top1']:.2f}% on {heldout['samples']} images (seed {heldout['seed']})")
        save_checkpoint(Path(args.out) / f"{arch}.pt", trained.model, class_names=trained.class_names,
                        training={**trained.training, "heldout": heldout},
                        provenance={**trained.provenance, "teach_command": command}, state_dict=half)


if __name__ == "__main__":
    main()
