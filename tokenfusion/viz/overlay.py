"""Maps laid over images: attention and saliency overlays, token grids drawn on the image."""
from __future__ import annotations

import base64
import functools
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots
from torch import Tensor

from .style import MAP_COLOURSCALE, OUTLINE_COLOUR, as_array, compact

__all__ = ["grid_figure", "overlay_figure", "token_picker_figure", "overlays_figure", "pixels_figure", "token_grid_figure"]


def _image_axes(fig: go.Figure) -> None:
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", constrain="domain")


def _picture(picture: np.ndarray) -> go.Image:
    """``picture`` ``(H, W, 3)`` uint8 as an image trace carrying a PNG (the browser draws it as one
    image; as ``z`` it would decode and paint every pixel)."""
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    return go.Image(source=_png(picture.tobytes(), picture.shape), hoverinfo="skip")


@functools.lru_cache(maxsize=16)
def _png(pixels: bytes, shape: tuple[int, ...]) -> str:
    """The PNG data URI of ``pixels`` of ``shape``, once per picture (the pages draw one under many maps)."""
    buffer = io.BytesIO()
    picture = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)  # fast: the PNG only travels to the browser
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _heat(picture: np.ndarray, heat: np.ndarray, opacity: float, hover: str, showscale: bool,
          zmin: float | None, zmax: float | None) -> go.Heatmap:
    """A heatmap of ``heat`` ``(h, w)`` stretched over the extent of ``picture`` ``(H, W, 3)``."""
    (height, width), (h, w) = picture.shape[:2], heat.shape
    dx, dy = width / w, height / h
    return go.Heatmap(
        z=heat, x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, opacity=opacity, colorscale=MAP_COLOURSCALE,
        zmin=zmin, zmax=zmax, showscale=showscale, hovertemplate=f"{hover}: %{{z:.3g}}<extra></extra>",
        colorbar=dict(thickness=10, len=0.8),
    )


def overlay_figure(
    image: Image.Image | np.ndarray, heat: Tensor | np.ndarray, *, title: str | None = None, opacity: float = 0.55,
    hover: str = "value", showscale: bool = False, zmin: float | None = None, zmax: float | None = None,
    outline: Tensor | np.ndarray | None = None, box: tuple[float, float, float, float] | None = None,
    box_size: int | None = None, height: int = 300,
) -> go.Figure:
    """``heat`` ``(h, w)`` (a token grid or a full-resolution map) laid over ``image``; each cell of
    the grid covers its own block of pixels, so token maps show their tokens as squares.
    ``outline``, a bool mask of any resolution over the same extent, is drawn as a green contour;
    ``box`` ``(left, top, right, bottom)``, in pixels of an input ``box_size`` px wide (default: the
    image's), as a green rectangle.
    The figure is as wide as the image is tall (plus the colour bar), so it sits beside its neighbours."""
    picture = np.asarray(image)
    fig = go.Figure([_picture(picture),
                     _heat(picture, as_array(heat), opacity, hover, showscale, zmin, zmax)])
    if outline is not None:
        mask = as_array(outline)
        (height_px, width_px), (h, w) = picture.shape[:2], mask.shape
        fig.add_trace(go.Contour(
            z=mask, x0=width_px / w / 2 - 0.5, dx=width_px / w, y0=height_px / h / 2 - 0.5, dy=height_px / h,
            contours=dict(start=0.5, end=0.5, coloring="lines"), line=dict(width=2),
            colorscale=[[0, OUTLINE_COLOUR], [1, OUTLINE_COLOUR]], showscale=False, hoverinfo="skip",
        ))
    if box is not None:
        scale = picture.shape[1] / (box_size or picture.shape[1])
        left, top, right, bottom = (v * scale - 0.5 for v in box)
        fig.add_shape(type="rect", x0=left, y0=top, x1=right, y1=bottom, line=dict(color=OUTLINE_COLOUR, width=3))
    _image_axes(fig)
    return compact(fig, height, title, width=_square_width(height, title, showscale))


def _square_width(height: int, title: str | None, showscale: bool) -> int:
    """The width that makes the plotting area of a ``height`` px figure square."""
    return height - (36 if title else 8) - 8 + 16 + (70 if showscale else 0)


def overlays_figure(
    image: Image.Image | np.ndarray, heats: Sequence[tuple[str, Tensor | np.ndarray]], *, columns: int = 4,
    opacity: float = 0.55, hover: str = "value", panel_height: int = 200,
) -> go.Figure:
    """Small multiples: one overlay of ``image`` per ``(title, heat)``, ``columns`` per row, each
    panel square and ``panel_height`` px tall."""
    picture = np.asarray(image)
    columns = max(1, min(columns, len(heats)))
    rows = -(-len(heats) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[t for t, _ in heats],
                        horizontal_spacing=0.02, vertical_spacing=0.3 / rows)
    shown = _picture(picture)
    for i, (_, heat) in enumerate(heats):
        row, col = divmod(i, columns)
        fig.add_trace(shown, row + 1, col + 1)
        fig.add_trace(_heat(picture, as_array(heat), opacity, hover, False, None, None), row + 1, col + 1)
        suffix = "" if i == 0 else str(i + 1)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"  # each panel square on its own axes
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, constrain="domain")
    for annotation in fig.layout.annotations:
        annotation.font.size = 12
    return compact(fig, panel_height * rows + 30, width=panel_height * columns + 16)


def token_grid_figure(
    image: Image.Image | np.ndarray, grid: tuple[int, int], *, colour: str, title: str | None = None, height: int = 300,
) -> go.Figure:
    """``image`` with a ``grid`` ``(h, w)`` of token cells drawn over it: one cell, one token."""
    picture = np.asarray(image)
    height_px, width_px = picture.shape[:2]
    h, w = grid
    fig = go.Figure(_picture(picture))
    line = dict(color=colour, width=1.5)
    for i in range(w + 1):
        x = i * width_px / w - 0.5
        fig.add_shape(type="line", x0=x, x1=x, y0=-0.5, y1=height_px - 0.5, line=line)
    for j in range(h + 1):
        y = j * height_px / h - 0.5
        fig.add_shape(type="line", x0=-0.5, x1=width_px - 0.5, y0=y, y1=y, line=line)
    _image_axes(fig)
    return compact(fig, height, title, width=_square_width(height, title, False))


def token_picker_figure(
    image: Image.Image | np.ndarray, grid: tuple[int, int], *, colour: str, selected: tuple[int, int] | None = None,
    title: str | None = None, height: int = 300,
) -> go.Figure:
    """``image`` with one clickable marker at the centre of each cell of ``grid`` ``(h, w)``, point
    ``i`` being cell ``divmod(i, w)``; the ``selected`` cell is drawn larger. For
    ``st.plotly_chart(..., on_select="rerun", selection_mode="points")``."""
    picture = np.asarray(image)
    height_px, width_px = picture.shape[:2]
    h, w = grid
    rows, cols = np.divmod(np.arange(h * w), w)
    sizes = np.full(h * w, 9)
    if selected is not None:
        sizes[selected[0] * w + selected[1]] = 18
    fig = go.Figure([
        _picture(picture),
        go.Scatter(x=(cols + 0.5) * width_px / w - 0.5, y=(rows + 0.5) * height_px / h - 0.5, mode="markers",
                   marker=dict(size=sizes, color=colour, opacity=0.85, line=dict(color="white", width=1.5)),
                   selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0.85)),
                   customdata=np.stack([rows, cols], 1), showlegend=False,
                   hovertemplate="row %{customdata[0]}, column %{customdata[1]}<extra>click to inspect</extra>"),
    ])
    _image_axes(fig)
    fig.update_layout(clickmode="event+select", dragmode=False)
    return compact(fig, height, title, width=_square_width(height, title, False))


def grid_figure(
    grid: Tensor | np.ndarray, *, title: str | None = None, diverging: bool = False, hover: str = "value",
    height: int = 260,
) -> go.Figure:
    """A raw score grid ``(h, w)`` on its own, one square per cell; ``diverging`` centres a
    red-blue scale on 0 for signed scores (e.g. a CAM before its ReLU)."""
    values = as_array(grid)
    bound = float(np.abs(values).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=values, colorscale="RdBu_r" if diverging else MAP_COLOURSCALE,
        zmin=-bound if diverging else None, zmax=bound if diverging else None,
        hovertemplate=f"row %{{y}}, column %{{x}}<br>{hover}: %{{z:.3g}}<extra></extra>",
        colorbar=dict(thickness=10),
    ))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showticklabels=False)
    fig.update_xaxes(constrain="domain", showticklabels=False)
    return compact(fig, height, title, width=_square_width(height, title, True))


def pixels_figure(image: Image.Image | np.ndarray, *, title: str | None = None, height: int = 300) -> go.Figure:
    """``image`` on its own, each pixel a sharp square (hover shows its colour)."""
    fig = go.Figure(go.Image(z=np.asarray(image), hovertemplate="x %{x}, y %{y}<br>RGB %{z}<extra></extra>"))
    _image_axes(fig)
    return compact(fig, height, title, width=_square_width(height, title, False))
