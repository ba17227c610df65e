"""Analyses kept on disk: the key changes with anything that changes the numbers and with nothing
else; a stored result is read back whole; the app's progress callback and cost estimate."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tokenfusion.analysis import analyze, open_data
from tokenfusion.analysis.cache import AnalysisCache, analysis_key
from tokenfusion.analysis.cost import seconds_per_image
from tokenfusion.data import CLASS_NAMES, export_imagefolder
from tokenfusion.models import create

OPTIONS = {"measures": ("ablation",), "ablation_modes": ("mean",), "batch_size": 8}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("early", "tiny").eval()


def test_the_key_follows_the_checkpoint_bytes_the_images_and_the_options(model, tmp_path: Path) -> None:
    checkpoint = tmp_path / "early.pt"
    checkpoint.write_bytes(b"weights one")
    data = open_data("synthshapes", [model.config], list(CLASS_NAMES), 8)
    key = analysis_key({"early": checkpoint}, data, OPTIONS)
    assert key == analysis_key({"early": checkpoint}, open_data("synthshapes", [model.config], list(CLASS_NAMES), 8),
                               dict(reversed(OPTIONS.items())))
    assert key != analysis_key({"early": checkpoint}, open_data("synthshapes", [model.config], list(CLASS_NAMES), 9),
                               OPTIONS)
    assert key != analysis_key({"early": checkpoint}, data, {**OPTIONS, "ablation_modes": ("zero",)})
    assert key != analysis_key({"other": checkpoint}, data, OPTIONS)
    checkpoint.write_bytes(b"weights two")  # same size, another version of the file: read again
    os.utime(checkpoint, ns=(1, 1))
    assert key != analysis_key({"early": checkpoint}, data, OPTIONS)


def test_the_key_of_a_folder_follows_its_files(model, tmp_path: Path) -> None:
    export_imagefolder(tmp_path / "data", num_train=0, num_val=12, progress=False)
    checkpoint = tmp_path / "early.pt"
    checkpoint.write_bytes(b"weights")

    def key() -> str:
        data = open_data(str(tmp_path / "data"), [model.config], list(CLASS_NAMES), 12)
        return analysis_key({"early": checkpoint}, data, OPTIONS)

    first = key()
    assert key() == first
    image = next((tmp_path / "data" / "val").rglob("*.png"))
    image.write_bytes(image.read_bytes() + b"\0")
    assert key() != first


def test_a_stored_result_is_read_back(tmp_path: Path) -> None:
    cache = AnalysisCache(tmp_path / "cache")
    assert cache.get("k") is None
    result = {"images": 8, "models": {"early": {"top1": 37.5, "ablation": {"cnn": {"mean": {"top1": [1.0, 2.0]}}}}}}
    cache.put("k", result)
    assert cache.get("k") == result and [p.name for p in (tmp_path / "cache").iterdir()] == ["k.json"]
    cache.path("k").write_text('{"images": ')  # a file cut short is computed again, never trusted
    assert cache.get("k") is None


def test_analyze_reports_progress_after_every_batch(model) -> None:
    data = open_data("synthshapes", [model.config], list(CLASS_NAMES), 5)
    told: list[tuple[int, int]] = []
    analyze({"early": model}, data, batch_size=2, measures=("fusion_weights",),
            progress=lambda done, total: told.append((done, total)))
    assert told == [(2, 5), (4, 5), (5, 5)]


def test_the_estimate_times_the_first_images_in_one_batch(model, monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenfusion.analysis.cost as cost

    calls = []
    monkeypatch.setattr(cost, "analyze", lambda models, data, **kw: calls.append((len(data.dataset), kw)))
    data = open_data("synthshapes", [model.config], list(CLASS_NAMES), 100)
    seconds_per_image({"early": model}, data, probe=4, **OPTIONS)
    assert calls == [(4, {**OPTIONS, "batch_size": 4, "progress": False})]
