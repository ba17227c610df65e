"""Compare: the same image through every loaded strategy, side by side, and how much their maps agree."""
from __future__ import annotations

import streamlit as st

from app.sidebar import require, selection
from app.state import LoadedModel, ask, load_model
from app.ui import DISPLAY_SIZE, duration
from tokenfusion.checkpoint import CheckpointError
from tokenfusion.data.transforms import model_view
from tokenfusion.explain import Explainer, agreement_matrices, available_methods
from tokenfusion.viz import agreement_figure, overlay_figure

METHODS = {
    "gradcam": "Grad-CAM at each model's default layer (the last trunk stage, or the last patch-token block)",
    "rollout": "attention rollout over patch tokens (no rollout for a CNN)",
    "integrated_gradients": "Integrated Gradients on the pixels",
    "occlusion": "Occlusion: the drop of the predicted logit under a sliding grey window",
}
TOP_FRACTION = 0.2


def _load_all() -> list[LoadedModel]:
    """Every model of the sidebar's list that loads; an error line for each that does not."""
    loaded = []
    for name, path in selection().models.items():
        try:
            loaded.append(load_model(path, name))
        except CheckpointError as e:
            st.error(f"{name}: {e}")
    return loaded


def compare() -> None:
    """Draw the Compare page."""
    selected = require()
    if selected is None:
        return
    _, choice = selected
    st.title("Compare strategies")
    with st.spinner("Loading every checkpoint…"):
        models = _load_all()
    method = st.radio("Map", list(METHODS), key="compare_method", horizontal=True)
    rows, maps, seconds = [], {}, 0.0
    columns = st.columns(max(len(models), 1))
    with st.spinner(f"Running {len(models)} models…"):
        for column, loaded in zip(columns, models):
            prediction = ask(loaded, choice, Explainer.predict, loaded.class_names, k=3)
            name, probability = prediction.value.top
            seconds += prediction.seconds
            rows.append({"model": loaded.name, "strategy": loaded.config.arch, "prediction": name,
                         "probability": f"{probability:.1%}"}
                        | ({"correct": "yes" if name == choice.true_class else "no"} if choice.true_class else {}))
            column.markdown(f"**{loaded.name}**")
            info = {m.name: m for m in available_methods(loaded.model)}
            if method not in info or (method == "rollout" and (None, "patch") not in info[method].targets):
                column.info(f"No {method} for a {loaded.config.arch} model.")
                continue
            kind = "patch" if method == "rollout" else None
            result = ask(loaded, choice, Explainer.explain, method, kind=kind)
            seconds += result.seconds
            e = result.value
            maps[loaded.name] = e.map
            view = model_view(choice.image, loaded.config, DISPLAY_SIZE)
            column.plotly_chart(overlay_figure(view, e.map, hover="saliency", height=200),
                                key=f"compare_fig_{loaded.name}", width="content")
            blank = " · blank map" if e.blank else ""
            column.caption(f"{name} ({probability:.0%}) · {e.layer or 'pixels'}{blank}")
    st.caption(f"{METHODS[method]}, for each model's own prediction (under each map: prediction, probability, "
               f"layer; a blank map means that layer does not move the score). All models computed in "
               f"{duration(seconds)}.")
    st.dataframe(rows, hide_index=True)
    if len(maps) < 2:
        st.info("Agreement needs maps from at least two models.")
        return
    st.subheader("How much the maps agree")
    matrices = agreement_matrices(maps, TOP_FRACTION)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(agreement_figure(list(maps), matrices["spearman"]), key="agree_rho")
        st.caption("Spearman rank correlation of the maps, pixel by pixel (1: the same order of importance).")
    with right:
        st.plotly_chart(agreement_figure(list(maps), matrices["iou"], zmin=0), key="agree_iou")
        st.caption(f"Intersection over union of the top {TOP_FRACTION:.0%} most salient pixels of each map.")


compare()
