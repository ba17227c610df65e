"""Inputs through the real widgets (AppTest's ``file_uploader.set_value``): good and bad images,
good and bad checkpoints, missing and broken folders. Every bad input shows a plain ``st.error``,
no traceback, and the app keeps serving the next request."""
from __future__ import annotations

import gc
import io
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.sources import REAL_MODEL
from tests.data.test_images import huge_png_header
from tokenfusion.models import ARCHITECTURES, create

from .helpers import PREDICTION, charts, no_exception, png, tab_charts, texts
from .test_explore import EXPECTED

EXPLORE_CHARTS = 1 + EXPECTED["early"]["charts"]["Attention"]  # the opening tab of Explore on the default model
# Charts per tab on an image out of the model's distribution: the What-if ranks the classes in small
# type instead of drawing their bars before and after (its attention shares and maps stay).
EVERY_VIEW = {**EXPECTED["early"]["charts"], "What-if": EXPECTED["early"]["charts"]["What-if"] - 2}


def out_of_distribution(at) -> None:
    """Explore on an image out of the model's distribution: the notice, and the ranking in small type
    instead of the bar chart of a prediction."""
    assert any(w.startswith("**Out of distribution.**") for w in texts(at.warning))
    assert PREDICTION not in [c.key for c in charts(at)] and len(charts(at)) == EXPLORE_CHARTS - 1
    assert any(c.startswith("The classes it must choose from") for c in texts(at.main.caption))


def upload_image(at, name: str, data: bytes):
    at.sidebar.radio(key="view:image").set_value("Upload").run()
    at.sidebar.file_uploader(key="image_file").set_value((name, data, "image/png")).run()
    return at


def upload_checkpoint(at, name: str, data: bytes):
    at.sidebar.file_uploader(key="checkpoint_file").set_value((name, data, "application/octet-stream")).run()
    return at


def gif(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (40, 40), (60 * i, 100, 200)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


SENTINEL = Path(tempfile.gettempdir()) / f"tokenfusion-test-pwned-{os.getpid()}"


class _RunsCode:
    """An object whose pickle runs a shell command (creating :data:`SENTINEL`) when unpickled
    without ``weights_only``."""

    def __reduce__(self):
        return (os.system, (f"touch {SENTINEL}",))


def _code(protocol: int | None) -> bytes:
    """A pickle carrying code: as ``torch.save`` writes it (``None``), or a raw pickle."""
    if protocol is not None:
        return pickle.dumps(_RunsCode(), protocol=protocol)
    buffer = io.BytesIO()
    torch.save({"state_dict": _RunsCode()}, buffer)
    return buffer.getvalue()


# --- images ---------------------------------------------------------------------------------------

def test_upload_hint_before_any_file(app) -> None:
    at = app()
    at.sidebar.radio(key="view:image").set_value("Upload").run()
    no_exception(at)
    assert any("Upload an image in the sidebar" in i for i in texts(at.info))
    assert not charts(at)


@pytest.mark.parametrize(("name", "data", "note"), [
    ("square.png", png(), None),
    ("wide.png", png((300, 90)), None),
    ("animated.gif", gif(), "the first of 3 frames is used"),
], ids=["png", "wide png", "animated gif"])
def test_good_uploads_are_explored(app, name: str, data: bytes, note: str | None) -> None:
    at = upload_image(app(), name, data)
    no_exception(at)
    assert not at.error
    assert any(f"upload {name}" in c for c in texts(at.sidebar.caption))
    if note:
        assert any(note in c for c in texts(at.sidebar.caption))
    out_of_distribution(at)
    assert tab_charts(at) == EVERY_VIEW


@pytest.mark.parametrize(("name", "data", "message"), [
    ("empty.png", b"", "The file is empty"),
    ("notes.png", b"shopping list: eggs, milk\n" * 20, "not an image that can be read"),
    ("half.png", png((256, 256))[:300], "truncated"),
    ("bomb.png", None, "too large to open safely"),
], ids=["empty", "text", "truncated", "bomb"])
def test_bad_uploads_say_why_and_the_app_keeps_serving(app, name: str, data: bytes | None, message: str) -> None:
    if data is None:  # a header claiming 100000 x 100000 pixels
        data = huge_png_header(100_000, 100_000)
    at = upload_image(app(), name, data)
    no_exception(at)
    assert len(at.error) == 1 and message in at.error[0].value and name in at.error[0].value
    assert not charts(at)
    at.switch_page("views/compare.py").run()  # every page that needs the image says the same
    no_exception(at)
    assert message in at.error[0].value
    at.switch_page("views/explore.py").run()
    at.sidebar.radio(key="view:image").set_value("SynthShapes").run()  # and the next request works
    no_exception(at)
    assert not at.error and len(charts(at)) == EXPLORE_CHARTS


@pytest.mark.parametrize("photo", ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"])
def test_shipped_photos(app, photo: str) -> None:
    at = app()
    at.sidebar.radio(key="view:image").set_value("Photo").run()
    at.sidebar.selectbox(key="view:photo").set_value(photo).run()
    no_exception(at)
    assert any(f"photo {photo}" in c for c in texts(at.sidebar.caption))
    out_of_distribution(at)
    assert tab_charts(at) == EVERY_VIEW


# --- checkpoints ----------------------------------------------------------------------------------

def _checkpoint_bytes(checkpoint_dir: Path, arch: str) -> bytes:
    return (checkpoint_dir / f"{arch}.pt").read_bytes()


def test_a_good_uploaded_checkpoint_is_selected(app, checkpoint_dir: Path, teaching_models: list[str]) -> None:
    at = upload_checkpoint(app(), "my_model.pt", _checkpoint_bytes(checkpoint_dir, "late"))
    no_exception(at)
    assert not at.error
    assert at.sidebar.selectbox(key="view:model").value == "my_model (uploaded)"
    assert texts(at.title) == ["Explore · my_model (uploaded)"]
    at.switch_page("views/compare.py").run()
    assert len(at.dataframe[0].value) == len(teaching_models) + 1


def _state_dict_only() -> bytes:
    buffer = io.BytesIO()
    torch.save(create("vit", "tiny").state_dict(), buffer)
    return buffer.getvalue()


def _other_architecture(checkpoint_dir: Path) -> bytes:
    """An ``early`` checkpoint whose weights were replaced by a ``vit``'s."""
    payload = torch.load(checkpoint_dir / "early.pt", weights_only=True)
    payload["state_dict"] = create("vit", "tiny").state_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


BAD_CHECKPOINTS = {
    "empty": ("empty.pt", lambda d: b"", "is empty (0 bytes)"),
    "truncated": ("early.pt", lambda d: _checkpoint_bytes(d, "early")[:5000], "truncated or corrupt"),
    "renamed": ("late.pt", lambda d: _checkpoint_bytes(d, "vit"), "holds a 'vit' model, not 'late'"),
    "other weights": ("mixed.pt", _other_architecture, "weights do not fit a early/tiny model"),
    "state_dict": ("weights.pt", lambda d: _state_dict_only(), "not a Token Fusion Lab checkpoint"),
    "text": ("notes.pt", lambda d: b"these are not weights\n" * 50, "not a PyTorch checkpoint"),
    "code in torch.save": ("evil.pt", lambda d: _code(None), "carries Python objects or code"),
    "code in pickle 2": ("evil.pt", lambda d: _code(2), "carries Python objects or code"),
    # protocol 4 frames stop torch's weights-only reader; the import is read from the opcodes instead
    "code in pickle 4": ("evil.pt", lambda d: _code(4), "carries Python objects or code (it imports posix.system)"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_uploads_say_why_and_the_app_keeps_serving(app, checkpoint_dir: Path, case: str) -> None:
    name, make, message = BAD_CHECKPOINTS[case]
    at = upload_checkpoint(app(), name, make(checkpoint_dir))
    no_exception(at)
    errors = texts(at.sidebar.error)
    assert len(errors) == 1 and message in errors[0], errors
    assert at.sidebar.selectbox(key="view:model").value == "early"  # the previous model stays
    assert texts(at.title) == ["Explore · early"] and len(charts(at)) == EXPLORE_CHARTS
    assert not SENTINEL.exists()  # nothing in the file was ever run


def test_a_broken_file_in_the_folder_is_reported_where_it_is_used(app, checkpoint_dir: Path, tmp_path: Path) -> None:
    for arch in ARCHITECTURES:
        shutil.copy(checkpoint_dir / f"{arch}.pt", tmp_path)
    (tmp_path / "late.pt").write_bytes((tmp_path / "late.pt").read_bytes()[:4000])
    at = app(tmp_path)
    assert not at.error  # early, the default, is fine
    at.sidebar.selectbox(key="view:model").set_value("late").run()
    no_exception(at)
    assert "late.pt is truncated or corrupt" in at.error[0].value and not charts(at)
    at.sidebar.selectbox(key="view:model").set_value("vit")
    at.switch_page("views/compare.py").run()
    no_exception(at)
    assert texts(at.error) == [e for e in texts(at.error) if e.startswith("late: late.pt is truncated")]
    assert len(at.dataframe[0].value) == len(ARCHITECTURES) - 1


def test_a_missing_folder_says_what_to_do(app, tmp_path: Path) -> None:
    at = app(tmp_path / "nowhere")
    no_exception(at)
    assert "No checkpoints in" in at.error[0].value and "python -m train.teach" in at.error[0].value
    at.switch_page("views/model_card.py").run()
    no_exception(at)
    assert "No checkpoints in" in at.error[0].value


def test_the_checkpoint_folder_named_on_the_command_line_wins(app, checkpoint_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``streamlit run app/main.py -- --checkpoints DIR`` hands ``--checkpoints DIR`` to the script's argv."""
    shutil.copy(checkpoint_dir / "vit.pt", tmp_path / "vit.pt")
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--checkpoints", str(tmp_path)])
    at = app(checkpoint_dir)  # the environment variable names another folder
    no_exception(at)
    assert at.sidebar.selectbox(key="view:model").options == ["vit", REAL_MODEL]  # the real model beside the folder's
    assert texts(at.title) == ["Explore · vit"]


# --- malformed checkpoints and unexpected errors ---------------------------------------------------

def _malformed(checkpoint_dir: Path, change) -> bytes:
    """The shipped ``early`` checkpoint with its payload changed by ``change`` (in place)."""
    payload = torch.load(checkpoint_dir / "early.pt", weights_only=True)
    change(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


MALFORMED_CHECKPOINTS = {
    "no state_dict": (lambda p: p.pop("state_dict"), "has no state_dict"),
    "string format_version": (lambda p: p.update(format_version="1"), "format_version '1' (str), not an integer"),
    "non-tensor weights": (lambda p: p["state_dict"].update({"head.bias": [0.0] * 12}),
                           "weight 'head.bias' is a list, not a tensor"),
    "integer class_names": (lambda p: p.update(class_names=12), "class_names is 12 (int), expected a list of 12 strings"),
    "num_heads not dividing embed_dim": (lambda p: p["config"].update(num_heads=7), "is not divisible by num_heads 7"),
    "huge dimensions": (lambda p: p.update(class_names=[], config={**p["config"], "embed_dim": 8192, "depth": 96,
                                                                   "num_heads": 64, "num_classes": 50_000}),
                        "more than the 4 GB allowed"),
}


@pytest.mark.parametrize("case", list(MALFORMED_CHECKPOINTS))
def test_malformed_checkpoint_uploads_say_why_and_the_app_keeps_serving(app, checkpoint_dir: Path, case: str) -> None:
    change, message = MALFORMED_CHECKPOINTS[case]
    at = upload_checkpoint(app(), "odd.pt", _malformed(checkpoint_dir, change))
    no_exception(at)
    errors = texts(at.sidebar.error)
    assert len(errors) == 1 and errors[0].startswith("odd.pt") and message in errors[0], errors
    assert at.sidebar.selectbox(key="view:model").value == "early"  # the previous model stays
    assert texts(at.title) == ["Explore · early"] and len(charts(at)) == EXPLORE_CHARTS


def test_an_unexpected_error_in_a_page_is_a_plain_message_and_the_app_keeps_serving(app, monkeypatch) -> None:
    from app import sidebar

    at = app()

    def broken(*args, **kwargs):
        raise RuntimeError("the page's data went missing")

    monkeypatch.setattr(sidebar, "require", broken)  # what every page calls first
    at.run()
    no_exception(at)
    assert texts(at.error) == ["Something went wrong while drawing the Explore page: the page's data went missing. "
                               "The rest of the app still works: try another model, image or option, or another page."]
    assert [e.label for e in at.main.expander] == ["Details (for a bug report)"]
    assert "Traceback" in at.code[0].value and "RuntimeError: the page's data went missing" in at.code[0].value
    monkeypatch.undo()
    at.run()  # the next run draws the page again
    no_exception(at)
    assert not at.error and len(charts(at)) == EXPLORE_CHARTS


def test_an_unexpected_error_while_loading_a_model_is_reported_with_details(app, checkpoint_dir: Path,
                                                                            monkeypatch) -> None:
    from app import state

    def broken(path, name):
        raise OSError(f"disk error reading {path.name}")

    at = app()
    monkeypatch.setattr(state, "load_model", broken)
    upload_checkpoint(at, "mine.pt", _checkpoint_bytes(checkpoint_dir, "vit"))
    no_exception(at)
    assert texts(at.sidebar.error) == [
        "Loading mine.pt failed unexpectedly (OSError: disk error reading mine.pt). Try another file; the details "
        "below help a bug report."]
    assert "OSError: disk error reading mine.pt" in at.sidebar.code[0].value
    assert texts(at.main.error) == [  # the page cannot show the selected model either, and says why
        "Loading early failed unexpectedly (OSError: disk error reading early.pt). Try another file; the details "
        "below help a bug report."]
    assert not charts(at)


def test_uploaded_checkpoints_are_deleted_when_the_session_ends(app, checkpoint_dir: Path) -> None:
    at = upload_checkpoint(app(), "mine.pt", _checkpoint_bytes(checkpoint_dir, "vit"))
    folder = at.session_state["_upload_folder"].folder
    assert [p.name for p in folder.rglob("*.pt")] == ["mine.pt"]
    del at
    gc.collect()
    assert not folder.exists()


def _fragment_script(guarded: bool) -> None:
    """A page with one fragment that raises once its button is clicked."""
    import streamlit as st

    from app.ui import fragment

    def view() -> int:
        if st.button("Break the view", key="break"):
            raise RuntimeError("the view broke")
        st.write("view drawn")
        return 3

    view = fragment(view) if guarded else st.fragment(view)
    st.write(f"the view returned {view()}")


@pytest.mark.parametrize("guarded", [True, False], ids=["ui.fragment", "st.fragment (control)"])
def test_an_error_inside_a_fragment_is_a_plain_message(guarded: bool) -> None:
    """Streamlit shows an error raised inside ``st.fragment`` as a traceback before ``main.py``'s guard
    sees it (and a fragment's reruns skip ``main.py``): pages use ``app.ui.fragment`` instead."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_fragment_script, args=(guarded,), default_timeout=90).run()
    no_exception(at)
    assert texts(at.markdown) == ["view drawn", "the view returned 3"]
    at.button(key="break").click().run()
    if not guarded:
        assert [e.value for e in at.exception] == ["the view broke"]
        return
    no_exception(at)
    assert texts(at.error) == ["Something went wrong while drawing this view: the view broke. The rest of the app "
                               "still works: try another model, image or option, or another page."]
    assert [e.label for e in at.expander] == ["Details (for a bug report)"]
    at.run()  # the next run draws the view again
    no_exception(at)
    assert not at.error and "view drawn" in texts(at.markdown)


def test_pages_use_the_guarded_fragment() -> None:
    """``@st.fragment`` in a page would show its errors as tracebacks (see the test above)."""
    pages = Path(__file__).resolve().parents[2] / "app" / "views"
    offenders = [f"{p.name}:{i}" for p in sorted(pages.glob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if "st.fragment" in line.split("#")[0]]
    assert not offenders, f"use app.ui.fragment instead of st.fragment: {offenders}"
