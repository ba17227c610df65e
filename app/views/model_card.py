"""Model card: architecture, size, parameters, FLOPs, dataset, training curves, accuracy, provenance."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from app.export import chart, offer, snippet
from app.sidebar import require
from app.state import size
from tokenfusion.viz import STRATEGY_SUMMARIES, training_figure


def _percent(value: object) -> str:
    return f"{value:.1f}%" if isinstance(value, (int, float)) else "—"


def _kind_dropout(rate: float) -> str:
    """What kind dropout did in training, in words (fusion models only)."""
    if rate == 0:
        return "none: every training image saw both kinds of token (greedy learning left unchecked)"
    return f"{rate:.0%} of training images saw one kind of token alone, the other zeroed"


def _starting_weights(sources: object) -> None:
    """Which file each part started from (``provenance["weights"]``, written by training since it was recorded)."""
    if not isinstance(sources, dict):
        return
    rows = [{"part": part, "modules": ", ".join(map(str, r.get("modules", []))), "file": r.get("path"),
             "format": r.get("format"), "sha256": str(r.get("sha256", ""))[:12], "notes": "; ".join(map(str, r.get("notes", [])))}
            for part, r in sources.items() if isinstance(r, dict)]
    st.markdown("**Starting weights**: " + ("every other part started from random initialisation." if rows
                                           else "every part started from random initialisation."))
    if rows:
        st.table(rows)


def model_card() -> None:
    """Draw the Model card page."""
    selected = require(image=False)
    if selected is None:
        return
    loaded, _ = selected
    checkpoint, config = loaded.checkpoint, loaded.config
    record, provenance = checkpoint.record, checkpoint.provenance
    st.title(f"Model card · {loaded.name}")
    st.markdown(f"**{config.arch}** at size **{config.size}**: {STRATEGY_SUMMARIES.get(config.arch, '')}")
    with st.spinner("Counting parameters and FLOPs…"):
        parameters, flops = size(loaded)
    heldout = record.heldout
    a, b, c, d = st.columns(4)
    a.metric("Parameters", f"{parameters / 1e6:.2f} M")
    b.metric("FLOPs per image", f"{flops / 1e9:.3f} G",
             help=f"At {config.img_size} px, one forward pass.")
    c.metric("Held-out top-1", _percent(heldout.top1 if heldout else None),
             help=f"{heldout.samples} images never trained on (seed {heldout.seed})."
             if heldout else "This checkpoint records no held-out evaluation.")
    d.metric("Validation top-1 (last / best)",
             f"{_percent(record.top1)} / {_percent(record.best_top1)}",
             help="On the validation split during training, last and best epoch.")

    st.subheader("Training")
    if checkpoint.training:
        seconds = record.train_seconds
        facts = {
            "dataset": record.dataset, "preset": record.preset,
            "epochs": record.epochs_done if record.epochs_done is not None else record.epochs,
            "training images": record.train_samples, "validation images": record.val_samples,
            "global batch": record.global_batch, "peak learning rate": record.peak_lr, "EMA weights": record.ema,
            "kind dropout": _kind_dropout(config.kind_drop_rate) if loaded.model.structure.is_fusion else None,
            "training time": str(dt.timedelta(seconds=round(seconds))) if isinstance(seconds, (int, float)) else None,
        }
        st.table({k: str(v) for k, v in facts.items() if v is not None})
    history = record.history
    if history:
        chart(st, training_figure(history), key="card_curves")
        st.caption("Per-epoch loss, validation accuracy and learning rate, as recorded in the checkpoint.")
        offer("training history", history, snippet(None, [(loaded, "checkpoint.record.history")]))
    else:
        st.info("This checkpoint records no per-epoch history.")

    with st.expander("Configuration: everything needed to rebuild the model"):
        st.table({k: str(v) for k, v in config.to_dict().items()})
    with st.expander(f"{config.num_classes} classes"):
        st.write(", ".join(checkpoint.class_names))
    st.subheader("Provenance")
    path = checkpoint.path
    if path is not None and path.is_file():
        info = path.stat()
        st.caption(f"File `{path}` · {info.st_size / 1e6:.2f} MB · modified "
                   f"{dt.datetime.fromtimestamp(info.st_mtime):%Y-%m-%d %H:%M}")
    _starting_weights(provenance.get("weights"))
    st.json(provenance or {"provenance": "none recorded"}, expanded=True)


model_card()
