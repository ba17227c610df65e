"""Explore as an instrument: the token inspector, the what-if, and the view kept in the URL."""
from __future__ import annotations

import re

from .helpers import no_exception, texts


def _caption(at, start: str) -> str:
    return next(c for c in texts(at.caption) if c.startswith(start))


def test_the_token_inspector_follows_its_controls(app) -> None:
    at = app()
    first = _caption(at, "Attention of the CNN token")  # early's sequence starts with its CNN tokens
    assert "at blocks.3" in first and "receptive field, measured" in first
    at.radio(key="tok_kind:early").set_value("patch").run()
    no_exception(at)
    assert "Green: its patch" in _caption(at, "Attention of the patch token")
    at.select_slider(key="tok_layer:early").set_value("blocks.1").run()
    assert "at blocks.1" in _caption(at, "Attention of the patch token")


def test_the_layerwise_inspector_shows_the_cross_attention_row(app) -> None:
    at = app(query={"model": "layerwise"})
    no_exception(at)
    assert texts(at.title) == ["Explore · layerwise"]
    assert any(c.startswith("Attention of the patch token") for c in texts(at.caption))
    assert at.session_state["tok_layer:layerwise"] == "blocks.3"


def _percent(caption: str) -> list[tuple[str, int]]:
    return [(name, int(p)) for name, p in re.findall(r"'([^']+)' (\d+)%", caption)]


def test_removing_cnn_tokens_changes_the_prediction(app) -> None:
    at = app()
    at.select_slider(key="wi_from:early").set_value("blocks.0").run()
    no_exception(at)
    (before, p_before), (after, p_after) = _percent(_caption(at, "Prediction, attention shares and rollout"))
    assert (before, p_before) != (after, p_after)  # early leans on its CNN tokens
    last = at.select_slider(key="wi_from:early").options[-1]
    assert last == "blocks.3"


def test_a_link_opens_the_view_it_names(app) -> None:
    at = app(query={"model": "late", "image": "Photo", "photo": "rocket.jpg", "layer": "2", "head": "1",
                    "methods": ["gradcam", "occlusion"]})
    no_exception(at)
    assert texts(at.title) == ["Explore · late"]
    assert at.session_state["photo_name"] == "rocket.jpg"
    assert at.session_state["att_layer:late"] == 2 and at.session_state["att_head:late"] == 1
    assert at.session_state["gallery_methods:late"] == ["gradcam", "occlusion"]
    assert at.query_params["model"] == "late" and at.query_params["layer"] == "2"
    assert at.query_params["methods"] == ["gradcam", "occlusion"]


def test_a_link_with_unknown_values_falls_back_to_the_defaults(app) -> None:
    at = app(query={"model": "nonexistent", "layer": "99", "methods": ["gradcam", "nope"]})
    no_exception(at)
    assert texts(at.title) == ["Explore · early"]
    assert at.session_state["att_layer:early"] == 4
    assert at.query_params["model"] == "early"


def test_removing_a_region_changes_the_prediction_over_the_object_only(app) -> None:
    at = app()  # early on the striped cross of SynthShapes, whose cross spans most of the image
    at.radio(key="wi_kind:early").set_value("region").run()
    at.slider(key="wi_across:early").set_value((0.0, 0.25))
    at.slider(key="wi_down:early").set_value((0.0, 0.25)).run()  # a corner of background
    no_exception(at)
    (before, _), (after, _) = _percent(_caption(at, "Prediction, attention shares and rollout with the CNN and patch"))
    assert before == after
    at.slider(key="wi_across:early").set_value((0.05, 0.95))
    at.slider(key="wi_down:early").set_value((0.05, 0.95)).run()  # the object's box
    no_exception(at)
    (before, _), (after, _) = _percent(_caption(at, "Prediction, attention shares and rollout"))
    assert before != after
    assert "under the region replaced by their mean at blocks.0" in next(
        c for c in texts(at.caption) if c.startswith("CNN and patch tokens"))
