"""``python -m tokenfusion.analyze`` over 16 held-out SynthShapes images with two shipped checkpoints."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tokenfusion.analysis.summary import summary_markdown
from tokenfusion.data import export_imagefolder
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
    page = (tmp_path / "figures.html").read_text()
    assert page.count("<h3>") == 2 + 2 + 1 + len(report["cka"]["comparisons"]) and "early: ablation curves" in page
    summary = summary_markdown(report)
    assert f"| `early` | CNN | 4 | {early['top1']:.1f}% | {curve['top1'][0]:.1f}% (" in summary
    assert "| `early` | `vit` | patch |" in summary and "Over 16 held-out SynthShapes images" in summary


def test_an_imagefolder_val_split_is_sampled(tmp_path: Path) -> None:
    export_imagefolder(tmp_path / "data", num_train=0, num_val=24, progress=False)
    report = main(["--checkpoints", str(ROOT / "checkpoints" / "vit.pt"), "--data", str(tmp_path / "data"),
                   "--images", "12", "--batch-size", "6", "--measures", "ablation", "--out", str(tmp_path / "out")])
    assert report["images"] == 12 and report["data"]["data_path"] == str(tmp_path / "data")
    curve = report["models"]["vit"]["ablation"]["patch"]["mean"]
    assert "shape" not in curve and len(curve["per_class"][0]) == 12  # cues are SynthShapes' only


def test_a_bad_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoints", str(ROOT / "checkpoints" / "vit.pt"), "--data", str(tmp_path / "missing"),
              "--out", str(tmp_path)])


def test_the_command_imports_neither_app_nor_train() -> None:
    # nothing in the library imports them, so neither does the command (read from the source, no new process)
    for path in (ROOT / "tokenfusion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not [n for n in names if n.split(".")[0] in ("app", "train", "notebooks")], path


def test_a_cue_counts_as_lost_more_only_beyond_the_gap() -> None:
    from tokenfusion.analysis.summary import CUE_GAP, ablation_section

    def report(shape: float, texture: float) -> dict:
        curve = {"top1": [80.0, 95.0], "shape": [shape, 98.0], "texture": [texture, 100.0]}
        entry = {"mean": curve, "sites": ["blocks.0"], "site_types": ["block"]}
        return {"models": {"early": {"ablation": {"patch": entry}}}}

    assert ablation_section(report(60.0, 99.0))[-1].endswith("averaging them costs shape more than texture.")
    close = ablation_section(report(98.0 - CUE_GAP + 3, 99.0))[-1]  # shape loses 7 points, texture 1: within the gap
    assert close.endswith("averaging them costs shape 7 points and texture 1, within 10 points of each other.")
