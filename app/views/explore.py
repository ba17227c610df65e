"""Explore: one model, one image: its prediction, then one view per tab (attention, the token inspector,
what-if, fusion weights, the map gallery, branch ablation). Only the open tab is computed and drawn, so a
new model or image reruns the prediction and that one view."""
from __future__ import annotations

import streamlit as st
from PIL import Image

from app.export import CLASS_NAMES, Question, chart, explained, offer, question, recreate
from app.notices import knows_true_class, map_scores, show_map_score, show_out_of_distribution
from app.sidebar import require
from app.sources import ImageChoice
from app import timing, url
from app.estimates import forward_cost, may_start
from app.state import DEVICE, LoadedModel, ask, methods
from app.ui import DISPLAY_SIZE, duration, explain_line, fragment
from tokenfusion.data.transforms import model_view
from tokenfusion.interventions import describe
from tokenfusion.explain import (
    METHODS, Explainer, MethodInfo, Prediction, Request, best_map, estimate_seconds,
    forward_passes, score_of,
)
from tokenfusion.viz import (
    KIND_COLOURS, KIND_LABELS, ablation_figure, attention_share_figure, gates_figure, head_share_figure,
    overlay_figure, overlays_figure, token_picker_figure, topk_figure,
)

HEAD_FUSIONS = ["mean", "max", "min"]
#: The gallery a page opens with; on a CPU, models above the teaching size open with Grad-CAM only
#: (each CAM costs about 2 s at 224 px there, Integrated Gradients about 30 s): the rest is one click away.
GALLERY_DEFAULT = ["gradcam", "layercam", "integrated_gradients"]
GALLERY_DEFAULT_SLOW = ["gradcam"]
FAST_ON_CPU_PX = 64
SHOW = ["one layer", "rollout"]  # the attention tab's two views
QUERIES = ["cls", "mean"]  # the fusion tab's queries: the class token, or the mean over all queries
REPLACE = ["mean", "zero"]  # what the what-if replaces removed tokens by
REGION = "region"  # the what-if's choice that removes the tokens under a region, of both kinds


def _target_label(loaded: LoadedModel, target: tuple[str | None, str | None]) -> str:
    layer, kind = target
    if layer in loaded.model.structure.trunk_stages:
        return f"{layer} · CNN feature map"
    return f"{layer} · {KIND_LABELS.get(kind or '', kind)}"


def _ranking(prediction: Prediction) -> str:
    """The classes of ``prediction`` with their probabilities, most probable first, in words: how a prediction
    for an image out of the model's distribution is shown, in small type, with no bar to read as an answer."""
    return ", ".join(f"{name} {p:.0%}" for name, p in zip(prediction.names, prediction.probabilities))


def _attention_layers(info: dict[str, MethodInfo]) -> dict[str, list[tuple[str, str]]]:
    """Per token kind, the ``(method, layer)`` pairs whose attention over that kind can be shown."""
    layers: dict[str, list[tuple[str, str]]] = {"cnn": [], "patch": []}
    for method in ("attention", "cross_attention"):
        for layer, kind in info[method].targets if method in info else ():
            layers[kind].append((method, layer))
    return layers


@fragment
def _attention(loaded: LoadedModel, choice: ImageChoice, info: dict[str, MethodInfo], view: Image.Image) -> None:
    st.subheader("Where the class token looks: CNN tokens vs patch tokens")
    layers = _attention_layers(info)
    if not any(layers.values()):
        st.info("A CNN has no tokens and no attention: see the Maps tab for where it looks.")
        return
    left, middle, right = st.columns([1, 2, 1])
    mode = left.radio("Show", SHOW, horizontal=True, key=url.bind("show", SHOW[0], SHOW),
                      help="Rollout multiplies the attention of every layer, adding the residual path.")
    depth = max(len(v) for v in layers.values())
    options: dict[str, object] = {}
    if mode == "one layer":
        step = 1
        if depth > 1:
            step = middle.slider("Layer", 1, depth, key=url.bind("layer", depth, range(1, depth + 1)))
        heads = ["mean", "max", "min", *range(loaded.config.num_heads)]
        head = right.selectbox("Heads", heads, key=url.bind("head", "mean", heads),
                               format_func=lambda h: f"head {h}" if isinstance(h, int) else f"{h} over heads")
        options["head"] = head
    else:
        options["discard_ratio"] = middle.slider("Discard the weakest links (share per row)", 0.0, 0.9, step=0.1,
                                                 key=url.bind("discard", 0.0, url.within(0.0, 0.9)))
        options["head_fusion"] = right.selectbox("Heads", HEAD_FUSIONS, format_func=lambda h: f"{h} over heads",
                                                 key=url.bind("head_fusion", HEAD_FUSIONS[0], HEAD_FUSIONS))
    shown, asked = {}, []
    for column, kind in zip(st.columns(2), ("cnn", "patch")):
        with column:
            if mode == "one layer":
                if not layers[kind]:
                    st.info(f"This {loaded.config.arch} model has no {KIND_LABELS[kind]}.")
                    continue
                method, layer = layers[kind][min(step, len(layers[kind])) - 1]
                request = Request.of(method, layer, kind, **options)
                what = ("Cross-attention of the class token (a patch-stream query) over CNN keys"
                        if method == "cross_attention" else f"Attention of the class token over {KIND_LABELS[kind]}")
            else:
                if "rollout" not in info or (None, kind) not in info["rollout"].targets:
                    hint = " (they enter by gated cross-attention: see one layer)" if "cross_attention" in info else ""
                    st.info(f"No rollout over {KIND_LABELS[kind]} in a {loaded.config.arch} model{hint}.")
                    continue
                request = Request.of("rollout", None, kind, **options)
                what = f"Attention rollout from the readout class token to the input {KIND_LABELS[kind]}"
            result = ask(loaded, choice, Explainer.answer, request)
            e = shown[kind] = result.value
            asked.append(explained(request))
            with timing.phase("figures"):
                figure = overlay_figure(view, e.grid, title=f"{KIND_LABELS[kind]} · {e.layer}", hover="weight",
                                        showscale=True)
            chart(st, figure, key=f"att_fig_{kind}", width="content")
            explain_line(f"{what} ({e.grid.shape[0]}×{e.grid.shape[1]} tokens); brighter is more.", result)
    offer("attention", shown, recreate(loaded, choice, *asked))


def _picked(event: object, grid: tuple[int, int]) -> tuple[int, int] | None:
    """The ``(row, column)`` of the token clicked in a :func:`token_picker_figure` of ``grid``, if any
    (its point ``i`` is cell ``divmod(i, w)``)."""
    points = event.selection.points if event is not None and hasattr(event, "selection") else []
    index = points[0].get("point_index") if points else None
    return divmod(int(index), grid[1]) if index is not None and 0 <= index < grid[0] * grid[1] else None


def _in_grid(cell: tuple[int, int] | None, grid: tuple[int, int]) -> tuple[int, int] | None:
    return cell if cell is not None and cell[0] < grid[0] and cell[1] < grid[1] else None


@fragment
def _inspector(loaded: LoadedModel, choice: ImageChoice, view: Image.Image) -> None:
    st.subheader("Token inspector: click any token to see where it looks")
    structure = loaded.model.structure
    layers = structure.attention_layers()
    if not layers:
        st.info("A CNN has no tokens and no attention: there is no token to inspect.")
        return
    left, middle, right = st.columns([2, 1, 1])
    layer = left.select_slider("Layer", layers, key=url.bind("token_layer", layers[-1], layers))
    heads = ["mean", "max", *range(loaded.config.num_heads)]
    head = middle.selectbox("Heads", heads, key=url.bind("token_head", "mean", heads),
                            format_func=lambda h: f"head {h}" if isinstance(h, int) else f"{h} over heads")
    kinds = list(structure.stream_of(layer).kinds)
    kind = right.radio("Query token", kinds, format_func=lambda k: KIND_LABELS[k], horizontal=True,
                       key=url.bind("token_kind", kinds[0], kinds))
    grid = ask(loaded, choice, Explainer.token_grid, layer, kind).value
    cells = url.within(0, max(grid) - 1, int, count=2)
    cell = url.current("token", (grid[0] // 2, grid[1] // 2), lambda t: _in_grid(cells(t), grid))
    columns = st.columns([1, 2])
    with columns[0]:
        event = chart(st, token_picker_figure(view, grid, colour=KIND_COLOURS[kind], selected=cell, height=300),
                      key=f"tok_picker:{kind}:{cell}", on_select="rerun", selection_mode="points", width="content")
        if (clicked := _picked(event, grid)) is not None and clicked != cell:
            url.keep("token", clicked)
            st.rerun(scope="fragment")  # redraw with the new token, on a picker with no selection left
        st.caption(f"{KIND_LABELS[kind][0].upper()}{KIND_LABELS[kind][1:]}: click one to inspect it.")
    result = ask(loaded, choice, Explainer.token_attention, layer, kind, cell, head)
    t = result.value
    panels = [(f"over {KIND_LABELS[k]}", m) for k, m in t.maps.items()]
    if t.cross is not None:
        panels.append(("cross-attention over CNN keys", t.cross))
    with columns[1]:
        for column, (title, heat) in zip(st.columns(len(panels)), panels):
            chart(column, overlay_figure(view, heat, title=title, hover="weight", box=t.box,
                                         box_size=loaded.config.img_size, height=260, showscale=True),
                          key=f"tok_map_{title}", width="content")
    where = ("its patch" if kind == "patch" else "its receptive field, measured: the pixels whose change moves it")
    explain_line(f"Attention of the {KIND_LABELS[kind][:-1]} at row {cell[0]}, column {cell[1]} (position {t.index} "
                 f"of the sequence) at {layer}; {t.on_class:.0%} of it goes to class tokens"
                 + (f"; its cross-attention row at {t.cross_layer}" if t.cross_layer else "") + f". Green: {where}.",
                 result)
    offer("token inspector", t, recreate(loaded, choice, question("token_attention", layer, kind, cell, head)))


@fragment
def _what_if(loaded: LoadedModel, choice: ImageChoice, prediction: Prediction, truth: str | None,
             strange: bool) -> None:
    """``truth``: the true class, when the model knows it; ``strange``: the image is out of the model's
    distribution, so the predictions are ranked in small type, as above the tabs, not drawn as bars."""
    st.subheader("What if: remove one kind of token, or a region of the image, from layer k on")
    structure = loaded.model.structure
    if not structure.is_fusion:
        st.info(f"A {loaded.config.arch} model has one kind of token only: there is no other kind to fall back on.")
        return
    left, middle, right = st.columns(3)
    removable = [*structure.token_kinds, REGION]
    kind = left.radio("Remove", removable, horizontal=True, format_func=lambda k: KIND_LABELS.get(k, "a region"),
                      key=url.bind("remove", removable[0], removable))
    mode = middle.radio("Replace by", REPLACE, horizontal=True, key=url.bind("replace", REPLACE[0], REPLACE),
                        format_func=lambda m: "their mean" if m == "mean" else "zero")
    region = _region() if kind == REGION else None
    kind = None if region else kind
    places = ask(loaded, choice, Explainer.places, kind).value
    start = right.select_slider("From", places, key=url.bind("from", places[0], places),
                                help="Every place that reads this kind of token (a region: both kinds), in forward "
                                     "order; a layerwise cross-attention is closed (a region: its CNN keys go).")
    asked = Question.of("what_if", kind, places.index(start) + 1, mode, CLASS_NAMES, 5, region=region)
    result = asked.ask(loaded, choice)  # and asked.source in the snippet: one value
    after = result.value
    before, now = st.columns(2)
    gone = KIND_LABELS[kind] if kind else "CNN and patch tokens under the region"
    changed = (f"{gone[0].upper()}{gone[1:]} replaced by {'their mean' if mode == 'mean' else 'zero'} at "
               f"{', '.join(after.places)}")
    for column, shown, key, said in ((before, prediction, "wi_before", "Unchanged model"),
                                     (now, after.prediction, "wi_after", changed)):
        if strange:
            column.caption(f"{said}, as it ranks the classes: {_ranking(shown)}.")
        else:
            chart(column, topk_figure(shown, true_class=truth, height=200), key=key)
            column.caption(f"{said}.")
    if after.fusion.layers:
        chart(now, attention_share_figure(after.fusion), key="wi_shares")
    maps = [(f"rollout over {KIND_LABELS[k]}, after", e.map) for k, e in after.maps.items()]
    if maps and region:  # the region outlined in green (box in fractions: an input 1 px wide)
        for column, (title, heat) in zip(st.columns(len(maps) + 2), maps):
            chart(column, overlay_figure(_view(loaded, choice), heat, title=title, hover="rollout",
                                         box=region, box_size=1, height=220), key=f"wi_map_{title}",
                          width="content")
    elif maps:
        chart(st, overlays_figure(_view(loaded, choice), maps, columns=len(maps), hover="rollout",
                                  panel_height=200), key="wi_maps", width="content")
    explain_line(f"Prediction, attention shares and rollout with the {gone} gone: "
                 f"'{prediction.names[0]}' {prediction.probabilities[0]:.0%} becomes "
                 f"'{after.prediction.names[0]}' {after.prediction.probabilities[0]:.0%}.", result)
    offer("what-if", after, recreate(loaded, choice, asked.source))


def _region() -> tuple[float, float, float, float]:
    """The what-if's region, ``(left, top, right, bottom)`` as fractions of the image, from two range sliders."""
    across, down = st.columns(2)
    span = url.within(0.0, 1.0, count=2)
    left, right = across.slider("Region: left to right", 0.0, 1.0, step=0.05, key=url.bind("across", (0.25, 0.75), span),
                                help="Share of the image's width; the region is outlined in green on the maps.")
    top, bottom = down.slider("Region: top to bottom", 0.0, 1.0, step=0.05, key=url.bind("down", (0.25, 0.75), span),
                              help="Share of the image's height, from the top.")
    return left, top, right, bottom


def _view(loaded: LoadedModel, choice: ImageChoice) -> Image.Image:
    return model_view(choice.image, loaded.config, DISPLAY_SIZE)


@fragment
def _fusion(loaded: LoadedModel, choice: ImageChoice) -> None:
    st.subheader("Fusion weights: how much of each kind of token the model uses")
    if not loaded.model.structure.is_fusion:
        st.info(f"A {loaded.config.arch} model has one kind of token only; fusion weights apply to early, late and "
                "layerwise models.")
        return
    result = ask(loaded, choice, Explainer.fusion)
    weights = result.value
    offer("fusion weights", weights, recreate(loaded, choice, question("fusion")))
    if weights.gates is not None:
        chart(st, gates_figure(weights, [f"layer {i}" for i in range(len(weights.gates))]), key="gates_fig")
        explain_line("Learned gates tanh(g) of the CNN cross-attention before each block (0: no CNN), and for "
                     "this image the size of the CNN update relative to the patch stream.", result)
        return
    query = st.radio("Queries", QUERIES, horizontal=True, key=url.bind("queries", QUERIES[0], QUERIES),
                     format_func=lambda q: "the class token" if q == "cls" else "all queries (mean)")
    left, right = st.columns(2)
    chart(left, attention_share_figure(weights, query=query), key="share_fig")
    chart(right, head_share_figure(weights, kind="cnn", query=query), key="head_share_fig")
    explain_line("Share of attention on CNN, patch and class tokens per layer (left, mean over heads) and the "
                 "CNN share per head (right).", result)


def _top_channels(loaded: LoadedModel, chosen: list[str], target: tuple[str | None, str | None]) -> int:
    """The channels ``scorecam_topk`` scores: a slider, with ScoreCAM's cost beside its own, when
    either is chosen; its default otherwise."""
    default = METHODS["scorecam_topk"].options["channels"]
    if not {"scorecam", "scorecam_topk"} & set(chosen) or not target:
        return default
    layer, kind = target
    cost = forward_cost(loaded)
    every = cost.channels[layer]
    k = st.slider("Channels scorecam_topk scores", 1, every, key=url.bind("channels", min(default, every),
                                                                           url.within(1, every, int)),
                  help="scorecam_topk runs one masked image per scored channel, the channels whose activation "
                       "varies most over the image; with every channel it is ScoreCAM.")
    (full, full_s), (top, top_s) = (
        (forward_passes(loaded.model, cost, r).forwards, estimate_seconds(loaded.model, cost, r))
        for r in (Request.of("scorecam", layer, kind), Request.of("scorecam_topk", layer, kind, channels=k)))
    st.caption(f"ScoreCAM scores all {every} channels of this layer: {full} forward passes, about "
               f"{duration(full_s)}; scorecam_topk scores the {k} most varied: {top} passes, about {duration(top_s)}."
               " Work above 5 s waits for its Start button, and can be stopped.")
    return k


@fragment
def _gallery(loaded: LoadedModel, choice: ImageChoice, info: dict[str, MethodInfo], view: Image.Image) -> None:
    st.subheader("Grad-CAM and attribution gallery")
    names = [m.name for m in info.values() if m.family != "attention"]
    cams = [m for m in info.values() if m.family == "cam"]
    targets = list(cams[0].targets) if cams else []
    cheap = loaded.config.img_size <= FAST_ON_CPU_PX or DEVICE.type != "cpu"
    default = [n for n in (GALLERY_DEFAULT if cheap else GALLERY_DEFAULT_SLOW) if n in names]
    layer_default = cams[0].default if cams else None
    scores = map_scores(loaded)
    best = best_map(scores or [], methods=[n for n in names if cheap or n in GALLERY_DEFAULT])
    if best is not None:  # open on the map that points into the object most often for this model
        default = [best.method] + [n for n in default if n != best.method][:len(default) - 1]
        layer_default = best.target if best.target in targets else layer_default
        st.caption(f"Opens on {best.method}{f' at {best.layer}' if best.layer else ''}: of the maps scored for this "
                   f"model on held-out SynthShapes images, it points into the object most often "
                   f"({best.pointing_game:.0%}). Badges under each map give its scores.")
    # the methods on a row of their own: in a column, many chosen ones scroll the first out of sight
    chosen = st.multiselect("Methods", names, key=url.bind("methods", default, names),
                            help="ScoreCAM, AblationCAM and Occlusion run many forward passes: slow at 224 px.")
    target = st.columns([1, 2])[0].selectbox(
        "CAM layer", targets, format_func=lambda t: _target_label(loaded, t),
        key=url.bind("cam_layer", layer_default, targets, what="CAM layer"),
        help="Attributions (integrated gradients, SmoothGrad, occlusion) work on the pixels.")
    options = {"scorecam_topk": {"channels": _top_channels(loaded, chosen, target)}}
    columns, shown, asked = st.columns(3), {}, []
    for i, method in enumerate(chosen):
        layer, kind = target if info[method].family == "cam" else (None, None)
        request = Request.of(method, layer, kind, **options.get(method, {}))
        with columns[i % 3]:
            # slow work (by this machine's pace now): its estimate and Start button, then its progress and Stop
            seconds = estimate_seconds(loaded.model, forward_cost(loaded), request)
            work = lambda progress, r=request: ask(loaded, choice, Explainer.answer, r, progress=progress)  # noqa: E731
            if not may_start(("gallery", loaded.key, choice.key, request), seconds, method, work):
                continue
            with st.spinner(f"Computing {method}…"):
                result = ask(loaded, choice, Explainer.answer, request)
            e = shown[method] = result.value
            asked.append(explained(request))
            chart(st, overlay_figure(view, e.map, title=method, hover="saliency", height=260, showscale=True),
                      key=f"gallery_fig_{method}", width="content")
            where = f"at {_target_label(loaded, (e.layer, e.kind))}" if e.layer else "on the pixels"
            blank = " The map is blank: this layer does not move the score." if e.blank else ""
            explain_line(f"{method} {where} for '{loaded.class_names[e.target]}'.{blank}", result)
            show_map_score(score_of(scores, method, e.layer, e.kind), st, scored=scores is not None)
    offer("gallery", shown, recreate(loaded, choice, *asked))


def _ablation(loaded: LoadedModel, choice: ImageChoice, predicted: str) -> None:
    st.subheader("Branch ablation")
    if not loaded.model.structure.is_fusion:
        st.info(f"A {loaded.config.arch} model has one branch only: there is nothing to ablate.")
        return
    with st.spinner("Removing each kind of token…"):
        result = ask(loaded, choice, Explainer.ablation)
    ablation = result.value
    left, right = st.columns([3, 2])
    chart(left, ablation_figure(ablation, predicted), key="ablation_fig")
    logit = float(ablation.logit[0])
    right.markdown("\n".join(
        [f"Logit of **{predicted}**: {logit:.2f}"]
        + [f"- {describe(kind, ablation.how)}: {float(value[0]):.2f} ({float(value[0]) - logit:+.2f})"
           for kind, value in ablation.ablated.items()]
    ))
    explain_line(f"Change of the '{predicted}' logit without the CNN tokens, or without the patch tokens (zeroed, as "
                 "the fusion models saw one kind alone in training); a large drop means the model relies on that "
                 "branch.", result)
    offer("branch ablation", ablation, recreate(loaded, choice, question("ablation")))


def explore() -> None:
    """Draw the Explore page."""
    selected = require()
    if selected is None:
        return
    loaded, choice = selected
    st.title(f"Explore · {loaded.name}")
    with timing.phase("figures"):
        view = model_view(choice.image, loaded.config, DISPLAY_SIZE)
    left, right = st.columns([1, 2])
    left.image(view, caption=f"{choice.label} — the {loaded.config.img_size} px crop the model sees")
    with right:
        strange = show_out_of_distribution([loaded], choice, st)  # before the prediction it qualifies
        with st.spinner("Running the model…"):
            prediction = ask(loaded, choice, Explainer.predict, loaded.class_names, k=5)
        truth = choice.true_class if knows_true_class(loaded, choice) else None
        if strange:  # no bar to read as an answer: the ranking, in small type
            explain_line(f"The classes it must choose from, as it ranks them for this image: "
                         f"{_ranking(prediction.value)}.", prediction)
        else:
            with timing.phase("figures"):
                figure = topk_figure(prediction.value, true_class=truth)
            chart(st, figure, key="topk_fig")
            explain_line("The five most probable classes and their softmax probability."
                         + (" The true class is green." if truth else ""), prediction)
        offer("prediction", prediction.value, recreate(loaded, choice, question("predict", CLASS_NAMES, k=5)),
              picture=view)
    info = methods(loaded, choice)  # the session's, made by the prediction
    views = {  # one tab each, in this order; the first opens by default
        "Attention": lambda: _attention(loaded, choice, info, view),
        "Inspector": lambda: _inspector(loaded, choice, view),
        "What-if": lambda: _what_if(loaded, choice, prediction.value, truth, strange),
        "Fusion": lambda: _fusion(loaded, choice),
        "Maps": lambda: _gallery(loaded, choice, info, view),
        "Ablation": lambda: _ablation(loaded, choice, prediction.value.names[0]),
    }
    tabs = st.tabs(list(views), key=url.bind("view", next(iter(views)), list(views)), on_change="rerun")
    for tab, draw in zip(tabs, views.values()):
        if tab.open:  # the other tabs stay empty until opened: a click on one reruns the page with it
            with tab:
                draw()


explore()
