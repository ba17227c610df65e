"""Datasets for Token Fusion Lab.

Names are imported lazily so that ``python -m tokenfusion.data.synthshapes`` runs the
module only once (no runpy double-import warning).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .synthshapes import (
        CLASS_NAMES,
        SHAPES,
        TEXTURES,
        VAL_SEED_OFFSET,
        SynthSample,
        SynthShapes,
        export_imagefolder,
        render_sample,
    )

__all__ = [
    "SHAPES",
    "TEXTURES",
    "CLASS_NAMES",
    "VAL_SEED_OFFSET",
    "SynthSample",
    "render_sample",
    "SynthShapes",
    "export_imagefolder",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".synthshapes", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
