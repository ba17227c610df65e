"""``python -m train.report``: every figure of the docs, from the files that measured it.

``python -m train.report --write`` rewrites every block between ``<!-- name:start -->`` and
``<!-- name:end -->`` in README.md, bench/README.md, docs/design.md and the notebooks (:func:`blocks`)
from the shipped checkpoints and the results files in ``bench/results/`` (each block names the
command that wrote its file, and the file's date, commit, threads and load average); ``--check``
exits 1 naming each block that differs; with neither it prints the blocks. Among them:
``results`` (held-out top-1, parameters, FLOPs, epochs, training time, from the checkpoints),
``explain-scores`` (a selection of the explanation scores and the issue's targets checked on
every row, from the JSON files of ``python bench/score_explanations.py``), and ``bench`` (every
benchmark's figure against its target, met or missed).
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

import nbformat
import torch

from bench.score_explanations import (
    commands, controls_note, findings_text, summary_table, target_checks,
)
from tokenfusion.data import TRAIN_SEED, val_seed
from tokenfusion.analysis.summary import summary_markdown
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.explain import mask_energy, pointing_game
from tokenfusion.models import ARCHITECTURES, count_flops, count_parameters

__all__ = [
    "results_table", "scores_table", "fill_block", "blocks", "render_docs", "stale_blocks", "provenance", "bench_table",
    "notebook_times", "main",
]


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
        t = ckpt.record
        held = t.heldout
        seeds.add((held.seed, held.samples))
        rows.append(
            f"| `{arch}` | {held.top1:.1f}% | {held.top5:.1f}% | {held.shape:.1f}% | {held.texture:.1f}% "
            f"| {count_parameters(ckpt.model) / 1e3:.0f} k "
            f"| {count_flops(ckpt.model) / 1e6:.0f} | {t.epochs_done} | {t.epochs_done * t.train_samples / 1e3:.0f} k "
            f"| {t.train_seconds / 60:.1f} min | {t.images_per_second:.0f} |"
        )
    note = ", ".join(f"{n} SynthShapes images of seed {s}" for s, n in sorted(seeds))
    return "\n".join(rows) + (f"\n\nHeld-out: {note}, never seen in training (seed {TRAIN_SEED}) or validation (seed {val_seed(TRAIN_SEED)}). "
                               "Shape (texture) alone: predictions whose shape (texture) is right, whatever the other cue.\n")


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


def fill_block(text: str, name: str, content: str) -> str:
    """``text`` with everything between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} block to fill")
    return re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: f"{start}\n{content}{end}", text, flags=re.S)


# Every figure of the docs, from the results files --------------------------------------------------

RESULTS = Path("bench/results")
NOTEBOOKS = ("01_tokens.ipynb", "02_fusion_strategies.ipynb", "03_explanations.ipynb", "04_train_and_compare.ipynb",
             "05_analysis.ipynb")
DOCS = ("README.md", "bench/README.md", "docs/design.md", "notebooks/README.md",
        *(f"notebooks/{name}" for name in NOTEBOOKS))


def _load(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / RESULTS / name).read_text())


def provenance(report: dict[str, Any]) -> str:
    """Date, commit, threads and load average of a results file; what it does not record is named."""
    machine = report.get("machine") if isinstance(report.get("machine"), dict) else {}
    threads = report.get("threads", machine.get("threads"))
    load = report.get("load_average", report.get("load_average_before", machine.get("load_average_1min")))
    if load is None and report.get("results") and isinstance(report["results"][0], dict):
        load = report["results"][0].get("load_1min_before")
    load = load[0] if isinstance(load, list) else load
    parts = [
        f"run {report['date'][:16].replace('T', ' ')} UTC" if report.get("date") else "date not recorded",
        f"commit {report['commit'][:7]}{'-dirty' * report['commit'].endswith('-dirty')}" if report.get("commit")
        else "commit not recorded",
        f"{threads} thread{'s' * (threads != 1)}" if threads else "threads not recorded",
        f"load average {load:.1f}" if load is not None else "load average not recorded",
    ]
    return ", ".join(parts)


def _met(value: float, target: float, at_most: bool = True) -> str:
    return "met" if (value <= target if at_most else value >= target) else "**missed**"


@functools.lru_cache(maxsize=2)
def _checkpoints(root: Path) -> dict[str, Any]:
    """The shipped checkpoints under ``root``, loaded once per render."""
    return {arch: load_checkpoint(root / "checkpoints" / f"{arch}.pt") for arch in ARCHITECTURES
            if (root / "checkpoints" / f"{arch}.pt").exists()}


def vit_history(root: Path) -> str:
    """How the shipped ViT trained, from its checkpoint's record: schedule, validation top-1 after each
    epoch, held-out top-1 and each cue alone (indented: it continues a list item)."""
    record = _checkpoints(root)["vit"].record
    curve = " / ".join(f"{entry['top1']:.1f}" for entry in record.history)
    held = record.heldout
    return (f"  The shipped ViT trains {record.epochs_done} epochs over {record.train_samples:,} images at peak lr "
            f"{record.peak_lr:g}: {curve}% validation top-1 after each epoch, {held.top1:.2f}% held-out (shape "
            f"alone {held.shape:.2f}%, texture alone {held.texture:.2f}%; `checkpoints/vit.pt`'s training record).\n")


FUSION = ("late", "early", "layerwise")
BASELINES = ("cnn", "vit")


#: A run whose held-out top-1 stays under twice chance (2 in 12) did not train: it is named, not averaged.
TRAINED_TOP1 = 200 / 12


def _seed_rows(root: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """``bench/teaching_models.py``'s file and its rows of runs that trained, by architecture (one per
    training seed)."""
    report = _load(root, "teaching_models.json")
    return report, _by_arch(r for r in report["results"] if r["top1"] >= TRAINED_TOP1)


def _by_arch(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``rows`` grouped by their ``arch``, in order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["arch"], []).append(row)
    return grouped


def _untrained(report: dict[str, Any]) -> str:
    """A sentence naming the runs that never left chance, or nothing."""
    failed = [r for r in report["results"] if r["top1"] < TRAINED_TOP1]
    if not failed:
        return ""
    runs = ", ".join(f"`{r['arch']}` seed {r['seed']} ({r['top1']:.1f}%)" for r in failed)
    return (f" Left out of the means: {runs}, whose held-out top-1 stayed under twice chance "
            f"({TRAINED_TOP1:.1f}%): it never left the plateau at chance within its budget.")


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(values: list[float]) -> str:
    """``mean ± sd``, or the one value alone (one seed has no spread)."""
    mean, sd = _mean_sd(values)
    return f"{mean:.1f} ± {sd:.1f}" if len(values) > 1 else f"{mean:.1f}"


def teach_time(root: Path) -> str:
    """The teaching runs' training time, from ``bench/teaching_models.py``'s rows (each checkpoint's
    ``train_seconds``: optimiser steps and validation, one thread per job)."""
    report, _ = _seed_rows(root)
    by_arch = _by_arch(report["results"])  # every run, trained or not: each took its time
    seeds = sorted({r["seed"] for r in report["results"]})
    total = {seed: sum(r["train_seconds"] for r in report["results"] if r["seed"] == seed) / 60 for seed in seeds}
    per_arch = ", ".join(f"`{arch}` {_pm([r['train_seconds'] / 60 for r in rows])} min"
                         for arch, rows in by_arch.items())
    return (f"Training time from the checkpoints (`train_seconds`: optimiser steps and validation, one thread per "
            f"job; not the rendering of the training set nor the held-out evaluation), mean ± sd over "
            f"{len(seeds)} seeds: {per_arch}. One seed's five models take {min(total.values()):.0f}-"
            f"{max(total.values()):.0f} job-minutes, so about half that on two cores with `--jobs 2`; all "
            f"{len(seeds)} seeds {sum(total.values()):.0f} job-minutes.\n")


def seed_table(root: Path) -> str:
    """Held-out and cue-conflict figures of every teaching model, mean ± sd over its training seeds."""
    report, by_arch = _seed_rows(root)
    lines = ["| model | seeds | held-out top-1 | shape alone | texture alone | cue conflict: object's class "
             "| object's shape | decoy's shape | object's texture | decoy's texture |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arch, rows in by_arch.items():
        c = lambda key: _pm([r["conflict"][key] for r in rows])  # noqa: E731
        lines.append(f"| `{arch}` | {len(rows)} | {_pm([r['top1'] for r in rows])} | {_pm([r['shape'] for r in rows])} "
                     f"| {_pm([r['texture'] for r in rows])} | {c('top1')} | {c('shape')} | {c('decoy_shape')} "
                     f"| {c('texture')} | {c('decoy_texture')} |")
    return ("\n".join(lines) + f"\n\nIn % of {report['samples']} held-out images (seed {report['heldout_seed']}), "
            f"mean ± sd over training seeds {', '.join(str(s) for s in sorted({r['seed'] for r in report['results']}))} "
            f"(seed 0 ships). Cue conflict: {report['samples']} images of the split whose decoys, as large as the "
            f"object, carry another class's shape (a filled silhouette) and texture (a blob); chance is 25% for a "
            f"shape and 33% for a texture.{_untrained(report)} `{report['command']}` ({provenance(report)}).\n")


def interventions_table(root: Path) -> str:
    """Held-out top-1 of the fusion models under each token intervention of each kind, mean ± sd over seeds."""
    report, by_arch = _seed_rows(root)
    hows = ("zero", "dataset_mean", "contents_averaged", "layout_shuffled")
    lines = ["| model | tokens changed | intact | zeroed: the other kind alone | data-set mean | contents averaged "
             "| layout shuffled |", "|---|---|---:|---:|---:|---:|---:|"]
    for arch in FUSION:
        rows = by_arch.get(arch, [])
        for kind in ("cnn", "patch"):
            cells = " | ".join(_pm([r["interventions"][kind][how] for r in rows]) for how in hows)
            lines.append(f"| `{arch}` | {'CNN' if kind == 'cnn' else 'patch'} | {_pm([r['top1'] for r in rows])} | {cells} |")
    return ("\n".join(lines) + "\n\nHeld-out top-1 (%) with every token of one kind changed as it is made "
            "(`tokenfusion.interventions`): zeroed or set to its data-set mean (removed: the other kind alone), its "
            "contents averaged over the image (positions kept), or its contents shuffled among the positions "
            f"(where each token is lost). Same images, seeds and command as above.\n")


def fusion_targets(root: Path) -> str:
    """The teaching models' targets checked on the seed means: each kind alone, the cost of removing
    either, and fusion against both baselines."""
    _, by_arch = _seed_rows(root)
    top1 = {arch: _mean_sd([r["top1"] for r in rows]) for arch, rows in by_arch.items()}
    conflict = {arch: _mean_sd([r["conflict"]["top1"] for r in rows]) for arch, rows in by_arch.items()}
    lines = []
    for arch in FUSION:
        rows = by_arch[arch]
        alone = {kind: _mean_sd([r["interventions"][other]["zero"] for r in rows])
                 for kind, other in (("cnn", "patch"), ("patch", "cnn"))}
        cost = {kind: _mean_sd([r["top1"] - r["interventions"][kind]["zero"] for r in rows]) for kind in ("cnn", "patch")}
        spread = top1[arch][1]
        against = (f"against a seed sd of {spread:.1f} (target: both above it: "
                   f"{_met(min(cost['cnn'][0], cost['patch'][0]), spread, at_most=False)})" if len(rows) > 1 else
                   "with one trained seed, so no seed spread to weigh them against (target: not measurable)")
        lines.append(
            f"- `{arch}`: CNN tokens alone {alone['cnn'][0]:.1f}%, patch tokens alone {alone['patch'][0]:.1f}% "
            f"(target ≥ 50% each: {_met(min(alone['cnn'][0], alone['patch'][0]), 50, at_most=False)}); removing "
            f"the CNN tokens costs {cost['cnn'][0]:.1f} points, the patch tokens {cost['patch'][0]:.1f}, {against}.")
    for name, figure in (("held-out", top1), ("cue-conflict", conflict)):
        best = max(FUSION, key=lambda a: figure[a][0])
        margin = min(figure[best][0] - figure[b][0] for b in BASELINES)
        spread = max(figure[a][1] for a in (best, *BASELINES))
        lines.append(f"- Best fusion model on {name} top-1: `{best}` {figure[best][0]:.1f}%, "
                     f"{margin:+.1f} points over the better baseline ({', '.join(f'`{b}` {figure[b][0]:.1f}%' for b in BASELINES)}), "
                     f"largest seed sd among them {spread:.1f} (target: beats both by more: {_met(margin, spread, at_most=False)}).")
    return "\n".join(lines) + "\n"


CHANCE = 100 / 12


def teaching_findings(root: Path) -> str:
    """What the seeds' figures say, sentence by sentence, each from a number against its control
    (chance, the intact model, the decoys, the seed spread)."""
    _, by_arch = _seed_rows(root)
    stat = lambda arch, get: _mean_sd([get(r) for r in by_arch[arch]])  # noqa: E731
    top1 = {arch: stat(arch, lambda r: r["top1"]) for arch in by_arch}
    lines = []
    base = ", ".join(f"`{b}` {_pm([r['top1'] for r in by_arch[b]])}%" for b in BASELINES if b in top1)
    lines.append(f"- Held-out top-1 of the baselines: {base}; of the fusion models: "
                 + ", ".join(f"`{a}` {_pm([r['top1'] for r in by_arch[a]])}%" for a in FUSION if a in top1) + ".")
    for arch in by_arch:
        shape, texture = stat(arch, lambda r: r["shape"]), stat(arch, lambda r: r["texture"])
        if texture[0] - shape[0] > max(shape[1], texture[1], 1.0):
            lines.append(f"- `{arch}` names the texture (the local cue) right more often than the shape: "
                         f"{texture[0]:.1f}% against {shape[0]:.1f}%.")
        elif shape[0] - texture[0] > max(shape[1], texture[1], 1.0):
            lines.append(f"- `{arch}` names the shape (the global cue) right more often than the texture: "
                         f"{shape[0]:.1f}% against {texture[0]:.1f}%.")
    for arch in FUSION:
        if arch not in by_arch:
            continue
        for kind, other in (("cnn", "patch"), ("patch", "cnn")):
            alone = stat(arch, lambda r: r["interventions"][other]["zero"])
            name = "CNN" if kind == "cnn" else "patch"
            verdict = ("above chance by more than its seed spread" if alone[0] - CHANCE > max(alone[1], 1.0) else
                       f"not above chance ({CHANCE:.1f}%) by more than its seed spread")
            lines.append(f"- `{arch}` with its {name} tokens alone (the other kind zeroed): "
                         f"{_pm([r['interventions'][other]['zero'] for r in by_arch[arch]])}%, {verdict}.")
        for kind in ("cnn", "patch"):
            removed = stat(arch, lambda r: r["interventions"][kind]["zero"])
            shuffled = stat(arch, lambda r: r["interventions"][kind]["layout_shuffled"])
            cost = top1[arch][0] - shuffled[0]
            if top1[arch][0] - removed[0] > max(top1[arch][1], 1.0):  # the kind is used: does where matter?
                name = "CNN" if kind == "cnn" else "patch"
                where = ("where each token is matters" if cost > max(top1[arch][1], shuffled[1], 1.0)
                         else "their contents suffice, wherever they are")
                lines.append(f"- `{arch}` with its {name} tokens' layout shuffled: {shuffled[0]:.1f}% "
                             f"({cost:.1f} points below intact, against {top1[arch][0] - removed[0]:.1f} without "
                             f"them): {where}.")
    for arch in by_arch:
        own, decoy = stat(arch, lambda r: r["conflict"]["shape"]), stat(arch, lambda r: r["conflict"]["decoy_shape"])
        own_t, decoy_t = (stat(arch, lambda r: r["conflict"]["texture"]),
                          stat(arch, lambda r: r["conflict"]["decoy_texture"]))
        lines.append(f"- Cue conflict, `{arch}`: the object's shape {own[0]:.1f}% against the decoy's {decoy[0]:.1f}%, "
                     f"the object's texture {own_t[0]:.1f}% against the decoy's {decoy_t[0]:.1f}%.")
    return "\n".join(lines) + "\n"


def results_summary(root: Path) -> str:
    """The figures the README's reading of the results rests on: the seeds' table, the interventions and
    the targets checked."""
    return (f"{seed_table(root)}\n{interventions_table(root)}\nWhat the figures say (each against its control: "
            f"chance, the intact model, the decoys, the seed spread):\n\n{teaching_findings(root)}\n"
            f"Targets (each kind alone ≥ 50%, removing either costs more than the seed spread, a fusion model beats "
            f"both baselines by more than the seed spread):\n\n{fusion_targets(root)}")


def notebook_times(root: Path) -> str:
    """One row per notebook from ``bench/bench_notebooks.py``: wall and kernel CPU time, against the target
    the script records (judged on CPU time, which the load inflates less than wall time)."""
    report = _load(root, "notebooks_cpu.json")
    target = report.get("target_wall_s")
    head = "| notebook | wall time | kernel CPU time |" + (f" CPU time <= {target:g} s |" if target else "")
    rows = [f"| `{r['notebook']}` | {r['wall_s']:.0f} s | {r['kernel_cpu_s']:.0f} s |"
            + (f" {_met(r['kernel_cpu_s'], target)} |" if target else "") for r in report["results"]]
    rule = "|---|---:|---:|" + ("---|" if target else "")
    own = "".join(f"; `{r['notebook']}`: `{r['command']}` ({provenance(r)})" for r in report["results"] if "command" in r)
    return (f"{head}\n{rule}\n" + "\n".join(rows) + f"\n\n`{report['command']}` ({provenance(report)}){own}, in the "
            "solution mode the tests use. Wall time grows with the machine's load, CPU time less (cores shared with "
            "other work also run each instruction slower): read both against the load average.\n")


def notebook_runtime(root: Path, notebook: str) -> str:
    """The opening line of a notebook: how long it runs, from ``bench/bench_notebooks.py``."""
    report = _load(root, "notebooks_cpu.json")
    row = next(r for r in report["results"] if r["notebook"] == notebook)
    cpu = row["kernel_cpu_s"]
    took = f"{cpu:.0f} seconds" if cpu < 120 else f"{cpu / 60:.0f} minutes"
    run = row if "command" in row else report  # a row of bench_notebooks.py --merge carries its own run
    return (f"Runs top to bottom in about {took} on one CPU thread (`{run['command']}`, "
            f"{run.get('date', 'date not recorded')[:10]}).\n")


def bench_table(root: Path) -> str:
    """The README's benchmark summary: one row per figure, its command, and each target met or missed."""
    fwd = _load(root, "forward_cpu.json")
    fwd1 = _load(root, "forward_cpu_threads1.json")
    shapes = _load(root, "synthshapes.json")
    train = _load(root, "train_cpu.json")
    explain = _load(root, "explain_cpu.json")
    app = _load(root, "app_cpu.json")
    notebooks = _load(root, "notebooks_cpu.json")

    def traced(report: dict[str, Any]) -> list[str]:
        target = report["targets"]["traced_over_plain_max"]
        ratios = [m["traced_over_plain"] for m in report["models"]]
        missed = [f"{m['arch']}/{m['size']} {m['traced_over_plain']:.2f}x" for m in report["models"]
                  if m["traced_over_plain"] > target]
        verdict = f"**missed** by {', '.join(missed)}" if missed else "met"
        return [f"forward, traced / plain, every model, batch 1, {report['threads']} thread{'s' * (report['threads'] != 1)}",
                f"`{report['command']}`", f"{min(ratios):.2f}-{max(ratios):.2f}x", f"<= {target}x: {verdict}"]

    fusion = [m for m in fwd1["models"] if "latency_over_parts" in m and m["arch"] in ("late", "early", "layerwise")]
    parts_target = fwd1["targets"]["small_fusion_over_parts_max"]
    shape_rate = {(r["image_size"], r["function"]): r["images_per_s"] for r in shapes["results"]}
    ms, tms = explain["ms"], explain["targets_ms"]
    explain_names = ("attention", "fusion_weights", "gradcam", "integrated_gradients")
    nb_target = notebooks.get("target_wall_s")
    rows = [
        traced(fwd), traced(fwd1),
        ["forward, `small` fusion / (ResNet-50 to layer3 + ViT-S/16), 1 thread", "same run",
         ", ".join(f"{m['arch']} {m['latency_over_parts']:.2f}x" for m in fusion)
         + " (FLOPs " + ", ".join(f"{m['flops_over_parts']:.2f}x" for m in fusion) + ")",
         f"<= {parts_target}x: " + ("met" if all(m["latency_over_parts"] <= parts_target for m in fusion)
                                    else "**missed**, by the extra arithmetic of fusion")],
        ["SynthShapes rendering, one core", f"`{shapes['command']}`",
         ", ".join(f"{rate:,.0f} images/s at {size} px" for (size, fn), rate in shape_rate.items() if fn == "render_sample"),
         ""],
        [f"training step, tiny, batch {train['batch_size']}, {train['threads']} thread", f"`{train['command']}`",
         ", ".join(f"{r['arch']} {r['images_per_s']:,.0f}" for r in train["rows"])
         + f" images/s; data pipeline {train['loader_images_per_s']:,.0f} images/s", ""],
        [f"explanations, tiny `{explain['arch']}`, batch {explain['batch']}", f"`{explain['command'].strip()}`",
         ", ".join(f"{n} {ms['tiny'][n]:.1f} ms" for n in explain_names),
         " / ".join(str(tms[n]) for n in explain_names) + " ms: "
         + _met(max(ms["tiny"][n] / tms[n] for n in explain_names), 1)],
        [f"explanations, `small` `{explain['arch']}`, 224 px", "same run",
         ", ".join(f"{n} {ms['small'][n] / 1000:.2f} s" for n in explain_names), ""],
        *app_rows(app),
        ["notebooks, top to bottom, kernel CPU time", f"`{notebooks['command']}`",
         ", ".join(f"{r['kernel_cpu_s']:.0f} s" for r in notebooks["results"]),
         f"<= {nb_target:g} s each: " + _met(max(r["kernel_cpu_s"] for r in notebooks["results"]), nb_target)
         if nb_target else ""],
    ]
    files = [("forward_cpu.json", fwd, ""), ("forward_cpu_threads1.json", fwd1, ""), ("synthshapes.json", shapes, ""),
             ("train_cpu.json", train, ""), ("explain_cpu.json", explain, ""),
             *(("app_cpu.json", app[part]["provenance"], f" ({part})") for part in APP_PARTS if part in app),
             ("notebooks_cpu.json", notebooks, "")]
    table = "| what | command | figure | target |\n|---|---|---|---|\n" + "\n".join(f"| {' | '.join(r)} |" for r in rows)
    sources = "\n".join(f"- `bench/results/{name}`{part}: {provenance(report)}" for name, report, part in files)
    return f"{table}\n\nEach row from its results file:\n\n{sources}\n"


APP_PARTS = ("startup", "pages", "controls", "methods")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def app_rows(app: dict[str, Any]) -> list[list[str]]:
    """The README's benchmark rows of ``bench/bench_app.py`` (its parts in ``app_cpu.json``), each
    target judged; a part not measured yet is said so."""
    rows = []
    if "pages" in app:
        pages, keys = app["pages"], ("explore_tiny", "explore_small", "compare")
        rows.append(["app: Explore (its opening tab) on tiny `early` / on `small` 224 px / Compare over five models, a new image",
                     f"`{pages['provenance']['command']}`", " / ".join(f"{pages[k]['median_s']:.2f} s" for k in keys),
                     " / ".join(f"{pages[k]['target_s']:g}" for k in keys) + " s: "
                     + _met(max(pages[k]["median_s"] / pages[k]["target_s"] for k in keys), 1)])
    if "startup" in app:
        start = app["startup"]
        rows.append(["app: `streamlit run` to first finished page in Chromium", f"`{start['provenance']['command']}`",
                     f"{start['first_page_s']:.1f} s (server healthy after {start['health_s']:.1f} s)",
                     f"<= {start['target_s']:g} s: {_met(start['first_page_s'], start['target_s'])}"])
    if "controls" in app:
        c = app["controls"]
        missed = [name for name, row in c["controls"].items() if row["worst_s"] > c["target_s"]]
        rows.append([f"app: server time of each Explore control, tiny models ({c['changes']} changes of "
                     f"{len(c['controls'])} controls)", f"`{c['provenance']['command']}`",
                     f"median {_ms(c['median_s'])}, worst {_ms(c['worst_s'])} (CPU {_ms(c['median_cpu_s'])}, "
                     f"{_ms(c['worst_cpu_s'])})",
                     f"<= {_ms(c['target_s'])} each: " + (f"**missed** by {len(missed)} of {len(c['controls'])} "
                                                         "(bench/README.md)" if missed else "met")])
    if "methods" in app:
        m = app["methods"]
        slowest = max(m["methods"], key=lambda r: r["seconds"])
        rows.append([f"app: every explanation method once, `{m['size']}` `{m['arch']}` at {m['img_size']} px, "
                     "beside the app's estimate", f"`{m['provenance']['command']}`",
                     f"{len(m['methods'])} methods, slowest {slowest['method']} {slowest['seconds']:.0f} s "
                     f"(estimate {slowest['estimate_s']:.0f} s)" if slowest["estimate_s"] is not None else
                     f"{len(m['methods'])} methods, slowest {slowest['method']} {slowest['seconds']:.0f} s", ""])
    return rows or [["app", "`python bench/bench_app.py`", "not measured yet", ""]]


def _before_controls(c: dict[str, Any]) -> str:
    """A sentence on the controls measured on an earlier commit in the same run, if any."""
    if "before" not in c:
        return ""
    b = c["before"]
    scopes = {row["scope"] for row in b["controls"].values()}
    reran = "the whole page" if scopes == {"page"} else "their fragment" if scopes == {"fragment"} else "a page or fragment"
    return (f" Measured just before in the same run, the code of `{b['provenance']['code'][:7]}` (each control reran "
            f"{reran}; {len(b['controls'])} of these controls there): median {_ms(b['median_s'])}, worst "
            f"{_ms(b['worst_s'])} (CPU {_ms(b['median_cpu_s'])}, {_ms(b['worst_cpu_s'])}), load average "
            f"{b['provenance']['load_average_before'][0]:.1f}.")


def app_bench(root: Path) -> str:
    """bench/README's app section: time to the first page, each Explore control's server time (with
    the code before, when the run measured it), and every method at 224 px beside its estimate."""
    app = _load(root, "app_cpu.json")
    out = []
    if "startup" in app:
        start = app["startup"]
        before = start.get("before")
        was = (f" (before, `{before['provenance']['code'][:7]}`: {before['first_page_s']:.1f} s, healthy after "
               f"{before['health_s']:.1f} s)") if before else ""
        out.append(f"From `streamlit run` to the first finished Explore page in Chromium: {start['first_page_s']:.1f} s, "
                   f"server healthy after {start['health_s']:.1f} s{was}; target {start['target_s']:g} s: "
                   f"{_met(start['first_page_s'], start['target_s'])}."
                   + (f" The page connected (its websocket opened, and the first run began) after "
                      f"{start['connected_s']:.1f} s; with torch and torchvision imported, "
                      f"{start['connected_s'] + start['imports_s']['torch'] + start['imports_s']['torchvision']:.1f} s "
                      "have passed before a line of the app's own code runs." if "connected_s" in start else "")
                   + " What the first page imports, one after another "
                   f"in a fresh interpreter of the same run ({sum(start['imports_s'].values()):.1f} s in all): "
                   + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in start["imports_s"].items())
                   + "".join("; then, in the background once the page is drawn (`app/preload.py`; else the first "
                             "CAM or attribution map would), the server imports "
                             + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in later.items())
                             for later in [start.get("first_map_imports_s")] if later)
                   + f". `{start['provenance']['command']}` ({provenance(start['provenance'])}, load average after "
                   f"{start['provenance']['load_average_after'][0]:.1f}).\n")
    if "controls" in app:
        c = app["controls"]
        before = c.get("before", {}).get("controls", {})
        head = "| control | reruns | values | median (ms) | worst (ms) | CPU median / worst (ms) |"
        rule = "|---|---|---:|---:|---:|---:|"
        if before:
            head += f" before `{c['before']['provenance']['code'][:7]}`: median / worst (CPU median) (ms) |"
            rule += "---:|"
        lines = [head + " target |", rule + "---|"]
        for name, row in c["controls"].items():
            cells = [name, row["scope"], str(len(row["runs_s"])), f"{row['median_s'] * 1000:.0f}",
                     f"{row['worst_s'] * 1000:.0f}", f"{row['median_cpu_s'] * 1000:.0f} / {row['worst_cpu_s'] * 1000:.0f}"]
            if before:
                b = before.get(name)
                cells.append(f"{b['median_s'] * 1000:.0f} / {b['worst_s'] * 1000:.0f} ({b['median_cpu_s'] * 1000:.0f})"
                             if b else "")
            cells.append(f"<= {c['target_s'] * 1000:.0f}: {_met(row['worst_s'], c['target_s'])}")
            lines.append("| " + " | ".join(cells) + " |")
        missed = [name for name, row in c["controls"].items() if row["worst_s"] > c["target_s"]]
        cpu_missed = [name for name, row in c["controls"].items() if row["worst_cpu_s"] > c["target_s"]]
        out.append(f"Server time of each Explore control on the `tiny` `{c['model']}` model (and the model picker "
                   f"over all five), each value shown for the first time: every change median "
                   f"{_ms(c['median_s'])}, worst {_ms(c['worst_s'])} (CPU {_ms(c['median_cpu_s'])}, "
                   f"{_ms(c['worst_cpu_s'])}); target {_ms(c['target_s'])} for every change: "
                   + (f"**missed** by {len(missed)} of {len(c['controls'])} controls ({', '.join(missed)}); "
                      f"in CPU time by {len(cpu_missed)}" if missed else "met") + "."
                   + (f" Before timing, what the server loads ahead in the background once the first page of a "
                      f"browser session is drawn (`app/preload.py`: the explanation back-ends, the listed "
                      f"checkpoints) was loaded: {c['ahead_s']:.1f} s." if c.get("ahead_s") is not None else "")
                   + _before_controls(c) + "\n\n" + "\n".join(lines)
                   + f"\n\n`{c['provenance']['command']}` ({provenance(c['provenance'])}, load average after "
                   f"{c['provenance']['load_average_after'][0]:.1f}).\n")
    if "methods" in app:
        m = app["methods"]
        lines = ["| method | target | measured (s) | app's estimate (s) | measured / estimate | load average |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in m["methods"]:
            where = " · ".join(str(v) for v in (r["layer"], r["kind"]) if v) or "pixels"
            est = r["estimate_s"]
            ratio = f"{r['seconds'] / est:.2f}" if est else ""
            lines.append(f"| {r['method']} | {where} | {r['seconds']:.2f} | {'' if est is None else f'{est:.2f}'} "
                         f"| {ratio} | {r['load_average']:.1f} |")
        timed = {r["method"] for r in m["methods"]}
        missing = [n for n in m["every_method"] if n not in timed]
        if missing:
            lines.append(f"\nNot timed yet: {', '.join(missing)}.")
        out.append(f"Every method once at {m['img_size']} px (`{m['size']}` `{m['arch']}`, random weights), its own time "
                   f"beyond the session's traced forward ({m['traced_forward_s']:.2f} s), beside the estimate the app "
                   f"shows before slow work (measured forward {m['forward_s'] * 1000:.0f} ms alone, "
                   f"{m['forward_batched_s'] * 1000:.0f} ms per image in a batch of {m['batch']}, measured once at "
                   "the start: a row run at another load average than the first has its ratio moved by it):\n\n"
                   + "\n".join(lines)
                   + f"\n\n`{m['provenance']['command']}` ({provenance(m['provenance'])}; each row's load average "
                   "taken as it started).\n")
    return "\n".join(out) or "Not measured yet: `python bench/bench_app.py`.\n"


def explain_ms_table(root: Path) -> str:
    """``bench/bench_explain.py``'s medians per method, tiny and small, with the targets it records."""
    report = _load(root, "explain_cpu.json")
    ms, targets = report["ms"], report["targets_ms"]
    lines = ["| method | tiny 48 px (ms) | target (ms) | small 224 px (ms) |", "|---|---:|---|---:|"]
    for method, value in ms["tiny"].items():
        target = targets.get(method)
        small = ms["small"].get(method)
        lines.append(f"| {method} | {value:.1f} | {f'<= {target}: {_met(value, target)}' if target else ''} "
                     f"| {f'{small:.0f}' if small is not None else 'not timed'} |")
    return "\n".join(lines) + f"\n\n`{report['command'].strip()}` ({provenance(report)}).\n"


def train_table(root: Path) -> str:
    """``bench/bench_train.py``'s images/s per teaching model, the minutes of its teaching run at that
    rate, and the data pipeline's rate alone."""
    report = _load(root, "train_cpu.json")
    lines = ["| model | images/s | images in its teaching run | minutes at this rate |", "|---|---:|---:|---:|"]
    lines += [f"| `{r['arch']}` | {r['images_per_s']:,.0f} | {r['teaching_images'] / 1e3:,.0f} k "
              f"| {r['teaching_minutes']:.1f} |" for r in report["rows"]]
    total = sum(r["teaching_minutes"] for r in report["rows"])
    return ("\n".join(lines) + f"\n\nData pipeline alone: {report['loader_images_per_s']:,.0f} images/s. "
            f"The whole teaching set is {total:.0f} minutes of optimiser steps at these rates. "
            f"`{report['command']}` ({provenance(report)}).\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def score_times(root: Path) -> str:
    """How long each explanation-score file took to make, from its ``seconds``."""
    reports = {p.stem.removeprefix("explain_scores_"): json.loads(p.read_text())
               for p in sorted((root / RESULTS).glob("explain_scores_*.json"))}
    def scoring(arch: str, report: dict[str, Any]) -> str:
        updates = "".join(f", then {_duration(u['seconds'])} rescoring {', '.join(u['settings']['methods'])}"
                          for u in report.get("updates", []))
        return f"{_duration(report['seconds'])} for `{arch}`{updates}"
    return ("Scoring took " + "; ".join(scoring(arch, r) for arch, r in reports.items())
            + " (the `seconds` of each file).\n")


def forward_parts(root: Path) -> str:
    """The ``small`` fusion models against their parts: FLOPs, and CPU time per FLOP."""
    report = _load(root, "forward_cpu_threads1.json")
    fusion = [m for m in report["models"] if "latency_over_parts" in m and m["arch"] in ("late", "early", "layerwise")]
    per_flop = [m["latency_per_flop_over_parts"] for m in fusion]
    return ("At `small` the fusion models take " + ", ".join(f"{m['flops_over_parts']:.2f}x (`{m['arch']}`)" for m in fusion)
            + f" the FLOPs of their parts, torchvision's ResNet-50-to-layer3 plus ViT-S/16 "
            f"({report['parts']['sum']['flops'] / 1e9:.2f} GFLOPs), and CPU latency follows FLOPs "
            f"({min(per_flop):.2f}-{max(per_flop):.2f}x the parts' time per FLOP; `{report['command']}`, "
            f"{provenance(report)}).\n")


def threads_and_jobs(root: Path) -> str:
    """The teaching runs' images/s (two one-thread jobs side by side) against the bench's step plus loader."""
    bench = _load(root, "train_cpu.json")
    loader = bench["loader_images_per_s"]
    alone = {r["arch"]: 1 / (1 / r["images_per_s"] + 1 / loader) for r in bench["rows"]}
    run = {arch: c.record.images_per_second for arch, c in _checkpoints(root).items()}
    rows = [f"| `{arch}` | {run[arch]:.0f} | {alone[arch]:.0f} | {run[arch] / alone[arch]:.0%} |"
            for arch in run if arch in alone]
    return ("| model | teaching run (images/s) | bench: one step plus its loader pass, one quiet thread | run / bench |\n"
            "|---|---:|---:|---:|\n" + "\n".join(rows) + f"\n\nTeaching runs: the checkpoints' histories (mean over "
            f"epochs); bench: `{bench['command']}` ({provenance(bench)}).\n")


def analysis_section(root: Path) -> str:
    """What the shipped models show over held-out SynthShapes (:func:`~tokenfusion.analysis.summary.summary_markdown`
    of the analysis ``bench/bench_analysis.py`` keeps), and what the analysis costs on this CPU."""
    bench = _load(root, "analysis_cpu.json")
    tiny, memory, small, targets = bench["tiny"], bench["tiny_memory"], bench.get("small"), bench["targets"]
    measured = sum(tiny["per_measure_s"].values())
    text = (summary_markdown(_load(root, "analysis_synthshapes.json")) + f"\nCost: every measure over {tiny['images']} "
            f"images for the five models took {tiny['wall_s']:.0f} s on one thread, "
            + ("alone" if bench.get("order", "").startswith("tiny alone") else "side by side with the two runs below")
            + f" on the 2-core machine at load average {tiny['load_1min_before']:.1f} ({measured:.0f} s in "
            f"the forwards and measures, the rest starting Python and loading; {tiny['cpu_s']:.0f} s of CPU time"
            + (", waiting for a core the rest of the wall time" if tiny["wall_s"] > 1.1 * tiny["cpu_s"] else "")
            + f"; target {targets['seconds_2000_max']} s wall: "
            f"{_met(tiny['wall_s'], targets['seconds_2000_max'])}); peak memory {tiny['peak_rss_mb']:.0f} MB over "
            f"{tiny['images']} images and {memory['peak_rss_mb']:.0f} MB over {memory['images']} "
            f"({bench['peak_rss_ratio']:.3f}x; target within 10%: "
            f"{_met(bench['peak_rss_ratio'], targets['peak_rss_ratio_max'])}; importing torch and the explanation "
            f"libraries alone takes {bench['import_rss_mb']:.0f} MB)."
            + (f" The issue asks for 20,000 images; {memory['images']:,} were measured." * (memory["images"] < 20_000))
            + " Class sensitivity, image by image and opt-in, is in none of these runs.")
    if small:
        per_image = sum(small["per_measure_s"].values()) / small["images"]
        text += (f" The five `small` models at 224 px (random weights) over {small['images']} images, batch "
                 f"{small['batch_size']}: {per_image:.1f} s per image for all five in the forwards and measures "
                 f"({small['cpu_s'] / small['images']:.1f} s of CPU time per image, start included), "
                 f"peak {small['peak_rss_mb'] / 1024:.1f} GB; at that rate ImageNet's 50,000 `val/` images would "
                 f"take {50_000 * per_image / 3600:.0f} hours on {bench['threads']} CPU thread"
                 f"{'s' * (bench['threads'] != 1)}.")
    if bench.get("unfinished"):
        text += f" Cut short before they finished: {', '.join(bench['unfinished'])}."
    return text + f"\n\n`{bench['command']}` ({provenance(bench)}).\n"


def blocks(root: Path) -> dict[str, dict[str, Callable[[], str]]]:
    """Every rendered block of every doc: ``{doc: {block name: render}}``."""
    root = Path(root)
    scores = sorted((root / RESULTS).glob("explain_scores_*.json"))
    return {
        "README.md": {
            "results": lambda: results_table(root / "checkpoints"),
            "teach-time": lambda: teach_time(root),
            "results-summary": lambda: results_summary(root),
            "explain-scores": lambda: scores_table(scores),
            "explain-findings": lambda: findings_text(scores),
            "notebook-times": lambda: notebook_times(root),
            "analysis": lambda: analysis_section(root),
            "bench": lambda: bench_table(root),
        },
        "bench/README.md": {
            "explain-ms": lambda: explain_ms_table(root),
            "app-bench": lambda: app_bench(root),
            "score-times": lambda: score_times(root),
            "train-throughput": lambda: train_table(root),
            "teach-time": lambda: teach_time(root),
        },
        "docs/design.md": {
            "vit-history": lambda: vit_history(root),
            "forward-parts": lambda: forward_parts(root),
            "threads-and-jobs": lambda: threads_and_jobs(root),
        },
        "notebooks/README.md": {"notebook-times": lambda: notebook_times(root)},
        **{f"notebooks/{name}": {"runtime": functools.partial(notebook_runtime, root, name)} for name in NOTEBOOKS},
    }


def _fill(doc: str, text: str, name: str, content: str) -> str:
    """``text`` of ``doc`` with block ``name`` filled; in a notebook, the block lives in a Markdown cell."""
    if not doc.endswith(".ipynb"):
        return fill_block(text, name, content)
    nb = nbformat.reads(text, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "markdown" and f"<!-- {name}:start -->" in c.source]
    if len(cells) != 1:
        raise ValueError(f"no Markdown cell holds one <!-- {name}:start --> ... <!-- {name}:end --> block to fill")
    cells[0].source = fill_block(cells[0].source, name, content)
    return nbformat.writes(nb) + "\n"


def render_docs(root: str | Path = ".") -> dict[str, tuple[str, str]]:
    """``{doc: (text now, text with every block rendered)}`` for the docs under ``root``."""
    out = {}
    for doc, renders in blocks(Path(root)).items():
        text = new = (Path(root) / doc).read_text()
        for name, render in renders.items():
            try:
                new = _fill(doc, new, name, render())
            except ValueError as error:
                raise SystemExit(f"{doc}: {error}") from None
        out[doc] = (text, new)
    _checkpoints.cache_clear()  # a later render reads the files again
    return out


def stale_blocks(text: str, new: str, names: Iterable[str]) -> list[str]:
    """Those of the blocks ``names`` whose content differs between ``text`` and ``new``."""
    def body(doc: str, name: str) -> str | None:
        found = re.search(f"<!-- {name}:start -->(.*?)<!-- {name}:end -->", doc, re.S)
        return found.group(1) if found else None

    return [name for name in names if body(text, name) != body(new, name)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository (its checkpoints/, bench/results/ and docs)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write every block into " + ", ".join(DOCS))
    mode.add_argument("--check", action="store_true", help="exit 1 naming each block that differs from its files")
    args = parser.parse_args(argv)
    stale = []
    for doc, (text, new) in render_docs(args.root).items():
        names = stale_blocks(text, new, blocks(Path(args.root))[doc])
        stale += [f"{doc}: {name}" for name in names]
        if args.write and names:
            (Path(args.root) / doc).write_text(new)
            print(f"updated {doc}: {', '.join(names)}")
        elif not args.write and not args.check:
            print(f"# {doc}\n\n" + "\n".join(f"## {n}\n\n{r()}" for n, r in blocks(Path(args.root))[doc].items()))
    if args.check and stale:
        raise SystemExit("stale (run python -m train.report --write): " + "; ".join(stale))


if __name__ == "__main__":
    main()
