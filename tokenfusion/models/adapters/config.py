"""The config of a model adapted from another library: enough to rebuild it with no outside knowledge."""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

__all__ = ["LIBRARIES", "AdaptedConfig"]

LIBRARIES = ("timm", "torchvision")

#: Accepted range of each numeric field, both ends included (a damaged file describes no absurd model).
_RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (1, 100_000), "img_size": (8, 2048), "patch_size": (0, 2048), "embed_dim": (0, 16_384),
    "depth": (0, 1024), "num_heads": (0, 1024), "mean": (-10.0, 10.0), "std": (1e-6, 10.0), "crop_pct": (0.01, 1.0),
}


@dataclass(frozen=True)
class AdaptedConfig:
    """A ``library`` model (``"timm"`` or ``"torchvision"``) by the library's ``name``, with
    ``num_classes`` outputs, fed ``img_size`` px images normalised by ``mean``/``std`` after the
    evaluation crop ``crop_pct``. ``patch_size``, ``embed_dim``, ``depth``, ``num_heads`` describe
    a transformer's sequence (0 for a CNN); they are read from the built model, never set.

    ``arch`` and ``size`` answer what pages ask of our own configs: the library's model name and
    the library it comes from.
    """

    library: str
    name: str
    num_classes: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float
    patch_size: int = 0
    embed_dim: int = 0
    depth: int = 0
    num_heads: int = 0

    @property
    def arch(self) -> str:
        return self.name

    @property
    def size(self) -> str:
        return self.library

    @property
    def fusion_depth(self) -> int:
        return 0

    @property
    def kind_drop_rate(self) -> float:
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins (tuples become lists), safe for ``torch.load(weights_only=True)``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptedConfig:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the first key or value that does not fit."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(map(str, set(data) - set(known)))
        missing = sorted(k for k, f in known.items() if f.default is MISSING and k not in data)
        if unknown or missing:
            raise ValueError(f"unknown keys {unknown}, missing keys {missing} (expected keys from {sorted(known)})")
        if data["library"] not in LIBRARIES:
            raise ValueError(f"library {data['library']!r} is not one of {list(LIBRARIES)}")
        for key, value in data.items():
            problem = _problem(key, value, known[key].type)
            if problem:
                raise ValueError(f"{key} {problem}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _problem(key: str, value: Any, kind: str) -> str | None:
    """Why ``value`` cannot be field ``key`` (annotated ``kind``), or None when it can."""
    if kind == "str":
        return None if isinstance(value, str) and 0 < len(value) <= 128 else f"is {value!r}, expected a short string"
    items = value if key in ("mean", "std") else [value]
    if key in ("mean", "std") and (not isinstance(value, (list, tuple)) or len(value) != 3):
        return f"is {value!r}, expected a list of 3 numbers"
    low, high = _RANGES[key]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int if kind == "int" else (int, float)):
            return f"is {value!r}, expected {'an integer' if kind == 'int' else 'a number'}"
        if not (math.isfinite(item) and low <= item <= high):
            return f"is {value!r}, outside the accepted range {low} to {high}"
    return None
