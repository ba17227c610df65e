"""``python -m bench.report``: the docs' tables come from the shipped files, and filling the
README touches nothing outside the markers."""
import json
import shutil
from pathlib import Path

import pytest

from bench.report.app import app_bench
from bench.report.benchmarks import bench_table, notebook_times
from bench.report.docs import fill_block
from bench.report.scores import scores_table
from bench.report.teaching import results_table
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import ARCHITECTURES

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
               family="cam", images=7, blank_maps=1, accuracy=1.0, pointing_game=0.95, mask_energy=0.4, deletion_auc=0.1,
               insertion_auc=0.7, randomisation_spearman=0.2, ms_per_image=4.0, image_size=64, tolerance=4,
               pointing_game_mismatched=0.5, mask_energy_mismatched=0.15, localises=True)
    control = {**row, "method": "centre-prior", "layer": None, "kind": None, "family": "control", "blank_maps": 0,
               "pointing_game": 0.71, "mask_energy": 0.3, "pointing_game_mismatched": 0.71, "mask_energy_mismatched": 0.3,
               "randomisation_spearman": None, "sigma": 0.125, "localises": False}
    scores = tmp_path / "explain_scores_cnn.json"
    settings = dict(checkpoints=[str(ROOT / "checkpoints" / "cnn.pt")], images=7, seed=12345, tolerance=None)
    scores.write_text(json.dumps({"command": "python bench/score_explanations.py --images 7", "settings": settings,
                                  "results": [control, row]}))
    text = fill_block(readme.read_text(), "results", results_table(ROOT / "checkpoints"))
    text = fill_block(text, "explain-scores", scores_table([scores]))
    assert "| `layerwise` |" in text and "| `cnn` (100%) | gradcam | CNN feature map | 0.95 | 1/7 | 0.40 | yes |" in text
    assert "| `cnn` (100%) | centre-prior | fixed centred Gaussian, σ = 0.125 × side | 0.71 | 0/7 | 0.30 | control |" in text
    assert "| `cnn` (100%) | mismatched mask | each of its maps against the next image's mask (range) | 0.50 |" in text
    assert "met by 1 of 1." in text and "python bench/score_explanations.py --images 7" in text
    # The text names the controls the file measured, not a random map's chance.
    assert "Chance" not in text and "(4 px at 64 px; the default of `--tolerance` is Zhang et al. 2018's 15 px" in text
    assert "one centred Gaussian (σ = 0.125 × side) for every image, which ignores the image, points into the " \
           "object 0.71 of the time and puts 0.30 of its mass on it" in text
    assert "points into that object 0.50 of the time, with 0.15 of its mass on it" in text
    assert "1 of the 1 maps scored here do" in text
    assert "A blank map (constant" in text and "scores 0.00 on the pointing game and 0.00 energy" in text
    assert text.startswith("# R\n") and text.endswith("end\n")


def test_scores_table_reads_files_written_before_the_controls(tmp_path):
    row = dict(checkpoint="cnn.pt", arch="cnn", size="tiny", method="gradcam", layer="trunk.stage2", kind="cnn",
               images=7, blank_maps=1, accuracy=1.0, pointing_game=0.95, mask_energy=0.4, deletion_auc=0.1,
               insertion_auc=0.7, randomisation_spearman=0.2, ms_per_image=4.0)
    scores = tmp_path / "explain_scores_cnn.json"
    settings = dict(checkpoints=["checkpoints/cnn.pt"], images=7, seed=12345, tolerance=0)
    scores.write_text(json.dumps({"command": "python bench/score_explanations.py", "settings": settings,
                                  "results": [row]}))
    text = scores_table([scores])
    assert "| `cnn` (100%) | gradcam | CNN feature map | 0.95 | 1/7 | 0.40 |  |" in text
    assert "scored before the controls" in text and "(`tolerance`, 0: the maximum must lie on the mask itself)" in text


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
    row = controls["controls"][slow]
    row["worst_s"] = controls["worst_s"] = 0.45
    row["runs_s"] = [0.1] * (len(row["values"]) - 1) + [0.45]  # the last value took longest
    path.write_text(json.dumps(report))
    text = app_bench(root)
    assert f"**missed** by 1 of {len(controls['controls'])} controls ({slow}, worst on {row['values'][-1]})" in text
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


def _teaching_file(tmp_path: Path, rows: list[dict]) -> Path:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    report = {"command": "python bench/teaching_models.py", "date": "2026-12-07T10:00:00+00:00", "commit": "abc1234",
              "threads": 1, "load_average": [1.0, 1.0, 1.0], "samples": 100, "heldout_seed": 12345, "results": rows}
    (tmp_path / "bench" / "results" / "teaching_models.json").write_text(json.dumps(report))
    return tmp_path


def _run(arch: str, seed: int, top1: float, alone: float = 60.0, removed: float = 50.0, model: str | None = None,
         shuffled: float | None = None) -> dict:
    conflict = {"seed": 12345, "samples": 100, "top1": top1 - 20, "shape": 70.0, "texture": 60.0,
                "decoy_shape": 10.0, "decoy_texture": 30.0}
    kinds = {"cnn": (), "vit": ("patch",)}.get(arch, ("cnn", "patch"))
    interventions = {kind: {"zero": removed, "dataset_mean": removed - 1, "contents_averaged": removed + 5,
                            "layout_shuffled": top1 - 1 if shuffled is None else shuffled} for kind in kinds} or None
    return {"model": model or arch, "arch": arch, "seed": seed, "top1": top1, "top5": 99.0, "shape": top1 + 5, "texture": top1 + 3,
            "conflict": conflict, "interventions": interventions, "train_seconds": 600.0, "images_seen": 150_000}


def test_seed_tables_give_mean_and_sd_and_check_the_targets(tmp_path):
    from bench.report.teaching import fusion_targets, interventions_table, seed_table

    rows = [_run(arch, seed, top1 + seed) for seed in (0, 1, 2)
            for arch, top1 in (("cnn", 80.0), ("vit", 70.0), ("late", 85.0), ("early", 84.0), ("layerwise", 83.0))]
    root = _teaching_file(tmp_path, rows)
    table = seed_table(root)
    assert "| `cnn` | 3 | 81.0 ± 1.0 |" in table and "| `late` | 3 | 86.0 ± 1.0 |" in table
    assert "Left out" not in table
    assert "| `early` | CNN | 85.0 ± 1.0 | 50.0 ± 0.0 | 49.0 ± 0.0 | 55.0 ± 0.0 | 84.0 ± 1.0 |" in interventions_table(root)
    targets = fusion_targets(root)
    # removing either kind costs 36 points against a seed sd of 1: met; each kind alone is 50%: met
    assert "`late`: CNN tokens alone 50.0%, patch tokens alone 50.0% (target ≥ 50% each: met)" in targets
    assert ("costs 36.0 points, the patch tokens 36.0, against seed spreads of 1.0 and 1.0 (the larger of the cost's "
            "sd, the intact model's and 1 point; target: each above its own: met)") in targets
    assert "`late` 86.0%, +5.0 points over the better baseline" in targets
    assert "(target: beats both by more: met); removing its patch tokens costs 36.0 ± 1.0 points of it." in targets


def test_a_vit_that_reads_its_patches_as_a_bag_is_said_so_and_one_that_reads_their_layout_too(tmp_path):
    from bench.report.teaching import interventions_table, teaching_findings

    for shuffled, verdict in ((69.5, "their contents suffice, wherever they are"), (40.0, "where each token is matters")):
        rows = [_run(arch, seed, 70.0, removed=8.0, shuffled=shuffled) for seed in (0, 1, 2) for arch in ("cnn", "vit")]
        root = _teaching_file(tmp_path / str(shuffled), rows)
        assert f"| `vit` | patch | 70.0 ± 0.0 | 8.0 ± 0.0 | 7.0 ± 0.0 | 13.0 ± 0.0 | {shuffled:.1f} ± 0.0 |" in interventions_table(root)
        assert (f"- `vit` with its patch tokens' layout shuffled: {shuffled:.1f}% ({70 - shuffled:.1f} points below intact, "
                f"against 62.0 without them): {verdict}.") in teaching_findings(root)


def test_a_margin_over_the_baselines_that_the_patch_tokens_do_not_give_is_said_so(tmp_path):
    from bench.report.teaching import fusion_targets

    rows = [_run(arch, seed, top1 + seed, removed=top1 + seed - 0.5) for seed in (0, 1, 2)
            for arch, top1 in (("cnn", 80.0), ("vit", 70.0), ("late", 85.0))]
    targets = fusion_targets(_teaching_file(tmp_path, rows))
    assert ("(target: beats both by more: met); its patch tokens zeroed, it loses 0.5 ± 0.0 points (within the spread), "
            "so what it gains over the baselines does not come from its patch tokens.") in targets


def test_a_removal_cost_counts_only_beyond_its_own_spread_over_the_seeds(tmp_path):
    from bench.report.teaching import fusion_targets

    # intact 85 on every seed; without patch tokens 84.5, 82.5, 80.5: costs 0.5, 2.5, 4.5 (mean 2.5, sd 2.0)
    rows = [_run(arch, seed, 85.0, removed=84.5 - 2 * seed) for seed in (0, 1, 2) for arch in ("cnn", "vit", "late")]
    targets = fusion_targets(_teaching_file(tmp_path, rows))
    assert "the patch tokens 2.5, against seed spreads of 2.0 and 2.0" in targets
    assert "target: each above its own: met)" in targets  # 2.5 > 2.0, though the intact model's sd is 0
    # costs 0, 0, 6: a mean of 2.0 that one seed makes, within its sd of 3.5
    rows = [_run(arch, seed, 85.0, removed=(85.0, 85.0, 79.0)[seed]) for seed in (0, 1, 2) for arch in ("cnn", "vit", "late")]
    targets = fusion_targets(_teaching_file(tmp_path / "wide", rows))
    assert "the patch tokens 2.0, against seed spreads of 3.5 and 3.5" in targets
    assert "target: each above its own: **missed**)" in targets


def test_kind_dropout_is_weighed_against_its_greedy_control(tmp_path):
    from bench.report.teaching import fusion_targets, teaching_findings

    rows = [_run(arch, seed, top1 + seed) for seed in (0, 1, 2)
            for arch, top1 in (("cnn", 80.0), ("vit", 70.0), ("early", 84.0))]
    rows += [_run("early", seed, 84.0 + seed, removed=74.0 + seed, model="early-greedy") for seed in (0, 1, 2)]
    root = _teaching_file(tmp_path, rows)
    findings = teaching_findings(root)
    # the same intact top-1 (within the spread); removing a kind costs 35 points against 10: beyond it
    assert ("- Kind dropout, `early` (trained with it) against `early-greedy` (the same model and recipe without "
            "it): held-out top-1 85.0 against 85.0 (within the seed spread);") in findings
    assert "the cost of removing the patch tokens 35.0 against 10.0." in findings
    assert "- `early-greedy`: CNN tokens alone 75.0%" in fusion_targets(root)  # the control is a fusion model too


def test_a_run_that_never_trained_is_named_not_averaged(tmp_path):
    from bench.report.teaching import seed_table

    rows = [_run(arch, seed, 80.0 + seed) for seed in (0, 1, 2) for arch in ("cnn", "vit", "late", "early", "layerwise")]
    rows[2]["top1"] = 8.3  # late seed 0 stayed at chance
    table = seed_table(_teaching_file(tmp_path, rows))
    assert "| `late` | 2 | 81.5 ± 0.7 |" in table
    assert "Left out of the means: `late` seed 0 (8.3%)" in table


def test_a_missed_browser_target_says_by_how_much_and_where_the_time_goes():
    from bench.report.app import where_the_time_goes

    phases = {"until_run": 0.9, "imports": 3.6, "load": 1.9, "compute": 2.2, "figures": 0.1, "after_run": 0.8}
    missed = {"median_s": 10.75, "target_s": 5.0, "phases_s": phases}
    assert where_the_time_goes("a deep link", missed) == (
        "- a deep link: 5.75 s over; largest parts: imports 3.60 s, computing (tokenfusion) 2.20 s, "
        "loading checkpoints 1.90 s.")
    assert where_the_time_goes("a page switch", {**missed, "median_s": 0.8, "target_s": 1.0}) == ""  # met
    assert where_the_time_goes("a deep link", {"median_s": 10.75, "target_s": 5.0}) == ""  # an older file


def test_an_attempt_is_weighed_against_the_model_it_names_at_the_same_seeds(tmp_path):
    from bench.report.teaching import attempts_section

    rows = [_run(arch, seed, top1 + seed) for seed in (0, 1, 2)
            for arch, top1 in (("cnn", 80.0), ("vit", 70.0), ("early", 84.0))]
    root = _teaching_file(tmp_path, rows)
    attempts = json.loads((root / "bench" / "results" / "teaching_models.json").read_text())
    attempts["results"] = [*(_run("early", seed, 60.0 + 10 * seed, model="early-scratch") for seed in (0, 1, 2)),
                           _run("early", 0, 90.0, alone=30.0, removed=60.0, model="early-patch-lr10"),
                           _run("vit", 0, 70.5, model="vit-30ep")]
    (root / "bench" / "results" / "teaching_attempts.json").write_text(json.dumps(attempts))
    section = attempts_section(root)
    # the recipe before is weighed against the shipped model
    assert "| `early` (shipped) |  | 0, 1, 2 | 85.0 ± 1.0 |" in section
    assert "`early-scratch` against `early` at the same seeds" in section
    assert "held-out top-1 70.0 against 85.0 (beyond the spread 10.0)" in section
    # a counter-measure against the recipe it varies (early-scratch), within that recipe's spread over its seeds
    assert "| `early-patch-lr10` | early fusion from scratch whose parts that only patch tokens pass through" in section
    assert "| `early-scratch` |  | 0 | 60.0 | 65.0 | 63.0 | 50.0 | 50.0 | 10.0 | 10.0 |" in section
    assert "`early-patch-lr10` against `early-scratch` at the same seeds" in section
    assert "held-out top-1 90.0 against 60.0 (beyond the spread 10.0)" in section
    assert "removing the patch tokens costs 30.0 against 10.0 (beyond the spread 10.0)" in section
    assert "| `vit-30ep` |" in section and "held-out top-1 70.5 against 70.0 (within the spread 1.0)" in section
    assert "| — | — | — | — |" in section  # a ViT has no kinds to remove
    # an attempt whose own seeds scatter more than the model it is weighed against counts only beyond its own spread
    attempts["results"] = [*(_run("early", seed, 85.0, removed=(84.0, 35.0, 84.0)[seed], model="early-drop-cnn")
                             for seed in (0, 1, 2))]
    (root / "bench" / "results" / "teaching_attempts.json").write_text(json.dumps(attempts))
    # costs 1, 50, 1 against 34, 35, 36: 17.7 points apart, beyond early's sd of 1.0 but within its own of 28.3
    assert "removing the patch tokens costs 17.3 against 35.0 (within the spread 28.3)" in attempts_section(root)
