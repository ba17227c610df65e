"""Score every explanation method on every checkpoint against SynthShapes masks, beside two controls.

    python bench/score_explanations.py --checkpoints checkpoints/ --images 500 --seed 12345 \\
        --out bench/results/explain_scores.json --markdown

For every checkpoint, every method that applies (:func:`available_methods`) at its default
layer, plus the last layer of each other token kind, explains the ``--target`` class (default:
the true label) of ``--images`` held-out SynthShapes images (``--seed``; training uses other
seeds) and records: pointing game (a hit when the map's maximum lies within ``--tolerance`` pixels
of the object mask, by default Zhang et al. 2018's 15 px at 224 px scaled to the image,
``round(15 * side / 224)``: 4 px at 64 px, 3 px at 48 px; a blank map is a miss) and energy inside the
object mask, the number of blank maps, deletion and insertion AUC (target probability, ``--steps``
steps, ``--baseline``), the mean Spearman correlation of the cascading randomisation check (lower is
better) over those of the first ``--random-images`` images whose trained map is not blank (a
constant map has no ranks to correlate), and milliseconds per explanation.

Two controls, on the same images: each checkpoint gets a control row (method ``centre-prior``, family
``control``): one fixed centred Gaussian (σ = ``--centre-sigma`` times the side) for every image,
which ignores it, scored like the methods (pointing game with the same tolerance, energy, deletion
and insertion); and every row records its own maps scored against a mismatched mask, image i's map
against the mask of image (i + 1) mod n of the scored set (``pointing_game_mismatched``,
``mask_energy_mismatched``). A row ``localises`` only when its pointing game and its energy are both
above the centre prior's and above its own mismatched scores (:func:`~tokenfusion.explain.scores.localises`).

The JSON file also holds the command, date, commit, threads and load average, and in its settings
the tolerance asked for (None: scaled to each image) and the pixels it came to per checkpoint
(``tolerance_px``). ``--update`` rescores the ``--methods`` named (say, after a method's defaults
changed) and the control row, and replaces their rows in ``--out``, recording its own command, date
and settings under ``updates``; ``python -m bench.report`` puts :func:`summary_table`,
:func:`controls_note`, :func:`target_checks` and :func:`findings` of the files into the README.
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data import HELDOUT_SEED, SynthShapes
from tokenfusion.explain import METHODS, explain
from tokenfusion.explain.metrics import (
    CENTRE_PRIOR_SIGMA, centre_prior, is_blank, pointing_tolerance, randomisation_check,
)
from tokenfusion.explain.scores import CENTRE_PRIOR, CONTROL_FAMILY, is_control
from tokenfusion.explain.scoring import (
    GRADIENT_METHODS, control_scores, judged, map_figures, tolerance_px, variants,
)
from tokenfusion.models import ARCHITECTURES, create

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
from bench.provenance import provenance  # noqa: E402

__all__ = ["variants", "chance_level", "score_checkpoint", "judged", "merged", "commands", "markdown_table",
           "summary_table", "controls_note", "target_checks", "findings", "findings_text",
           "main"]

COLUMNS = ("pointing_game", "mask_energy", "deletion_auc", "insertion_auc", "randomisation_spearman", "ms_per_image")
#: The same maps scored against another image's mask (image i's map, image i + 1's mask).
MISMATCHED = ("pointing_game_mismatched", "mask_energy_mismatched")
#: The method name of :func:`summary_table`'s row that sums up the mismatched-mask control of a model.
MISMATCHED_ROW = "mismatched mask"
#: The rows of :func:`summary_table` per model: (method, target), the target ``"default"``, ``"all"``
#: or a token kind (every target of that kind).
SUMMARY = (("rollout", "all"), ("gradcam", "default"), ("gradcam", "patch"), ("layercam", "default"),
           ("scorecam", "default"), ("integrated_gradients", "default"), ("occlusion", "default"))


def chance_level(
    images: int, seed: int, image_size: int, tolerance: int | None = None, sigma: float = CENTRE_PRIOR_SIGMA
) -> dict[str, float]:
    """What maps that ignore the image score on the first ``images`` SynthShapes images of ``seed``
    at ``image_size`` (no model needed), with the pointing game's ``tolerance`` (None: scaled to the
    image, :func:`pointing_tolerance`): :func:`~tokenfusion.explain.scoring.control_scores` of their
    masks. The centre prior points into the object in the images whose mask comes within the
    tolerance of the image centre; a blank map points nowhere and has no mass."""
    data = SynthShapes(images, image_size=image_size, seed=seed)
    masks = [torch.from_numpy(data.sample(i).mask) for i in range(images)]
    return control_scores(masks, tolerance_px(tolerance, image_size), sigma)


def score_checkpoint(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per ``(method, layer, kind)`` with the mean of each score over the images, after the
    checkpoint's control row (``centre-prior``, family ``control``); every row also holds its maps'
    scores against mismatched masks (image i's map, the mask of image (i + 1) mod n) and whether it
    :func:`~tokenfusion.explain.scores.localises`."""
    checkpoint = load_checkpoint(path)
    model = checkpoint.model.eval()
    config = model.config
    size = config.img_size
    tolerance = tolerance_px(args.tolerance, size)
    data = SynthShapes(args.images, image_size=size, seed=args.seed)
    masks = [torch.from_numpy(data.sample(i).mask) for i in range(len(data))]
    chosen = variants(model, args.methods)
    sums: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    families: dict[tuple, str] = {}
    curve = dict(steps=args.steps, baseline=args.baseline)
    for i in tqdm(range(len(data)), desc=path.name, unit="img"):
        image, label = data[i]
        mask, other = masks[i], masks[(i + 1) % len(masks)]
        x = TF.normalize(image, list(config.mean), list(config.std))[None]
        with torch.no_grad():
            predicted = int(model(x).argmax())
        target = label if args.target == "label" else predicted

        def record(key: tuple, family: str, saliency: torch.Tensor, seconds: float) -> dict[str, list[float]]:
            families[key] = family
            row = sums[key]
            for name, value in map_figures(model, x, saliency, target, mask, other, tolerance, **curve).items():
                row[name].append(value)
            row["ms_per_image"].append(1000 * seconds)
            row["correct"].append(float(predicted == label))
            return row

        start = time.perf_counter()
        prior = centre_prior(size, size, args.centre_sigma)  # the same map for every image
        record((CENTRE_PRIOR, None, None), CONTROL_FAMILY, prior, time.perf_counter() - start)
        for info, layer, kind in chosen:
            options = {"kind": kind, **_options(args).get(info.name, {})}
            e = explain(model, x, info.name, layer, target, **options)
            row = record((info.name, layer, kind), info.family, e.map, e.seconds)
            if i < args.random_images and not is_blank(e.map):  # a blank map has no ranks to correlate
                fn = lambda m, x, n=info.name, at=layer, o=options: explain(m, x, n, at, target, **o)  # noqa: E731
                check = randomisation_check(model, x, fn, steps=args.random_steps, seed=args.seed, reference=e)
                row["randomisation_spearman"].append(check.mean)
    rows = []
    for key, values in sums.items():
        method, layer, kind = key
        row = dict(checkpoint=path.name, arch=config.arch, size=config.size, method=method, layer=layer, kind=kind,
                   family=families[key], images=len(values["ms_per_image"]), accuracy=_mean(values["correct"]),
                   blank_maps=int(sum(values["blank_maps"])),
                   randomisation_images=len(values["randomisation_spearman"]), image_size=size, tolerance=tolerance)
        if families[key] == CONTROL_FAMILY:
            row["sigma"] = args.centre_sigma
        row.update({c: _mean(values[c]) for c in COLUMNS + MISMATCHED})
        rows.append(row)
    return judged(rows)


def _options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The method options the command line sets, by method (``--occlusion-stride``)."""
    return {"occlusion": {"stride": args.occlusion_stride}}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (pointing game and energy: higher is better; deletion AUC and
    randomisation Spearman: lower is better; insertion AUC: higher is better; blank: images whose
    map is blank, each a miss in the pointing game; "other mask": the same maps' pointing game and
    energy against another image's mask; localises: yes when the pointing game and the energy beat
    both the centre prior's and the other mask's, "control" on the control rows)."""
    head = ["checkpoint", "method", "layer", "kind", "pointing ↑", "blank", "energy ↑", "pointing, other mask",
            "energy, other mask", "localises", "deletion ↓", "insertion ↑", "rand. ρ ↓", "ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["checkpoint"], r["method"], r["layer"] or "", r["kind"] or ""]
        scores = _score_cells(r, ".3f")
        mismatched = ["" if r.get(c) is None else f"{r[c]:.3f}" for c in MISMATCHED]
        cells += scores[:3] + mismatched + [_localises_cell(r)] + scores[3:] + [f"{r['ms_per_image']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _score_cells(row: dict[str, Any], spec: str) -> list[str]:
    """Pointing game, blank maps (of the row's images), then the other scores but time, formatted by ``spec``."""
    cells = ["" if row[c] is None else format(row[c], spec) for c in COLUMNS[:-1]]
    blank = "" if row.get("blank_maps") is None else f"{row['blank_maps']}/{row['images']}"  # absent in old files
    return cells[:1] + [blank] + cells[1:]


def _localises(row: dict[str, Any]) -> bool | None:
    """The row's ``localises`` (None in files written before the controls)."""
    return None if row.get("localises") is None else bool(row["localises"])


def _localises_cell(row: dict[str, Any]) -> str:
    if is_control(row):
        return "control"
    return {True: "yes", False: "no", None: ""}[_localises(row)]


@functools.cache
def _trunk_stages(arch: str, size: str) -> tuple[str, ...]:
    """The trunk stages a model of ``arch`` at ``size`` declares (``model.structure``)."""
    return create(arch, size).structure.trunk_stages


def _on_feature_map(row: dict[str, Any]) -> bool:
    return row["layer"] in _trunk_stages(row["arch"], row["size"])


def _target_name(row: dict[str, Any]) -> str:
    if row["method"] == MISMATCHED_ROW:
        return "each of its maps against the next image's mask (range)"
    if is_control(row):
        return f"fixed centred Gaussian, σ = {row.get('sigma', CENTRE_PRIOR_SIGMA):g} × side"
    if row["layer"] is None:
        return f"{row['kind']} tokens" if row["kind"] else "pixels"
    if _on_feature_map(row):
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


def _model(row: dict[str, Any]) -> str:
    """The scored model's name: its checkpoint's, without ``.pt`` (two checkpoints may share an architecture)."""
    return Path(row["checkpoint"]).stem


def _order(row: dict[str, Any]) -> tuple[int, str]:
    """Rows model by model: the baselines and strategies in the order of ``ARCHITECTURES``, then by name."""
    return ARCHITECTURES.index(row["arch"]), _model(row)


def _models(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The models of ``rows``, each once, in :func:`_order`."""
    return list(dict.fromkeys(_model(r) for r in sorted(rows, key=_order)))


def _summary_rows(rows: list[dict[str, Any]], controls: bool = False) -> list[dict[str, Any]]:
    """The rows :func:`summary_table` shows, model by model; with ``controls``, each model's control
    rows after its maps: the centre prior, then a :data:`MISMATCHED_ROW` row (``of``: every map row of
    the model scored against mismatched masks)."""
    chosen = []
    rows = sorted(rows, key=_order)
    for checkpoint in dict.fromkeys(r["checkpoint"] for r in rows):
        mine = [r for r in rows if r["checkpoint"] == checkpoint]
        for method, which in SUMMARY:
            if which == "default":
                candidates = _default_rows(mine, method)
            else:
                candidates = [r for r in mine if r["method"] == method and which in ("all", r["kind"])]
            chosen += [r for r in candidates if r not in chosen]
        if controls:
            chosen += [r for r in mine if is_control(r)]
            of = [r for r in mine if not is_control(r) and r.get("pointing_game_mismatched") is not None]
            if of:
                chosen.append(dict(checkpoint=checkpoint, arch=of[0]["arch"], size=of[0]["size"],
                                   accuracy=of[0]["accuracy"], images=of[0]["images"], method=MISMATCHED_ROW,
                                   family=CONTROL_FAMILY, layer=None, kind=None, of=of))
    return chosen


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A selection of ``rows`` (from one or several score files) for the README: per model,
    rollout per token kind, Grad-CAM at its default layer and on the last patch tokens, LayerCAM,
    ScoreCAM, Integrated Gradients and Occlusion, with the count of blank maps and whether each map
    localises; then the model's two controls: the centre prior's row, and the range of what every
    map of the model scored against another image's mask."""
    head = ("| model (top-1 here) | method | target | pointing ↑ | blank | energy ↑ | localises | deletion ↓ "
            "| insertion ↑ | rand. ρ ↓ | ms |")
    lines = [head, "|---|---|---|---:|---:|---:|:-:|---:|---:|---:|---:|"]
    for r in _summary_rows(rows, controls=True):
        cells = [f"`{_model(r)}` ({100 * r['accuracy']:.0f}%)", r["method"], _target_name(r)]
        if r["method"] == MISMATCHED_ROW:
            spans = [_span([m[c] for m in r["of"]]) for c in MISMATCHED]
            cells += [spans[0], "", spans[1], "control", "", "", "", ""]
        else:
            scores = _score_cells(r, ".2f")
            cells += scores[:3] + [_localises_cell(r)] + scores[3:] + [f"{r['ms_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def controls_note(rows: list[dict[str, Any]]) -> str:
    """The pointing game's tolerance and the two controls in words, each control's figures read from
    the control rows and the mismatched-mask scores of ``rows`` (files written before the controls:
    said so)."""
    maps = [r for r in rows if not is_control(r)]
    centres = [r for r in rows if is_control(r)]
    tolerances = sorted({(r["image_size"], r["tolerance"]) for r in rows if r.get("tolerance") is not None})
    if tolerances:
        told = "; ".join(f"{t} px at {s} px" + ("" if t == pointing_tolerance(s) else
                                                f", set by `--tolerance` (the default there: "
                                                f"{pointing_tolerance(s)} px)")
                         for s, t in tolerances)
        text = (f"Pointing game: a hit when the map's maximum lies within the tolerance of the object's mask ({told}; "
                "the default of `--tolerance` is Zhang et al. 2018's 15 px at 224 px scaled to the image, "
                "round(15 × side / 224)); a blank map is a miss.")
    else:
        text = ("Pointing game: these files predate the tolerance recorded per row; their `settings` give it "
                "(`tolerance`, 0: the maximum must lie on the mask itself).")
    mismatched = [r for r in maps if r.get("pointing_game_mismatched") is not None]
    if not centres or not mismatched:
        return text + (" These files were scored before the controls (a centre-prior map, each map against another "
                       "image's mask), so whether a map localises the object rather than the image centre is not "
                       "known: rescore them.")
    sigmas = "/".join(f"{s:g}" for s in sorted({r.get("sigma", CENTRE_PRIOR_SIGMA) for r in centres}))
    judged_rows = [r for r in maps if _localises(r) is not None]
    found = sum(bool(_localises(r)) for r in judged_rows)
    return text + (
        f" Two controls, on the same images: the centre prior (`{CENTRE_PRIOR}`, family `{CONTROL_FAMILY}`), one "
        f"centred Gaussian (σ = {sigmas} × side) for every image, which ignores the image, points into the object "
        f"{_span([r['pointing_game'] for r in centres])} of the time and puts "
        f"{_span([r['mask_energy'] for r in centres])} of its mass on it; and each map scored against a mismatched "
        f"mask (image i's map against the mask of image i + 1 of the same images) points into that object "
        f"{_span([r['pointing_game_mismatched'] for r in mismatched])} of the time, with "
        f"{_span([r['mask_energy_mismatched'] for r in mismatched])} of its mass on it. A map localises "
        f"(`localises`) only when its pointing game and its energy are both above the centre prior's and above its "
        f"own against the mismatched mask: {found} of the {len(judged_rows)} maps scored here do.")


def target_checks(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, checked on every row (control rows left out): Grad-CAM pointing game >=
    0.90 (default layer), insertion AUC > deletion AUC, randomisation correlation < 0.3 for gradient
    methods. One Markdown bullet per target, naming every miss."""
    def where(r: dict[str, Any]) -> str:
        return f"`{_model(r)}` {r['method']} on {_target_name(r)}"

    rows = [r for r in rows if not is_control(r)]
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


def _span(values: list[float]) -> str:
    """``lo-hi`` of ``values`` at two decimals, one figure when they round alike."""
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    return lo if lo == hi else f"{lo} to {hi}" if min(values) < 0 else f"{lo}-{hi}"


def _count_span(counts: list[int]) -> str:
    return str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def _where(rows: list[dict[str, Any]], key: str) -> str:
    return "; ".join(f"`{_model(r)}` {r['method']} on {_target_name(r)} ({r[key]:.2f})" for r in rows)


def findings(rows: list[dict[str, Any]]) -> str:
    """What the score ``rows`` show, as Markdown bullets whose every figure is read from the rows:
    which maps localise, each map measured against its model's centre prior (the control rows;
    rows of files written before the controls are named as such), then method by method."""
    centres = {r["checkpoint"]: r for r in rows if is_control(r)}
    rows = sorted((r for r in rows if not is_control(r)), key=_order)

    def pick(method: str, **where: Any) -> list[dict[str, Any]]:
        return [r for r in rows if r["method"] == method and all(w(r) for w in where.values())]

    def centre(r: dict[str, Any]) -> dict[str, Any] | None:
        return centres.get(r["checkpoint"])

    fused = lambda r: r["arch"] not in ("cnn", "vit")  # noqa: E731
    transformer = lambda r: r["arch"] != "cnn"  # noqa: E731
    trunk = _on_feature_map
    tokens = lambda r: r["layer"] is not None and not _on_feature_map(r)  # noqa: E731
    out = []
    stale = _models(r for r in rows if r.get("blank_maps") is None)
    if stale:
        out.append(f"- Not yet rescored with blank maps as misses, so their pointing game still counts blank maps as "
                   f"hits and their randomisation ρ averages them in: {', '.join(f'`{a}`' for a in stale)}.")
    uncontrolled = _models(r for r in rows if _localises(r) is None)
    if uncontrolled:
        out.append("- Scored before the controls (a centre-prior map, each map against another image's mask), so "
                   f"whether their maps localise is not known: {', '.join(f'`{a}`' for a in uncontrolled)}.")
    judged_rows = [r for r in rows if _localises(r) is not None]
    if judged_rows:
        counts = [(m, [r for r in judged_rows if _model(r) == m]) for m in _models(judged_rows)]
        line = (f"- Maps that localise the object (pointing game and energy both above the centre prior's and above "
                f"their own against another image's mask): {sum(bool(r['localises']) for r in judged_rows)} of "
                f"{len(judged_rows)} scored maps; " +
                ", ".join(f"`{a}` {sum(bool(r['localises']) for r in rs)} of {len(rs)}" for a, rs in counts))
        controls = [centre(r) for r in judged_rows if centre(r) is not None]
        if controls:
            line += (f". The centre prior alone points into the object {_span([c['pointing_game'] for c in controls])} "
                     f"of the time (energy {_span([c['mask_energy'] for c in controls])}); the maps against another "
                     f"image's mask {_span([r['pointing_game_mismatched'] for r in judged_rows])} (energy "
                     f"{_span([r['mask_energy_mismatched'] for r in judged_rows])})")
        out.append(line + ".")
    default = _default_rows(rows, "gradcam")
    met = [r for r in default if r["pointing_game"] >= 0.9]
    out.append(f"- Grad-CAM at its default layer meets the pointing-game target (>= 0.90) on {len(met)} of "
               f"{len(default)} models: " + ", ".join(f"`{_model(r)}` {r['pointing_game']:.2f}" for r in default) + ".")
    cams = pick("gradcam", t=transformer)
    if cams:
        blank = [r["blank_maps"] for r in cams if r.get("blank_maps") is not None]
        below = [r for r in cams if centre(r) is not None and r["pointing_game"] <= centre(r)["pointing_game"]]
        worse = [r for r in cams if r["insertion_auc"] < r["deletion_auc"]]
        line = (f"- Where the decision passes through a transformer, Grad-CAM on the trunk or on token layers points "
                f"into the object {_span([r['pointing_game'] for r in cams])} of the time")
        if blank:
            line += f"; its map is blank on {_count_span(blank)} of the {cams[0]['images']} images per row"
        if below:
            line += (f"; not above the centre prior ({_span([centre(r)['pointing_game'] for r in below])}) on " +
                     _where(below, "pointing_game"))
        line += f". {len(worse)} of these {len(cams)} maps have insertion AUC below deletion."
        others = [(name, pick(method, **where)) for name, method, where in (
            ("ScoreCAM", "scorecam", {}), ("LayerCAM on the trunk", "layercam", {"t": trunk}),
            ("Integrated Gradients", "integrated_gradients", {}), ("Occlusion", "occlusion", {}))]
        line += (" Across every model and layer, the share of maps that point into the object: " +
                 ", ".join(f"{name} {_span([r['pointing_game'] for r in rs])}" for name, rs in others if rs) + "." +
                 (" (ScoreCAM weighs each channel by what masking the image with it does to the score, not by a "
                  "gradient.)" if others[0][1] else ""))
        out.append(line)
    rollout_cnn = pick("rollout", f=fused, k=lambda r: r["kind"] == "cnn")
    attention_cnn = pick("attention", f=fused, k=lambda r: r["kind"] == "cnn")
    rollout_patch = pick("rollout", f=fused, k=lambda r: r["kind"] == "patch")
    rollout_vit = pick("rollout", v=lambda r: r["arch"] == "vit")
    if rollout_cnn or rollout_patch:
        line = "- Rollout over CNN tokens points into the object " + ", ".join(
            f"{r['pointing_game']:.2f} of the time in `{_model(r)}`" for r in rollout_cnn)
        if attention_cnn:
            line += "; the class token's last attention over CNN tokens: " + ", ".join(
                f"{r['pointing_game']:.2f} in `{_model(r)}` (`{r['layer']}`)" for r in attention_cnn)
        if rollout_patch:
            line += (". Rollout over patch tokens in the fusion models: "
                     f"{_span([r['pointing_game'] for r in rollout_patch])}")
            priors = [centre(r)["pointing_game"] for r in rollout_patch if centre(r) is not None]
            if priors:
                line += f" (the centre prior: {_span(priors)})"
        if rollout_vit:
            line += f"; in the `vit`, {rollout_vit[0]['pointing_game']:.2f}"
            if rollout_patch and max(r["pointing_game"] for r in rollout_patch) < rollout_vit[0]["pointing_game"]:
                line += ": the fusion models' patch tokens follow the object less than the `vit`'s"
        out.append(line + ".")
    eigen = pick("eigencam", t=tokens)
    if eigen:
        below = [r for r in eigen if r["insertion_auc"] < r["deletion_auc"]]
        out.append(f"- EigenCAM on token layers: insertion AUC {_span([r['insertion_auc'] for r in eigen])}, deletion "
                   f"{_span([r['deletion_auc'] for r in eigen])}; insertion below deletion on {len(below)} of {len(eigen)} "
                   "rows. The first principal component of the tokens need not be about the class.")
    rho = lambda rs: [r["randomisation_spearman"] for r in rs if r["randomisation_spearman"] is not None]  # noqa: E731
    groups = [("Grad-CAM", pick("gradcam")), ("Integrated Gradients", pick("integrated_gradients")),
              ("LayerCAM and Grad-CAM++ on the trunk", pick("layercam", t=trunk) + pick("gradcam++", t=trunk)),
              ("rollout", pick("rollout"))]
    groups = [(name, rho(rs)) for name, rs in groups if rho(rs)]
    if groups:
        used = [r["randomisation_images"] for r in rows if r.get("randomisation_images") is not None]
        line = ("- Randomisation check, Spearman ρ between the trained map and the maps as the weights are "
                "re-initialised from the head down (lower: the map depends more on the weights): " +
                "; ".join(f"{name} {_span(values)}" for name, values in groups))
        if used:
            line += (f". Blank maps are left out of the check: a row averages {_count_span(used)} of the first "
                     "images")
        out.append(line + ".")
    return "\n".join(out) + "\n"


def _results(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The reports in the score files ``paths`` and all their rows."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    return reports, [row for report in reports for row in report["results"]]


def findings_text(paths: list[Path]) -> str:
    """:func:`findings` of the score files ``paths`` (each map against the control rows of its own file)."""
    return findings(_results(paths)[1])


class UpdateError(ValueError):
    """An ``--update`` whose results file is missing or was scored otherwise."""


#: Settings an ``--update`` must share with the file it updates: they decide what a score means.
SHARED_SETTINGS = ("images", "seed", "target", "steps", "baseline", "tolerance", "centre_sigma", "random_images",
                   "random_steps")


def _updated(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The report in ``out`` that a run with ``settings`` may update (:class:`UpdateError` if none)."""
    if not settings["methods"]:
        raise UpdateError("--update rescores the --methods named; name them")
    try:
        earlier = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise UpdateError(f"no results file to update ({e})") from e
    problems = [f"{k} {settings[k]!r} (the file: {earlier['settings'].get(k)!r})" for k in SHARED_SETTINGS
                if earlier["settings"].get(k) != settings[k]]
    unscored = sorted({Path(c).name for c in settings["checkpoints"]} - {r["checkpoint"] for r in earlier["results"]})
    if unscored:
        problems.append(f"it does not score {', '.join(unscored)}")
    pixels = earlier["settings"].get("tolerance_px") or {}
    problems += [f"a tolerance of {px} px on {name} (the file: {pixels[name]} px)"
                 for name, px in settings["tolerance_px"].items() if name in pixels and pixels[name] != px]
    if problems:
        raise UpdateError("; ".join(problems))
    return earlier


def merged(earlier: list[dict[str, Any]], rescored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``earlier`` rows with those of every ``(checkpoint, method)`` in ``rescored`` replaced by its new
    rows, where the first of the old ones stood (at the end when the file did not score it)."""
    new: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rescored:
        new[row["checkpoint"], row["method"]].append(row)
    out, placed = [], set()
    for row in earlier:
        key = (row["checkpoint"], row["method"])
        if key not in new:
            out.append(row)
        elif key not in placed:
            out += new[key]
            placed.add(key)
    return out + [row for key, rows in new.items() if key not in placed for row in rows]


def commands(report: dict[str, Any]) -> list[str]:
    """The commands that made a results file: the scoring run, then each ``--update``."""
    return [report["command"], *(u["command"] for u in report.get("updates", []))]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/score_explanations.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="checkpoint files or folders of *.pt")
    p.add_argument("--images", type=int, default=500, help="held-out SynthShapes images per checkpoint")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED, help="SynthShapes seed of the held-out images")
    p.add_argument("--out", type=Path, default=Path("bench/results/explain_scores.json"))
    p.add_argument("--markdown", action="store_true", help="print the table and write it beside --out as .md")
    p.add_argument("--methods", nargs="+", help="only these methods (default: every method that applies)")
    p.add_argument("--target", choices=["label", "pred"], default="label", help="class to explain")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    p.add_argument("--baseline", choices=["blur", "mean"], default="blur", help="deletion/insertion baseline")
    p.add_argument("--tolerance", type=int, default=None,
                   help="pointing-game tolerance in pixels (default: Zhang et al.'s 15 px at 224 px scaled to each "
                        "model's images, round(15 * side / 224): 4 px at 64 px, 3 px at 48 px)")
    p.add_argument("--centre-sigma", type=float, default=CENTRE_PRIOR_SIGMA,
                   help="standard deviation of the centre-prior control's Gaussian, as a share of the image side")
    p.add_argument("--random-images", type=int, default=20,
                   help="first images that get the randomisation check (blank maps skipped)")
    p.add_argument("--random-steps", type=int, default=4, help="cascade cuts per randomisation check")
    p.add_argument("--occlusion-stride", type=float, default=METHODS["occlusion"].options["stride"],
                   help="Occlusion's stride as a fraction of its window (1: windows side by side; default: the library's)")
    p.add_argument("--update", action="store_true",
                   help="rescore only --methods and put their rows in place of theirs in --out, which must hold the "
                        "same checkpoints scored with the same images and settings")
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
    if args.tolerance is not None and args.tolerance < 0 or not args.centre_sigma > 0:
        print("error: --tolerance must be >= 0 and --centre-sigma > 0", file=sys.stderr)
        return 2
    settings = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "checkpoints" else v)
                for k, v in vars(args).items()}
    settings["tolerance_px"] = {p.name: tolerance_px(args.tolerance, load_checkpoint(p).config.img_size) for p in paths}
    try:
        earlier = _updated(args.out, settings) if args.update else None
    except UpdateError as e:
        print(f"error: cannot update {args.out}: {e}", file=sys.stderr)
        return 2
    command = "python bench/score_explanations.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run = {**provenance(torch.get_num_threads(), command), "settings": settings,
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}}
    start = time.perf_counter()
    rows = [row for path in paths for row in score_checkpoint(path, args)]
    run["seconds"] = time.perf_counter() - start
    if earlier is None:
        report = {**run, "results": rows}
    else:
        report = {**earlier, "updates": [*earlier.get("updates", []), run],
                  "results": judged(merged(earlier["results"], rows))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    if args.markdown:
        table = markdown_table(report["results"])
        made = "\n".join(f"`{command}`" for command in commands(report))
        note = controls_note(report["results"])
        args.out.with_suffix(".md").write_text(f"{made}\n\n{note}\n\n{table}\n")
        print(f"{note}\n\n{table}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
