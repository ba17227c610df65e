"""``python -m train.teach``: the command that retrains the shipped teaching models."""
import pytest
import torch

from tokenfusion.checkpoint import load_checkpoint
from train import teach
from train.presets import resolve_preset

from .conftest import run_train

SHORT = ["--img-size", "32", "--epochs", "1", "--train-samples", "64", "--val-samples", "16", "--batch-size", "16"]


def test_jobs_train_each_model_in_its_own_process_and_a_rerun_resumes(tmp_path):
    argv = ["--models", "cnn", "vit", "--jobs", "2", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--heldout-samples", "16", "--", *SHORT]
    result = run_train(*argv, module="train.teach")
    for arch in ("cnn", "vit"):
        assert f"{arch} epoch 1/1:" in result.stdout  # each job reports its epochs, named
        assert f"   {arch} seed 0: held-out top-1" in result.stdout
        shipped = load_checkpoint(tmp_path / "out" / f"{arch}.pt")
        assert shipped.training["heldout"]["samples"] == 16
        assert "--jobs 2" in shipped.provenance["teach_command"]
    assert "2 models in" in result.stdout  # the wall time of the whole set
    first = load_checkpoint(tmp_path / "out" / "vit.pt").model.state_dict()

    rerun = run_train(*argv, module="train.teach")
    assert rerun.stdout.count("Resumed from") == 2 and "epoch 1/1:" not in rerun.stdout  # nothing retrained
    again = load_checkpoint(tmp_path / "out" / "vit.pt").model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_the_costliest_teaching_run_starts_first():
    order = sorted(teach.TEACHING_MODELS, key=teach.teaching_cost, reverse=True)
    assert order[0] == "late" and order[-1] == "cnn"  # late runs two streams and a fusion block; cnn no transformer


def test_seeds_train_seed_by_seed_and_only_seed_0_ships(tmp_path):
    argv = ["--models", "cnn", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--seed-out", str(tmp_path / "seeds"), "--heldout-samples", "12", "--", *SHORT]
    result = run_train(*argv, module="train.teach")
    assert result.stdout.index("cnn seed 0: held-out") < result.stdout.index("== cnn seed 1:")
    shipped, other = load_checkpoint(tmp_path / "out" / "cnn.pt"), load_checkpoint(tmp_path / "seeds" / "1" / "cnn.pt")
    assert not (tmp_path / "out" / "1").exists() and not (tmp_path / "seeds" / "0").exists()
    first = next(iter(shipped.model.state_dict().values()))
    assert not torch.equal(first, next(iter(other.model.state_dict().values())))  # another initialisation


def test_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        teach.main(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_fusion_models_start_from_the_same_seeds_baselines_and_wait_for_them(tmp_path):
    argv = ["--models", "late", "early-greedy", "cnn", "vit", "--jobs", "2", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "--heldout-samples", "12", "--", *SHORT]
    out = run_train(*argv, module="train.teach").stdout
    baselines_done = max(out.index("cnn seed 0: held-out"), out.index("vit seed 0: held-out"))
    for name in ("late", "early-greedy"):
        assert baselines_done < out.index(f"== {name} seed 0:")
        sources = load_checkpoint(tmp_path / "out" / f"{name}.pt").provenance["weights"]
        assert sources["trunk"]["path"] == str((tmp_path / "out" / "cnn.pt").resolve())
        assert sources["patch stream"]["path"] == str((tmp_path / "out" / "vit.pt").resolve())
    # the greedy control is early fusion trained without kind dropout; the shipped early has it
    greedy = load_checkpoint(tmp_path / "out" / "early-greedy.pt")
    assert greedy.config.arch == "early" and greedy.config.kind_drop_rate == 0.0
    assert resolve_preset(teach.PRESET, "early")["kind_drop"] > 0


def test_naming_a_model_without_its_baselines_says_which_are_missing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        teach.main(["--models", "late", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    assert "start from checkpoints that are neither on disk nor trained by this command: cnn seed 0" in capsys.readouterr().err
