"""The shipped teaching models: all five present, and each one's recorded held-out top-1 is what a
fresh evaluation on newly generated SynthShapes images finds."""
from pathlib import Path

import pytest

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES
from train.evaluate import heldout_accuracy

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shipped_checkpoint_reproduces_its_heldout_top1(arch):
    ckpt = load_checkpoint(CHECKPOINTS / f"{arch}.pt")
    assert ckpt.config.arch == arch and ckpt.config.size == "tiny"
    recorded = ckpt.training["heldout"]
    fresh = heldout_accuracy(ckpt.model, recorded["samples"], recorded["seed"])
    for key in ("top1", "shape", "texture"):  # overall, and on each cue alone
        assert abs(fresh[key] - recorded[key]) <= 1.0, (key, fresh, recorded)
    assert len(ckpt.training["history"]) == ckpt.training["epochs_done"] > 0


def test_shipped_checkpoints_stay_small():
    total = sum(p.stat().st_size for p in CHECKPOINTS.glob("*.pt"))
    assert total < 8e6, f"shipped checkpoints take {total / 1e6:.1f} MB"
