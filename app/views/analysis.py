"""Analysis: how every loaded strategy uses its tokens over a held-out data set, not one image.

Runs :func:`tokenfusion.analysis.analyze` over held-out SynthShapes (or the ``val/`` of an ImageFolder
named with ``-- --data DIR``) and draws its ablation curves, mean attention distance per head, fusion
weights over the set and CKA between layers. Results are kept on disk by checkpoint bytes, images,
options and library code (:mod:`tokenfusion.analysis.cache`): the same question is answered again at
once. Longer work shows its estimate and waits for a click; it reports progress and can be stopped.
"""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from app import url
from app.estimates import may_start
from app.export import chart
from app.sidebar import load_alike, load_models, selection
from app.sources import data_dir
from app.state import DEVICE, LoadedModel, exclusive
from app.ui import duration, fragment
from tokenfusion.analysis import DEFAULT_MEASURES, MODES, AnalysisData, AnalysisError, analyze, open_data
from tokenfusion.analysis.cache import AnalysisCache, analysis_key
from tokenfusion.analysis.cost import PROBE_IMAGES, seconds_per_image
from tokenfusion.explain import Progress
from tokenfusion.data import HELDOUT_SEED
from tokenfusion.models import TokenFusionModel
from tokenfusion.viz.analysis import (
    ablation_curves_figure, attention_distance_figure, cka_figure, fusion_heads_figure, fusion_share_figure,
    gates_over_set_figure, uniform_reference,
)

SYNTHSHAPES = "synthshapes"
#: Images analysed unless the user asks for more: the five tiny models finish in well under a minute.
DEFAULT_IMAGES = 256
MAX_IMAGES = 50_000
#: Images per batch, also the CKA minibatch (small: the progress bar moves often).
BATCH = 64
COLUMNS = 2
#: How long a timing of the analysis holds before it is timed again (the machine's load changes).
RETIME_SECONDS = 60
#: What the tokens are replaced by, per ablation mode.
_COMPUTED = "_analyses_computed"  # session key: the cache keys of the analyses this session ran
REPLACED_BY = {"mean": "their mean", "zero": "zeros", "noise": "noise of their mean and spread"}


def _controls(names: list[str], folder: Path | None) -> tuple[list[str], str, int, tuple[str, ...]]:
    """The models, data set, number of images and ablation modes the user chose."""
    specs = [SYNTHSHAPES] + ([str(folder)] if folder is not None else [])
    left, middle, right = st.columns([3, 2, 2])
    chosen = left.multiselect("Models", names, key=url.bind("models", list(load_alike()), names),
                              help="Models analysed together take one input (size, crop, normalisation) and one set "
                                   "of classes; the list opens on those that match the sidebar's model.")
    spec = middle.radio("Images", specs, key=url.bind("data", specs[-1], specs), horizontal=True,
                        format_func=lambda s: "SynthShapes, held out" if s == SYNTHSHAPES else f"{s}/val",
                        help=f"Held-out SynthShapes (seed {HELDOUT_SEED}, never trained on), or the val/ split of "
                             "the folder named with `streamlit run app/main.py -- --data DIR`.")
    images = middle.number_input("Number of images", min_value=1, max_value=MAX_IMAGES, step=64,
                                 key=url.bind("images", DEFAULT_IMAGES, url.within(1, MAX_IMAGES, int)),
                                 help="A random subset of the folder's val/ when it holds more.")
    modes = right.multiselect("Ablation: replace the tokens by", MODES, key=url.bind("modes", ["mean"], list(MODES)),
                              help="their mean (per image and channel), zero, or noise of their mean and spread "
                                   "(mean when none is chosen); each mode adds most of the time again")
    return chosen, spec, int(images), tuple(m for m in MODES if m in modes) or ("mean",)


@contextmanager
def _exclusive(models: dict[str, LoadedModel]) -> Iterator[dict[str, TokenFusionModel]]:
    """Every model, under its lock (see :func:`app.state.exclusive`)."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(exclusive(loaded)) for name, loaded in models.items()}


@st.cache_data(ttl=RETIME_SECONDS, max_entries=32, show_spinner=False,
               hash_funcs={LoadedModel: lambda loaded: loaded.key})
def _per_image(chosen: tuple[LoadedModel, ...], spec: str, options: tuple) -> float:
    """Seconds per image of the analysis, timed once per models, data set and options (not per count)."""
    models = {loaded.name: loaded for loaded in chosen}
    data = _open(models, spec, PROBE_IMAGES)
    with _exclusive(models) as modules:
        return seconds_per_image(modules, data, device=DEVICE, **dict(options))


def _open(models: dict[str, LoadedModel], spec: str, images: int) -> AnalysisData:
    classes = {tuple(loaded.class_names) for loaded in models.values()}
    if len(classes) != 1:
        raise AnalysisError("These models were trained on different classes; choose models of one data set.")
    return open_data(spec, [loaded.config for loaded in models.values()], list(classes.pop()), images)


def _command(models: dict[str, LoadedModel], spec: str, images: int, modes: tuple[str, ...]) -> str:
    files = [str(loaded.checkpoint.path) for loaded in models.values() if loaded.checkpoint.path]
    return shlex.join(["python", "-m", "tokenfusion.analyze", "--checkpoints", *files, "--data", spec, "--images",
                       str(images), "--batch-size", str(BATCH), "--ablation-modes", *modes, "--out", "runs/analysis"])


def _in_columns(items: list[tuple[str, Any]], key: str) -> None:
    """Figures ``(title, figure)`` side by side, :data:`COLUMNS` to a row."""
    for start in range(0, len(items), COLUMNS):
        for column, (title, figure) in zip(st.columns(COLUMNS), items[start:start + COLUMNS]):
            column.markdown(f"**{title}**")
            chart(column, figure, key=f"{key}_{title}")


def _accuracy(result: dict[str, Any]) -> None:
    st.dataframe([{"model": name, "strategy": entry["arch"], "top-1 (%)": round(entry["top1"], 1)}
                  for name, entry in result["models"].items()], hide_index=True)


@fragment
def _ablation(result: dict[str, Any], modes: tuple[str, ...]) -> None:
    st.subheader("Ablation curves")
    mode = st.radio("Tokens replaced by", modes, horizontal=True, key=url.bind("ablation_mode", modes[0], modes),
                    format_func=REPLACED_BY.get) if len(modes) > 1 else modes[0]
    cues = " and each cue alone (dashed: shape right, dotted: texture right)" if result["data"].get("dataset") \
        == SYNTHSHAPES else ""
    _in_columns([(name, ablation_curves_figure(entry["ablation"], mode, height=300))
                 for name, entry in result["models"].items() if "ablation" in entry], "analysis_ablation")
    st.caption(f"Top-1 (solid){cues} when one kind of token is replaced by {REPLACED_BY[mode]} from place k to the end; the "
               "last point removes nothing. For layerwise, removing CNN tokens also closes the cross-attention.")


def _distance(result: dict[str, Any]) -> None:
    st.subheader("Mean attention distance")
    _in_columns([(name, attention_distance_figure(entry["attention_distance"], uniform_reference(entry),
                                                  height=300))
                 for name, entry in result["models"].items() if entry.get("attention_distance")], "analysis_distance")
    st.caption("How far, in input pixels, each head's attention reaches, averaged over queries and images (Dosovitskiy "
               "et al. 2020, Fig. 7): one dot per head and layer, coloured by the query's kind (orange CNN, blue "
               "patch), shaped by the key's (circle CNN, diamond patch); dotted: uniform attention over the same keys. "
               "Token positions: a patch's centre, the centre of a CNN token's receptive field (measured).")


def _fusion(result: dict[str, Any]) -> None:
    fused = {name: entry["fusion_weights"] for name, entry in result["models"].items() if "fusion_weights" in entry}
    if not fused:
        return
    st.subheader("Fusion weights over the images")
    items = []
    for name, fusion in fused.items():
        if "cnn" in fusion:
            items += [(f"{name}: per layer", fusion_share_figure(fusion, height=280)),
                      (f"{name}: per head", fusion_heads_figure(fusion, height=280))]
        if "cross" in fusion:
            items.append((f"{name}: gates", gates_over_set_figure(fusion["cross"], height=280)))
    _in_columns(items, "analysis_fusion")
    st.caption("The class token's share of attention on CNN and patch tokens: per layer the mean over heads and images "
               "(bars: one standard deviation over images), per head the mean over images. Layerwise fuses by gated "
               "cross-attention: its learned gates, and the size of the CNN update over the patch stream.")


@fragment
def _similarity(result: dict[str, Any]) -> None:
    comparisons = result.get("cka", {}).get("comparisons", [])
    if not comparisons:
        return
    st.subheader("Representation similarity (CKA)")
    labels = [f"{c['a']} ({c['a_kind']}) vs {c['b']} ({c['b_kind']})" for c in comparisons]
    label = st.selectbox("Compare", labels, key=url.bind("cka", labels[0], labels))
    chart(st, cka_figure(comparisons[labels.index(label)], height=360), key="analysis_cka_figure")
    st.caption("Linear CKA between every layer of one model (rows) and of the other (columns), on the same images "
               "(minibatch estimate, Nguyen et al. 2021): 1 where two layers hold the same representation up to a "
               "rotation and scale, near 0 where they are unrelated. Token by token where the two layers' grids "
               "match, on each image's mean token where they differ (the hover says which).")


def analysis() -> None:
    """Draw the Analysis page."""
    st.title("Analysis over a data set")
    names = list(selection().models)
    if not names:
        st.error(selection().model_error or "No checkpoints are loaded.")
        return
    chosen, spec, images, modes = _controls(names, data_dir(sys.argv[1:], os.environ))
    models = load_models(chosen)
    if not models:
        st.info("Choose at least one model.")
        return
    try:
        data = _open(models, spec, images)
    except AnalysisError as e:
        st.error(str(e))
        return
    options = {"measures": DEFAULT_MEASURES, "ablation_modes": modes, "batch_size": BATCH}
    cache = AnalysisCache()
    key = analysis_key({name: loaded.checkpoint.path for name, loaded in models.items()}, data, options)
    result = cache.get(key)
    computed = st.session_state.setdefault(_COMPUTED, set())
    if result is None:
        with st.spinner(f"Timing the analysis on {PROBE_IMAGES} images…"):
            seconds = _per_image(tuple(models.values()), spec, tuple(sorted(options.items()))) * len(data.dataset)

        def work(progress: Progress) -> None:  # the analysis, under every model's lock, kept on disk
            with _exclusive(models) as modules:
                cache.put(key, analyze(modules, data, device=DEVICE, progress=progress, **options))
            computed.add(key)

        if not may_start(("analysis", key), seconds, f"Analysing {len(data.dataset)} images with {len(models)} models",
                         work, basis=f"the analysis timed on {PROBE_IMAGES} images", unit="images"):
            return
        result = cache.get(key)
        if result is None:  # quick work, not started on a thread: computed here, with a progress bar
            bar = st.progress(0.0, text="Analysing…")
            work(lambda done, total: bar.progress(done / total, text=f"Analysing: {done} of {total} images"))
            bar.empty()
            result = cache.get(key)
    how = (f"Computed in {duration(sum(result['seconds'].values()))} and kept for next time" if key in computed
           else f"Loaded from the cache ({cache.path(key).name[:12]}…), computed before")
    st.caption(f"{result['images']} images on {result['device'].upper()}. {how}. The same from the command line: "
               f"`{_command(models, spec, images, modes)}`")
    _accuracy(result)
    _ablation(result, modes)
    _distance(result)
    _fusion(result)
    _similarity(result)


analysis()
