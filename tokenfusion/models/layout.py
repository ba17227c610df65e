"""Token layout: which positions of a sequence hold class, CNN and patch tokens, on which grid."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TokenKind", "TokenSpan", "TokenLayout"]

TokenKind = str  # one of "cls", "cnn", "patch"
KINDS = ("cls", "cnn", "patch")


@dataclass(frozen=True)
class TokenSpan:
    """``length`` consecutive tokens of one ``kind`` from ``start``; ``grid`` is ``(h, w)`` for image tokens."""

    kind: TokenKind
    start: int
    length: int
    grid: tuple[int, int] | None = None

    @property
    def stop(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class TokenLayout:
    """An ordered list of spans covering a token sequence. Nothing downstream hard-codes a grid."""

    spans: tuple[TokenSpan, ...]

    @classmethod
    def build(cls, *parts: tuple[TokenKind, int | tuple[int, int]]) -> TokenLayout:
        """``build(("cls", 1), ("cnn", (6, 6)), ...)``: a count for class tokens, a grid for image tokens."""
        spans, start = [], 0
        for kind, extent in parts:
            if kind not in KINDS:
                raise ValueError(f"Unknown token kind {kind!r}. Expected one of {list(KINDS)}")
            grid = tuple(extent) if isinstance(extent, tuple) else None
            length = grid[0] * grid[1] if grid else int(extent)
            spans.append(TokenSpan(kind, start, length, grid))
            start += length
        return cls(tuple(spans))

    def __add__(self, other: TokenLayout) -> TokenLayout:
        offset = self.num_tokens
        moved = tuple(TokenSpan(s.kind, s.start + offset, s.length, s.grid) for s in other.spans)
        return TokenLayout(self.spans + moved)

    @property
    def num_tokens(self) -> int:
        return sum(s.length for s in self.spans)

    @property
    def kinds(self) -> tuple[TokenKind, ...]:
        """Kinds present, in order of first appearance."""
        return tuple(dict.fromkeys(s.kind for s in self.spans))

    def count(self, kind: TokenKind) -> int:
        return sum(s.length for s in self.spans if s.kind == kind)

    def mask(self, kind: TokenKind) -> Tensor:
        """Boolean ``(N,)`` mask of the positions holding ``kind`` tokens."""
        mask = torch.zeros(self.num_tokens, dtype=torch.bool)
        for s in self.spans:
            if s.kind == kind:
                mask[s.start : s.stop] = True
        return mask

    def grid_span(self, kind: TokenKind) -> TokenSpan:
        """The single span of image tokens of ``kind`` (``"cnn"`` or ``"patch"``)."""
        found = [s for s in self.spans if s.kind == kind and s.grid is not None]
        if len(found) != 1:
            raise KeyError(f"This layout has no {kind!r} token grid; it holds {list(self.kinds)}")
        return found[0]

    def grid(self, kind: TokenKind) -> tuple[int, int]:
        return self.grid_span(kind).grid  # type: ignore[return-value]

    def to_grid(self, values: Tensor, kind: TokenKind) -> Tensor:
        """Reshape the ``kind`` tokens of ``values`` into their grid.

        ``(B, N, C) -> (B, C, h, w)`` for token tensors, ``(..., N) -> (..., h, w)`` for per-token
        scores (pass ``values`` with tokens on the last axis, e.g. an attention row).
        """
        span = self.grid_span(kind)
        h, w = span.grid  # type: ignore[misc]
        if values.dim() == 3 and values.shape[1] == self.num_tokens:
            return values[:, span.start : span.stop].transpose(1, 2).reshape(values.shape[0], -1, h, w)
        return values[..., span.start : span.stop].reshape(*values.shape[:-1], h, w)
