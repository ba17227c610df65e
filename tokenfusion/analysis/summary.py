"""Markdown tables and plain statements computed from an ``analysis.json`` (nothing typed by hand)."""
from __future__ import annotations

from typing import Any

__all__ = ["summary_markdown", "uniform_references"]

CUE_GAP = 10.0  # points: one cue counts as carried "more" when its drop exceeds the other's by this
KIND = {"cnn": "CNN", "patch": "patch"}
UNUSED = 2.0  # points: a removal that costs less top-1 than this is "not needed"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _first_within(top1: list[float], points: float = 1.0) -> int:
    """The first place ``k`` (1-based) from which ablating keeps top-1 within ``points`` of plain."""
    plain = top1[-1]
    return next(k for k in range(1, len(top1) + 1) if all(plain - v <= points for v in top1[k - 1:]))


def _cue_sentence(model: str, kind: str, curve: dict[str, list[float]], closed: bool) -> str:
    """What the curve measured, and no more: the cues kept from the first place on against intact (a
    drop says the averaged tokens were needed for that cue, not that their layout holds it: the average
    erases both what the tokens hold and where they are; the cue-conflict split and the layout-shuffled
    intervention of ``bench/teaching_models.py`` tell those apart)."""
    shape_drop = curve["shape"][-1] - curve["shape"][0]
    texture_drop = curve["texture"][-1] - curve["texture"][0]
    how = "with its cross-attention closed" if closed else f"with its {KIND[kind]} tokens averaged per image"
    what = "closing it" if closed else "averaging them"
    said = (f"`{model}` {how} from the first place on keeps shape in "
            f"{curve['shape'][0]:.0f}% and texture in {curve['texture'][0]:.0f}% of the images "
            f"(intact: {curve['shape'][-1]:.0f}% and {curve['texture'][-1]:.0f}%)")
    if curve["top1"][-1] - curve["top1"][0] < UNUSED:
        return said + f": {what} costs under {UNUSED:g} points of top-1."
    if shape_drop > texture_drop + CUE_GAP:
        return said + f": {what} costs shape more than texture."
    if texture_drop > shape_drop + CUE_GAP:
        return said + f": {what} costs texture more than shape."
    return (said + f": {what} costs shape {shape_drop:.0f} points and texture {texture_drop:.0f}, "
            f"within {CUE_GAP:g} points of each other.")


def ablation_section(report: dict[str, Any], mode: str = "mean") -> list[str]:
    lines = ["| model | tokens averaged | places | intact top-1 | from place 1: top-1 (shape / texture alone) "
             "| from the last place | within 1 point of intact from place |", "|---|---|---:|---:|---|---:|---:|"]
    sentences = []
    for name, model in report["models"].items():
        for kind, entry in model.get("ablation", {}).items():
            curve = entry[mode]
            top1 = curve["top1"]
            cues = f" ({curve['shape'][0]:.1f}% / {curve['texture'][0]:.1f}%)" if "shape" in curve else ""
            closed = set(entry["site_types"]) == {"cross"}
            within = _first_within(top1)
            lines.append(f"| `{name}` | {KIND[kind]}{' (cross-attention closed)' * closed} | {len(entry['sites'])} "
                         f"| {top1[-1]:.1f}% | {top1[0]:.1f}%{cues} | {top1[-2]:.1f}% "
                         f"| {within if within <= len(entry['sites']) else 'never'} |")
            if "shape" in curve:
                sentences.append(f"- {_cue_sentence(name, kind, curve, closed)}")
    return lines + [""] + sentences


def uniform_references(model: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{stream: {layer: {"q->k": px}}}``: the distance uniform attention gives at every layer of one
    model's ``analysis.json`` entry, from ``attention_distance_uniform_layers`` (one reference per
    query grid and key grid attended); files without it held one reference per stream and pair
    (``attention_distance_uniform``), the same for every layer."""
    if "attention_distance_uniform_layers" in model:
        return model["attention_distance_uniform_layers"]
    per_stream = model.get("attention_distance_uniform", {})
    return {stream: {layer: dict(per_stream.get(stream, {})) for layer in layers}
            for stream, layers in model.get("attention_distance", {}).items()}


def distance_section(report: dict[str, Any]) -> list[str]:
    lines = ["| model | stream | query -> key | first layer (px) | last layer (px) | heads, last layer (px) "
             "| uniform attention (px) |", "|---|---|---|---:|---:|---|---:|"]
    for name, model in report["models"].items():
        uniform = uniform_references(model)
        for stream, layers in model.get("attention_distance", {}).items():
            names = list(layers)
            for pair in layers[names[0]]:
                first, last = layers[names[0]][pair], layers[names[-1]][pair]
                references = [uniform[stream][layer][pair] for layer in (names[0], names[-1])]
                reference = f"{references[0]:.1f}" if f"{references[0]:.1f}" == f"{references[1]:.1f}" else \
                    f"{references[0]:.1f} (first), {references[1]:.1f} (last)"
                lines.append(f"| `{name}` | {stream} | {pair} | {_mean(first):.1f} | {_mean(last):.1f} "
                             f"| {min(last):.1f}-{max(last):.1f} | {reference} |")
    closest = min(((_mean(v[p]) / uniform_references(m)[s][layer][p], n, s, layer, p)
                   for n, m in report["models"].items() for s, ls in m.get("attention_distance", {}).items()
                   for layer, v in ls.items() for p in v), default=None)
    if closest:
        ratio, n, s, layer, p = closest
        lines += ["", f"The most local attention, relative to uniform attention over the same keys: `{n}` {layer} "
                      f"{p}, at {100 * ratio:.0f}% of the uniform distance (mean over heads)."]
    return lines


def fusion_section(report: dict[str, Any]) -> list[str]:
    lines = ["| model | layer | class token's share on CNN tokens | on patch tokens |", "|---|---|---:|---:|"]
    cross = []
    for name, model in report["models"].items():
        weights = model.get("fusion_weights")
        if not weights:
            continue
        for i, layer in enumerate(weights["layers"]):
            shares = []
            for kind in ("cnn", "patch"):
                mean, std = weights[kind]["cls_share_mean"][i], weights[kind]["cls_share_std"][i]
                shares.append(f"{_mean(mean):.2f} (heads {min(mean):.2f}-{max(mean):.2f}; images sd {_mean(std):.2f})")
            lines.append(f"| `{name}` | {layer} | {shares[0]} | {shares[1]} |")
        if "cross" in weights:
            c = weights["cross"]
            cross.append(f"`{name}`'s gates tanh(g) per layer: " + ", ".join(f"{g:.2f}" for g in c["gates"])
                         + "; the injected CNN update over the patch stream's norm, mean over images: "
                         + ", ".join(f"{r:.2f}" for r in c["update_ratio_mean"]) + ".")
    return lines + ([""] + cross if cross else [])


def cka_section(report: dict[str, Any]) -> list[str]:
    lines = ["| features of | against | kind | CKA, last against last | highest pair |", "|---|---|---|---:|---|"]
    for c in report["cka"]["comparisons"]:
        table = c["cka"]
        best, i, j = max((v, i, j) for i, row in enumerate(table) for j, v in enumerate(row))
        kind = c["a_kind"] if c["a_kind"] == c["b_kind"] else f"{c['a_kind']} vs {c['b_kind']}"
        on = c.get("representation")  # files before it held means only
        last = f"{table[-1][-1]:.2f}" + (f" ({on[-1][-1]})" if on else "")
        lines.append(f"| `{c['a']}` | `{c['b']}` | {kind} | {last} "
                     f"| {c['rows'][i].split('/', 1)[1]} vs {c['cols'][j].split('/', 1)[1]}: {best:.2f}"
                     f"{f' ({on[i][j]})' if on else ''} |")
    return lines


def sensitivity_section(report: dict[str, Any]) -> list[str]:
    lines = ["| model | method | Spearman, predicted vs runner-up class | half L1 distance | images (blank) |",
             "|---|---|---:|---:|---:|"]
    for name, model in report["models"].items():
        for method, s in model.get("class_sensitivity", {}).items():
            lines.append(f"| `{name}` | {method} | {s['spearman']:.2f} | {s['l1']:.2f} | {s['pairs']} "
                         f"({s['blank_pairs']}) |")
    return lines


def summary_markdown(report: dict[str, Any]) -> str:
    """The README section's tables and statements from one ``analysis.json``."""
    data = report["data"]
    where = (f"{report['images']} held-out SynthShapes images (seed {data['seed']})" if data.get("dataset")
             else f"{report['images']} images of {data['data_path']}/val")
    measured = any("attention_distance_uniform_layers" in m for m in report["models"].values())  # older files: no
    centres = ("token centres (a patch's centre; the centre of a CNN token's receptive field, measured)" if measured
               else "token centres")
    references = " (one reference per query grid and key grid)" if measured else ""
    parts = [f"Over {where}, every model on the same images.", "",
             "**Ablation curves** (each kind of token replaced by its per-image mean at every place it is read "
             "from place k on; `layerwise`'s CNN tokens: its cross-attention closed from place k on). The mean "
             "keeps each image's average of those tokens and erases both what each one holds and where it is, so "
             "a drop says the tokens were needed, not which of the two mattered (the README's interventions "
             "table separates them).",
             "", *ablation_section(report), "",
             "**Mean attention distance** (Dosovitskiy et al. 2020): attention-weighted pixel distance between "
             f"{centres}, class tokens left out, against uniform attention over the same keys{references}.", "",
             *distance_section(report)]
    if any("fusion_weights" in m for m in report["models"].values()):
        parts += ["", "**Fusion weights over the set**: the share of the class token's attention on each kind "
                  "(mean over images and heads; the rest goes to class tokens).", "", *fusion_section(report)]
    if "cka" in report:
        on = ("token by token where the two layers' grids match (trunk stages: every position a token; "
              "\"tokens\"), on each image's mean token where they differ (\"mean\")"
              if "representation" in report["cka"] else
              "on the mean of each kind's tokens per layer (trunk stages: their global average)")
        parts += ["", "**Representation similarity**: minibatch linear CKA, unbiased HSIC (Kornblith et al. 2019; "
                  f"Nguyen et al. 2021), {on}, {report['cka']['batches']} minibatches.", "", *cka_section(report)]
    if any("class_sensitivity" in m for m in report["models"].values()):
        parts += ["", "**Class sensitivity of the maps**: each method's map for the predicted class against its "
                  "map for the runner-up (Spearman 1 and distance 0: the map does not depend on the class).", "",
                  *sensitivity_section(report)]
    return "\n".join(parts) + "\n"
