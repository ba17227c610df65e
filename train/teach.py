"""``python -m train.teach``: train the shipped teaching models on SynthShapes and write them to
``checkpoints/`` (fp16 weights, a few MB in all), each with its held-out top-1.

The teaching models are the five architectures and one control, ``early-greedy``: early fusion
trained without kind dropout, to show what kind dropout changes (``TEACHING_MODELS``). Each model
trains with ``python -m train --arch ARCH --preset synthshapes-tiny --seed S [its options]`` into
``runs/teach/seedS/NAME`` and resumes there if the command is run again after an interruption.
``--seeds 0 1 2`` trains every model once per training seed (model initialisation and data
order; the images are the same): seed 0's go to ``checkpoints/``, the others' to
``runs/seeds/S/`` (their figures are kept as results files, not shipped).
``--models`` also takes the counter-measures tried and not shipped (``ATTEMPTS``), whose checkpoints go to
``runs/attempts/S/`` whatever the seed.
A model may start parts from the same seed's checkpoint of another teaching model, named ``{cnn}`` or
``{vit}`` in its options (every fusion model, the greedy control too, starts from the trained baselines); that
model trains first, or must be on disk already.
``--jobs N`` trains N models at a time, each in its own process with its share of the CPU
threads, the costliest first (images stepped through x FLOPs per image) among those whose starting
checkpoints exist, so that the slowest model starts at once and the others fill the remaining workers.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import torch

from tokenfusion.checkpoint import load_checkpoint, save_checkpoint
from tokenfusion.models import ARCHITECTURES, count_flops, create

from .engine import get_args_parser, main as train_main
from .evaluate import heldout_accuracy
from .presets import resolve_preset

__all__ = ["ATTEMPTS", "Attempt", "MODELS", "PRESET", "TEACHING_MODELS", "main", "starts_from", "teaching_cost"]

PRESET = "synthshapes-tiny"

# Starts the trunk and the ViT from the same seed's trained baselines, as fusion of two pretrained
# networks does; they learn at a tenth of the rate of the new fusion parts.
_FROM_BASELINES = ("--trunk-weights", "{cnn}", "--vit-weights", "{vit}", "--pretrained-lr-scale", "0.1")

# Checkpoint name -> (architecture, options after the preset's). The greedy control learns as a
# multi-branch network does when nothing balances its branches (Wu et al., ICML 2022).
TEACHING_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{arch: (arch, _FROM_BASELINES if arch not in ("cnn", "vit") else ()) for arch in ARCHITECTURES},
    "early-greedy": ("early", (*_FROM_BASELINES, "--kind-drop", "0")),
}

class Attempt(NamedTuple):
    """A counter-measure against the starved patch stream that was tried and not shipped."""

    arch: str
    options: tuple[str, ...]  # after the preset's
    tries: str  # what it tries, in a sentence
    against: str  # the model (a teaching model or another attempt) it is measured against, at the same seeds


#: The attempts (docs/design.md, "Against greedy learning"): trained like the teaching models, to
#: ``runs/attempts/S/NAME.pt``, and measured by ``bench/teaching_models.py --attempts``.
ATTEMPTS: dict[str, Attempt] = {
    "late-scratch": Attempt("late", (), "late fusion with both streams trained from scratch, the recipe before this one",
                            "late"),
    "early-scratch": Attempt("early", (), "early fusion trained from scratch, the recipe before this one", "early"),
    "layerwise-scratch": Attempt("layerwise", (), "layer-by-layer fusion trained from scratch, the recipe before this one",
                                 "layerwise"),
    "vit-lr2e-3": Attempt("vit", ("--lr", "2e-3"),
                          "the ViT's recipe before this one: peak learning rate 2e-3, twice the others' "
                          "(its checkpoints trained under the preset that had it)", "vit"),
    "vit-30ep": Attempt("vit", ("--epochs", "30", "--lr", "2e-3"),
                        "the ViT's budget tripled (30 epochs at the earlier peak rate 2e-3): does its slow start lift?",
                        "vit"),
    "vit-xavier": Attempt("vit", ("--weight-init", "xavier"),
                          "the ViT with its linear layers initialised at their width's scale (Xavier) instead of "
                          "std 0.02, which suits widths of several hundred: at width 64 every layer starts several times "
                          "too small. Does the plateau at chance end, and does it read shape?", "vit"),
    "vit-patch4": Attempt("vit", ("--patch-size", "4", "--weight-init", "xavier"),
                          "`vit-xavier` with 4-px patches, a 16x16 grid (about 4 times the cost per image): does a "
                          "finer grid let the ViT read shape?", "vit-xavier"),
    "vit-sincos": Attempt("vit", ("--pos-embed", "sincos"),
                          "the ViT with fixed 2-D sine-cosine position embeddings instead of learned ones: the "
                          "shipped ViT reads its patches as a bag (shuffling their layout costs it nothing), does "
                          "it read shape once every token knows its place from the first step?", "vit"),
    "early-drop-cnn": Attempt("early", (*_FROM_BASELINES, "--kind-drop", "0.2", "--kind-drop-kinds", "cnn"),
                              "early fusion from the baselines whose kind dropout takes only the CNN tokens, the kind "
                              "the network leans on (a fifth of the images, as `early` does), never the patch "
                              "tokens: can the patch tokens learn to suffice and still be needed?", "early"),
    "early-patch-lr10": Attempt("early", ("--patch-lr-scale", "10"),
                                "early fusion from scratch whose parts that only patch tokens pass through learn 10 "
                                "times faster (after Wu et al.'s re-balancing)", "early-scratch"),
    "early-from-vit": Attempt("early", ("--vit-weights", "runs/attempts/0/vit-30ep.pt", "--pretrained-lr-scale", "0.1"),
                              "early fusion whose patch stream (patch tokens, blocks, head) starts from `vit-30ep` and "
                              "learns at a tenth of the rate of the new parts", "early-scratch"),
    "late-from-vit": Attempt("late", ("--vit-weights", "runs/attempts/0/vit-30ep.pt", "--pretrained-lr-scale", "0.1"),
                             "the same for late fusion: its patch stream (patch tokens, blocks, class token) starts "
                             "from `vit-30ep`", "late-scratch"),
}
MODELS = {**TEACHING_MODELS, **{name: (attempt.arch, attempt.options) for name, attempt in ATTEMPTS.items()}}


def starts_from(name: str) -> list[str]:
    """The teaching models whose checkpoints (of the same seed) model ``name`` starts parts from."""
    return [option[1:-1] for option in MODELS[name][1] if option.startswith("{") and option.endswith("}")]


def teaching_cost(name: str) -> int:
    """FLOPs of teaching model ``name``'s forward passes over its training run: the order in which
    ``--jobs`` starts them."""
    arch = MODELS[name][0]
    recipe = resolve_preset(PRESET, arch)
    return recipe["epochs"] * recipe["train_samples"] * count_flops(create(arch, recipe["size"]))


def teach(
    name: str, seed: int, runs: Path, out: Path, starts: dict[str, Path], heldout_samples: int, train_args: list[str],
    command: str,
) -> str:
    """Train (or resume) teaching model ``name`` from training seed ``seed``, evaluate its fp16
    weights on held-out images and write ``out/NAME.pt``. ``starts`` maps each model of
    :func:`starts_from` to its checkpoint of this seed."""
    arch, options = MODELS[name]
    options = tuple(str(starts[o[1:-1]]) if o[1:-1] in starts else o for o in options)
    run = runs / f"seed{seed}" / name
    argv = ["--arch", arch, "--preset", PRESET, "--seed", str(seed), "--output-dir", str(run), "--resume", "auto",
            *options, *train_args]
    args = get_args_parser().parse_args(argv)
    args.argv = argv
    print(f"== {name} seed {seed}: python -m train {shlex.join(argv)}", flush=True)
    train_main(args)
    trained = load_checkpoint(run / "model.pt")
    half = {k: v.half() if v.is_floating_point() else v for k, v in trained.model.state_dict().items()}
    trained.model.load_state_dict(half)  # evaluate exactly the weights that ship
    heldout = heldout_accuracy(trained.model, heldout_samples)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / f"{name}.pt", trained.model, class_names=trained.class_names,
                    training={**trained.training, "heldout": heldout},
                    provenance={**trained.provenance, "teach_command": command}, state_dict=half)
    minutes = trained.training["train_seconds"] / 60
    return (f"   {name} seed {seed}: held-out top-1 {heldout['top1']:.2f}% on {heldout['samples']} images "
            f"(seed {heldout['seed']}), {minutes:.1f} min of training")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(TEACHING_MODELS), choices=MODELS,
                        help="teaching models to train (default: all six), or ATTEMPTS (written to "
                             "--attempts-out/S/ whatever the seed)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default: 0)")
    parser.add_argument("--out", default="checkpoints", help="where the shipped checkpoints (seed 0) go")
    parser.add_argument("--seed-out", default="runs/seeds", help="where the other seeds' checkpoints go (SEED-OUT/S/)")
    parser.add_argument("--attempts-out", default="runs/attempts", help="where the attempts' checkpoints go (ATTEMPTS-OUT/S/)")
    parser.add_argument("--runs", default="runs/teach", help="where each training run keeps its files")
    parser.add_argument("--heldout-samples", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once, each in its own process (default: one after the other)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="after --, options passed to python -m train")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    command = shlex.join(["python", "-m", "train.teach", *(argv if argv is not None else sys.argv[1:])])
    train_args = [a for a in args.train_args if a != "--"]
    cost = {name: teaching_cost(name) for name in args.models}
    # Seed by seed (the shipped seed's models first); within a seed, those that others start from
    # first, then the costliest first.
    runs = [(name, seed) for seed in args.seeds
            for name in sorted(args.models, key=lambda n: (bool(starts_from(n)), -cost[n]))]
    def out(name: str, seed: int) -> Path:
        if name in ATTEMPTS:
            return Path(args.attempts_out) / str(seed)
        return Path(args.out) if seed == 0 else Path(args.seed_out) / str(seed)
    def starts(name: str, seed: int) -> dict[str, Path]:
        return {base: out(base, seed) / f"{base}.pt" for base in starts_from(name)}
    missing = sorted({f"{base} seed {seed} ({path})" for name, seed in runs for base, path in starts(name, seed).items()
                      if (base, seed) not in runs and not path.is_file()})
    if missing:
        parser.error(f"the models named start from checkpoints that are neither on disk nor trained by this command: "
                     f"{', '.join(missing)}. Add them to --models.")

    start = time.perf_counter()
    if args.jobs == 1:
        for name, seed in runs:
            print(teach(name, seed, Path(args.runs), out(name, seed), starts(name, seed), args.heldout_samples,
                        train_args, command), flush=True)
    else:
        # One progress bar per process would garble the terminal: each job prints its epochs instead.
        # Options given after -- come later, so they win over these.
        threads = max(1, torch.get_num_threads() // args.jobs)
        job_args = ["--threads", str(threads), "--no-progress", *train_args]
        waiting = list(runs)
        running: dict[Future, tuple[str, int]] = {}
        done: set[tuple[str, int]] = set()  # a model starts once the runs it starts from are done
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            while waiting or running:
                for name, seed in [(n, s) for n, s in waiting
                                   if all((b, s) in done or (b, s) not in runs for b in starts_from(n))]:
                    waiting.remove((name, seed))
                    running[pool.submit(teach, name, seed, Path(args.runs), out(name, seed), starts(name, seed),
                                        args.heldout_samples, job_args, command)] = (name, seed)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for job in finished:
                    print(job.result(), flush=True)
                    done.add(running.pop(job))
    print(f"{len(runs)} models in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
