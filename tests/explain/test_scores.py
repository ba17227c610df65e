"""Reading the scoring command's results: which file scored a checkpoint, and the map that scored best."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.explain import available_methods, best_map, score_of, scores_for
from tokenfusion.explain.scores import MapScore, read_scores
from tokenfusion.models import ARCHITECTURES

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"
RESULTS = SHIPPED.parent / "bench" / "results"  # where the scoring command writes


def _row(method: str, pointing: float, *, layer: str | None = None, kind: str | None = None, rho: float | None = 0.1,
         blank: int = 0, checkpoint: str = "early.pt") -> dict:
    return dict(checkpoint=checkpoint, arch="early", size="tiny", method=method, layer=layer, kind=kind, images=10,
                pointing_game=pointing, mask_energy=0.5, deletion_auc=0.2, insertion_auc=0.6,
                randomisation_spearman=rho, blank_maps=blank)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with ``checkpoints/early.pt`` and a results file that scored it (and another model)."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "early.pt").write_bytes(b"weights")
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    rows = [_row("gradcam", 0.3, layer="trunk.stage2", kind="cnn"), _row("rollout", 0.9, kind="cnn"),
            _row("occlusion", 0.6, checkpoint="late.pt")]
    report = dict(command="python bench/score_explanations.py", settings=dict(checkpoints=["checkpoints/early.pt"]),
                  results=rows)
    (results / "explain_scores_early.json").write_text(json.dumps(report))
    return tmp_path


def test_scores_of_the_checkpoint_a_results_file_names(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    results = repo / "bench" / "results"
    scores = scores_for(repo / "checkpoints" / "early.pt", results)
    assert [(s.method, s.kind) for s in scores] == [("gradcam", "cnn"), ("rollout", "cnn")]  # not late.pt's row
    upload = tmp_path_factory.mktemp("upload") / "early.pt"  # same name, another file: an upload
    upload.write_bytes(b"weights")
    assert scores_for(upload, results) is None
    assert scores_for(repo / "checkpoints" / "missing.pt", results) is None
    (results / "explain_scores_early.json").write_text('{"results": [')  # a scoring run rewriting it
    assert scores_for(repo / "checkpoints" / "early.pt", results) is None


def test_a_folder_in_the_settings_scores_every_checkpoint_in_it(repo: Path) -> None:
    path = repo / "bench" / "results" / "explain_scores_early.json"
    report = json.loads(path.read_text())
    report["settings"]["checkpoints"] = ["checkpoints/"]
    path.write_text(json.dumps(report))
    assert len(scores_for(repo / "checkpoints" / "early.pt", path.parent)) == 2


def test_best_map_points_most_often_among_maps_that_pass_their_checks() -> None:
    rows = [_row("gradcam", 0.4, layer="trunk.stage2", kind="cnn"), _row("eigencam", 0.95, rho=0.9),
            _row("hirescam", 0.97, blank=8), _row("rollout", 0.8, kind="cnn"), _row("occlusion", 0.7)]
    scores = [MapScore(**{k: v for k, v in r.items() if k not in ("checkpoint", "arch", "size")}) for r in rows]
    best = best_map(scores)
    assert (best.method, best.target) == ("rollout", (None, "cnn"))
    assert best_map(scores, methods=["gradcam", "occlusion"]).method == "occlusion"
    assert best_map(scores, methods=["eigencam"]) is None  # fails the randomisation check
    eigen, hires = score_of(scores, "eigencam", None, None), score_of(scores, "hirescam", None, None)
    assert "randomisation" in eigen.problems[0] and "0.90" in eigen.problems[0]
    assert hires.problems == ["is blank on 8 of 10 held-out images"]
    assert best.badges == ["pointing 80%", "deletion 0.20 · insertion 0.60", "randomisation ρ 0.10"]
    assert score_of(scores, "gradcam", "trunk.stage1", "cnn") is None


def test_a_file_with_controls_says_which_maps_localise_and_best_map_prefers_them(repo: Path) -> None:
    path = repo / "bench" / "results" / "explain_scores_early.json"
    report = json.loads(path.read_text())
    control = dict(_row("centre-prior", 0.7, rho=None), family="control", pointing_game_mismatched=0.7,
                   mask_energy_mismatched=0.5, localises=False)
    gradcam = dict(_row("gradcam", 0.8, layer="trunk.stage2", kind="cnn"), mask_energy=0.6,
                   pointing_game_mismatched=0.3, mask_energy_mismatched=0.2, localises=True)
    # Points into the object more often, but no more than its maps do into another image's object: it does not.
    rollout = dict(_row("rollout", 0.9, kind="cnn"), mask_energy=0.7, pointing_game_mismatched=0.9,
                   mask_energy_mismatched=0.2, localises=False)
    # No verdict written: worked out from the file's control row (energy 0.4 is not above the prior's 0.5).
    occlusion = dict(_row("occlusion", 0.95), mask_energy=0.4, pointing_game_mismatched=0.3, mask_energy_mismatched=0.2)
    report["results"] = [control, gradcam, rollout, occlusion]
    path.write_text(json.dumps(report))
    scores = scores_for(repo / "checkpoints" / "early.pt", path.parent)
    assert [s.method for s in scores] == ["gradcam", "rollout", "occlusion"]  # the control is no map to draw
    assert [s.localises for s in scores] == [True, False, False]
    assert scores[0].pointing_game_mismatched == 0.3 and scores[0].mask_energy_mismatched == 0.2
    assert best_map(scores).method == "gradcam"  # localises, though others point into the object more often
    assert best_map(scores, methods=["rollout", "occlusion"]).method == "occlusion"  # none localises: pointing
    assert scores[0].badges[-1] == "localises" and scores[1].badges[-1] == "does not beat the controls"


def test_files_written_before_the_controls_leave_localisation_unknown() -> None:
    rows = [_row("gradcam", 0.4, layer="trunk.stage2", kind="cnn"), _row("occlusion", 0.7)]
    scores = read_scores(rows, "early.pt")
    assert [s.localises for s in scores] == [None, None] and scores[0].pointing_game_mismatched is None
    assert len(scores[0].badges) == 3 and best_map(scores).method == "occlusion"
    # A map that localises comes before one whose file does not say, and that before one that does not.
    known = [MapScore(**{**s.__dict__, "localises": verdict}) for s, verdict in zip(scores, (True, None))]
    assert best_map(known).method == "gradcam"
    assert best_map([MapScore(**{**scores[1].__dict__, "localises": False}), scores[0]]).method == "gradcam"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_best_map_of_each_shipped_model_is_one_it_can_draw(arch: str) -> None:
    path = SHIPPED / f"{arch}.pt"
    if not path.is_file() or not list(RESULTS.glob(f"explain_scores_{arch}.json")):
        pytest.skip(f"no shipped {arch} checkpoint or no scores for it")
    scores = scores_for(path, RESULTS)
    assert scores, f"bench/results/explain_scores_{arch}.json does not name checkpoints/{arch}.pt"
    best = best_map(scores)
    assert best is not None and not best.problems
    info = {m.name: m for m in available_methods(load_checkpoint(path).model)}
    assert best.target in info[best.method].targets
