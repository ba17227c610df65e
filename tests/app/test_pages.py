"""Compare, Learn, Faithfulness and Model card: what each page shows, and its controls."""
from __future__ import annotations

import time

import pytest

from tokenfusion.models import ARCHITECTURES

from .helpers import charts, no_exception, texts


def started(at):
    """Click the start button of work estimated above a few seconds, when the page shows one (it
    does on a loaded machine), and wait for the work, which runs on a thread of its own (work asked
    for by a toggle starts without a button)."""
    for _ in range(4):
        deadline = time.monotonic() + 300
        while any(b.label == "Stop" for b in at.button) and time.monotonic() < deadline:
            time.sleep(0.3)
            at.run()
        buttons = [b for b in at.button if b.label.startswith("Start (")]
        if not buttons:
            break
        buttons[0].click().run()
    return at


def test_compare_runs_every_strategy_side_by_side(app, teaching_models) -> None:
    at = app()
    started(at.switch_page("views/compare.py").run())
    no_exception(at)
    assert texts(at.title) == ["Compare strategies"]
    table = at.dataframe[0].value
    assert list(table["model"]) == teaching_models and set(table["strategy"]) == set(ARCHITECTURES)
    assert set(table["correct"]) <= {"yes", "no"}  # a SynthShapes image knows its class
    assert len(charts(at)) == len(teaching_models) + 2  # one map per model, two agreement matrices
    assert any(c.startswith("Spearman rank correlation") for c in texts(at.caption))
    assert any("All models computed in" in c for c in texts(at.caption))


def test_compare_on_a_photo_has_no_right_or_wrong(app, teaching_models) -> None:
    at = app()
    at.sidebar.radio(key="view:image").set_value("Photo")
    started(at.switch_page("views/compare.py").run())
    no_exception(at)
    assert "correct" not in at.dataframe[0].value.columns
    assert len(charts(at)) == len(teaching_models) + 2


def test_compare_rollout_says_which_models_have_none(app, teaching_models) -> None:
    at = app()
    at.switch_page("views/compare.py").run()
    at.radio(key="view:compare_map").set_value("rollout").run()
    no_exception(at)
    assert texts(at.info) == ["No rollout for a cnn model."]
    assert len(charts(at)) == len(teaching_models) - 1 + 2


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_learn_walks_from_pixels_to_fusion(app, arch: str) -> None:
    at = app()
    at.sidebar.selectbox(key="view:model").set_value(arch)
    at.switch_page("views/learn.py").run()
    no_exception(at)
    headers = texts(at.header)
    assert headers[0] == "1 · Pixels" and headers[-1] == "6 · How attention rollout is computed"
    assert len(at.get("graphviz_chart")) == len(ARCHITECTURES)  # one diagram per strategy, in tabs
    assert [t.label for t in at.tabs][0] == f"{arch} (loaded)"
    markdown = " ".join(texts(at.markdown))
    assert "parameters" in markdown and "MFLOPs" in markdown
    infos = " ".join(texts(at.info))
    if arch == "cnn":
        assert "no patch tokens" in infos and "no attention to roll out" in infos
    else:
        assert "patch tokens" in markdown and "Rollout of the class token" in " ".join(texts(at.caption))
    if arch == "vit":
        assert "A ViT has no CNN trunk" in infos
    else:
        assert "CNN tokens" in markdown or "makes no tokens" in markdown


def test_faithfulness_on_a_synthshapes_image_plays_the_pointing_game(app) -> None:
    at = app()
    started(at.switch_page("views/faithfulness.py").run())
    no_exception(at)
    assert [m.label for m in at.metric] == ["Pointing game", "Energy on the object", "Object area"]
    assert at.metric[0].value in ("hit", "miss")
    assert len(charts(at)) == 2  # the map with the mask outline, and the curves
    assert any("deleted" in c and "Computed in" in c for c in texts(at.caption))
    started(at.toggle(key="view:randomise").set_value(True).run())
    no_exception(at)
    assert len(charts(at)) == 3
    method = at.selectbox(key="view:faith_map").value[0]
    assert any(c.startswith(f"Rank correlation of the {method} map") for c in texts(at.caption))


def test_faithfulness_other_method_and_baseline(app) -> None:
    at = app()
    started(at.switch_page("views/faithfulness.py").run())
    at.selectbox(key="view:faith_map").set_value(("rollout", None, "patch"))
    started(at.radio(key="view:baseline").set_value("mean").run())
    no_exception(at)
    assert len(charts(at)) == 2


def test_faithfulness_on_a_photo_explains_why_there_is_no_pointing_game(app) -> None:
    at = app()
    at.sidebar.radio(key="view:image").set_value("Photo")
    started(at.switch_page("views/faithfulness.py").run())
    no_exception(at)
    assert any("needs the object's ground-truth mask" in i for i in texts(at.info))
    assert not at.metric


def test_model_card_reads_the_checkpoint(app) -> None:
    at = app()
    at.switch_page("views/model_card.py").run()
    no_exception(at)
    assert texts(at.title) == ["Model card · early"]
    labels = [m.label for m in at.metric]
    assert labels == ["Parameters", "FLOPs per image", "Held-out top-1", "Validation top-1 (last / best)"]
    assert at.metric[0].value.endswith(" M") and at.metric[2].value.endswith("%")
    assert len(charts(at)) == 1  # training curves
    facts = at.table[0].value
    assert "training time" in facts.index
    assert facts.loc["kind dropout"].iloc[0].startswith(("none: every training image", "40% of training images"))
    assert at.json  # provenance


def test_compare_and_faithfulness_open_on_each_models_most_faithful_map(app, checkpoint_dir) -> None:
    from app.sources import SCORES
    from tokenfusion.explain import best_map, scores_for

    at = started(app().switch_page("views/compare.py").run())
    no_exception(at)
    badges = [m for m in texts(at.markdown) if "badge[pointing" in m]
    scored = {path.stem: scores_for(path, SCORES) for path in checkpoint_dir.glob("*.pt")}  # every model compared
    assert len(badges) == sum(s is not None for s in scored.values())  # every scored map carries its scores
    assert any(c.startswith("Each model's most faithful map") for c in texts(at.caption))
    best = best_map(scored["early"]) if scored["early"] else None
    started(at.switch_page("views/faithfulness.py").run())
    no_exception(at)
    opened = at.selectbox(key="view:faith_map").value
    assert opened == ((best.method, *best.target) if best else ("gradcam", "trunk.stage2", "cnn"))
    if best:
        assert any(f"pointing {best.pointing_game:.0%}" in m for m in texts(at.markdown))


def test_a_model_that_cannot_predict_the_true_class_is_neither_right_nor_wrong(app, tmp_path) -> None:
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.models import create

    torch.manual_seed(0)
    names = [f"imagenet class {i}" for i in range(10)]
    save_checkpoint(tmp_path / "other.pt", create("early", "tiny", num_classes=10), class_names=names,
                    training=dict(dataset="imagenet"))
    at = started(app(tmp_path).switch_page("views/compare.py").run())
    no_exception(at)
    table = at.dataframe[0].value
    assert "correct" not in table.columns and list(table["out of distribution"]) == ["yes"]
    assert any(w.startswith("**Not one of the model's classes.**") and "`other` knows" in w for w in texts(at.warning))
    started(at.switch_page("views/faithfulness.py").run())
    no_exception(at)
    assert any("cannot predict 'striped cross'" in i for i in texts(at.info)) and not at.metric
    assert any("Not one of the model's classes" in w for w in texts(at.warning))


def test_a_blank_map_is_left_out_of_the_agreement_and_named(app, tmp_path) -> None:
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.data import CLASS_NAMES
    from tokenfusion.models import create

    for seed, name in enumerate(("one", "two", "flat")):
        torch.manual_seed(seed)
        model = create("early", "tiny")
        if name == "flat":  # a zero head: every logit 0, no gradient, a blank Grad-CAM
            head = next(m for m in model.modules()
                        if isinstance(m, torch.nn.Linear) and m.out_features == len(CLASS_NAMES))
            torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
        save_checkpoint(tmp_path / f"{name}.pt", model, class_names=list(CLASS_NAMES),
                        training=dict(dataset="synthshapes"))
    at = started(app(tmp_path).switch_page("views/compare.py").run())
    started(at.radio(key="view:compare_map").set_value("gradcam").run())
    no_exception(at)
    captions = texts(at.caption)
    assert any(c.startswith("gradcam") and c.endswith("blank map") for c in captions)
    assert any("Left out: flat, whose map is blank" in c for c in captions)
    assert len(charts(at)) == 3 + 2  # three maps; two agreement matrices over the two that are not blank
