"""``python -m train.evaluate``: top-1/top-5, the accuracy on each cue alone, and the confusion matrix on disk."""
import csv
import json
from pathlib import Path

import pytest

from train.evaluate import evaluate_checkpoint, main

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def test_evaluate_prints_cues_and_writes_confusion(tmp_path, capsys):
    main(["--checkpoint", str(CHECKPOINTS / "cnn.pt"), "--samples", "60", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "cnn.pt: top-1" in printed and "on one cue alone: shape" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["samples"] == 60 and metrics["top1"] >= 90  # the shipped cnn
    assert metrics["shape"] >= metrics["top1"] and metrics["texture"] >= metrics["top1"]
    rows = list(csv.reader((tmp_path / "confusion.csv").open()))
    assert len(rows) == 13 and rows[0][1] == "checkered circle"
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == 60


def test_evaluate_fusion_model_reports_every_intervention_and_the_cue_conflict(tmp_path, capsys):
    main(["--checkpoint", str(CHECKPOINTS / "late.pt"), "--samples", "96", "--out", str(tmp_path), "--ablate-tokens"])
    printed = capsys.readouterr().out
    assert "without CNN tokens (zeroed)" in printed and "patch tokens' layout shuffled" in printed
    assert "cue conflict: object's class" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    top1, interventions = metrics["top1"], metrics["interventions"]
    assert set(interventions) == {"cnn", "patch"}
    assert all(set(v) == {"zero", "dataset_mean", "contents_averaged", "layout_shuffled"} for v in interventions.values())
    # The README's reading of the shipped late model: without its CNN tokens it falls to about what the
    # ViT it started from does (far above chance, 8.3%, far below intact); without its patch tokens it
    # hardly moves (its CNN path alone carries every cue).
    assert 2 * 100 / 12 < interventions["cnn"]["zero"] < top1 - 30, (interventions["cnn"], top1)
    assert abs(interventions["patch"]["zero"] - top1) <= 5, (interventions["patch"], top1)
    conflict = metrics["conflict"]
    assert conflict["samples"] == 96 and conflict["shape"] > conflict["decoy_shape"]


def test_evaluate_cnn_has_no_token_interventions(capsys):
    main(["--checkpoint", str(CHECKPOINTS / "cnn.pt"), "--samples", "12", "--ablate-tokens"])
    assert "no token interventions: this model makes no tokens" in capsys.readouterr().out
    assert "interventions" not in evaluate_checkpoint(CHECKPOINTS / "late.pt", samples=12)  # off by default


def test_evaluate_vit_intervenes_on_its_patch_tokens():
    result = evaluate_checkpoint(CHECKPOINTS / "vit.pt", samples=240, ablate_tokens=True)
    assert set(result["interventions"]) == {"patch"}
    patch = result["interventions"]["patch"]
    assert patch["zero"] < 2 * 100 / 12 < result["top1"]  # no tokens left: chance
    # The README's reading of the shipped ViT: it reads its patches as a bag, so shuffling where they
    # are costs it little against what removing them costs.
    assert result["top1"] - patch["layout_shuffled"] < (result["top1"] - patch["zero"]) / 4, (patch, result["top1"])


def test_evaluate_missing_checkpoint_is_a_plain_error(tmp_path):
    with pytest.raises(SystemExit, match="error: No checkpoint file"):
        main(["--checkpoint", str(tmp_path / "missing.pt")])
