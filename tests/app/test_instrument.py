"""Explore as an instrument: the token inspector, the what-if, and the view kept in the URL."""
from __future__ import annotations

import functools
import re
import time

from .helpers import charts, no_exception, open_view, texts


def _caption(at, start: str) -> str:
    return next(c for c in texts(at.caption) if c.startswith(start))


def test_the_token_inspector_follows_its_controls(app) -> None:
    at = app(query={"view": "Inspector"})
    first = _caption(at, "Attention of the CNN token")  # early's sequence starts with its CNN tokens
    assert "at blocks.3" in first and "receptive field, measured" in first
    at.radio(key="view:token_kind").set_value("patch").run()
    no_exception(at)
    assert "Green: its patch" in _caption(at, "Attention of the patch token")
    at.select_slider(key="view:token_layer").set_value("blocks.1").run()
    assert "at blocks.1" in _caption(at, "Attention of the patch token")


def test_the_layerwise_inspector_shows_the_cross_attention_row(app) -> None:
    at = app(query={"model": "layerwise", "view": "Inspector"})
    no_exception(at)
    assert texts(at.title) == ["Explore · layerwise"]
    assert any(c.startswith("Attention of the patch token") for c in texts(at.caption))
    assert at.session_state["view:token_layer"] == "blocks.3"


def _percent(caption: str) -> list[tuple[str, int]]:
    return [(name, int(p)) for name, p in re.findall(r"'([^']+)' (\d+)%", caption)]


def test_removing_cnn_tokens_changes_the_prediction(app) -> None:
    at = app(query={"view": "What-if"})
    at.select_slider(key="view:from").set_value("blocks.0").run()
    no_exception(at)
    (before, p_before), (after, p_after) = _percent(_caption(at, "Prediction, attention shares and rollout"))
    assert (before, p_before) != (after, p_after)  # early leans on its CNN tokens
    last = at.select_slider(key="view:from").options[-1]
    assert last == "blocks.3"


def test_a_link_opens_the_view_it_names(app) -> None:
    at = app(query={"model": "late", "image": "Photo", "photo": "rocket.jpg", "view": "Attention", "layer": "2",
                    "head": "1"})
    no_exception(at)
    assert texts(at.title) == ["Explore · late"]
    assert at.session_state["view:photo"] == "rocket.jpg"
    assert at.session_state["view:layer"] == 2 and at.session_state["view:head"] == 1
    assert at.query_params["model"] == "late" and at.query_params["layer"] == "2"
    at = app(query={"model": "late", "view": "Maps", "methods": ["gradcam", "occlusion"]})
    no_exception(at)
    assert texts(at.subheader) == ["Grad-CAM and attribution gallery"]  # the tab it names is open
    assert at.session_state["view:methods"] == ["gradcam", "occlusion"]
    assert at.query_params["view"] == "Maps" and at.query_params["methods"] == ["gradcam", "occlusion"]


def test_a_link_with_unknown_values_falls_back_to_the_defaults(app) -> None:
    at = app(query={"model": "nonexistent", "view": "nowhere", "layer": "99", "methods": ["gradcam", "nope"]})
    no_exception(at)
    assert texts(at.title) == ["Explore · early"]
    assert at.session_state["view:view"] == "Attention"
    assert at.session_state["view:layer"] == 4
    assert not {"model", "view", "layer"} & set(at.query_params)  # what was drawn set nothing: defaults
    at = open_view(at, "Maps")
    assert at.session_state["view:methods"] == ["gradcam"]  # what applies of the link's list
    assert at.query_params["methods"] == "gradcam"


def test_removing_a_region_changes_the_prediction_over_the_object_only(app) -> None:
    at = app(query={"view": "What-if"})  # early on the striped cross of SynthShapes, spanning most of the image
    at.radio(key="view:remove").set_value("region").run()
    at.slider(key="view:across").set_value((0.0, 0.25))
    at.slider(key="view:down").set_value((0.0, 0.25)).run()  # a corner of background
    no_exception(at)
    (before, _), (after, _) = _percent(_caption(at, "Prediction, attention shares and rollout with the CNN and patch"))
    assert before == after
    at.slider(key="view:across").set_value((0.05, 0.95))
    at.slider(key="view:down").set_value((0.05, 0.95)).run()  # the object's box
    no_exception(at)
    (before, _), (after, _) = _percent(_caption(at, "Prediction, attention shares and rollout"))
    assert before != after
    assert "under the region replaced by their mean at blocks.0" in next(
        c for c in texts(at.caption) if c.startswith("CNN and patch tokens"))


def _slow_compare(app, monkeypatch):
    """Compare on occlusion, with every piece of work counted as slow (the tiny models are fast)."""
    from app.state import _ask

    _ask.clear()  # maps an earlier test cached would finish at once
    monkeypatch.setattr("app.estimates.SLOW_SECONDS", 0.0)
    at = app()
    at.switch_page("views/compare.py").run()
    at.radio(key="view:compare_map").set_value("occlusion").run()
    no_exception(at)
    return at


def _buttons(at, label: str) -> list:
    return [b for b in at.button if b.label.startswith(label)]


def _until_finished(at, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while _buttons(at, "Stop") and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()


def test_slow_work_shows_its_progress_then_its_results(app, monkeypatch, teaching_models) -> None:
    at = _slow_compare(app, monkeypatch)
    n = len(teaching_models)
    assert f"The occlusion map of {n} models takes about" in at.info[0].value and not charts(at)
    _buttons(at, "Start (")[0].click().run()
    no_exception(at)
    bar = at.get("progress")[0].proto
    assert re.match(rf"The occlusion map of {n} models: \d+ of \d+ forward passes, about .+ left", bar.text), bar.text
    assert _buttons(at, "Stop")
    _until_finished(at)
    no_exception(at)
    assert not _buttons(at, "Stop") and not at.get("progress")
    assert len(charts(at)) == n + 2  # every map, and the two agreement matrices


def test_stop_ends_slow_work_and_keeps_nothing(app, monkeypatch, teaching_models) -> None:
    from app.estimates import Job
    from tokenfusion.explain import Explainer

    report, answer = Job.report, Explainer.answer
    monkeypatch.setattr(Job, "report", lambda job, done, total: (time.sleep(0.05), report(job, done, total))[1])
    asked: list[int] = []

    @functools.wraps(answer)  # the app asks the session by the method's name
    def counted(session, *args, **kwargs):
        if kwargs.get("progress") is not None:  # the page's call, not the session's own
            asked.append(id(session.model))
        return answer(session, *args, **kwargs)

    monkeypatch.setattr(Explainer, "answer", counted)
    at = _slow_compare(app, monkeypatch)
    _buttons(at, "Start (")[0].click().run()
    _buttons(at, "Stop")[0].click().run()
    _until_finished(at, seconds=30)
    no_exception(at)
    n = len(teaching_models)
    assert any(i.value.startswith(f"Stopped: The occlusion map of {n} models was not finished") for i in at.info)
    assert _buttons(at, "Start (") and not charts(at)  # it can be started again
    stopped = asked[-1]
    _buttons(at, "Start (")[0].click().run()
    _until_finished(at)
    no_exception(at)
    assert asked.count(stopped) == 2  # the stopped map was not cached: computed again
    assert len(charts(at)) == n + 2


def test_the_gallery_shows_scorecam_topk_cost_beside_scorecam(app) -> None:
    at = app(query={"view": "Maps", "methods": ["scorecam", "scorecam_topk"]})
    no_exception(at)
    pattern = (r"ScoreCAM scores all (\d+) channels of this layer: (\d+) forward passes, about .+; "
               r"scorecam_topk scores the (\d+) most varied: (\d+) passes")
    every, full, k, top = map(int, re.match(pattern, _caption(at, "ScoreCAM scores all")).groups())
    assert (full, k, top) == (every + 1, min(32, every), min(32, every) + 1)
    at.slider(key="view:channels").set_value(8).run()
    no_exception(at)
    assert re.match(pattern, _caption(at, "ScoreCAM scores all")).group(4) == "9"
    assert any(c.startswith("scorecam_topk at") for c in texts(at.caption))  # its map is drawn


def test_faithfulness_and_the_randomisation_test_show_progress_when_slow(app, monkeypatch) -> None:
    """Faithfulness's curves wait for Start and count their passes; the randomisation test, asked for
    by its toggle, starts at once and counts its maps; both end with their charts."""
    from app.state import _ask

    _ask.clear()
    monkeypatch.setattr("app.estimates.SLOW_SECONDS", 0.0)
    at = app()
    at.switch_page("views/faithfulness.py").run()
    no_exception(at)
    assert any("and its deletion and insertion curves takes about" in i.value for i in at.info)
    _buttons(at, "Start (")[0].click().run()
    bar = at.get("progress")[0].proto
    assert re.match(r".+ and its deletion and insertion curves: \d+ of \d+ forward passes", bar.text), bar.text
    _until_finished(at)
    no_exception(at)
    drawn = len(charts(at))
    assert drawn == 2  # the map and its curves
    at.toggle(key="view:randomise").set_value(True).run()
    assert not _buttons(at, "Start (")  # the toggle asked for it
    bars = [p.proto.text for p in at.get("progress")]
    assert any(re.match(r"The randomisation test of .+: \d+ of (\d+|\?) maps", b) for b in bars), bars
    _until_finished(at)
    no_exception(at)
    assert len(charts(at)) == drawn + 1  # and the randomisation chart


def test_another_map_stops_the_randomisation_test_of_the_previous_one(app, monkeypatch) -> None:
    """Choosing another map while the randomisation test of the previous one runs stops that test (after
    its batch, keeping nothing), so the new map does not wait behind a spinner for the model's lock."""
    from app.estimates import Job

    report = Job.report

    def slowly(job: Job, done: int, total: int) -> None:  # a test that takes a while
        time.sleep(0.3)
        report(job, done, total)

    from app.state import _ask

    _ask.clear()
    monkeypatch.setattr(Job, "report", slowly)
    monkeypatch.setattr("app.estimates.SLOW_SECONDS", 0.0)  # on a thread, as on a slow machine
    at = app(query={"randomise": "True"})
    at.switch_page("views/faithfulness.py").run()
    running = dict(at.session_state["_slow_work_jobs"])
    assert [r[0] for r in running] == ["randomisation"] and all(job.running for job in running.values())
    options = at.selectbox(key="view:faith_map").options
    at.selectbox(key="view:faith_map").set_value(options[-1]).run()
    no_exception(at)
    assert all(job.stop.is_set() for job in running.values())  # the old test was told to stop
    assert not set(running) & set(at.session_state["_slow_work_jobs"])
    assert [r[0] for r in at.session_state["_slow_work_jobs"]] == ["randomisation"]  # the new map's test
