"""Every page is honest about an image out of the model's distribution (``app/notices.py``): the same
notice on Explore, Compare, Learn and Faithfulness, before what it qualifies, and no bar chart of a
prediction for such an image."""
from __future__ import annotations

from .helpers import PREDICTION, charts, no_exception, open_view, texts
from .test_pages import started

PAGES = ["views/explore.py", "views/compare.py", "views/learn.py", "views/faithfulness.py"]


def test_a_photo_gets_the_same_notice_on_every_page(app) -> None:
    at = app(query={"image": "Photo"})
    notices = []
    for page in PAGES:
        started(at.switch_page(page).run())
        no_exception(at)
        shown = [w for w in texts(at.warning) if w.startswith("**Out of distribution.**")]
        assert len(shown) == 1, page
        notices.append(shown[0].split("knows its")[1])  # past the models it names (one: it, several: each)
        if page == "views/explore.py":
            assert PREDICTION not in [c.key for c in charts(at)]  # the ranking in small type, no bars
    assert len(set(notices)) == 1  # the same words everywhere
    assert "not this image's" in notices[0]  # the scores under a map are the model's held-out figures


def test_what_if_on_a_photo_ranks_the_classes_in_small_type(app) -> None:
    at = open_view(app(query={"image": "Photo"}), "What-if")
    no_exception(at)
    shown = [c.key for c in charts(at)]
    assert not {PREDICTION, "wi_before", "wi_after"} & set(shown), shown  # no bars of class probabilities
    assert "wi_shares" in shown  # the rest of the view is drawn
    top = [c for c in texts(at.caption) if c.startswith("The classes it must choose from")]
    ranked = [c for c in texts(at.caption) if ", as it ranks the classes: " in c]
    assert len(top) == 1 and len(ranked) == 2, ranked  # before, and after the tokens are removed
    assert ranked[0] == "Unchanged model, as it ranks the classes: " + top[0].split("for this image: ")[1].split(
        " Computed in")[0]  # the same ranking as above the tabs, in the same words
    assert all(c.count("%") == 5 for c in ranked)  # the five classes it ranks first


def test_a_synthshapes_image_gets_no_notice(app) -> None:
    at = app()
    for page in PAGES:
        started(at.switch_page(page).run())
        assert not [w for w in texts(at.warning) if "Out of distribution" in w], page
    started(at.switch_page("views/explore.py").run())
    assert PREDICTION in [c.key for c in charts(at)]
    assert {"wi_before", "wi_after"} <= {c.key for c in charts(open_view(at, "What-if"))}  # bars, before and after
