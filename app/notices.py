"""What the pages say about how far to trust what they show: an image out of the model's
distribution, a true class the model cannot predict, and each map's scores against the masks."""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from tokenfusion.explain import MapScore, MethodInfo, best_map, scores_for

from .sources import SCORES, ImageChoice
from .state import LoadedModel

__all__ = ["FALLBACK", "faithful_map", "knows_true_class", "map_scores", "out_of_distribution", "show_map_score",
           "show_out_of_distribution"]

#: The map a model without scores opens on.
FALLBACK = "gradcam"


def map_scores(loaded: LoadedModel) -> list[MapScore] | None:
    """How the model's maps scored against the masks of held-out SynthShapes images (the shipped
    scoring files); None for a checkpoint nobody scored (an upload, a retrained folder)."""
    return scores_for(loaded.checkpoint.path, SCORES) if loaded.checkpoint.path else None


def faithful_map(info: dict[str, MethodInfo], scores: list[MapScore] | None) -> tuple[str, str | None, str | None]:
    """``(method, layer, kind)`` a page opens on for a model with the methods ``info`` (by name, as
    :attr:`Explainer.methods <tokenfusion.explain.Explainer.methods>` lists them): its best-scored map
    among those that apply to it (:func:`~tokenfusion.explain.best_map`), else :data:`FALLBACK` at
    its default target."""
    best = best_map([s for s in scores or () if s.method in info and s.target in info[s.method].targets])
    return (best.method, *best.target) if best is not None else (FALLBACK, *info[FALLBACK].default)


def knows_true_class(loaded: LoadedModel, choice: ImageChoice) -> bool:
    """True when the image has a true class and it is one of the model's classes: only then can the
    prediction be right or wrong, and a map of that class be scored against the object's mask."""
    return choice.true_class is not None and choice.true_class in loaded.class_names


def out_of_distribution(models: Sequence[LoadedModel], choice: ImageChoice) -> str | None:
    """Why these models' answers on this image are no real predictions, in words; None when they are.

    A model trained on SynthShapes given a photo or an upload (an image without a true class), or
    any model given a SynthShapes image whose class is not one of its classes. Every page says it in
    these words, before what it qualifies."""
    strangers = [m for m in models if choice.true_class is None and m.checkpoint.record.dataset == "synthshapes"]
    others = [m for m in models if choice.true_class is not None and choice.true_class not in m.class_names]
    if strangers:
        one, n = len(strangers) == 1, len(strangers[0].class_names)
        return (f"**Out of distribution.** {_names(strangers)} {'was' if one else 'were'} trained only on "
                f"SynthShapes: {'it' if one else 'each'} knows its {n} synthetic classes (a texture on a shape, on a "
                "cluttered background) and nothing else. Whatever this image shows, the model must answer one of "
                "them, so its probabilities say nothing about what is in the picture. Its maps still show which "
                "pixels moved that answer (what it latches onto here), not where an object of that class is: there "
                "is none to find, and no mask to check them against. Scores under a map are the model's on "
                "held-out SynthShapes images, not this image's.")
    if others:
        one = len(others) == 1
        return (f"**Not one of the model's classes.** This image is a SynthShapes '{choice.true_class}'; "
                f"{_names(others)} {'knows' if one else 'know'} other classes, so {'it' if one else 'each'} can be "
                "neither right nor wrong here, and a map of the class it predicts cannot be scored against the "
                "object's mask.")
    return None


def _names(models: Sequence[LoadedModel]) -> str:
    return ", ".join(f"`{m.name}`" for m in models)


def show_out_of_distribution(models: Sequence[LoadedModel], choice: ImageChoice,
                             where: DeltaGenerator | None = None) -> bool:
    """Draw :func:`out_of_distribution`'s warning in ``where`` (a column; default: the page), before
    what it qualifies. True when there was one to draw."""
    message = out_of_distribution(models, choice)
    if message is not None:
        (where or st).warning(message, icon=":material/help:")
    return message is not None


def show_map_score(score: MapScore | None, where: DeltaGenerator, *, scored: bool) -> None:
    """Under a map: its scores on held-out SynthShapes images as badges, and a warning when it fails
    its sanity checks. ``scored``: whether the model has a results file at all (the caption then
    says which of the two is missing)."""
    if score is None:
        where.caption("No scores for this map: " + ("this method and layer were not scored for this model."
                                                   if scored else "this checkpoint has no scoring results "
                                                   "(`bench/score_explanations.py` writes them)."))
        return
    colour = "red" if score.problems else "green"
    where.markdown("Held-out figures of the model: " + " ".join(f":{colour}-badge[{badge}]" for badge in score.badges),
                   help=f"The model's means over {score.images} held-out SynthShapes images (not this image): how often the map's maximum "
                        "falls on the object (pointing), the area under the probability curve as the most "
                        "salient pixels are deleted (lower is better) or inserted (higher is better), and the "
                        "rank correlation with the maps of a randomised model (lower is better)." +
                        (" The map localises when its pointing and its energy on the object beat both controls: a "
                         "fixed centred map that ignores the image, and the same map scored against another "
                         "image's object." if score.localises is not None else ""))
    for problem in score.problems:
        where.warning(f"This map {problem}: do not read it as what the model uses.", icon=":material/warning:")
