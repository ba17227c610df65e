"""A model of another library, wrapped unchanged, and the structure it is declared with."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal, overload

import torch
from torch import Tensor, nn

from ..layout import TokenLayout
from ..order import called_in_order
from ..structure import CamTarget, ModelStructure, Stream
from ..trace import Trace
from .attention import reader_for
from .config import AdaptedConfig

__all__ = ["AdaptedModel", "TokenSource", "TokenTap"]


@dataclass(frozen=True)
class TokenSource:
    """Where one kind of the streams' image tokens is made: module ``module`` of the model
    (``"net.patch_embed"``) outputs ``kind`` tokens, ``(B, N, D)`` on ``grid`` or a ``(B, D, h, w)`` map
    (``grid`` None: read from the map)."""

    kind: str
    module: str
    grid: tuple[int, int] | None = None


class TokenTap(nn.Module):
    """The declared token module of an adapted model: the library's tokens ``(B, N, D)`` on ``grid``,
    passed on unchanged, so that hooks (interventions, receptive-field measurement) read or rewrite
    them as they do our own token modules' output. The tap sits before any position embedding."""

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
        return tokens, grid

    def pos_embed(self, grid: tuple[int, int]) -> Tensor:
        """No position is added at the tap: zero."""
        return torch.zeros(())


class AdaptedModel(nn.Module):
    """``net`` (a timm or torchvision model, or a user's own; its forward unchanged: fused attention stays
    on) with the :class:`ModelStructure` it is declared with. ``model(x)`` is ``net(x)``;
    ``model(x, trace=True)`` runs the same forward with hooks that read each block's output, its
    attention weights (:mod:`.attention`) and the trunk stages, and returns ``(logits, Trace)``.

    ``attention[layer]``: the attention module of each stream layer. ``sources``: where each kind of
    image token is made, in the order the kinds stand in the blocks' sequence, behind ``class_tokens``
    class (and register) tokens. Module names are this model's (``"net.blocks.3"``), so a CAM targets
    ``model.get_submodule(name)``.
    """

    def __init__(
        self, net: nn.Module, config: AdaptedConfig, *, streams: tuple[Stream, ...] = (),
        attention: dict[str, str] | None = None, trunk_stages: tuple[str, ...] = (),
        sources: tuple[TokenSource, ...] = (), class_tokens: int = 1, cam_targets: tuple[CamTarget, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.weight_sources: dict[str, dict] = {}
        self.sources = {source.kind: source for source in sources}
        self.class_tokens = class_tokens
        self.attention = dict(attention or {})
        for source in sources:
            self.add_module(f"{source.kind}_tokens", TokenTap())
            self.get_submodule(source.module).register_forward_hook(partial(self._through_tap, source))
        tokens = {kind: (f"{kind}_tokens",) for kind in self.sources}
        self._structure = ModelStructure(streams, tokens, trunk_stages, (), cam_targets)
        layers = [layer for s in streams for layer in s.layers]
        if sorted(self.attention) != sorted(layers):
            raise ValueError(f"Every stream layer needs its attention module; layers {layers}, given {sorted(self.attention)}")
        self._readers = {layer: reader_for(self.get_submodule(name)) for layer, name in self.attention.items()}

    @property
    def structure(self) -> ModelStructure:
        return self._structure

    def tap(self, kind: str) -> TokenTap:
        """The declared token module of ``kind``."""
        return self.get_submodule(self.structure.token_module(kind))  # type: ignore[return-value]

    def _through_tap(self, source: TokenSource, _: nn.Module, __: tuple, output: Tensor) -> Tensor:
        """Forward hook on the module making ``source``'s tokens: its output through the kind's
        :class:`TokenTap`, in the same layout back."""
        tap = self.tap(source.kind)
        if output.dim() == 4:  # (B, D, h, w)
            b, d, h, w = output.shape
            tokens, grid = tap(output.flatten(2).transpose(1, 2), (h, w))
            return tokens.transpose(1, 2).reshape(b, d, *grid)
        tokens, _ = tap(output, source.grid)
        return tokens

    @overload
    def forward(self, x: Tensor, trace: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, trace: Literal[True]) -> tuple[Tensor, Trace]: ...

    def forward(self, x: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Trace]:
        """Logits ``(B, num_classes)``; with ``trace``, ``(logits, Trace)``."""
        if not trace:
            return self.net(x)
        readers = {layer: reader(self.get_submodule(self.attention[layer])) for layer, reader in self._readers.items()}
        outputs: dict[str, Tensor] = {}
        features: list[Tensor] = []
        grids: dict[str, tuple[int, int]] = {}
        handles = [h for reader in readers.values() for h in reader.attach()]
        handles += [self.get_submodule(layer).register_forward_hook(
            lambda _, __, out, layer=layer: outputs.__setitem__(layer, out)) for layer in readers]
        handles += [self.get_submodule(stage).register_forward_hook(lambda _, __, out: features.append(out))
                    for stage in self.structure.trunk_stages]
        handles += [self.tap(kind).register_forward_hook(lambda _, __, out, kind=kind: grids.__setitem__(kind, out[1]))
                    for kind in self.sources]
        try:
            logits = self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        record = Trace(cnn_features=features)
        for stream in self.structure.streams:
            kinds = [(kind, tuple(grids[kind])) for kind in self.sources if kind in stream.kinds]
            layout = TokenLayout.build(*([("cls", self.class_tokens)] if self.class_tokens else []), *kinds)
            for layer in stream.layers:
                weights = readers[layer].weights
                if weights is None or layer not in outputs:
                    raise RuntimeError(f"The traced forward read no attention weights at {layer!r} "
                                       f"({self.attention[layer]!r} did not run as declared)")
                record.record(stream.name, layer, layout, weights, outputs[layer])
        return logits, record

    def parts_in_forward_order(self) -> list[str]:
        """The model's parts with parameters, in the order a forward first calls them: each declared stream
        layer and trunk stage, and every module of ``net`` beside them (stem, norms, head), read from one
        forward of a blank ``img_size`` image (hooks removed afterwards)."""
        declared = {*self.structure.trunk_stages, *(name for s in self.structure.streams for name in s.layers)}
        return called_in_order(self, list(_units(self.net, "net", declared)), self.config.img_size)


def _units(module: nn.Module, prefix: str, declared: set[str]) -> Iterator[str]:
    """Children of ``module`` named from ``prefix``: a declared one or one holding none as a whole,
    the others opened."""
    for name, child in module.named_children():
        full = f"{prefix}.{name}"
        if full in declared or not any(d.startswith(f"{full}.") for d in declared):
            yield full
        else:
            yield from _units(child, full, declared)
