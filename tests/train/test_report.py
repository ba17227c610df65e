"""``python -m train.report``: the README's tables come from the shipped files, and filling the
README touches nothing outside the markers."""
import json
from pathlib import Path

import pytest

from bench.score_explanations import chance_level
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES
from train.report import fill_block, main, results_table

ROOT = Path(__file__).resolve().parents[2]


def test_results_table_reports_each_checkpoint_heldout_top1():
    table = results_table(ROOT / "checkpoints")
    for arch in ARCHITECTURES:
        held = load_checkpoint(ROOT / "checkpoints" / f"{arch}.pt").training["heldout"]
        cells = [f"{held[k]:.1f}%" for k in ("top1", "top5", "shape", "texture")]
        assert f"| `{arch}` | {' | '.join(cells)} |" in table


def test_fill_block_replaces_only_between_markers():
    text = "intro\n<!-- t:start -->\nold\n<!-- t:end -->\noutro\n"
    assert fill_block(text, "t", "new $1 \\1\n") == "intro\n<!-- t:start -->\nnew $1 \\1\n<!-- t:end -->\noutro\n"
    with pytest.raises(ValueError, match="no <!-- other:start -->"):
        fill_block(text, "other", "x")


def test_readme_gets_both_tables(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# R\n<!-- results:start -->\n<!-- results:end -->\n"
                      "<!-- explain-scores:start -->\n<!-- explain-scores:end -->\nend\n")
    row = dict(checkpoint="cnn.pt", arch="cnn", size="tiny", method="gradcam", layer="trunk.stage2", kind="cnn",
               images=7, blank_maps=1, accuracy=1.0, pointing_game=0.95, mask_energy=0.4, deletion_auc=0.1, insertion_auc=0.7,
               randomisation_spearman=0.2, ms_per_image=4.0)
    scores = tmp_path / "explain_scores_cnn.json"
    settings = dict(checkpoints=[str(ROOT / "checkpoints" / "cnn.pt")], images=7, seed=12345)
    scores.write_text(json.dumps({"command": "python bench/score_explanations.py --images 7", "settings": settings,
                                  "results": [row]}))
    main(["--checkpoints", str(ROOT / "checkpoints"), "--scores", str(scores), "--readme", str(readme)])
    text = readme.read_text()
    assert "| `layerwise` |" in text and "| `cnn` (100%) | gradcam | CNN feature map | 0.95 | 1/7 |" in text
    assert "met by 1 of 1." in text and "python bench/score_explanations.py --images 7" in text
    assert f"Chance: the objects cover {100 * chance_level(7, 12345, 48)['random']:.0f}% of these images" in text
    assert "A blank map (constant" in text and "scores 0.00 on the pointing game and 0.00 energy" in text
    assert text.startswith("# R\n") and text.endswith("end\n")
