"""Explore page: what the user sees for each strategy, and every control."""
from __future__ import annotations

import pytest

from app.sources import SCORES
from tokenfusion.explain import best_map, scores_for

from .helpers import chart_titles, charts, no_exception, open_view, texts

# charts per strategy and tab, besides the top-k above the tabs: attention (per kind), token inspector (picker
# + its maps), what-if (before, after, shares after, rollout after), fusion, gallery (3 defaults), ablation
EXPECTED = {
    "cnn": dict(charts=dict(Attention=0, Inspector=0, **{"What-if": 0}, Fusion=0, Maps=3, Ablation=0),
                infos=["A CNN has no tokens", "no token to inspect", "one kind of token", "one branch only"]),
    "vit": dict(charts=dict(Attention=1, Inspector=2, **{"What-if": 0}, Fusion=0, Maps=3, Ablation=0),
                infos=["no CNN tokens", "no other kind to fall back on", "one kind of token", "one branch only"]),
    "late": dict(charts=dict(Attention=2, Inspector=3, **{"What-if": 4}, Fusion=2, Maps=3, Ablation=1), infos=[]),
    "early": dict(charts=dict(Attention=2, Inspector=3, **{"What-if": 4}, Fusion=2, Maps=3, Ablation=1), infos=[]),
    "layerwise": dict(charts=dict(Attention=2, Inspector=3, **{"What-if": 3}, Fusion=1, Maps=3, Ablation=1),
                      infos=[]),
}
VIEWS = list(EXPECTED["early"]["charts"])


def test_opens_on_a_synthshapes_sample_with_the_attention_tab_only(app) -> None:
    at = app()
    no_exception(at)
    assert texts(at.title) == ["Explore · early"]
    assert any("SynthShapes striped cross, example 0" in c for c in texts(at.sidebar.caption))  # as the sidebar says
    assert [t.label for t in at.tabs] == VIEWS
    # only the open tab is computed: the prediction and the attention view, nothing of the other tabs
    assert len(charts(at)) == 1 + EXPECTED["early"]["charts"]["Attention"]
    assert texts(at.subheader) == ["Where the class token looks: CNN tokens vs patch tokens"]
    assert dict(at.query_params) == {}  # the URL holds what the user set: nothing yet


def test_every_tab_shows_its_view_and_says_what_it_shows(app, checkpoint_dir) -> None:
    best = best_map(scores_for(checkpoint_dir / "early.pt", SCORES)).method  # its shipped scores' best map
    at = app()
    captions: list[str] = []
    subheaders: list[str] = []
    for view in VIEWS:
        open_view(at, view)
        no_exception(at)
        assert len(charts(at)) == 1 + EXPECTED["early"]["charts"][view], view
        assert dict(at.query_params).get("view", VIEWS[0]) == view  # the first tab is the default
        captions += texts(at.main.caption)
        subheaders += texts(at.subheader)
        if view == "Maps":  # the gallery opens on the map that scores best against the masks, with its scores
            assert any(c.startswith((f"Opens on {best}:", f"Opens on {best} at ")) for c in texts(at.main.caption))
            assert at.session_state["view:methods"][0] == best
            assert any("pointing" in m.value and "badge" in m.value for m in at.markdown)
    # every view says what it shows and how long it took
    for start in ("The five most probable classes", "Attention of the class token over CNN tokens",
                  "Attention of the class token over patch tokens", "Share of attention", "gradcam at trunk.",
                  "layercam at", f"{best} ", "Change of the"):
        assert any(c.startswith(start) and "Computed in" in c for c in captions), (start, captions)
    assert subheaders == ["Where the class token looks: CNN tokens vs patch tokens",
                          "Token inspector: click any token to see where it looks",
                          "What if: remove one kind of token, or a region of the image, from layer k on",
                          "Fusion weights: how much of each kind of token the model uses",
                          "Grad-CAM and attribution gallery", "Branch ablation"]


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_each_strategy_shows_the_views_that_apply(app, arch: str) -> None:
    at = app()
    at.sidebar.selectbox(key="view:model").set_value(arch).run()
    infos, captions = [], []
    for view, expected in EXPECTED[arch]["charts"].items():
        open_view(at, view)
        no_exception(at)
        assert texts(at.title) == [f"Explore · {arch}"]
        assert len(charts(at)) == 1 + expected, view
        infos += texts(at.info)
        captions += texts(at.caption)
    for expected in EXPECTED[arch]["infos"]:
        assert expected in " ".join(infos)
    if arch == "layerwise":
        assert any("Cross-attention of the class token" in c for c in captions)
        assert any("Learned gates tanh(g)" in c for c in captions)


def test_attention_layer_head_and_rollout_controls(app) -> None:
    at = app()
    at.slider(key="view:layer").set_value(1).run()
    assert "CNN tokens · blocks.0" in chart_titles(at) and "patch tokens · blocks.0" in chart_titles(at)
    at.selectbox(key="view:head").set_value(2).run()
    no_exception(at)
    at.radio(key="view:show").set_value("rollout").run()
    no_exception(at)
    assert any(c.startswith("Attention rollout from the readout class token to the input CNN tokens")
               for c in texts(at.caption))
    at.slider(key="view:discard").set_value(0.5)
    at.selectbox(key="view:head_fusion").set_value("max").run()
    no_exception(at)
    assert sum(c.startswith("Attention rollout") for c in texts(at.caption)) == 2


def test_fusion_weights_for_all_queries(app) -> None:
    at = open_view(app(), "Fusion")
    at.radio(key="view:queries").set_value("mean").run()
    no_exception(at)
    assert len(charts(at)) == 1 + EXPECTED["early"]["charts"]["Fusion"]


def test_gallery_method_and_layer_pickers(app) -> None:
    at = open_view(app(), "Maps")
    layer = at.selectbox(key="view:cam_layer")
    assert "blocks.3.norm1 · patch tokens" in layer.options and "trunk.stage2 · CNN feature map" in layer.options
    layer.set_value(("blocks.3.norm1", "patch"))
    at.multiselect(key="view:methods").set_value(["gradcam++", "eigencam", "occlusion", "smoothgrad"]).run()
    no_exception(at)
    captions = texts(at.caption)
    assert any(c.startswith("gradcam++ at blocks.3.norm1 · patch tokens") for c in captions)
    assert any(c.startswith("occlusion on the pixels") for c in captions)
    assert chart_titles(at).count("smoothgrad") == 1
    at.multiselect(key="view:methods").set_value([]).run()
    assert len(charts(at)) == 1


def test_gallery_offers_only_methods_that_apply(app) -> None:
    at = open_view(app(), "Maps")
    at.sidebar.selectbox(key="view:model").set_value("cnn").run()
    options = at.multiselect(key="view:methods").options
    assert "gradcam" in options and "integrated_gradients" in options
    assert "attention" not in options and "rollout" not in options
    layers = at.selectbox(key="view:cam_layer").options
    assert all(o.startswith("trunk.") for o in layers)
