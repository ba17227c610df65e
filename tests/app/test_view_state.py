"""One view state per session (``app/url.py``): what the user sets in any view survives a tab switch and
a page round trip, is written to the URL, and a link with that URL opens the same view; a new image or
model keeps the settings that still apply and says which it had to change."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from .helpers import chart_titles, no_exception, open_view, png, texts
from .test_inputs import upload_image

#: A non-default value for a setting of every view, by widget kind and key, in the order they are set.
SETTINGS = {
    "views/explore.py": [
        ("Attention", "slider", "view:layer", 2), ("Attention", "selectbox", "view:head", 1),
        ("Inspector", "selectbox", "view:token_head", "max"), ("Inspector", "radio", "view:token_kind", "patch"),
        ("What-if", "radio", "view:replace", "zero"), ("Fusion", "radio", "view:queries", "mean"),
        ("Maps", "multiselect", "view:methods", ["gradcam", "smoothgrad"]),
        ("Maps", "selectbox", "view:cam_layer", ("trunk.stage1", "cnn")),
    ],
    "views/compare.py": [(None, "radio", "view:compare_map", "rollout")],
    "views/faithfulness.py": [(None, "radio", "view:baseline", "mean"),
                              (None, "selectbox", "view:faith_map", ("rollout", None, "patch"))],
}
URL = {"layer": "2", "head": "1", "token_head": "max", "token_kind": "patch", "replace": "zero", "queries": "mean",
       "methods": ["gradcam", "smoothgrad"], "cam_layer": "trunk.stage1:cnn", "view": "Maps", "compare_map": "rollout",
       "baseline": "mean", "faith_map": "rollout:patch"}


def _widget(at: AppTest, kind: str, key: str):
    return getattr(at, kind)(key=key)


def _on(at: AppTest, page: str, view: str | None) -> AppTest:
    at.switch_page(page).run()
    return open_view(at, view) if view else at


def _shows_every_setting(at: AppTest) -> None:
    """Each page and tab, opened in turn, shows the values set (the widgets, read back)."""
    for page, settings in SETTINGS.items():
        for view, kind, key, value in settings:
            no_exception(_on(at, page, view))
            assert _widget(at, kind, key).value == value, (page, view, key)


def test_settings_survive_tabs_pages_and_a_link(app) -> None:
    at = app()
    for page, settings in SETTINGS.items():
        for view, kind, key, value in settings:
            _on(at, page, view)
            _widget(at, kind, key).set_value(value).run()
            no_exception(at)
    at.switch_page("views/learn.py").run()
    assert at.query_params == URL
    _shows_every_setting(at)  # after tab switches and page round trips
    assert at.query_params == URL  # nothing lost on the way
    link = app(query=URL)  # a new session opened on the URL: a reload, or a shared link
    _shows_every_setting(link)


def test_a_new_image_keeps_the_settings_that_apply_and_says_what_changed(app) -> None:
    at = app()
    at.slider(key="view:layer").set_value(2).run()
    at.selectbox(key="view:head").set_value(1).run()
    upload_image(at, "first.png", png((80, 60)))
    upload_image(at, "second.png", png((60, 80), colour=(20, 160, 40)))
    no_exception(at)
    assert at.slider(key="view:layer").value == 2 and at.selectbox(key="view:head").value == 1
    assert "CNN tokens · blocks.1" in chart_titles(at)  # the maps are where the slider says
    open_view(at, "Maps")
    at.selectbox(key="view:cam_layer").set_value(("blocks.3.norm1", "patch")).run()
    at.sidebar.selectbox(key="view:model").set_value("cnn").run()  # a CNN has no patch tokens
    no_exception(at)
    assert any("CAM layer blocks.3.norm1:patch does not apply" in t.value for t in at.toast)
    assert at.selectbox(key="view:cam_layer").value[0].startswith("trunk.")
    assert "cam_layer" not in at.query_params


def test_a_link_names_the_inspected_token(app) -> None:
    at = app(query={"view": "Inspector", "token": "1:2"})
    no_exception(at)
    assert any(c.startswith("Attention of the CNN token at row 1, column 2") for c in texts(at.caption))
    assert at.query_params["token"] == "1:2"
    at = app(query={"view": "Inspector", "token": "99:2"})  # not on the grid: the centre, as by default
    assert any(c.startswith("Attention of the CNN token at row 4, column 4") for c in texts(at.caption))


def test_a_cleared_methods_box_is_kept_in_the_url(app) -> None:
    at = open_view(app(), "Maps")
    assert at.multiselect(key="view:methods").value  # no parameter: the default methods
    at.multiselect(key="view:methods").set_value([]).run()
    no_exception(at)
    assert at.query_params["methods"] == ""  # none chosen, written as the parameter with no value
    link = app(query=at.query_params)  # a reload, or a shared link
    no_exception(link)
    assert link.multiselect(key="view:methods").value == []
    assert link.query_params["methods"] == ""
