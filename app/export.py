"""What each view exports: its numbers (CSV or JSON), its figure (PNG) and a short Python snippet
that recreates it with ``tokenfusion``. This module turns a view's data into downloadable bytes and
code, and draws the one "Export" popover under a view; the tensors are read by
:func:`tokenfusion.explain.plain.to_plain`.

Plotly charts download their PNG from their own toolbar: :func:`png_toolbar` names the file and
doubles its scale.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from tokenfusion.explain import Explainer, Request
from tokenfusion.explain.plain import to_plain

from . import timing
from .sources import MAX_SIDE, REPO, ImageChoice
from .state import LoadedModel, Timed, ask

__all__ = ["CLASS_NAMES", "Code", "Question", "call", "chart", "csv_bytes", "json_bytes", "offer", "png_bytes",
           "explained", "png_toolbar", "question", "recreate", "snippet"]

#: Pixel scale of a chart's PNG (the charts are drawn a few hundred pixels wide).
PNG_SCALE = 2


class Code(str):
    """Source text that :func:`call` writes as it is, not as a string literal."""

    def __repr__(self) -> str:
        return str(self)


#: The checkpoint's class names, in a snippet.
CLASS_NAMES = Code("checkpoint.class_names")


def _file_name(view: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", view.lower()).strip("-") or "view"


def png_toolbar(view: str) -> dict[str, Any]:
    """The ``config`` of a plotly chart whose toolbar (shown on hover: always shown, it covers the
    titles of the small charts) downloads ``<view>.png``."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": _file_name(view), "scale": PNG_SCALE}}


def chart(where: Any, figure: Any, *, key: str, **options: Any) -> Any:
    """``where.plotly_chart(figure, key=key, ...)`` (``where``: ``st`` or a container), its toolbar
    downloading ``<key>.png``; returns what ``plotly_chart`` returns (a selection event)."""
    with timing.phase("charts"):
        return where.plotly_chart(figure, key=key, config=png_toolbar(key), **options)


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Rows of one table (the keys of the first row are the columns) as UTF-8 CSV."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def json_bytes(value: Any) -> bytes:
    """Any result of the library (tensors, dataclasses, dicts...) as UTF-8 JSON."""
    return json.dumps(to_plain(value), indent=1).encode()


def call(name: str, *args: Any, **kwargs: Any) -> str:
    """``name(arg, ..., key=value)`` as source text (values by ``repr``; a :class:`Code` as it is)."""
    return f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"


def _path(path: Path | None) -> str:
    if path is None:
        return "'<the checkpoint file>'"
    path = path.resolve()
    return repr(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))


def _image_lines(choice: ImageChoice) -> list[str]:
    """The lines that make ``image``, the PIL image ``choice`` holds (from its ``origin``)."""
    kind, *details = choice.origin
    if kind == "synthshapes":
        seed, index, size = details
        return ["from PIL import Image", "from tokenfusion.data import render_sample",
                f"image = Image.fromarray(render_sample({seed}, {index}, {size}).image)"]
    name = str(details[0])
    where = f"assets/photos/{name}" if kind == "photo" else name
    return ["from pathlib import Path", "from tokenfusion.data.images import load_image",
            f"image = load_image(Path({where!r}).read_bytes(), max_side={MAX_SIDE})"
            + ("" if kind == "photo" else "  # the file you uploaded")]


def snippet(choice: ImageChoice | None, steps: list[tuple[LoadedModel, str]]) -> str:
    """A script that recreates a view: for each ``(model, expression)`` it loads the model's checkpoint
    and prints ``result = <expression>``, where the expression may use ``checkpoint`` and, given an
    image ``choice``, ``session`` (the explanation session of the image)."""
    lines = ["from tokenfusion.checkpoint import load_checkpoint"]
    if choice is not None:
        lines += ["from tokenfusion.data.transforms import preprocess", "from tokenfusion.explain import Explainer",
                  *_image_lines(choice)]
    last = None
    for loaded, expression in steps:
        if loaded.key != last:  # each model loaded once
            lines += ["", f"checkpoint = load_checkpoint({_path(loaded.checkpoint.path)})"]
            if choice is not None:
                lines.append("session = Explainer(checkpoint.model.eval(), preprocess(image, checkpoint.config))")
        lines += [f"result = {expression}", "print(result)"]
        last = loaded.key
    return "\n".join(lines) + "\n"


def question(method: str, *args: Any, **kwargs: Any) -> str:
    """``session.<method>(...)``: one question to the explanation session, as source text."""
    return call(f"session.{method}", *args, **kwargs)


@dataclass(frozen=True)
class Question:
    """One question to an explanation session, ``Explainer.<method>(*args, **kwargs)``, as a value: the
    view asks it (:meth:`ask`) and writes it in its snippet (:attr:`source`) from the same value, so the
    two cannot differ. :data:`CLASS_NAMES` among the arguments is the model's class names when asked
    and ``checkpoint.class_names`` in the snippet."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, method: str, *args: Any, **kwargs: Any) -> Question:
        """``Question.of("what_if", "cnn", 2, "mean", CLASS_NAMES, 5, region=None)``."""
        return cls(method, args, tuple(kwargs.items()))

    def ask(self, loaded: LoadedModel, choice: ImageChoice) -> Timed[Any]:
        """The answer of ``loaded``'s session of the chosen image (:func:`app.state.ask`, cached)."""
        def given(value: Any) -> Any:
            return loaded.class_names if value is CLASS_NAMES else value

        return ask(loaded, choice, getattr(Explainer, self.method), *map(given, self.args),
                   **{k: given(v) for k, v in self.kwargs})

    @property
    def source(self) -> str:
        """The question as snippet source text (:func:`question`)."""
        return question(self.method, *self.args, **dict(self.kwargs))


def explained(request: Request, target: int | None = None) -> str:
    """``session.explain(...)`` asking for ``request`` (the value the view gave ``Explainer.answer``), as
    source text: its method, then its layer, kind, target and options where set."""
    where = {"kind": request.kind} if request.kind is not None else {}
    aim = {"target": target} if target is not None else {}
    layer = () if request.layer is None else (request.layer,)
    return question("explain", request.method, *layer, **where, **aim, **request.kwargs)


def recreate(loaded: LoadedModel, choice: ImageChoice, *questions: str) -> str:
    """The :func:`snippet` of one model and one image asking its session each of ``questions``."""
    return snippet(choice, [(loaded, q) for q in questions])


def offer(view: str, numbers: Any, code: str, *, picture: Image.Image | None = None,
          where: DeltaGenerator | None = None) -> None:
    """An "Export" popover under a view: its ``numbers`` (CSV when a list of flat rows, else JSON,
    made only when downloaded), the Python ``code`` that recreates it, and a shown ``picture`` as PNG.
    The view's charts download their own PNG from their toolbar."""
    name = _file_name(view)
    table = isinstance(numbers, list) and all(isinstance(r, dict) for r in numbers)
    box = (where or st).popover("Export", icon=":material/download:")
    box.download_button("Numbers (CSV)" if table else "Numbers (JSON)",
                        (lambda: csv_bytes(numbers)) if table else (lambda: json_bytes(numbers)),
                        file_name=f"{name}.{'csv' if table else 'json'}", on_click="ignore",
                        key=f"export_numbers:{name}")
    box.download_button("Python snippet", code, file_name=f"{name}.py", mime="text/x-python", on_click="ignore",
                        key=f"export_code:{name}")
    if picture is not None:
        box.download_button("Image (PNG)", lambda: png_bytes(picture), file_name=f"{name}.png", mime="image/png",
                            on_click="ignore", key=f"export_png:{name}")
    box.caption("Recreate this view with tokenfusion (run it from the repository's root); its charts download a "
                "PNG from their toolbar.")
    box.code(code, language="python")
