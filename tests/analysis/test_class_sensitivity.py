"""Class sensitivity: a class-independent map scores Spearman 1 and distance 0, a class-dependent one less."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenfusion.analysis import ClassSensitivity, map_change
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data import SynthShapes
from tokenfusion.data.transforms import eval_transform

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def test_map_change_of_equal_and_disjoint_maps() -> None:
    a = torch.rand(8, 8)
    assert map_change(a, 3 * a) == pytest.approx((1.0, 0.0), abs=1e-6)
    left, right = torch.zeros(8, 8), torch.zeros(8, 8)
    left[:, :4], right[:, 4:] = 1, 1
    assert map_change(left, right)[1] == pytest.approx(1.0)


def test_rollout_ignores_the_class_and_gradcam_does_not() -> None:
    model = load_checkpoint(CHECKPOINTS / "early.pt").model  # the best-trained shipped transformer
    data = SynthShapes(3, image_size=model.config.img_size, seed=12345, transform=eval_transform(model.config))
    x = torch.stack([data[i][0] for i in range(3)])
    sensitivity = ClassSensitivity(model, images=2, methods=("rollout", "gradcam"))
    sensitivity.update(x)
    result = sensitivity.result()
    assert sensitivity.seen == 2 and result["rollout"]["pairs"] == 2
    assert result["rollout"]["spearman"] == pytest.approx(1.0) and result["rollout"]["l1"] == pytest.approx(0.0)
    assert result["gradcam"]["pairs"] + result["gradcam"]["blank_pairs"] == 2
    assert result["gradcam"]["l1"] > 0.05
