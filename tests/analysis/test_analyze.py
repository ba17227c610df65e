"""``python -m tokenfusion.analyze`` over 16 held-out SynthShapes images with two shipped checkpoints."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenfusion.analyze import main

ROOT = Path(__file__).resolve().parents[2]


def test_command_writes_every_measure(tmp_path: Path) -> None:
    main(["--checkpoints", str(ROOT / "checkpoints" / "early.pt"), str(ROOT / "checkpoints" / "vit.pt"),
          "--images", "16", "--batch-size", "8", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "analysis.json").read_text())
    assert report["images"] == 16 and report["data"]["dataset"] == "synthshapes"
    early, vit = report["models"]["early"], report["models"]["vit"]
    assert set(early["attention_distance"]["blocks"]["blocks.3"]) == {"cnn->cnn", "cnn->patch", "patch->cnn",
                                                                      "patch->patch"}
    assert all(0 < d < 48 * 2 ** 0.5 for d in vit["attention_distance"]["blocks"]["blocks.0"]["patch->patch"])
    curve = early["ablation"]["cnn"]["mean"]
    assert curve["top1"][-1] == pytest.approx(early["top1"])
    assert len(curve["shape"]) == len(curve["texture"]) == len(early["ablation"]["cnn"]["sites"]) + 1
    assert "fusion_weights" in early and "fusion_weights" not in vit
    pairs = {(c["a"], c["b"], c["a_kind"]) for c in report["cka"]["comparisons"]}
    assert ("early", "vit", "patch") in pairs and ("early", "early", "cnn") in pairs
    for key in ("date", "command", "threads", "load_average", "seconds"):
        assert key in report


def test_a_bad_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoints", str(ROOT / "checkpoints" / "vit.pt"), "--data", str(tmp_path / "missing"),
              "--out", str(tmp_path)])


def test_the_command_imports_neither_app_nor_train() -> None:
    code = "import sys, tokenfusion.analyze; print(sorted({m.split('.')[0] for m in sys.modules} & {'app', 'train'}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip() == "[]"
