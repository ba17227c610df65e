"""What the pages say about how far to trust what they show: an image out of the model's
distribution, a true class the model cannot predict, and each map's scores against the masks."""
from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from tokenfusion.explain import MapScore, available_methods, best_map, scores_for

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


def faithful_map(loaded: LoadedModel, scores: list[MapScore] | None) -> tuple[str, str | None, str | None]:
    """``(method, layer, kind)`` a page opens on for this model: its best-scored map among those that
    apply to it (:func:`~tokenfusion.explain.best_map`), else :data:`FALLBACK` at its default target."""
    info = {m.name: m for m in available_methods(loaded.model)}
    best = best_map([s for s in scores or () if s.method in info and s.target in info[s.method].targets])
    return (best.method, *best.target) if best is not None else (FALLBACK, *info[FALLBACK].default)


def knows_true_class(loaded: LoadedModel, choice: ImageChoice) -> bool:
    """True when the image has a true class and it is one of the model's classes: only then can the
    prediction be right or wrong, and a map of that class be scored against the object's mask."""
    return choice.true_class is not None and choice.true_class in loaded.class_names


def out_of_distribution(loaded: LoadedModel, choice: ImageChoice) -> str | None:
    """Why this model's answer on this image is no real prediction, in words; None when it is one.

    A model trained on SynthShapes given a photo or an upload (an image without a true class), or
    any model given a SynthShapes image whose class is not one of its classes."""
    n = len(loaded.class_names)
    if choice.true_class is None and loaded.checkpoint.record.dataset == "synthshapes":
        return (f"**Out of distribution.** `{loaded.name}` was trained only on SynthShapes: it knows its {n} "
                "synthetic classes (a texture on a shape, on a cluttered background) and nothing else. Whatever "
                "this image shows, it must answer one of them, so its probabilities say nothing about what is in "
                "the picture. Its maps still show which pixels moved that answer (what it latches onto here), "
                "not where an object of that class is: there is none to find, and no mask to check them against.")
    if choice.true_class is not None and choice.true_class not in loaded.class_names:
        return (f"**Not one of this model's classes.** This image is a SynthShapes '{choice.true_class}'; "
                f"`{loaded.name}` knows {n} other classes, so it can be neither right nor wrong here, and a map of "
                "the class it predicts cannot be scored against the object's mask.")
    return None


def show_out_of_distribution(loaded: LoadedModel, choice: ImageChoice, where: DeltaGenerator | None = None) -> bool:
    """Draw :func:`out_of_distribution`'s warning in ``where`` (a column; default: the page), before
    the prediction it qualifies. True when there was one to draw."""
    message = out_of_distribution(loaded, choice)
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
    where.markdown(" ".join(f":{colour}-badge[{badge}]" for badge in score.badges),
                   help=f"Means over {score.images} held-out SynthShapes images: how often the map's maximum "
                        "falls on the object (pointing), the area under the probability curve as the most "
                        "salient pixels are deleted (lower is better) or inserted (higher is better), and the "
                        "rank correlation with the maps of a randomised model (lower is better)." +
                        (" The map localises when its pointing and its energy on the object beat both controls: a "
                         "fixed centred map that ignores the image, and the same map scored against another "
                         "image's object." if score.localises is not None else ""))
    for problem in score.problems:
        where.warning(f"This map {problem}: do not read it as what the model uses.", icon=":material/warning:")
