"""``bench/score_explanations.py``: it scores a shipped model against SynthShapes masks, counts
blank maps, and its summary checks the issue's targets on every row, naming each miss."""
import json
from pathlib import Path

import torch

from tokenfusion.data import SynthShapes
from tokenfusion.explain import pointing_game
from bench.score_explanations import (
    before_after, chance_level, findings, main, markdown_table, summary_table, target_checks,
)

CNN = Path(__file__).resolve().parents[2] / "checkpoints" / "cnn.pt"


def test_score_command_writes_scores_in_range(tmp_path):
    out = tmp_path / "scores.json"
    argv = ["--checkpoints", str(CNN), "--images", "3", "--methods", "gradcam", "occlusion", "--steps", "5",
            "--random-images", "1", "--random-steps", "2", "--out", str(out), "--markdown"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"gradcam", "occlusion"} and rows["gradcam"]["layer"] == "trunk.stage2"
    for row in rows.values():
        assert row["images"] == 3 and row["accuracy"] == 1.0  # the shipped cnn gets these right
        for key in ("pointing_game", "mask_energy", "deletion_auc", "insertion_auc"):
            assert 0.0 <= row[key] <= 1.0
        assert -1.0 <= row["randomisation_spearman"] <= 1.0
        assert 0 <= row["blank_maps"] <= 3 and row["pointing_game"] <= 1 - row["blank_maps"] / 3
        assert row["randomisation_images"] == 1  # the first image's map is not blank
    assert report["command"].startswith("python bench/score_explanations.py ") and "--images 3" in report["command"]
    assert report["commit"] and report["date"] and len(report["machine"]["load_average"]) == 3
    assert "| cnn.pt | gradcam | trunk.stage2 |" in out.with_suffix(".md").read_text()


def test_an_update_rescores_only_the_methods_named(tmp_path, capsys):
    out = tmp_path / "scores.json"
    common = ["--checkpoints", str(CNN), "--steps", "5", "--random-images", "1", "--random-steps", "2", "--out", str(out),
              "--markdown"]
    assert main([*common, "--images", "2", "--methods", "gradcam", "occlusion"]) == 0
    before = json.loads(out.read_text())
    update = [*common, "--images", "2", "--methods", "occlusion", "--occlusion-stride", "0.5", "--update"]
    assert main(update) == 0
    after = json.loads(out.read_text())
    assert after["command"] == before["command"] and after["results"][0] == before["results"][0]  # gradcam kept
    assert [r["method"] for r in after["results"]] == ["gradcam", "occlusion"]
    assert after["results"][1]["ms_per_image"] != before["results"][1]["ms_per_image"]  # rescored
    assert [u["settings"]["occlusion_stride"] for u in after["updates"]] == [0.5]
    assert out.with_suffix(".md").read_text().splitlines()[:2] == [f"`{after['command']}`",
                                                                    f"`{after['updates'][0]['command']}`"]
    # Scores of other images, or of a checkpoint the file never scored, would mix what the rows mean: refused.
    for wrong in (["--images", "3"], ["--checkpoints", str(CNN.with_name("vit.pt"))]):
        assert main([*update, *wrong]) == 2
        assert json.loads(out.read_text()) == after
    assert "images 3 (the file: 2)" in capsys.readouterr().err


def test_score_command_refuses_missing_checkpoints(tmp_path, capsys):
    assert main(["--checkpoints", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "s.json")]) == 2
    assert "no checkpoints to score" in capsys.readouterr().err


def _row(arch, method, layer, kind, **scores):
    base = dict(checkpoint=f"{arch}.pt", arch=arch, size="tiny", method=method, layer=layer, kind=kind, accuracy=1.0,
                images=10, blank_maps=0, pointing_game=1.0, mask_energy=0.5, deletion_auc=0.1, insertion_auc=0.8,
                randomisation_spearman=0.1, ms_per_image=5.0)
    return {**base, **scores}


def test_chance_level_is_what_random_maps_score():
    # A map that ignores the image points into the object as often as the objects cover the image.
    data = SynthShapes(200, seed=12345)
    generator = torch.Generator().manual_seed(0)
    hits = [pointing_game(torch.rand(48, 48, generator=generator), torch.from_numpy(data.sample(i).mask))
            for i in range(200)]
    level = chance_level(200, 12345, 48)
    assert abs(sum(hits) / 200 - level["random"]) < 0.08
    # A blank map points nowhere and has no mass, however much of the image the objects cover.
    assert level["blank_pointing"] == 0.0 and level["blank_energy"] == 0.0


def test_tables_show_blank_maps_per_row():
    rows = [_row("late", "gradcam", "fusion_blocks.0.norm1", "patch", blank_maps=6, pointing_game=0.1)]
    assert "| late.pt | gradcam | fusion_blocks.0.norm1 | patch | 0.100 | 6/10 | 0.500 |" in markdown_table(rows)
    assert "| gradcam | patch tokens, `fusion_blocks.0.norm1` | 0.10 | 6/10 | 0.50 |" in summary_table(rows)


def test_target_checks_name_every_miss():
    rows = [
        _row("vit", "gradcam", "blocks.3.norm1", "patch", pointing_game=0.5),
        _row("cnn", "gradcam", "trunk.stage2", "cnn"),
        _row("cnn", "gradcam", "trunk.stage1", "cnn", pointing_game=0.1),  # not the default layer: not checked
        _row("cnn", "occlusion", None, None, insertion_auc=0.2, deletion_auc=0.3, randomisation_spearman=0.9),
        _row("cnn", "integrated_gradients", None, None, randomisation_spearman=0.45),
    ]
    pointing, insertion, randomisation = target_checks(rows)
    assert pointing.startswith("- Grad-CAM pointing game >= 0.90 (default layer): met by 1 of 2")
    assert "`vit` gradcam on patch tokens, `blocks.3.norm1` (0.50)" in pointing and "trunk.stage1" not in pointing
    assert "met by 4 of 5" in insertion and "`cnn` occlusion on pixels (0.20 vs 0.30)" in insertion
    assert "met by 3 of 4" in randomisation and "integrated_gradients on pixels (0.45)" in randomisation
    assert "occlusion" not in randomisation  # perturbation, not gradients


def test_summary_table_orders_models_and_picks_rows():
    rows = [_row("vit", "gradcam", "blocks.3.norm1", "patch"), _row("cnn", "gradcam", "trunk.stage2", "cnn"),
            _row("cnn", "eigencam", "trunk.stage2", "cnn")]
    lines = summary_table(rows).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| `cnn` (100%)", "| `vit` (100%)"]
    assert "CNN feature map" in lines[0] and "eigencam" not in "".join(lines)


def test_before_after_checks_each_fall_against_the_blank_maps():
    before = [_row("late", "gradcam", "trunk.stage2", "cnn", pointing_game=0.5),
              _row("late", "gradcam", "fusion_blocks.0.norm1", "patch", pointing_game=0.7),
              _row("cnn", "gradcam", "trunk.stage2", "cnn", pointing_game=0.9)]
    after = [_row("late", "gradcam", "trunk.stage2", "cnn", pointing_game=0.4, blank_maps=1),
             _row("late", "gradcam", "fusion_blocks.0.norm1", "patch", pointing_game=0.1, blank_maps=5),
             {**_row("cnn", "gradcam", "trunk.stage2", "cnn"), "blank_maps": None}]  # a file not rescored
    text = before_after(before, after)
    assert "| `late` | gradcam | CNN feature map | 0.50 | 0.40 | 1/10 |" in text
    assert "| `late` | gradcam | patch tokens, `fusion_blocks.0.norm1` | 0.70 | 0.10 | 5/10 |" in text
    # 0.7 - 0.1 is not 5 blank maps of 10: the maps changed, and the text says where.
    assert "fell in 2; in 1 of the 2 it moved by exactly the share of blank maps" in text
    assert "differ between the two runs: `late` gradcam on patch tokens, `fusion_blocks.0.norm1` (0.700 to 0.100, " \
           "5 blank)" in text
    assert "Not rescored yet, so not in this table: `cnn`." in text


def test_findings_quote_the_rows():
    rows = [_row("cnn", "gradcam", "trunk.stage2", "cnn", pointing_game=0.92),
            _row("late", "gradcam", "trunk.stage2", "cnn", pointing_game=0.18, blank_maps=4, insertion_auc=0.2,
                 deletion_auc=0.4),
            _row("late", "gradcam", "fusion_blocks.0.norm1", "patch", pointing_game=0.07, blank_maps=60),
            _row("late", "scorecam", "trunk.stage2", "cnn", pointing_game=0.96),
            _row("late", "rollout", None, "cnn", pointing_game=0.51, randomisation_spearman=0.63,
                 randomisation_images=20)]
    text = findings(rows, chance=0.31)
    assert "meets the pointing-game target (>= 0.90) on 1 of 2 models: `cnn` 0.92, `late` 0.18." in text
    assert "points into the object 0.07-0.18 of the time; its map is blank on 4-60 of the 10 images" in text
    assert "below chance (0.31) on `late` gradcam on CNN feature map (0.18)" in text
    assert "1 of these 2 maps have insertion AUC below deletion" in text and "ScoreCAM 0.96" in text
    assert "Rollout over CNN tokens points into the object 0.51 of the time in `late`" in text
    assert "Grad-CAM 0.10; rollout 0.63" in text and "Not yet rescored" not in text
    assert "Not yet rescored with blank maps as misses" in findings(rows + [{**rows[0], "blank_maps": None}], 0.31)
