"""``python -m train.evaluate``: top-1/top-5, the accuracy on each cue alone, and the confusion matrix on disk."""
import csv
import json
from pathlib import Path

import pytest

from train.evaluate import main

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


def test_evaluate_missing_checkpoint_is_a_plain_error(tmp_path):
    with pytest.raises(SystemExit, match="error: No checkpoint file"):
        main(["--checkpoint", str(tmp_path / "missing.pt")])
