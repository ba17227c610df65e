"""Faithfulness: does a map point at what the model uses? Deletion / insertion curves, the pointing
game against the SynthShapes mask, and the model-randomisation test, for the chosen image and model.

The page opens on the model's most faithful map (the one that scored best against the masks of
held-out images, ``tokenfusion.explain.best_map``) and shows each map's scores as badges; each view
reruns alone (a fragment) when its own control changes."""
from __future__ import annotations

import streamlit as st

from app import url
from app.export import chart, offer, question, recreate
from app.estimates import forward_cost, may_start, stop_others
from app.notices import faithful_map, knows_true_class, map_scores, show_map_score, show_out_of_distribution
from app.sidebar import require
from app.sources import ImageChoice
from app.state import LoadedModel, ask
from app.ui import DISPLAY_SIZE, duration, explain_line, fragment
from tokenfusion.data.transforms import mask_view, model_view
from tokenfusion.explain import (
    Explainer, MapScore, Request, available_methods, faithfulness_seconds, mask_scores, randomisation_seconds, score_of,
)
from tokenfusion.viz import KIND_LABELS, deletion_insertion_figure, overlay_figure, randomisation_figure

STEPS = 20
RANDOMISATION_STEPS = 6
BASELINES = ["blur", "mean"]  # what deleted pixels become: a blurred copy, or the mean colour
Target = tuple[str, str | None, str | None]  # (method, layer, kind)


def _choices(loaded: LoadedModel, scores: list[MapScore] | None) -> tuple[list[Target], int]:
    """The maps to choose from (every scored map of the model, best first, then each method at its
    default target) and the index of the one to open on (:func:`app.notices.faithful_map`)."""
    info = {m.name: m for m in available_methods(loaded.model)}
    scored = [s for s in scores or () if s.method in info and s.target in info[s.method].targets]
    ranked = sorted(scored, key=lambda s: (bool(s.problems), -s.pointing_game, -s.mask_energy))
    options = list(dict.fromkeys([(s.method, *s.target) for s in ranked] + [(m.name, *m.default)
                                                                            for m in info.values()]))
    return options, options.index(faithful_map(info, scores))


def _label(loaded: LoadedModel, target: Target, scores: list[MapScore] | None) -> str:
    method, layer, kind = target
    where = ("CNN feature map" if layer in loaded.model.structure.trunk_stages else KIND_LABELS.get(kind or "", kind))
    parts = [method] + [p for p in (layer, where) if p] if (layer or kind) else [method, "pixels"]
    score = score_of(scores, *target)
    mark = "" if score is None else f" — pointing {score.pointing_game:.0%}" + (" ⚠" if score.problems else "")
    return " · ".join(parts) + mark


@fragment
def _deletion(loaded: LoadedModel, choice: ImageChoice, target: Target, scores: list[MapScore] | None) -> None:
    """The map with its badges, its deletion and insertion curves, and the pointing game."""
    method, layer, kind = target
    baseline = st.radio("Deleted pixels become", BASELINES, key=url.bind("baseline", BASELINES[0], BASELINES),
                        horizontal=True,
                        format_func=lambda b: "a blurred copy" if b == "blur" else "the mean colour")
    seconds = faithfulness_seconds(loaded.model, forward_cost(loaded), Request(*target), steps=STEPS)
    request = (Explainer.faithfulness, method, layer, kind)
    options = dict(baseline=baseline, steps=STEPS)
    work = lambda progress: ask(loaded, choice, *request, **options, progress=progress)  # noqa: E731
    key = ("faithfulness", loaded.key, choice.key, target, baseline)
    stop_others(key)  # another map or baseline: the old curves' work would hold the model
    if not may_start(key, seconds,
                     f"{method} and its deletion and insertion curves", work):
        return
    with st.spinner(f"Computing {method}, then deleting and inserting pixels in {STEPS} steps "
                    f"(about {duration(seconds)})…"):
        result = ask(loaded, choice, *request, **options)
    saliency, deletion, insertion = result.value.saliency, result.value.deletion, result.value.insertion
    predicted = loaded.class_names[saliency.target]
    view = model_view(choice.image, loaded.config, DISPLAY_SIZE)
    mask = mask_view(choice.mask, loaded.config) if choice.mask is not None else None

    st.subheader("Deletion and insertion")
    left, right = st.columns([1, 2])
    chart(left, overlay_figure(view, saliency.map, title=f"{method} · {saliency.layer or 'pixels'}",
                               hover="saliency", outline=mask), key="faith_map", width="content")
    show_map_score(score_of(scores, *target), left, scored=scores is not None)
    if saliency.blank:
        left.warning("This map is blank on this image: this layer does not move the score, and the curves below "
                     "delete pixels in no meaningful order.", icon=":material/warning:")
    chart(right, deletion_insertion_figure(deletion, insertion, predicted), key="faith_curves")
    explain_line(f"The probability of '{predicted}' as the most salient pixels of the map are deleted (red: a faithful "
                 "map makes it fall fast, low AUC) or inserted into the baseline (green: rises fast, high AUC).",
                 result)
    offer("faithfulness", result.value, recreate(loaded, choice, question("faithfulness", method, layer, kind,
                                                                          baseline=baseline, steps=STEPS)))

    st.subheader("Pointing game against the object's mask")
    if mask is None:
        st.info("The pointing game needs the object's ground-truth mask, which only SynthShapes images have: "
                "choose SynthShapes in the sidebar. Photos and uploads have no mask.")
    elif not knows_true_class(loaded, choice):
        st.info(f"The pointing game asks whether the map of the image's class points into its object; this model "
                f"cannot predict '{choice.true_class}' (not one of its {len(loaded.class_names)} classes), so there "
                "is no game to play.")
    else:
        scores_here = mask_scores(saliency.map, mask)
        a, b, c = st.columns(3)
        a.metric("Pointing game", "hit" if scores_here.pointing else "miss",
                 help="Whether the map's maximum lies on the object (green outline).")
        b.metric("Energy on the object", f"{scores_here.energy:.0%}",
                 f"{scores_here.energy - scores_here.chance:+.0%} vs uniform",
                 help="Share of the map's mass inside the mask; a uniform map scores the mask's area.")
        c.metric("Object area", f"{scores_here.chance:.0%}")
        st.caption(f"True class: {choice.true_class}; predicted: {predicted}.")


def _randomisation_request(loaded: LoadedModel, choice: ImageChoice, target: Target) -> tuple:
    return "randomisation", loaded.key, choice.key, target


@fragment
def _randomisation(loaded: LoadedModel, choice: ImageChoice, target: Target) -> None:
    """The cascading randomisation test, run on request with its estimated time."""
    method, layer, kind = target
    st.subheader("Randomisation test")
    seconds = randomisation_seconds(loaded.model, forward_cost(loaded), Request(*target), steps=RANDOMISATION_STEPS)
    if not st.toggle(f"Run the model-randomisation test (about {duration(seconds)})",
                     key=url.bind("randomise", False, [False, True])):
        st.caption("Re-initialises the model from the head down, in a copy, and checks that the map changes "
                   "(Adebayo et al. 2018).")
        return
    request = (Explainer.randomisation, method, layer, kind)
    work = lambda progress: ask(loaded, choice, *request, steps=RANDOMISATION_STEPS, progress=progress)  # noqa: E731
    if not may_start(_randomisation_request(loaded, choice, target), seconds,
                     f"The randomisation test of {method}", work, unit="maps", asked=True):
        return
    with st.spinner(f"Randomising the model layer by layer (about {duration(seconds)})…"):
        check = ask(loaded, choice, *request, steps=RANDOMISATION_STEPS)
    chart(st, randomisation_figure(check.value), key="faith_random")
    explain_line(f"Rank correlation of the {method} map of the trained model with the map after re-initialising more "
                 "and more of it; a map that depends on the learned weights falls towards 0 (mean "
                 f"{check.value.mean:.2f}).", check)
    offer("randomisation", check.value, recreate(loaded, choice, question("randomisation", method, layer, kind,
                                                                          steps=RANDOMISATION_STEPS)))


def faithfulness() -> None:
    """Draw the Faithfulness page."""
    selected = require()
    if selected is None:
        return
    loaded, choice = selected
    st.title(f"Faithfulness · {loaded.name}")
    show_out_of_distribution([loaded], choice)
    scores = map_scores(loaded)
    options, opening = _choices(loaded, scores)
    target = st.selectbox("Map to test", options, key=url.bind("faith_map", options[opening], options, what="Map"),
                          format_func=lambda t: _label(loaded, t, scores),
                          help="Opens on the map that scored best against the masks of held-out SynthShapes images "
                               "for this model (⚠: fails a sanity check).")
    stop_others(_randomisation_request(loaded, choice, target))  # another map: the old test holds the model
    _deletion(loaded, choice, target, scores)
    _randomisation(loaded, choice, target)


faithfulness()
