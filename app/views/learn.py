"""Learn: a guided walk from pixels to CNN tokens and patch tokens, through the fusion strategies, to
how Grad-CAM and attention rollout are computed, with the live numbers of the loaded model."""
from __future__ import annotations

import streamlit as st

from app import url
from app.export import chart, explained, offer, question, recreate
from app.notices import show_out_of_distribution
from app.sidebar import require
from app.state import ask, size
from app.ui import DISPLAY_SIZE, explain_line
from tokenfusion.data.transforms import model_view
from tokenfusion.explain import Explainer, Request
from tokenfusion.models import ARCHITECTURES
from tokenfusion.viz import (
    KIND_COLOURS, KIND_LABELS, STRATEGY_SUMMARIES, grid_figure, overlay_figure, overlays_figure, pixels_figure,
    strategy_diagram, token_grid_figure,
)

GRADCAM = Request("gradcam")  # the CAM the page walks through, at the model's default layer


def learn() -> None:
    """Draw the Learn page."""
    selected = require()
    if selected is None:
        return
    loaded, choice = selected
    config = loaded.config
    st.title("Learn: from pixels to fused tokens")
    show_out_of_distribution([loaded], choice)  # the live numbers below are of this image
    with st.spinner("Tracing the model…"):
        traced = ask(loaded, choice, Explainer.inside, channels=6)
        parameters, flops = size(loaded)
    facts, view = traced.value.anatomy, model_view(choice.image, config, DISPLAY_SIZE)
    pixels = config.img_size * config.img_size * 3

    st.header("1 · Pixels")
    left, right = st.columns([1, 2])
    chart(left, pixels_figure(model_view(choice.image, config)), key="learn_pixels", width="content")
    right.markdown(
        f"The model sees a {config.img_size}×{config.img_size} crop of the image: {pixels:,} numbers (three colours "
        f"per pixel), normalised with mean {list(config.mean)} and std {list(config.std)}. This "
        f"`{config.arch}`/`{config.size}` model has **{parameters:,} parameters** and spends "
        f"**{f'{flops / 1e9:,.1f} GFLOPs' if flops >= 1e9 else f'{flops / 1e6:,.1f} MFLOPs'}** on one image."
    )

    st.header("2 · CNN tokens: local features")
    if facts.cnn_grid is None:
        st.info("A ViT has no CNN trunk: it goes straight to patch tokens (step 3).")
    else:
        h, w = facts.cnn_grid
        channels, fh, fw = facts.stage_grids[-1]
        left, right = st.columns([1, 2])
        chart(left, token_grid_figure(view, facts.cnn_grid, colour=KIND_COLOURS["cnn"]), key="learn_cnn_grid",
                    width="content")
        right.markdown(
            f"A convolutional trunk slides small filters over the image, stage after stage "
            f"({' → '.join(f'{c}×{a}×{b}' for c, a, b in facts.stage_grids)} channels×rows×columns). "
            "Each position of "
            f"its last {fh}×{fw} feature map has seen only a small neighbourhood: its {channels} numbers describe "
            "*local* texture and edges. " + (
                f"A 1×1 projection turns each position into a {facts.embed_dim}-d vector, one **CNN token**, "
                f"with a learned position embedding: **{h}×{w} = {h * w} CNN tokens** (orange grid)."
                if loaded.model.structure.token_kinds else
                "The `cnn` baseline averages them and classifies; it makes no tokens.")
        )
        chart(right, overlays_figure(view, [(f"channel {c}", grid) for c, grid in traced.value.channels],
                                     columns=3, hover="activation", panel_height=150), key="learn_channels",
                     width="content")
        right.caption("The six channels of the last trunk stage that respond most to this image, over the image.")

    st.header("3 · Patch tokens: the whole image at once")
    if facts.patch_grid is None:
        st.info("The `cnn` baseline has no patch tokens.")
    else:
        h, w = facts.patch_grid
        left, right = st.columns([1, 2])
        chart(left, token_grid_figure(view, facts.patch_grid, colour=KIND_COLOURS["patch"]),
                    key="learn_patch_grid", width="content")
        right.markdown(
            f"The image is cut into {config.patch_size}×{config.patch_size} patches (blue grid): **{h}×{w} = {h * w} "
            f"patch tokens**, each patch's {config.patch_size * config.patch_size * 3} numbers projected to a "
            f"{facts.embed_dim}-d vector plus a position embedding. Alone a patch knows little; self-attention lets "
            "every token read every other one from the first layer on, which is why patch tokens carry *global* "
            "information. A learned token-type embedding tells patch tokens from CNN tokens."
        )
    rows = traced.value.sequences
    if rows:
        st.markdown("**The token sequences this model runs** (counts and grids read from its layout):")
        st.dataframe(rows, hide_index=True)

    st.header("4 · Three ways to fuse them")
    # the loaded model's strategy first; a model of another library has none of the five
    order = [a for a in dict.fromkeys((config.arch, *ARCHITECTURES)) if a in STRATEGY_SUMMARIES]
    labels = {f"{a} (loaded)" if a == config.arch else a: a for a in order}  # tab label -> strategy
    chosen = url.bind("strategy", next(iter(labels)), list(labels), text=labels.get)
    for tab, arch in zip(st.tabs(list(labels), key=chosen, on_change="rerun"), order):
        with tab:
            st.markdown(STRATEGY_SUMMARIES[arch])
            st.graphviz_chart(strategy_diagram(arch, facts))
            if arch == config.arch:
                gates = f"; its gates tanh(g): {', '.join(f'{g:+.3f}' for g in facts.gates)}" if facts.gates else ""
                st.caption(f"Numbers of the loaded model{gates}.")
            else:
                st.caption("Symbols only: load this strategy's checkpoint to see its numbers.")

    st.header("5 · How Grad-CAM is computed")
    with st.spinner("Computing Grad-CAM…"):
        cam = ask(loaded, choice, Explainer.answer, GRADCAM)
    e = cam.value
    grid = f"{e.grid.shape[0]}×{e.grid.shape[1]}"
    where = (f"the {grid} CNN feature map" if e.layer in loaded.model.structure.trunk_stages
             else f"its {grid} grid of {KIND_LABELS[e.kind]}")
    st.markdown(
        f"1. Run the image forward and keep the activations $A^k$ of one layer (here `{e.layer}`: {where}).\n"
        f"2. Backpropagate the score $y^c$ of the class *{loaded.class_names[e.target]}* to those activations.\n"
        "3. Weigh each channel by its average gradient: "
        "$\\alpha_k = \\frac{1}{hw}\\sum_{i,j} \\partial y^c / \\partial A^k_{ij}$.\n"
        "4. Sum the weighted channels: $\\sum_k \\alpha_k A^k$ (left: signed, red helps the class, blue hurts it).\n"
        "5. Keep the positive part (ReLU), upsample to the image and normalise to [0, 1] (right)."
    )
    left, right = st.columns(2)
    chart(left, grid_figure(e.grid, diverging=True, hover="weighted sum"), key="learn_cam_grid", width="content")
    chart(right, overlay_figure(view, e.map, hover="Grad-CAM", height=260), key="learn_cam_map", width="content")
    explain_line(f"Grad-CAM of '{loaded.class_names[e.target]}' at {e.layer}, before and after step 5.", cam)
    offer("learn grad-cam", e, recreate(loaded, choice, explained(GRADCAM)))

    st.header("6 · How attention rollout is computed")
    steps = {kind: s for kind, s in traced.value.rollout.items() if s}
    if not steps:
        st.info("A CNN has no attention to roll out.")
        return
    st.markdown(
        "Each layer's attention $A_\\ell$ (rows: queries, columns: keys) is averaged over heads; the identity is added "
        "for the residual connection and each row renormalised, $\\hat A_\\ell = (A_\\ell + I) / 2$; the product "
        "$\\hat A_\\ell \\cdots \\hat A_1$ says how much each output token draws from each input token. The class "
        "token's row, laid on the token grid, is the rollout map, shown here growing one layer at a time."
    )
    for kind, grids in steps.items():
        chart(st, overlays_figure(view, [(f"{kind}: up to {name}", grid) for name, grid in grids],
                                  columns=min(len(grids), 6), hover="rollout", panel_height=170),
                  key=f"learn_rollout_{kind}", width="content")
    explain_line("Rollout of the class token after 1, 2, ... layers, per kind of token.", traced)
    offer("learn inside", traced.value, recreate(loaded, choice, question("inside", channels=6)))


learn()
