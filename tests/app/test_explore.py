"""Explore page: what the user sees for each strategy, and every control."""
from __future__ import annotations

import pytest

from .helpers import chart_titles, charts, no_exception, texts

# charts per strategy: top-k + attention (per kind) + token inspector (picker + its maps) + what-if (before,
# after, shares after, rollout after) + fusion + gallery (3 defaults) + ablation
EXPECTED = {
    "cnn": dict(charts=1 + 0 + 0 + 0 + 0 + 3 + 0,
                infos=["A CNN has no tokens", "no token to inspect", "one kind of token", "one branch only"]),
    "vit": dict(charts=1 + 1 + 2 + 0 + 0 + 3 + 0,
                infos=["no CNN tokens", "no other kind to fall back on", "one kind of token", "one branch only"]),
    "late": dict(charts=1 + 2 + 3 + 4 + 2 + 3 + 1, infos=[]),
    "early": dict(charts=1 + 2 + 3 + 4 + 2 + 3 + 1, infos=[]),
    "layerwise": dict(charts=1 + 2 + 3 + 3 + 1 + 3 + 1, infos=[]),
}


def test_opens_on_a_synthshapes_sample_with_every_view(app) -> None:
    at = app()
    no_exception(at)
    assert texts(at.title) == ["Explore · early"]
    assert any("SynthShapes #9: striped cross" in c for c in texts(at.sidebar.caption))
    assert len(charts(at)) == EXPECTED["early"]["charts"]
    captions = texts(at.main.caption)
    # every view says what it shows and how long it took
    for start in ("The five most probable classes", "Attention of the class token over CNN tokens",
                  "Attention of the class token over patch tokens", "Share of attention", "gradcam at trunk.",
                  "layercam at", "occlusion on the pixels", "Change of the"):
        assert any(c.startswith(start) and "Computed in" in c for c in captions), (start, captions)
    # the gallery opens on the map that scores best against the masks for this model, with its scores
    assert any(c.startswith("Opens on occlusion") for c in captions)
    assert at.session_state["gallery_methods:early"][0] == "occlusion"
    assert any("pointing" in m.value and "badge" in m.value for m in at.markdown)
    assert [s.value for s in at.subheader][:4] == ["Where the class token looks: CNN tokens vs patch tokens",
                                                  "Token inspector: click any token to see where it looks",
                                                  "What if: remove one kind of token, or a region of the image, "
                                                  "from layer k on",
                                                  "Fusion weights: how much of each kind of token the model uses"]


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_each_strategy_shows_the_views_that_apply(app, arch: str) -> None:
    at = app()
    at.sidebar.selectbox(key="model_name").set_value(arch).run()
    no_exception(at)
    assert texts(at.title) == [f"Explore · {arch}"]
    assert len(charts(at)) == EXPECTED[arch]["charts"]
    infos = " ".join(texts(at.info))
    for expected in EXPECTED[arch]["infos"]:
        assert expected in infos
    if arch == "layerwise":
        assert any("Cross-attention of the class token" in c for c in texts(at.caption))
        assert any("Learned gates tanh(g)" in c for c in texts(at.caption))


def test_attention_layer_head_and_rollout_controls(app) -> None:
    at = app()
    at.slider(key="att_layer:early").set_value(1).run()
    assert "CNN tokens · blocks.0" in chart_titles(at) and "patch tokens · blocks.0" in chart_titles(at)
    at.selectbox(key="att_head:early").set_value(2).run()
    no_exception(at)
    at.radio(key="att_mode:early").set_value("rollout").run()
    no_exception(at)
    assert any(c.startswith("Attention rollout from the readout class token to the input CNN tokens")
               for c in texts(at.caption))
    at.slider(key="att_discard:early").set_value(0.5)
    at.selectbox(key="att_fusion:early").set_value("max").run()
    no_exception(at)
    assert sum(c.startswith("Attention rollout") for c in texts(at.caption)) == 2


def test_fusion_weights_for_all_queries(app) -> None:
    at = app()
    at.radio(key="fusion_query:early").set_value("mean").run()
    no_exception(at)
    assert len(charts(at)) == EXPECTED["early"]["charts"]


def test_gallery_method_and_layer_pickers(app) -> None:
    at = app()
    layer = at.selectbox(key="gallery_layer:early")
    assert "blocks.3.norm1 · patch tokens" in layer.options and "trunk.stage2 · CNN feature map" in layer.options
    layer.set_value(("blocks.3.norm1", "patch"))
    at.multiselect(key="gallery_methods:early").set_value(["gradcam++", "eigencam", "occlusion", "smoothgrad"]).run()
    no_exception(at)
    captions = texts(at.caption)
    assert any(c.startswith("gradcam++ at blocks.3.norm1 · patch tokens") for c in captions)
    assert any(c.startswith("occlusion on the pixels") for c in captions)
    assert chart_titles(at).count("smoothgrad") == 1
    at.multiselect(key="gallery_methods:early").set_value([]).run()
    assert len(charts(at)) == EXPECTED["early"]["charts"] - 3


def test_gallery_offers_only_methods_that_apply(app) -> None:
    at = app()
    at.sidebar.selectbox(key="model_name").set_value("cnn").run()
    options = at.multiselect(key="gallery_methods:cnn").options
    assert "gradcam" in options and "integrated_gradients" in options
    assert "attention" not in options and "rollout" not in options
    layers = at.selectbox(key="gallery_layer:cnn").options
    assert all(o.startswith("trunk.") for o in layers)
