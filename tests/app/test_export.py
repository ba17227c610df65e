"""Each view exports its numbers, its figure and a Python snippet; the snippets run and give the view's numbers."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.export import csv_bytes, json_bytes, png_bytes, png_toolbar
from tokenfusion.explain import Explanation

from .helpers import charts, no_exception, open_view, texts

REPO = Path(__file__).resolve().parents[2]


def _snippet(at, asks: str) -> str:
    found = [c.value for c in at.code if asks in c.value]
    assert found, f"no snippet asks {asks!r}: {[c.value.splitlines()[-2] for c in at.code]}"
    return found[0]


def _run(code: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """Run a snippet as a user would, from the repository's root; its ``result``."""
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(code, "snippet.py", "exec"), namespace)  # noqa: S102 - the app's own generated code
    return namespace["result"]


def _shown(prediction) -> str:
    """A prediction's top class as the what-if caption writes it."""
    return f"'{prediction.names[0]}' {prediction.probabilities[0]:.0%}"


def test_the_snippets_of_explore_recreate_what_it_shows(app, monkeypatch) -> None:
    at = app(query={"view": "What-if"})
    at.radio(key="view:remove").set_value("region").run()
    at.slider(key="view:across").set_value((0.05, 0.95)).run()
    no_exception(at)
    caption = next(c for c in texts(at.caption) if c.startswith("Prediction, attention shares and rollout"))
    before, after = re.findall(r"'[^']+' \d+%", caption)[:2]

    assert _shown(_run(_snippet(at, "session.predict("), monkeypatch)) == before
    what_if = _run(_snippet(at, "session.what_if("), monkeypatch)
    assert what_if.region == (0.05, 0.25, 0.95, 0.75) and _shown(what_if.prediction) == after

    open_view(at, "Inspector")
    inspector = _snippet(at, "session.token_attention(")
    assert "'blocks.3', 'cnn', (4, 4), 'mean'" in inspector  # the token the page inspects: the 8x8 grid's centre
    token = _run(inspector, monkeypatch)
    assert (token.layer, token.kind, token.cell) == ("blocks.3", "cnn", (4, 4))


def test_the_what_if_snippet_gives_the_figures_it_draws(app, monkeypatch) -> None:
    """The What-if asks its session and writes its snippet from one value (``app.export.Question``): the
    snippet, run, gives the bars drawn after the tokens are removed, class by class, and the places named."""
    at = open_view(app(), "What-if")
    at.radio(key="view:remove").set_value("patch").run()  # not the first kind (cnn)
    at.radio(key="view:replace").set_value("zero").run()
    places = at.select_slider(key="view:from").options
    at.select_slider(key="view:from").set_value(places[1]).run()  # from the second place on
    no_exception(at)
    bars = next(json.loads(c.proto.spec)["data"][0] for c in charts(at) if c.key == "wi_after")
    result = _run(_snippet(at, "session.what_if("), monkeypatch)
    assert (result.kind, result.from_layer, result.mode) == ("patch", 2, "zero")
    assert result.prediction.names == bars["y"]
    assert result.prediction.probabilities == pytest.approx(bars["x"], abs=1e-6)
    assert any(c.endswith(f"at {', '.join(result.places)}.") for c in texts(at.caption)), texts(at.caption)


def test_every_explore_view_offers_numbers_and_a_snippet_and_charts_download_png(app) -> None:
    at = app()
    buttons: set[str] = set()
    configs = []
    for tab in [t.label for t in at.tabs]:
        open_view(at, tab)
        buttons |= {b.key for b in at.get("download_button")}
        configs += [json.loads(chart.proto.config) for chart in charts(at)]
    views = ["prediction", "attention", "token-inspector", "what-if", "fusion-weights", "gallery", "branch-ablation"]
    for view in views:
        assert {f"export_numbers:{view}", f"export_code:{view}"} <= buttons, view
    assert "export_png:prediction" in buttons  # the crop the model sees, shown as an image
    assert configs and all(c.get("displayModeBar", True) and c["toImageButtonOptions"]["format"] == "png"
                           for c in configs)
    assert {c["toImageButtonOptions"]["filename"] for c in configs} >= {"topk-fig", "ablation-fig"}


def test_compare_and_the_model_card_snippets_give_their_tables(app, monkeypatch) -> None:
    at = app().switch_page("views/compare.py").run()
    no_exception(at)
    last = at.dataframe[0].value.iloc[-1]  # the table's last model is the snippet's last
    result = _run(_snippet(at, "session.predict("), monkeypatch)
    assert (result.names[0], f"{result.probabilities[0]:.1%}") == (last["prediction"], last["probability"])

    at.switch_page("views/model_card.py").run()
    no_exception(at)
    history = _run(_snippet(at, "checkpoint.record.history"), monkeypatch)
    epochs = json.loads(charts(at)[0].proto.spec)["data"][0]["x"]
    assert [row["epoch"] for row in history] == list(epochs)


def test_numbers_and_pictures_become_bytes_that_read_back() -> None:
    grid = torch.arange(6.0).reshape(2, 3)
    e = Explanation(map=grid / 5, grid=grid, method="gradcam", layer="trunk.stage2", target=3, seconds=0.1, kind="cnn")
    back = json.loads(json_bytes({"gradcam": e}))
    assert back["gradcam"]["grid"] == [[0, 1, 2], [3, 4, 5]] and back["gradcam"]["layer"] == "trunk.stage2"
    rows = [{"model": "early", "probability": "91.0%"}, {"model": "late", "probability": "88.1%"}]
    assert list(csv.DictReader(io.StringIO(csv_bytes(rows).decode()))) == rows
    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    assert Image.open(io.BytesIO(png_bytes(picture))).getpixel((5, 5)) == (10, 200, 30)
    assert png_toolbar("Token inspector: over CNN tokens")["toImageButtonOptions"]["filename"] == \
        "token-inspector-over-cnn-tokens"
