"""Compare: the same image through every loaded strategy, side by side, and how much their maps agree.

Each model opens on its most faithful map (the one that scored best against the SynthShapes masks,
``tokenfusion.explain.best_map``), with its scores as badges; the maps rerun alone (a fragment)
when their control changes."""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import timing, url
from app.export import CLASS_NAMES, chart, explained, offer, question, snippet
from app.estimates import forward_cost, may_start, stop_others
from app.notices import (
    faithful_map, knows_true_class, map_scores, out_of_distribution, show_map_score, show_out_of_distribution,
)
from app.sidebar import load_alike, require
from app.sources import ImageChoice
from app.state import LoadedModel, ask, methods
from app.ui import DISPLAY_SIZE, duration, fragment
from tokenfusion.data.transforms import model_view
from tokenfusion.explain import (
    Explainer, MapScore, MethodInfo, Progress, Request, agreement_matrices, estimate_seconds, forward_passes, score_of,
)
from tokenfusion.viz import agreement_figure, overlay_figure

METHODS = {
    "faithful": "each model's most faithful map: the one that scored best against the masks of held-out SynthShapes "
                "images (pointing game, then energy on the object) among those that pass their sanity checks; "
                "Grad-CAM at its default layer for a model without scores",
    "gradcam": "Grad-CAM at each model's default layer (the last trunk stage, or the last patch-token block)",
    "rollout": "attention rollout over patch tokens (no rollout for a CNN)",
    "integrated_gradients": "Integrated Gradients on the pixels",
    "occlusion": "Occlusion: the drop of the predicted logit under a sliding grey window",
}
LABELS = {"faithful": "most faithful", "gradcam": "gradcam", "rollout": "rollout",
          "integrated_gradients": "integrated_gradients", "occlusion": "occlusion"}
#: What each choice but "faithful" asks of every model (rollout: over patch tokens, which every
#: attention model has; the rest at each model's default target).
ASKED = {"gradcam": Request("gradcam"), "rollout": Request("rollout", kind="patch"),
         "integrated_gradients": Request("integrated_gradients"), "occlusion": Request("occlusion")}
TOP_FRACTION = 0.2


def _predictions(models: list[LoadedModel], choice: ImageChoice) -> None:
    """The table of each model's prediction; rows out of a model's distribution marked, and said above it."""
    strange = [loaded.name for loaded in models if out_of_distribution([loaded], choice)]
    judged = any(knows_true_class(loaded, choice) for loaded in models)
    rows = []
    for loaded in models:
        name, probability = ask(loaded, choice, Explainer.predict, loaded.class_names, k=3).value.top
        row = {"model": loaded.name, "strategy": loaded.config.arch, "prediction": name,
               "probability": f"{probability:.1%}"}
        if judged:  # "—": this model cannot predict the image's class
            right = "yes" if name == choice.true_class else "no"
            row["correct"] = right if knows_true_class(loaded, choice) else "—"
        if strange:
            row["out of distribution"] = "yes" if loaded.name in strange else "no"
        rows.append(row)
    show_out_of_distribution(models, choice)  # before the table it qualifies
    st.dataframe(rows, hide_index=True)
    offer("compare predictions", rows, snippet(choice, [(m, question("predict", CLASS_NAMES, k=3)) for m in models]))


def _target(loaded: LoadedModel, info: dict[str, MethodInfo], method: str,
            scores: list[MapScore] | None) -> Request | str:
    """The map ``method`` asks of this model, whose methods are ``info`` (``"faithful"``: its
    best-scored map), or why it has none."""
    if method not in ASKED:
        return Request(*faithful_map(info, scores))
    asked = ASKED[method]
    if asked.method not in info or (asked.kind is not None and asked.kind not in info[asked.method].kinds):
        return f"No {method} for a {loaded.config.arch} model."
    return asked if asked.kind is not None else Request(asked.method, *info[asked.method].default)


def _cost(loaded: LoadedModel, info: dict[str, MethodInfo], target: Request | str) -> tuple[float, int]:
    """The estimated seconds and forward passes of the map (none for a map read from the traced forward)."""
    if isinstance(target, str):
        return 0.0, 0
    if info[target.method].family == "attention":
        return 0.0, 0
    cost = forward_cost(loaded, target)
    return estimate_seconds(loaded.model, cost, target), forward_passes(loaded.model, cost, target).forwards


def _work(models: list[LoadedModel], choice: ImageChoice, targets: dict[str, Request | str],
          passes: dict[str, int]) -> Callable[[Progress], None]:
    """Computes (and caches) every model's map, reporting the passes done of all models together."""
    total = sum(passes.values())

    def work(progress: Progress) -> None:
        before = 0
        for loaded in models:
            target = targets[loaded.name]
            if not isinstance(target, str):
                ask(loaded, choice, Explainer.answer, target,
                    progress=lambda done, _, before=before: progress(before + done, total))
            before += passes[loaded.name]

    return work


@fragment
def _maps(models: list[LoadedModel], choice: ImageChoice) -> None:
    """Each model's map side by side, its scores under it, and the agreement of the maps."""
    method = st.radio("Map", list(METHODS), key=url.bind("compare_map", "faithful", list(METHODS)), horizontal=True,
                      format_func=LABELS.get)
    scores = {loaded.name: map_scores(loaded) for loaded in models}
    info = {loaded.name: methods(loaded, choice) for loaded in models}  # each model's session: its prediction made it
    targets = {loaded.name: _target(loaded, info[loaded.name], method, scores[loaded.name]) for loaded in models}
    costs = {loaded.name: _cost(loaded, info[loaded.name], targets[loaded.name]) for loaded in models}
    estimate = sum(seconds for seconds, _ in costs.values())
    key = ("compare", choice.key, tuple((loaded.key, targets[loaded.name]) for loaded in models))
    work = _work(models, choice, targets, {name: passes for name, (_, passes) in costs.items()})
    stop_others(key)  # another map: the old one's work would hold the models
    if not may_start(key, estimate, f"The {LABELS[method]} map of {len(models)} models", work):
        return
    maps, blank, seconds, shown, asked = {}, [], 0.0, {}, []
    for column, loaded in zip(st.columns(max(len(models), 1)), models):
        column.markdown(f"**{loaded.name}**")
        target = targets[loaded.name]
        if isinstance(target, str):
            column.info(target)
            continue
        request = target
        name, layer, kind = request.method, request.layer, request.kind
        with st.spinner(f"{name} on {loaded.name}…"):
            result = ask(loaded, choice, Explainer.answer, request)
        seconds += result.seconds
        e = shown[loaded.name] = result.value
        asked.append((loaded, explained(request)))
        if e.blank:
            blank.append(loaded.name)
        else:
            maps[loaded.name] = e.map
        with timing.phase("figures"):
            view = model_view(choice.image, loaded.config, DISPLAY_SIZE)
            # titled: the toolbar sits over the title, not the map
            figure = overlay_figure(view, e.map, title=name, hover="saliency", height=230, showscale=True)
        chart(column, figure, key=f"compare_fig_{loaded.name}", width="content")
        where = " · ".join(str(p) for p in (e.layer, kind) if p) or "pixels"
        column.caption(f"{name} · {where} · for '{loaded.class_names[e.target]}'"
                       + (" · blank map" if e.blank else ""))
        show_map_score(score_of(scores[loaded.name], name, layer, kind), column,
                       scored=scores[loaded.name] is not None)
    what = METHODS[method]
    st.caption(f"{what[0].upper()}{what[1:]}; each map for the model's own prediction, with its scores on held-out "
               f"SynthShapes images as badges (red: it fails a sanity check). A blank map means that layer does not "
               f"move the score. All models computed in {duration(seconds)}.")
    offer("compare maps", shown, snippet(choice, asked))
    _agreement(maps, blank)


def _agreement(maps: dict, blank: list[str]) -> None:
    left_out = (f" Left out: {', '.join(blank)}, whose map is blank (constant: it ranks no pixel above another)."
                if blank else "")
    if len(maps) < 2:
        st.info(f"Agreement needs maps from at least two models.{left_out}")
        return
    st.subheader("How much the maps agree")
    with timing.phase("compute"):
        matrices = agreement_matrices(maps, TOP_FRACTION)
    with timing.phase("figures"):
        rho, iou = (agreement_figure(list(maps), matrices["spearman"]),
                    agreement_figure(list(maps), matrices["iou"], zmin=0))
    left, right = st.columns(2)
    with left:
        chart(st, rho, key="agree_rho")
        st.caption("Spearman rank correlation of the maps, pixel by pixel (1: the same order of importance)."
                   + left_out)
    with right:
        chart(st, iou, key="agree_iou")
        st.caption(f"Intersection over union of the top {TOP_FRACTION:.0%} most salient pixels of each map.")


def compare() -> None:
    """Draw the Compare page."""
    selected = require()
    if selected is None:
        return
    _, choice = selected
    st.title("Compare strategies")
    with st.spinner("Loading every checkpoint…"):
        models = list(load_alike().values())
    _predictions(models, choice)
    _maps(models, choice)


compare()
