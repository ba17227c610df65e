"""``python -m train.report``: the README's tables come from the shipped files, and filling the
README touches nothing outside the markers."""
import json
import shutil
from pathlib import Path

import pytest

from bench.score_explanations import chance_level
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES
from train.report import app_bench, bench_table, fill_block, notebook_times, provenance, results_table, scores_table

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
    text = fill_block(readme.read_text(), "results", results_table(ROOT / "checkpoints"))
    text = fill_block(text, "explain-scores", scores_table([scores]))
    assert "| `layerwise` |" in text and "| `cnn` (100%) | gradcam | CNN feature map | 0.95 | 1/7 |" in text
    assert "met by 1 of 1." in text and "python bench/score_explanations.py --images 7" in text
    assert f"Chance: the objects cover {100 * chance_level(7, 12345, 48)['random']:.0f}% of these images" in text
    assert "A blank map (constant" in text and "scores 0.00 on the pointing game and 0.00 energy" in text
    assert text.startswith("# R\n") and text.endswith("end\n")


def _results_copy(tmp_path: Path) -> Path:
    """A copy of ``bench/results/`` under ``tmp_path``, to edit."""
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    return tmp_path


def test_bench_table_states_each_target_and_whether_the_file_meets_it(tmp_path):
    root = _results_copy(tmp_path)
    path = root / "bench" / "results" / "forward_cpu.json"
    report = json.loads(path.read_text())
    for model in report["models"]:
        model["traced_over_plain"] = 1.2
    report["models"][0]["traced_over_plain"] = 2.25
    first = f"{report['models'][0]['arch']}/{report['models'][0]['size']}"
    path.write_text(json.dumps(report))
    assert f"| <= 1.5x: **missed** by {first} 2.25x |" in bench_table(root)
    report["models"][0]["traced_over_plain"] = 1.2
    path.write_text(json.dumps(report))
    assert "| 1.20-1.20x | <= 1.5x: met |" in bench_table(root)


def test_app_controls_are_judged_each_against_the_recorded_target(tmp_path):
    root = _results_copy(tmp_path)
    path = root / "bench" / "results" / "app_cpu.json"
    report = json.loads(path.read_text())
    controls = report["controls"]
    for row in controls["controls"].values():
        row.update(median_s=0.05, worst_s=0.1)
    controls.update(worst_s=0.1, target_s=0.3)
    path.write_text(json.dumps(report))
    assert "target 300 ms for every change: met." in app_bench(root)
    assert "| <= 300 ms each: met |" in bench_table(root)
    slow = next(iter(controls["controls"]))
    controls["controls"][slow]["worst_s"] = controls["worst_s"] = 0.45
    path.write_text(json.dumps(report))
    text = app_bench(root)
    assert f"**missed** by 1 of {len(controls['controls'])} controls ({slow})" in text
    assert f"| {slow} | " in text and "| 450 | " in text and "| <= 300: **missed** |" in text
    assert f"**missed** by 1 of {len(controls['controls'])}" in bench_table(root)


def test_notebook_times_judge_the_recorded_target(tmp_path):
    root = _results_copy(tmp_path)
    path = root / "bench" / "results" / "notebooks_cpu.json"
    report = json.loads(path.read_text())
    report.update(target_wall_s=100, date="2026-01-02T03:04:05+00:00", commit="0123456789abcdef-dirty",
                  load_average=[1.25, 1.0, 1.0], threads=1)
    report["results"][0].update(kernel_cpu_s=99.0)
    report["results"][1].update(kernel_cpu_s=101.0)
    path.write_text(json.dumps(report))
    table = notebook_times(root)
    assert "| CPU time <= 100 s |" in table
    assert f"| `{report['results'][0]['notebook']}` | " in table and "| 99 s | met |" in table
    assert "| 101 s | **missed** |" in table
    assert "run 2026-01-02 03:04 UTC, commit 0123456-dirty, 1 thread, load average 1.2" in table


def test_provenance_names_what_a_results_file_does_not_record():
    assert provenance({}) == "date not recorded, commit not recorded, threads not recorded, load average not recorded"
