"""``bench/score_explanations.py``: it scores a model against SynthShapes masks beside two controls
(a centre-prior map, each map against another image's mask), counts blank maps, says which maps
localise, and its summary checks the issue's targets on every row, naming each miss. The models are
random-weight tiny ones saved to a temporary folder: the scores' bookkeeping is under test, not a
trained model's figures."""
import json
from pathlib import Path

import pytest
import torch

from tokenfusion.checkpoint import save_checkpoint
from tokenfusion.data import CLASS_NAMES, SynthShapes
from tokenfusion.explain import Explanation, centre_prior, mask_energy, pointing_game
from tokenfusion.explain.scores import localises
from tokenfusion.models import create
import bench.score_explanations as score_explanations
from bench.score_explanations import (
    chance_level, controls_note, findings, judged, main, markdown_table, summary_table, target_checks,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with random-weight tiny ``cnn.pt`` and ``vit.pt`` (64 px, SynthShapes v2's size)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for arch in ("cnn", "vit"):
        save_checkpoint(folder / f"{arch}.pt", create(arch, "tiny"), class_names=list(CLASS_NAMES))
    return folder


def test_score_command_writes_scores_in_range(tmp_path, checkpoints):
    out = tmp_path / "scores.json"
    argv = ["--checkpoints", str(checkpoints / "cnn.pt"), "--images", "3", "--methods", "gradcam", "occlusion",
            "--steps", "5", "--random-images", "1", "--random-steps", "2", "--out", str(out), "--markdown"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["results"]] == ["centre-prior", "gradcam", "occlusion"]
    rows = {r["method"]: r for r in report["results"]}
    assert rows["gradcam"]["layer"] == "trunk.stage2" and rows["gradcam"]["family"] == "cam"
    for row in rows.values():
        assert row["images"] == 3 and 0.0 <= row["accuracy"] <= 1.0
        for key in ("pointing_game", "mask_energy", "deletion_auc", "insertion_auc", "pointing_game_mismatched",
                    "mask_energy_mismatched"):
            assert 0.0 <= row[key] <= 1.0
        assert 0 <= row["blank_maps"] <= 3 and row["pointing_game"] <= 1 - row["blank_maps"] / 3
        assert row["tolerance"] == 4 and row["image_size"] == 64  # round(15 * 64 / 224)
        assert isinstance(row["localises"], bool)
    control = rows["centre-prior"]
    assert control["family"] == "control" and control["localises"] is False and control["blank_maps"] == 0
    assert control["randomisation_spearman"] is None and control["randomisation_images"] == 0
    for method in ("gradcam", "occlusion"):
        assert -1.0 <= rows[method]["randomisation_spearman"] <= 1.0 and rows[method]["randomisation_images"] <= 1
    assert report["settings"]["tolerance"] is None and report["settings"]["tolerance_px"] == {"cnn.pt": 4}
    assert report["command"].startswith("python bench/score_explanations.py ") and "--images 3" in report["command"]
    assert report["commit"] and report["date"] and len(report["load_average"]) == 3
    text = out.with_suffix(".md").read_text()
    assert "| cnn.pt | gradcam | trunk.stage2 |" in text and "| cnn.pt | centre-prior |  |  |" in text
    assert "(4 px at 64 px; the default of `--tolerance` is Zhang et al. 2018's 15 px at 224 px" in text


def test_an_explicit_tolerance_overrides_the_scaled_one(tmp_path, checkpoints):
    out = tmp_path / "scores.json"
    argv = ["--checkpoints", str(checkpoints / "cnn.pt"), "--images", "2", "--methods", "gradcam", "--steps", "2",
            "--random-images", "0", "--tolerance", "0", "--out", str(out), "--markdown"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["tolerance"] == 0 and report["settings"]["tolerance_px"] == {"cnn.pt": 0}
    assert {r["tolerance"] for r in report["results"]} == {0}
    assert "0 px at 64 px, set by `--tolerance` (the default there: 4 px)" in out.with_suffix(".md").read_text()


def test_an_update_rescores_only_the_methods_named(tmp_path, capsys, checkpoints):
    out = tmp_path / "scores.json"
    cnn = checkpoints / "cnn.pt"
    common = ["--checkpoints", str(cnn), "--steps", "5", "--random-images", "1", "--random-steps", "2", "--out", str(out),
              "--markdown"]
    assert main([*common, "--images", "2", "--methods", "gradcam", "occlusion"]) == 0
    before = json.loads(out.read_text())
    update = [*common, "--images", "2", "--methods", "occlusion", "--occlusion-stride", "0.5", "--update"]
    assert main(update) == 0
    after = json.loads(out.read_text())
    assert after["command"] == before["command"] and after["results"][1] == before["results"][1]  # gradcam kept
    assert [r["method"] for r in after["results"]] == ["centre-prior", "gradcam", "occlusion"]
    # The control row is made again with the rescored rows: the same map on the same images scores the same.
    control = after["results"][0]
    assert control["ms_per_image"] != before["results"][0]["ms_per_image"]
    assert {k: v for k, v in control.items() if k != "ms_per_image"} == \
        {k: v for k, v in before["results"][0].items() if k != "ms_per_image"}
    assert after["results"][2]["ms_per_image"] != before["results"][2]["ms_per_image"]  # rescored
    assert [u["settings"]["occlusion_stride"] for u in after["updates"]] == [0.5]
    assert after["updates"][0]["settings"]["tolerance_px"] == {"cnn.pt": 4}
    assert out.with_suffix(".md").read_text().splitlines()[:2] == [f"`{after['command']}`",
                                                                    f"`{after['updates'][0]['command']}`"]
    # Scores of other images, another tolerance or centre prior, or of a checkpoint the file never scored, would
    # mix what the rows mean: refused.
    for wrong in (["--images", "3"], ["--tolerance", "0"], ["--centre-sigma", "0.2"],
                  ["--checkpoints", str(checkpoints / "vit.pt")]):
        assert main([*update, *wrong]) == 2
        assert json.loads(out.read_text()) == after
    err = capsys.readouterr().err
    assert "images 3 (the file: 2)" in err and "tolerance 0 (the file: None)" in err
    assert "centre_sigma 0.2 (the file: 0.125)" in err and "it does not score vit.pt" in err


def test_an_update_refuses_a_file_scored_at_another_tolerance_in_pixels(tmp_path, checkpoints):
    out = tmp_path / "scores.json"
    argv = ["--checkpoints", str(checkpoints / "cnn.pt"), "--images", "2", "--methods", "gradcam", "--steps", "2",
            "--random-images", "0", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    report["settings"]["tolerance_px"] = {"cnn.pt": 3}  # as if cnn.pt had been 48 px then
    out.write_text(json.dumps(report))
    assert main([*argv, "--update"]) == 2


def test_score_command_refuses_missing_checkpoints(tmp_path, capsys):
    assert main(["--checkpoints", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "s.json")]) == 2
    assert "no checkpoints to score" in capsys.readouterr().err


def _centre_hits(masks: list[torch.Tensor], tolerance: int) -> float:
    """The share of ``masks`` holding a pixel within ``tolerance`` (in x and in y) of the central 2 x 2
    pixels of an even-sided image: where a map peaked on the image centre points into the object."""
    side = masks[0].shape[-1]
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    centre = (side - 1) / 2
    near = ((ys - centre).abs() <= tolerance + 0.5) & ((xs - centre).abs() <= tolerance + 0.5)
    return sum(bool((m & near).any()) for m in masks) / len(masks)


def test_chance_level_is_what_the_centre_prior_and_a_blank_map_score():
    data = SynthShapes(40, seed=12345)
    assert data.image_size == 64  # SynthShapes v2
    masks = [torch.from_numpy(data.sample(i).mask) for i in range(40)]
    level = chance_level(40, 12345, 64)  # tolerance: round(15 * 64 / 224) = 4 px
    assert level["centre_pointing"] == _centre_hits(masks, 4) != _centre_hits(masks, 0)
    assert chance_level(40, 12345, 64, tolerance=0)["centre_pointing"] == _centre_hits(masks, 0)
    assert level["centre_energy"] == pytest.approx(sum(mask_energy(centre_prior(64), m) for m in masks) / 40)
    assert level["area"] == pytest.approx(sum(float(m.float().mean()) for m in masks) / 40)
    # A blank map points nowhere and has no mass, however much of the image the objects cover.
    assert level["blank_pointing"] == 0.0 and level["blank_energy"] == 0.0


def _fake_explain(images: list[torch.Tensor], masks: list[torch.Tensor]):
    """``explain`` as if ``gradcam`` drew the image's own mask and ``occlusion`` the centre prior."""
    def explain(model, x, method, layer=None, target=None, **options):
        i = next(i for i, image in enumerate(images) if torch.equal(image, x))  # which image of the set
        side = x.shape[-1]
        saliency = masks[i].float() if method == "gradcam" else centre_prior(side)
        return Explanation(saliency, saliency, method, layer, int(target), 0.001, options.get("kind"))
    return explain


def test_the_controls_are_measured_on_the_same_images(tmp_path, checkpoints, monkeypatch):
    # Twelve v2 images of the held-out seed: the object reaches the centre's 4-px neighbourhood in 8 of them.
    n, out = 12, tmp_path / "scores.json"
    data = SynthShapes(n, seed=12345)
    masks = [torch.from_numpy(data.sample(i).mask) for i in range(n)]
    config = create("cnn", "tiny").config
    images = [((data[i][0] - 0.5) / 0.25)[None] for i in range(n)]  # as the command normalises them
    assert config.mean == (0.5, 0.5, 0.5) and config.std == (0.25, 0.25, 0.25)
    monkeypatch.setattr(score_explanations, "explain", _fake_explain(images, masks))
    argv = ["--checkpoints", str(checkpoints / "cnn.pt"), "--images", str(n), "--methods", "gradcam", "occlusion",
            "--steps", "2", "--random-images", "0", "--out", str(out), "--markdown"]
    assert main(argv) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    control, own_mask, prior = rows["centre-prior"], rows["gradcam"], rows["occlusion"]
    # The centre prior scores where the masks reach the centre, with the tolerance scaled to 64 px.
    assert control["pointing_game"] == _centre_hits(masks, 4) == 8 / 12
    assert control["mask_energy"] == pytest.approx(sum(mask_energy(centre_prior(64), m) for m in masks) / n)
    # The image's own mask localises: all on the object, less against the next image's mask.
    assert own_mask["pointing_game"] == own_mask["mask_energy"] == 1.0 and own_mask["localises"] is True
    assert own_mask["pointing_game_mismatched"] == pytest.approx(
        sum(pointing_game(masks[i].float(), masks[(i + 1) % n], 4) for i in range(n)) / n)
    assert own_mask["pointing_game_mismatched"] < 1.0 and own_mask["mask_energy_mismatched"] < 1.0
    # A method whose map ignores the image scores as the centre prior, and the same against mismatched masks:
    # it does not localise.
    assert (prior["pointing_game"], prior["mask_energy"]) == (control["pointing_game"], control["mask_energy"])
    assert prior["pointing_game_mismatched"] == prior["pointing_game"] and prior["localises"] is False
    text = out.with_suffix(".md").read_text()
    assert "| cnn.pt | gradcam | trunk.stage2 | cnn | 1.000 | 0/12 | 1.000 |" in text
    assert "| yes |" in text.split("| cnn.pt | gradcam |")[1].splitlines()[0]
    assert "| no |" in text.split("| cnn.pt | occlusion |")[1].splitlines()[0]
    assert "1 of the 2 maps scored here do" in text and "points into the object 0.67 of the time" in text


def _row(arch, method, layer, kind, **scores):
    base = dict(checkpoint=f"{arch}.pt", arch=arch, size="tiny", method=method, layer=layer, kind=kind, accuracy=1.0,
                images=10, blank_maps=0, pointing_game=1.0, mask_energy=0.5, deletion_auc=0.1, insertion_auc=0.8,
                randomisation_spearman=0.1, ms_per_image=5.0)
    return {**base, **scores}


def _control(arch, pointing=0.5, energy=0.3):
    return _row(arch, "centre-prior", None, None, family="control", pointing_game=pointing, mask_energy=energy,
                randomisation_spearman=None, pointing_game_mismatched=pointing, mask_energy_mismatched=energy,
                image_size=64, tolerance=4, sigma=0.125, ms_per_image=0.1)


def test_a_map_localises_only_when_it_beats_both_controls():
    centre = _control("cnn", pointing=0.6, energy=0.3)
    mine = dict(pointing_game=0.9, mask_energy=0.5, pointing_game_mismatched=0.4, mask_energy_mismatched=0.2)
    assert localises(_row("cnn", "gradcam", "trunk.stage2", "cnn", **mine), centre) is True
    for worse in (dict(pointing_game=0.6), dict(mask_energy=0.25),  # not above the centre prior
                  dict(pointing_game_mismatched=0.95), dict(mask_energy_mismatched=0.5)):  # not above the other mask
        assert localises(_row("cnn", "gradcam", "trunk.stage2", "cnn", **{**mine, **worse}), centre) is False
    assert localises(centre, centre) is False  # a control never does
    old = _row("cnn", "gradcam", "trunk.stage2", "cnn")  # a file written before the controls
    assert localises(old, centre) is None and localises(_row("cnn", "gradcam", "x", "cnn", **mine), None) is None
    rows = judged([centre, _row("cnn", "gradcam", "trunk.stage2", "cnn", **mine), old])
    assert [r["localises"] for r in rows] == [False, True, None]


def test_tables_show_blank_maps_and_controls_per_row():
    mismatched = dict(pointing_game_mismatched=0.05, mask_energy_mismatched=0.2)
    rows = judged([_control("late"), _row("late", "gradcam", "fusion_blocks.0.norm1", "patch", blank_maps=6,
                                          pointing_game=0.1, **mismatched),
                   _row("late", "occlusion", None, None, pointing_game=0.9, mask_energy=0.6, **mismatched)])
    table = markdown_table(rows)
    assert "| late.pt | gradcam | fusion_blocks.0.norm1 | patch | 0.100 | 6/10 | 0.500 | 0.050 | 0.200 | no |" in table
    assert "| late.pt | occlusion |  |  | 0.900 | 0/10 | 0.600 | 0.050 | 0.200 | yes |" in table
    assert "| late.pt | centre-prior |  |  | 0.500 | 0/10 | 0.300 | 0.500 | 0.300 | control |" in table
    summary = summary_table(rows).splitlines()
    assert "| gradcam | patch tokens, `fusion_blocks.0.norm1` | 0.10 | 6/10 | 0.50 | no |" in summary[2]
    assert summary[3].endswith("| occlusion | pixels | 0.90 | 0/10 | 0.60 | yes | 0.10 | 0.80 | 0.10 | 5 |")
    # Each model's two controls close its rows: the centre prior, and its maps against mismatched masks.
    assert "| centre-prior | fixed centred Gaussian, σ = 0.125 × side | 0.50 | 0/10 | 0.30 | control |" in summary[4]
    assert "| mismatched mask | each of its maps against the next image's mask (range) | 0.05 |  | 0.20 | control |" \
        in summary[5]
    note = controls_note(rows)
    assert "(4 px at 64 px; the default of `--tolerance` is Zhang et al. 2018's 15 px at 224 px" in note
    assert "points into the object 0.50 of the time and puts 0.30 of its mass on it" in note
    assert "1 of the 2 maps scored here do" in note
    # Rows of files written before the controls: blank cells, and the note says the controls are missing.
    old = [_row("late", "gradcam", "fusion_blocks.0.norm1", "patch", blank_maps=6, pointing_game=0.1)]
    assert "| 0.100 | 6/10 | 0.500 |  |  |  | 0.100 |" in markdown_table(old)
    assert "| 0.10 | 6/10 | 0.50 |  | 0.10 |" in summary_table(old) and "mismatched mask" not in summary_table(old)
    assert "scored before the controls" in controls_note(old)


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
            _row("cnn", "eigencam", "trunk.stage2", "cnn"), _control("vit"), _control("cnn")]
    lines = summary_table(rows).splitlines()[2:]
    assert [line.split(" | ")[:2] for line in lines] == [["| `cnn` (100%)", "gradcam"], ["| `cnn` (100%)", "centre-prior"],
                                                         ["| `vit` (100%)", "gradcam"], ["| `vit` (100%)", "centre-prior"]]
    assert "CNN feature map" in lines[0] and "eigencam" not in "".join(lines)


def test_two_checkpoints_of_one_architecture_are_named_apart():
    greedy = [{**r, "checkpoint": "early-greedy.pt"} for r in
              (_control("early"), _row("early", "gradcam", "trunk.stage2", "cnn", pointing_game=0.52))]
    rows = judged([*greedy, _control("early"), _row("early", "gradcam", "trunk.stage2", "cnn", pointing_game=0.55),
                   _control("cnn"), _row("cnn", "gradcam", "trunk.stage2", "cnn", pointing_game=0.9)])
    assert "on 1 of 3 models: `cnn` 0.90, `early` 0.55, `early-greedy` 0.52." in findings(rows)
    models = [line.split(" | ")[0] for line in summary_table(rows).splitlines()[2:]]
    assert models == ["| `cnn` (100%)"] * 2 + ["| `early` (100%)"] * 2 + ["| `early-greedy` (100%)"] * 2  # map, centre prior


def test_findings_quote_the_rows():
    mismatched = dict(pointing_game_mismatched=0.1, mask_energy_mismatched=0.1)
    rows = judged([
        _control("cnn", pointing=0.7), _control("late", pointing=0.75),
        _row("cnn", "gradcam", "trunk.stage2", "cnn", pointing_game=0.92, **mismatched),
        _row("late", "gradcam", "trunk.stage2", "cnn", pointing_game=0.18, blank_maps=4, insertion_auc=0.2,
             deletion_auc=0.4, **mismatched),
        _row("late", "gradcam", "fusion_blocks.0.norm1", "patch", pointing_game=0.07, blank_maps=60, **mismatched),
        _row("late", "scorecam", "trunk.stage2", "cnn", pointing_game=0.96, **mismatched),
        _row("late", "rollout", None, "cnn", pointing_game=0.51, randomisation_spearman=0.63, randomisation_images=20,
             **mismatched),
        _row("late", "rollout", None, "patch", pointing_game=0.8, **mismatched)])
    text = findings(rows)
    assert "meets the pointing-game target (>= 0.90) on 1 of 2 models: `cnn` 0.92, `late` 0.18." in text
    assert "points into the object 0.07-0.18 of the time; its map is blank on 4-60 of the 10 images" in text
    assert "not above the centre prior (0.75) on `late` gradcam on CNN feature map (0.18)" in text
    assert "1 of these 2 maps have insertion AUC below deletion" in text and "ScoreCAM 0.96" in text
    assert "Rollout over CNN tokens points into the object 0.51 of the time in `late`" in text
    assert "Rollout over patch tokens in the fusion models: 0.80 (the centre prior: 0.75)" in text
    assert "Grad-CAM 0.10; rollout 0.10-0.63" in text and "Not yet rescored" not in text
    assert "localise the object (pointing game and energy both above the centre prior's" in text
    assert "3 of 6 scored maps; `cnn` 1 of 1, `late` 2 of 5" in text and "points into the object 0.70-0.75" in text
    assert "centre-prior" not in text and "before the controls" not in text
    assert "Not yet rescored with blank maps as misses" in findings(rows + [{**rows[2], "blank_maps": None}])
    old = [{k: v for k, v in r.items() if k not in ("localises", *mismatched)} for r in rows if r["method"] != "centre-prior"]
    text = findings(old)
    assert "Scored before the controls (a centre-prior map, each map against another image's mask), so whether their " \
           "maps localise is not known: `cnn`, `late`." in text and "not above the centre prior" not in text
