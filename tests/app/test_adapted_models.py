"""Models of other libraries in the app: the real ImageNet model on the shipped photos, and timm models
that went through ``python -m tokenfusion.models.convert`` (random weights), explained on their grids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from app.sources import REAL_MODEL, listed_models, real_models
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data.images import load_image
from tokenfusion.data.transforms import preprocess
from tokenfusion.explain import Explainer
from tokenfusion.models.convert import main as convert

from .helpers import charts, chart_titles, no_exception

PHOTOS = Path(__file__).resolve().parents[2] / "assets" / "photos"
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
#: The issue's three: a ViT (patch tokens), a hybrid (CNN tokens into the blocks), a CNN; and their token grids.
CONVERTED = {"deit_small_patch16_224": ("patch", (14, 14)), "vit_small_r26_s32_224": ("cnn", (7, 7)),
             "resnet50": (None, (7, 7))}


def _top1(at) -> str:
    """The first class of the prediction chart (the top-k bars, most probable first)."""
    bars = json.loads(charts(at)[0].proto.spec)["data"][0]
    return bars["y"][0]


def test_the_real_model_explains_chelsea_with_a_cat_and_its_grad_cam(app, monkeypatch, tmp_path: Path) -> None:
    """As on a fresh install: no checkpoint of the real model yet; the app writes it from the package."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real_models.cache_clear()
    try:
        at = app(query={"model": REAL_MODEL, "image": "Photo", "photo": "chelsea.jpg", "view": "Maps"})
        written = [p.name for p in (tmp_path / "tokenfusion" / "models").iterdir()]
    finally:
        real_models.cache_clear()  # the next test finds the user's folder again
    no_exception(at)
    assert not at.error
    assert _top1(at) in CATS
    assert not [w for w in at.warning if "Out of distribution" in w.value]
    assert "gradcam" in chart_titles(at)
    assert len(written) == 1 and written[0].startswith("efficientnet_lite0-")


def test_the_teaching_models_still_say_a_photo_is_out_of_their_distribution(app) -> None:
    at = app(query={"model": "early", "image": "Photo", "photo": "chelsea.jpg"})
    no_exception(at)
    assert [w for w in at.warning if "Out of distribution" in w.value]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three models with random weights, each converted into a checkpoint folder of their own."""
    folder = tmp_path_factory.mktemp("converted")
    for i, name in enumerate(CONVERTED):
        torch.manual_seed(i)
        weights = folder.parent / f"{name}.pth"
        torch.save(timm.create_model(name).state_dict(), weights)
        convert(["--timm", name, "--weights", str(weights), "--out", str(folder / f"{name}.pt")])
        weights.unlink()
    return folder


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_models_give_attention_rollout_relevance_and_grad_cam_on_their_grids(converted: Path, name: str) -> None:
    checkpoint = load_checkpoint(converted / f"{name}.pt")
    kind, grid = CONVERTED[name]
    session = Explainer(checkpoint.model, preprocess(load_image((PHOTOS / "coffee.jpg").read_bytes()), checkpoint.config))
    assert session.explain("gradcam").grid.shape == grid
    methods = {"attention", "rollout", "relevance"} & set(session.methods)
    assert methods == ({"attention", "rollout", "relevance"} if kind else set())
    for method in methods:
        assert session.explain(method, kind=kind).grid.shape == grid
    if kind:
        assert session.explain("gradcam", kind=kind, layer=f"{session.methods['attention'].targets[-1][0]}.norm1"
                               ).grid.shape == grid


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_models_load_in_the_app_and_draw_their_maps(app, converted: Path, name: str) -> None:
    at = app(folder=converted, query={"model": name, "image": "Photo", "photo": "coffee.jpg", "view": "Maps"})
    no_exception(at)
    assert not at.error
    assert any(name in caption.value for caption in at.sidebar.caption)
    assert "gradcam" in chart_titles(at)


def test_the_real_model_is_listed_beside_a_folder_s_checkpoints_only(converted: Path, tmp_path: Path) -> None:
    assert list(listed_models(converted)) == [*sorted(CONVERTED), REAL_MODEL]  # the folder by name, then the real one
    assert listed_models(tmp_path) == {}  # an empty folder: the page says where models come from
