"""The Analysis page: every measure over held-out images drawn for the loaded checkpoints, kept on
disk so that the same question is answered again without computing, plain messages for bad data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import tokenfusion.analysis
from app.sources import data_dir
from tokenfusion.data import export_imagefolder
from tokenfusion.models import ARCHITECTURES

from .conftest import MAIN, TIMEOUT
from .helpers import chart_titles, charts, no_exception, png, texts
from .test_pages import started

IMAGES = 16
SECTIONS = ["Ablation curves", "Mean attention distance", "Fusion weights over the images",
            "Representation similarity (CKA)"]


@pytest.fixture
def open_analysis(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """``open_analysis(images)``: the Analysis page on the five strategies (one checkpoint each), its
    number of images set before its first run."""
    strategies = tmp_path_factory.mktemp("strategies")
    for arch in ARCHITECTURES:
        (strategies / f"{arch}.pt").symlink_to(checkpoint_dir / f"{arch}.pt")

    def start(images: int = IMAGES) -> AppTest:
        monkeypatch.setenv("TOKENFUSION_CHECKPOINTS", str(strategies))
        at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
        at.session_state["view:images"] = images
        at.run()
        return started(at.switch_page("views/analysis.py").run())

    return start


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The images of every analysis the page computes (the page calls ``tokenfusion.analysis.analyze``)."""
    seen: list[int] = []
    original = tokenfusion.analysis.analyze

    def counted(models, data, **kwargs):
        seen.append(len(data.dataset))
        return original(models, data, **kwargs)

    monkeypatch.setattr(tokenfusion.analysis, "analyze", counted)
    return seen


def test_every_measure_is_drawn_and_the_second_visit_reads_the_cache(open_analysis, runs, tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("TOKENFUSION_CACHE", str(tmp_path))
    at = open_analysis()
    no_exception(at)
    assert texts(at.title) == ["Analysis over a data set"]
    assert texts(at.subheader) == SECTIONS
    assert runs == [IMAGES]
    assert len(list(tmp_path.glob("*.json"))) == 1
    table = at.dataframe[0].value
    assert list(table["strategy"]) == list(ARCHITECTURES) and table["top-1 (%)"].between(0, 100).all()
    fused, attending = ARCHITECTURES[2:], ARCHITECTURES[1:]  # late, early, layerwise; all but cnn
    # ablation: every model with tokens; distance: every model with attention; fusion: two per model
    # with attention shares, one for layerwise's gates; one CKA heatmap
    assert len(charts(at)) == len(attending) + len(attending) + 2 * 2 + 1 + 1
    assert sum(t.startswith("CKA: ") for t in chart_titles(at)) == 1
    downloads = [json.loads(c.proto.config)["toImageButtonOptions"] for c in charts(at)]
    assert all(d["format"] == "png" for d in downloads) and "analysis-cka-figure" in {d["filename"] for d in downloads}
    assert any("Computed in" in c and f"{IMAGES} images" in c for c in texts(at.caption))
    titles = [m.strip("*") for m in texts(at.markdown) if m.startswith("**")]
    per_model = [f"{name}: per {what}" for name in fused[:2] for what in ("layer", "head")] + [f"{fused[2]}: gates"]
    assert titles[-(2 * len(attending) + len(per_model)):] == [*attending, *attending, *per_model]

    comparisons = at.selectbox(key="view:cka").options
    assert len(comparisons) > 1
    at.selectbox(key="view:cka").set_value(comparisons[-1]).run()
    no_exception(at)
    a, b = comparisons[-1].split(" vs ")
    assert f"CKA: {a.split(' (')[0]} vs {b.split(' (')[0]}" in chart_titles(at)
    assert at.query_params["cka"] == comparisons[-1] and at.query_params["images"] == str(IMAGES)  # in the link

    again = open_analysis()
    no_exception(again)
    assert runs == [IMAGES]  # nothing computed a second time, in a new session
    assert texts(again.subheader) == SECTIONS and len(charts(again)) == len(charts(at))
    assert any(c.startswith(f"{IMAGES} images") and "Loaded from the cache" in c for c in texts(again.caption))

    open_analysis(IMAGES + 1)
    assert runs == [IMAGES, IMAGES + 1]  # another question: computed


def test_slow_work_waits_for_start_then_runs(app, runs, tmp_path, monkeypatch, teaching_models) -> None:
    monkeypatch.setenv("TOKENFUSION_CACHE", str(tmp_path))
    monkeypatch.setattr("app.estimates.SLOW_SECONDS", 0.0)  # every analysis counts as slow
    at = app()
    at.switch_page("views/analysis.py").run()
    at.number_input(key="view:images").set_value(IMAGES).run()
    no_exception(at)
    assert runs == [] and not charts(at)
    assert f"Analysing {IMAGES} images with {len(teaching_models)} models takes about" in at.info[0].value
    assert "timed on 8 images" in at.info[0].value
    assert [b for b in at.button if b.label.startswith("Start (")]
    started(at)  # clicks Start, then waits for the work on its thread
    no_exception(at)
    assert runs == [IMAGES] and texts(at.subheader) == SECTIONS
    assert not at.info and not [b for b in at.button if b.label in ("Stop",) or b.label.startswith("Start (")]


def test_a_folder_named_at_start_is_analysed(open_analysis, runs, tmp_path, monkeypatch) -> None:
    export_imagefolder(tmp_path / "data", num_train=0, num_val=12, progress=False)
    monkeypatch.setenv("TOKENFUSION_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TOKENFUSION_CACHE", str(tmp_path / "cache"))
    at = open_analysis(10)
    no_exception(at)
    assert runs == [10] and texts(at.subheader) == SECTIONS
    captions = " ".join(texts(at.caption))
    assert f"--data {tmp_path / 'data'} --images 10" in captions and "each cue alone" not in captions


def _class_folders(root: Path, classes: list[str]) -> Path:
    for name in classes:
        (root / "val" / name).mkdir(parents=True)
        (root / "val" / name / "a.png").write_bytes(png())
    return root


@pytest.mark.parametrize("case", ["missing", "other classes"])
def test_a_bad_data_folder_gets_a_plain_message(open_analysis, runs, tmp_path, monkeypatch, case: str) -> None:
    folder = tmp_path / "nowhere" if case == "missing" else _class_folders(tmp_path, ["cat", "dog"])
    monkeypatch.setenv("TOKENFUSION_DATA", str(folder))
    at = open_analysis()
    no_exception(at)
    assert at.radio(key="view:data").value == str(folder)  # a folder named at start is the default
    expected = "does not exist" if case == "missing" else "holds classes ['cat', 'dog']"
    assert len(at.error) == 1 and expected in at.error[0].value
    assert runs == [] and not charts(at)


def test_the_data_folder_is_named_after_the_double_dash() -> None:
    assert data_dir(["--checkpoints", "c", "--data", "/d"], {"TOKENFUSION_DATA": "/e"}) == Path("/d")
    assert data_dir([], {"TOKENFUSION_DATA": "/e"}) == Path("/e")
    assert data_dir(["--checkpoints", "c"], {}) is None


def test_an_empty_checkpoint_folder_says_where_models_come_from(app, runs, tmp_path) -> None:
    at = app(tmp_path)
    at.switch_page("views/analysis.py").run()
    no_exception(at)
    assert len(at.error) == 1 and at.error[0].value.startswith(f"No checkpoints in {tmp_path}")
    assert runs == [] and not charts(at)
