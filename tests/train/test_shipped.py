"""The shipped teaching models (the five strategies and the greedy control): all present, and each
one's recorded held-out top-1 is what a fresh evaluation on newly generated SynthShapes images finds."""
from pathlib import Path

import pytest

from tokenfusion.checkpoint import load_checkpoint
from train.evaluate import heldout_accuracy
from train.teach import TEACHING_MODELS

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@pytest.mark.parametrize("name", TEACHING_MODELS)
def test_shipped_checkpoint_reproduces_its_heldout_top1(name):
    ckpt = load_checkpoint(CHECKPOINTS / f"{name}.pt")
    assert ckpt.config.arch == TEACHING_MODELS[name][0] and ckpt.config.size == "tiny"
    recorded = ckpt.training["heldout"]
    fresh = heldout_accuracy(ckpt.model, recorded["samples"], recorded["seed"])
    for key in ("top1", "shape", "texture"):  # overall, and on each cue alone
        assert abs(fresh[key] - recorded[key]) <= 1.0, (key, fresh, recorded)
    assert len(ckpt.training["history"]) == ckpt.training["epochs_done"] > 0


def test_shipped_checkpoints_stay_small():
    total = sum(p.stat().st_size for p in CHECKPOINTS.glob("*.pt"))
    assert total < 8e6, f"shipped checkpoints take {total / 1e6:.1f} MB"


def test_the_seeds_file_measured_the_shipped_checkpoints():
    """``bench/results/teaching_models.json`` (the README's seeds and interventions tables) holds each
    shipped model as one of its seeds, with the held-out top-1 the checkpoint records: rerun
    ``python bench/teaching_models.py`` after retraining."""
    import json

    report = json.loads((CHECKPOINTS.parent / "bench" / "results" / "teaching_models.json").read_text())
    for name in TEACHING_MODELS:
        path = f"checkpoints/{name}.pt"
        row = next((r for r in report["results"] if r["checkpoint"] == path), None)
        assert row is not None, f"{path} is not among the measured runs"
        recorded = load_checkpoint(CHECKPOINTS / f"{name}.pt").training["heldout"]
        assert recorded["samples"] == report["samples"] and recorded["seed"] == report["heldout_seed"]
        assert abs(row["top1"] - recorded["top1"]) < 1e-6, (name, row["top1"], recorded["top1"])
    # Every teaching model measured over three training seeds, so the docs can give a spread.
    assert all(len({r["seed"] for r in report["results"] if r["model"] == name}) >= 3 for name in TEACHING_MODELS)
