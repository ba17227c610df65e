"""Faithfulness: does a map point at what the model uses? Deletion / insertion curves, the pointing
game against the SynthShapes mask, and the model-randomisation test, for the chosen image and model."""
from __future__ import annotations

import streamlit as st

from app.sidebar import require
from app.state import ask
from app.ui import DISPLAY_SIZE, explain_line
from tokenfusion.data.transforms import mask_view, model_view
from tokenfusion.explain import Explainer, available_methods, mask_scores
from tokenfusion.viz import deletion_insertion_figure, overlay_figure, randomisation_figure

STEPS = 20
RANDOMISATION_STEPS = 6
SLOW = ("scorecam", "ablationcam", "occlusion", "integrated_gradients", "smoothgrad")


def faithfulness() -> None:
    """Draw the Faithfulness page."""
    selected = require()
    if selected is None:
        return
    loaded, choice = selected
    st.title(f"Faithfulness · {loaded.name}")
    info = {m.name: m for m in available_methods(loaded.model)}
    names = list(info)
    left, right = st.columns(2)
    method = left.selectbox("Map to test", names, index=names.index("gradcam"), key=f"faith_method:{loaded.name}",
                            help="Each method at its default layer and token kind.")
    baseline = right.radio("Deleted pixels become", ["blur", "mean"], key="faith_baseline", horizontal=True,
                           format_func=lambda b: "a blurred copy" if b == "blur" else "the mean colour")
    layer, kind = info[method].default
    with st.spinner(f"Deleting and inserting pixels in {STEPS} steps…"):
        result = ask(loaded, choice, Explainer.faithfulness, method, layer, kind, baseline=baseline, steps=STEPS)
    saliency, deletion, insertion = result.value.saliency, result.value.deletion, result.value.insertion
    predicted = loaded.class_names[saliency.target]
    view = model_view(choice.image, loaded.config, DISPLAY_SIZE)
    mask = mask_view(choice.mask, loaded.config) if choice.mask is not None else None

    st.subheader("Deletion and insertion")
    left, right = st.columns([1, 2])
    left.plotly_chart(overlay_figure(view, saliency.map, title=f"{method} · {saliency.layer or 'pixels'}",
                                     hover="saliency", outline=mask), key="faith_map", width="content")
    right.plotly_chart(deletion_insertion_figure(deletion, insertion, predicted), key="faith_curves")
    explain_line(f"The probability of '{predicted}' as the most salient pixels of the map are deleted (red: a faithful "
                 "map makes it fall fast, low AUC) or inserted into the baseline (green: rises fast, high AUC).",
                 result)

    st.subheader("Pointing game against the object's mask")
    if mask is None:
        st.info("The pointing game needs the object's ground-truth mask, which only SynthShapes images have: "
                "choose SynthShapes in the sidebar. Photos and uploads have no mask.")
    else:
        scores = mask_scores(saliency.map, mask)
        a, b, c = st.columns(3)
        a.metric("Pointing game", "hit" if scores.pointing else "miss",
                 help="Whether the map's maximum lies on the object (green outline).")
        b.metric("Energy on the object", f"{scores.energy:.0%}", f"{scores.energy - scores.chance:+.0%} vs uniform",
                 help="Share of the map's mass inside the mask; a uniform map scores the mask's area.")
        c.metric("Object area", f"{scores.chance:.0%}")
        st.caption(f"True class: {choice.true_class}; predicted: {predicted}.")

    st.subheader("Randomisation test")
    note = " (slow for this method)" if method in SLOW else ""
    if not st.toggle(f"Run the model-randomisation test{note}", key="faith_randomise"):
        st.caption("Re-initialises the model from the head down, in a copy, and checks that the map changes "
                   "(Adebayo et al. 2018).")
        return
    with st.spinner("Randomising the model layer by layer…"):
        check = ask(loaded, choice, Explainer.randomisation, method, layer, kind, steps=RANDOMISATION_STEPS)
    st.plotly_chart(randomisation_figure(check.value), key="faith_random")
    explain_line(f"Rank correlation of the {method} map of the trained model with the map after re-initialising more "
                 "and more of it; a map that depends on the learned weights falls towards 0 (mean "
                 f"{check.value.mean:.2f}).", check)


faithfulness()
