"""The teaching models' figures: the shipped checkpoints' table, the seeds' table, the token
interventions, what the figures say and the targets, from ``bench/results/teaching_models.json``."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.provenance import describe
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data import TRAIN_SEED, val_seed
from tokenfusion.models import count_flops, count_parameters
from train.teach import ATTEMPTS, TEACHING_MODELS

from .sources import checkpoints, load
from .text import mean_sd, met, pm

__all__ = ["attempts_section", "fusion_targets", "leaving_chance", "interventions_table", "results_summary", "results_table", "seed_table", "teach_time",
           "teaching_findings", "vit_history"]


def results_table(folder: str | Path) -> str:
    """One Markdown row per teaching model ``NAME.pt`` in ``folder``, in the order of ``TEACHING_MODELS``."""
    rows = [
        "| model | held-out top-1 | top-5 | shape alone | texture alone | params | MFLOPs | epochs | images seen "
        "| train time | train img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seeds = set()
    for name in TEACHING_MODELS:
        path = Path(folder) / f"{name}.pt"
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        t = ckpt.record
        held = t.heldout
        seeds.add((held.seed, held.samples))
        rows.append(
            f"| `{name}` | {held.top1:.1f}% | {held.top5:.1f}% | {held.shape:.1f}% | {held.texture:.1f}% "
            f"| {count_parameters(ckpt.model) / 1e3:.0f} k "
            f"| {count_flops(ckpt.model) / 1e6:.0f} | {t.epochs_done} | {t.epochs_done * t.train_samples / 1e3:.0f} k "
            f"| {t.train_seconds / 60:.1f} min | {t.images_per_second:.0f} |"
        )
    note = ", ".join(f"{n} SynthShapes images of seed {s}" for s, n in sorted(seeds))
    return "\n".join(rows) + (f"\n\nHeld-out: {note}, never seen in training (seed {TRAIN_SEED}) or validation (seed {val_seed(TRAIN_SEED)}). "
                               "Shape (texture) alone: predictions whose shape (texture) is right, whatever the other cue.\n")


def vit_history(root: Path) -> str:
    """How the shipped ViT trained, from its checkpoint's record: schedule, validation top-1 after each
    epoch, held-out top-1 and each cue alone (indented: it continues a list item)."""
    record = checkpoints(root)["vit"].record
    curve = " / ".join(f"{entry['top1']:.1f}" for entry in record.history)
    held = record.heldout
    return (f"  The shipped ViT trains {record.epochs_done} epochs over {record.train_samples:,} images at peak lr "
            f"{record.peak_lr:g}: {curve}% validation top-1 after each epoch, {held.top1:.2f}% held-out (shape "
            f"alone {held.shape:.2f}%, texture alone {held.texture:.2f}%; `checkpoints/vit.pt`'s training record).\n")


FUSION_ARCHS = ("late", "early", "layerwise")


BASELINES = ("cnn", "vit")


#: A run whose held-out top-1 stays under twice chance (2 in 12) did not train: it is named, not averaged.
TRAINED_TOP1 = 200 / 12


def _seed_rows(root: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """``bench/teaching_models.py``'s file and its rows of runs that trained, by teaching model (one
    per training seed)."""
    report = load(root, "teaching_models.json")
    return report, _by_model(r for r in report["results"] if r["top1"] >= TRAINED_TOP1)


def _by_model(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``rows`` grouped by their teaching model, in order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["model"], []).append(row)
    return grouped


def _fusion(by_model: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The teaching models among ``by_model`` that fuse both kinds of token."""
    return [name for name, rows in by_model.items() if rows[0]["arch"] in FUSION_ARCHS]


def _with_tokens(by_model: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The teaching models among ``by_model`` measured under token interventions (the ViT and the fusion models)."""
    return [name for name, rows in by_model.items() if rows[0].get("interventions")]


def _untrained(report: dict[str, Any]) -> str:
    """A sentence naming the runs that never left chance, or nothing."""
    failed = [r for r in report["results"] if r["top1"] < TRAINED_TOP1]
    if not failed:
        return ""
    runs = ", ".join(f"`{r['model']}` seed {r['seed']} ({r['top1']:.1f}%)" for r in failed)
    return (f" Left out of the means: {runs}, whose held-out top-1 stayed under twice chance "
            f"({TRAINED_TOP1:.1f}%): it never left the plateau at chance within its budget.")


def teach_time(root: Path) -> str:
    """The teaching runs' training time, from ``bench/teaching_models.py``'s rows (each checkpoint's
    ``train_seconds``: optimiser steps and validation, one thread per job)."""
    report, _ = _seed_rows(root)
    by_model = _by_model(report["results"])  # every run, trained or not: each took its time
    seeds = sorted({r["seed"] for r in report["results"]})
    total = {seed: sum(r["train_seconds"] for r in report["results"] if r["seed"] == seed) / 60 for seed in seeds}
    per_model = ", ".join(f"`{name}` {pm([r['train_seconds'] / 60 for r in rows])} min"
                          for name, rows in by_model.items())
    return (f"Training time from the checkpoints (`train_seconds`: optimiser steps and validation, one thread per "
            f"job; not the rendering of the training set nor the held-out evaluation), mean ± sd over "
            f"{len(seeds)} seeds: {per_model}. One seed's {len(by_model)} models take "
            + ", ".join(f"{minutes:.0f} (seed {seed})" for seed, minutes in total.items())
            + f" job-minutes, so about half that on two cores with `--jobs 2` on an otherwise idle machine; all "
            f"{len(seeds)} seeds {sum(total.values()):.0f} job-minutes.\n")


def seed_table(root: Path) -> str:
    """Held-out and cue-conflict figures of every teaching model, mean ± sd over its training seeds."""
    report, by_model = _seed_rows(root)
    lines = ["| model | seeds | held-out top-1 | shape alone | texture alone | cue conflict: object's class "
             "| object's shape | decoy's shape | object's texture | decoy's texture |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in by_model.items():
        c = lambda key: pm([r["conflict"][key] for r in rows])  # noqa: E731
        lines.append(f"| `{name}` | {len(rows)} | {pm([r['top1'] for r in rows])} | {pm([r['shape'] for r in rows])} "
                     f"| {pm([r['texture'] for r in rows])} | {c('top1')} | {c('shape')} | {c('decoy_shape')} "
                     f"| {c('texture')} | {c('decoy_texture')} |")
    return ("\n".join(lines) + f"\n\nIn % of {report['samples']} held-out images (seed {report['heldout_seed']}), "
            f"mean ± sd over training seeds {', '.join(str(s) for s in sorted({r['seed'] for r in report['results']}))} "
            f"(seed 0 ships). Cue conflict: {report['samples']} images of the split whose decoys, as large as the "
            f"object, carry another class's shape (a filled silhouette) and texture (a blob); chance is 25% for a "
            f"shape and 33% for a texture.{_untrained(report)} `{report['command']}` ({describe(report)}).\n")


def interventions_table(root: Path) -> str:
    """Held-out top-1 of the models that make tokens (the ViT and the fusion models) under each token
    intervention of each kind, mean ± sd over seeds."""
    report, by_model = _seed_rows(root)
    hows = ("zero", "dataset_mean", "contents_averaged", "layout_shuffled")
    lines = ["| model | tokens changed | intact | zeroed: the other kind alone | data-set mean | contents averaged "
             "| layout shuffled |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in _with_tokens(by_model):
        rows = by_model[name]
        for kind in rows[0]["interventions"]:
            cells = " | ".join(pm([r["interventions"][kind][how] for r in rows]) for how in hows)
            lines.append(f"| `{name}` | {'CNN' if kind == 'cnn' else 'patch'} | {pm([r['top1'] for r in rows])} | {cells} |")
    return ("\n".join(lines) + "\n\nHeld-out top-1 (%) with every token of one kind changed as it is made "
            "(`tokenfusion.interventions`): zeroed or set to its data-set mean (removed: the other kind alone; "
            "`vit` has no other kind, so nothing is left), its contents averaged over the image (positions kept), or "
            "its contents shuffled among the positions (where each token is lost). Same images, seeds and command "
            "as above.\n")


def _without_patch(rows: list[dict[str, Any]]) -> str:
    """The control of a fusion model's margin over the baselines: what removing its patch tokens costs."""
    cost = mean_sd([_KIND_FIGURES["removing the patch tokens costs"](r) for r in rows])
    if _beyond(cost[0], cost[1]):
        return f"; removing its patch tokens costs {cost[0]:.1f} ± {cost[1]:.1f} points of it"
    return (f"; its patch tokens zeroed, it loses {cost[0]:.1f} ± {cost[1]:.1f} points (within the spread), so what it gains "
            f"over the baselines does not come from its patch tokens")


def fusion_targets(root: Path) -> str:
    """The teaching models' targets checked on the seed means: each kind alone, the cost of removing
    either, and fusion against both baselines."""
    _, by_model = _seed_rows(root)
    top1 = {name: mean_sd([r["top1"] for r in rows]) for name, rows in by_model.items()}
    conflict = {name: mean_sd([r["conflict"]["top1"] for r in rows]) for name, rows in by_model.items()}
    fusion = _fusion(by_model)
    lines = []
    for name in fusion:
        rows = by_model[name]
        alone = {kind: mean_sd([r["interventions"][other]["zero"] for r in rows])
                 for kind, other in (("cnn", "patch"), ("patch", "cnn"))}
        cost = {kind: mean_sd([r["top1"] - r["interventions"][kind]["zero"] for r in rows]) for kind in ("cnn", "patch")}
        # Each cost against its own spread over the seeds and the intact model's.
        spread = {kind: _spread(sd, top1[name][1]) for kind, (_, sd) in cost.items()}
        needed = all(cost[kind][0] > spread[kind] for kind in cost)
        against = (f"against seed spreads of {spread['cnn']:.1f} and {spread['patch']:.1f} (the larger of the cost's "
                   f"sd, the intact model's and {MIN_SPREAD:g} point; target: each above its own: "
                   f"{'met' if needed else '**missed**'})" if len(rows) > 1 else
                   "with one trained seed, so no seed spread to weigh them against (target: not measurable)")
        lines.append(
            f"- `{name}`: CNN tokens alone {alone['cnn'][0]:.1f}%, patch tokens alone {alone['patch'][0]:.1f}% "
            f"(target ≥ 50% each: {met(min(alone['cnn'][0], alone['patch'][0]), 50, at_most=False)}); removing "
            f"the CNN tokens costs {cost['cnn'][0]:.1f} points, the patch tokens {cost['patch'][0]:.1f}, {against}.")
    for name, figure in (("held-out", top1), ("cue-conflict", conflict)):
        best = max(fusion, key=lambda a: figure[a][0])
        margin = min(figure[best][0] - figure[b][0] for b in BASELINES)
        spread = max(figure[a][1] for a in (best, *BASELINES))
        lines.append(f"- Best fusion model on {name} top-1: `{best}` {figure[best][0]:.1f}%, "
                     f"{margin:+.1f} points over the better baseline ({', '.join(f'`{b}` {figure[b][0]:.1f}%' for b in BASELINES)}), "
                     f"largest seed sd among them {spread:.1f} (target: beats both by more: {met(margin, spread, at_most=False)})"
                     + (_without_patch(by_model[best]) if name == "held-out" else "") + ".")
    return "\n".join(lines) + "\n"


CHANCE = 100 / 12

#: The least spread a difference must exceed to count, in points: a figure on the held-out images
#: moves by about this much from one draw to another, even where the seeds agree more closely.
MIN_SPREAD = 1.0


def _spread(*spreads: float) -> float:
    """The spread a difference must exceed to count: the largest of ``spreads`` and :data:`MIN_SPREAD`."""
    return max(*spreads, MIN_SPREAD)


def _beyond(difference: float, *spreads: float) -> bool:
    """Whether ``difference`` (in points) exceeds every one of ``spreads`` and :data:`MIN_SPREAD`."""
    return difference > _spread(*spreads)


#: Figures of a run (a row of ``bench/teaching_models.py``): its held-out top-1 and each cue alone ...
_CUE_FIGURES = {
    "held-out top-1": lambda r: r["top1"],
    "shape alone": lambda r: r["shape"],
    "texture alone": lambda r: r["texture"],
}
#: ... and, for a fusion model, each kind of token alone (the other zeroed) and the cost of removing each.
_KIND_FIGURES = {
    "CNN tokens alone": lambda r: r["interventions"]["patch"]["zero"],
    "patch tokens alone": lambda r: r["interventions"]["cnn"]["zero"],
    "removing the CNN tokens costs": lambda r: r["top1"] - r["interventions"]["cnn"]["zero"],
    "removing the patch tokens costs": lambda r: r["top1"] - r["interventions"]["patch"]["zero"],
}


def teaching_findings(root: Path) -> str:
    """What the seeds' figures say, sentence by sentence, each from a number against its control
    (chance, the intact model, the decoys, the seed spread)."""
    _, by_model = _seed_rows(root)
    stat = lambda name, get: mean_sd([get(r) for r in by_model[name]])  # noqa: E731
    top1 = {name: stat(name, lambda r: r["top1"]) for name in by_model}
    fusion = _fusion(by_model)
    lines = []
    base = ", ".join(f"`{b}` {pm([r['top1'] for r in by_model[b]])}%" for b in BASELINES if b in top1)
    lines.append(f"- Held-out top-1 of the baselines: {base}; of the fusion models: "
                 + ", ".join(f"`{a}` {pm([r['top1'] for r in by_model[a]])}%" for a in fusion) + ".")
    for name in by_model:
        shape, texture = stat(name, lambda r: r["shape"]), stat(name, lambda r: r["texture"])
        if _beyond(texture[0] - shape[0], shape[1], texture[1]):
            lines.append(f"- `{name}` names the texture (the local cue) right more often than the shape: "
                         f"{texture[0]:.1f}% against {shape[0]:.1f}%.")
        elif _beyond(shape[0] - texture[0], shape[1], texture[1]):
            lines.append(f"- `{name}` names the shape (the global cue) right more often than the texture: "
                         f"{shape[0]:.1f}% against {texture[0]:.1f}%.")
    for model in _with_tokens(by_model):
        for kind, other in (("cnn", "patch"), ("patch", "cnn")) if model in fusion else ():
            alone = stat(model, lambda r: r["interventions"][other]["zero"])
            name = "CNN" if kind == "cnn" else "patch"
            verdict = ("above chance by more than its seed spread" if _beyond(alone[0] - CHANCE, alone[1]) else
                       f"not above chance ({CHANCE:.1f}%) by more than its seed spread")
            lines.append(f"- `{model}` with its {name} tokens alone (the other kind zeroed): "
                         f"{pm([r['interventions'][other]['zero'] for r in by_model[model]])}%, {verdict}.")
        for kind in by_model[model][0]["interventions"]:
            removed = stat(model, lambda r: r["interventions"][kind]["zero"])
            shuffled = stat(model, lambda r: r["interventions"][kind]["layout_shuffled"])
            cost = top1[model][0] - shuffled[0]
            if _beyond(top1[model][0] - removed[0], top1[model][1]):  # the kind is used: does where matter?
                name = "CNN" if kind == "cnn" else "patch"
                where = ("where each token is matters" if _beyond(cost, top1[model][1], shuffled[1])
                         else "their contents suffice, wherever they are")
                lines.append(f"- `{model}` with its {name} tokens' layout shuffled: {shuffled[0]:.1f}% "
                             f"({cost:.1f} points below intact, against {top1[model][0] - removed[0]:.1f} without "
                             f"them): {where}.")
    if {"early", "early-greedy"} <= by_model.keys():
        lines.append(_kind_dropout_effect(by_model["early"], by_model["early-greedy"]))
    for name in by_model:
        own, decoy = stat(name, lambda r: r["conflict"]["shape"]), stat(name, lambda r: r["conflict"]["decoy_shape"])
        own_t, decoy_t = (stat(name, lambda r: r["conflict"]["texture"]),
                          stat(name, lambda r: r["conflict"]["decoy_texture"]))
        lines.append(f"- Cue conflict, `{name}`: the object's shape {own[0]:.1f}% against the decoy's {decoy[0]:.1f}%, "
                     f"the object's texture {own_t[0]:.1f}% against the decoy's {decoy_t[0]:.1f}%.")
    return "\n".join(lines) + "\n"


def _kind_dropout_effect(dropped: list[dict[str, Any]], greedy: list[dict[str, Any]]) -> str:
    """What kind dropout changed in ``early``, against the same model trained without it: each
    figure's difference, said to exceed the seed spread or not."""
    figures = {
        "held-out top-1": _CUE_FIGURES["held-out top-1"],
        "CNN tokens alone": _KIND_FIGURES["CNN tokens alone"],
        "patch tokens alone": _KIND_FIGURES["patch tokens alone"],
        "the cost of removing the patch tokens": _KIND_FIGURES["removing the patch tokens costs"],
    }
    parts = []
    for label, get in figures.items():
        (a, sd_a), (b, sd_b) = mean_sd([get(r) for r in dropped]), mean_sd([get(r) for r in greedy])
        beyond = _beyond(abs(a - b), sd_a, sd_b)
        parts.append(f"{label} {a:.1f} against {b:.1f}{'' if beyond else ' (within the seed spread)'}")
    return ("- Kind dropout, `early` (trained with it) against `early-greedy` (the same model and recipe without "
            "it): " + "; ".join(parts) + ".")


def results_summary(root: Path) -> str:
    """The figures docs/results.md's reading of the results rests on: the seeds' table, the interventions and
    the targets checked."""
    return (f"{seed_table(root)}\n{interventions_table(root)}\nWhat the figures say (each against its control: "
            f"chance, the intact model, the decoys, the seed spread):\n\n{teaching_findings(root)}\n"
            f"Targets (each kind alone ≥ 50%, removing either costs more than the seed spread, a fusion model beats "
            f"both baselines by more than the seed spread):\n\n{fusion_targets(root)}")



def attempts_section(root: Path) -> str:
    """Each counter-measure tried and not shipped (``train.teach.ATTEMPTS``, from
    ``bench/results/teaching_attempts.json``) beside the model it is measured against (``Attempt.against``:
    a teaching model or another attempt) at the same training seeds; a difference counts only beyond the
    figure's spread (:func:`_spread` of both models' sds over their seeds)."""
    report = load(root, "teaching_attempts.json")
    attempts = _by_model(report["results"])
    by_model = {**_seed_rows(root)[1], **attempts}
    columns = (*_CUE_FIGURES, *_KIND_FIGURES)
    lines = ["| model | what it tries | seeds | " + " | ".join(columns) + " |", "|---|---|---:|" + "---:|" * len(columns)]
    verdicts = []
    for name, rows in attempts.items():
        attempt, seeds = ATTEMPTS[name], [r["seed"] for r in rows]
        against = by_model[attempt.against]
        reference = [r for r in against if r["seed"] in seeds]
        figures = {**_CUE_FIGURES, **(_KIND_FIGURES if attempt.arch in FUSION_ARCHS else {})}
        shipped = " (shipped)" if attempt.against in TEACHING_MODELS else ""
        for label, runs, what in ((f"`{name}`", rows, attempt.tries), (f"`{attempt.against}`{shipped}", reference, "")):
            cells = [pm([figures[column](r) for r in runs]) if column in figures else "—" for column in columns]
            lines.append(f"| {label} | {what} | {', '.join(str(r['seed']) for r in runs)} | " + " | ".join(cells) + " |")
        parts = []
        for label, get in figures.items():
            (a, sd), b = mean_sd([get(r) for r in rows]), mean_sd([get(r) for r in reference])[0]
            spread = _spread(sd, mean_sd([get(r) for r in against])[1])
            parts.append(f"{label} {a:.1f} against {b:.1f} "
                         + ("(beyond" if abs(a - b) > spread else "(within") + f" the spread {spread:.1f})")
        verdicts.append(f"- `{name}` against `{attempt.against}` at the same seeds, each difference weighed against "
                        f"the spread of that figure (the larger of its sd over `{name}`'s {_seeds(len(rows))}, over "
                        f"`{attempt.against}`'s {len(against)} and {MIN_SPREAD:g} point): " + "; ".join(parts) + ".")
    return ("\n".join(lines) + "\n\n" + "\n".join(verdicts) + f"\n\nSame held-out images and measures as above "
            f"({report['samples']} images, seed {report['heldout_seed']}); `{report['command']}` ({describe(report)}).\n")


def _seeds(count: int) -> str:
    """``count`` training seeds, in words."""
    return f"{count} seed{'s' if count != 1 else ''}"


#: Validation top-1 above which a run has left the plateau at chance (1.5 x chance, 12 classes).
LEFT_CHANCE = 150 / 12


def leaving_chance(root: Path) -> str:
    """When each ViT run (the teaching seeds and the attempts) left chance, and the learning rate it had then,
    from the histories in ``bench/teaching_models.py``'s files (an indented list item's continuation)."""
    runs = sorted((r for r in load(root, "teaching_models.json")["results"] + load(root, "teaching_attempts.json")["results"]
                   if r["arch"] == "vit"), key=lambda r: (r["model"] != "vit", r["model"], r["seed"]))
    parts = []
    for r in runs:
        first = next((h for h in r["history"] if h["top1"] > LEFT_CHANCE), None)
        peak = max(h["lr"] for h in r["history"])
        when = (f"epoch {first['epoch']} of {len(r['history'])}, lr {first['lr']:.1e} (peak {peak:.0e})" if first
                else f"never in {len(r['history'])} epochs (peak lr {peak:.0e})")
        parts.append(f"`{r['model']}` seed {r['seed']}: {when}")
    return (f"  When each ViT run's validation top-1 first passed {LEFT_CHANCE:.1f}% (1.5 × chance), and its learning "
            f"rate at the end of that epoch: " + "; ".join(parts) + ".\n")
