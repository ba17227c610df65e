"""What a model declares about itself: its token streams, where CNN tokens enter, what a CAM can target.

Every architecture returns a :class:`ModelStructure` from ``model.structure``. Code outside
``tokenfusion/models/`` reads these declarations and never guesses a model's structure from module
or architecture names (as timm models carry ``feature_info``).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CamTarget", "CrossEntry", "ModelStructure", "Stream"]

TokenKind = str  # "cnn" or "patch"


@dataclass(frozen=True)
class Stream:
    """One token sequence and the self-attention blocks that run over it.

    ``layers`` are the module names of its blocks in forward order (``"blocks.0"``...);
    ``kinds`` the image-token kinds its sequence holds besides class tokens; ``readout`` whether
    the head reads this stream's class token; ``feeds`` the stream its output is concatenated
    into (``late``'s two streams feed ``fusion_blocks``), or None.
    """

    name: str
    kinds: tuple[TokenKind, ...]
    layers: tuple[str, ...]
    readout: bool = False
    feeds: str | None = None


@dataclass(frozen=True)
class CrossEntry:
    """Where CNN tokens enter a stream by gated cross-attention (``layerwise``): module ``layer``
    (``"cross_blocks.3"``) runs before block ``before`` of ``stream``, its keys the CNN tokens
    made by ``tokens`` (``"cnn_tokens.1"``) from trunk stage ``stage`` (``"trunk.stage2"``)."""

    layer: str
    stream: str
    before: str
    tokens: str
    stage: str


@dataclass(frozen=True)
class CamTarget:
    """A module a CAM can hook, and the tokens it reshapes.

    ``source`` says what the module outputs: ``"feature_map"`` (a trunk stage, ``(B, C, h, w)``),
    ``"tokens"`` (``(B, N, D)`` laid out as the trace's layer ``layout_of``), or ``"cross_keys"``
    (the normalised CNN keys of cross-attention layer ``layout_of``).
    """

    layer: str
    kind: TokenKind
    source: str
    layout_of: str | None = None


@dataclass(frozen=True)
class ModelStructure:
    """Everything a model has that explanations and analyses need.

    ``token_modules[kind]``: module names whose forward returns ``(tokens (B, N, D), grid)`` of
    that kind. ``trunk_stages``: module names of the trunk stages, shallow to deep, whose outputs
    are ``trace.cnn_features``. ``attention_gradients``: whether the attention weights of a traced
    forward run with gradients on are part of its graph, so that gradients reach them (relevance needs it).
    """

    streams: tuple[Stream, ...]
    token_modules: dict[TokenKind, tuple[str, ...]]
    trunk_stages: tuple[str, ...]
    cross_entries: tuple[CrossEntry, ...]
    cam_targets: tuple[CamTarget, ...]
    attention_gradients: bool = True

    @property
    def token_kinds(self) -> tuple[TokenKind, ...]:
        """The kinds of token the model makes, ``cnn`` before ``patch``."""
        return tuple(k for k in ("cnn", "patch") if self.token_modules.get(k))

    @property
    def is_fusion(self) -> bool:
        """True when the model makes both CNN and patch tokens."""
        return len(self.token_kinds) == 2

    @property
    def readout(self) -> Stream | None:
        """The stream whose class token the head reads (None for the ``cnn`` baseline)."""
        return next((s for s in self.streams if s.readout), None)

    def token_module(self, kind: TokenKind) -> str:
        """The module that makes the ``kind`` tokens of the streams' sequences: the model's one token
        module of that kind. A model with several (``layerwise``'s CNN tokens, one module per trunk
        stage) feeds them to cross-attention, whose :class:`CrossEntry` names its own (``tokens``)."""
        modules = self.token_modules.get(kind, ())
        if len(modules) != 1:
            raise KeyError(f"The model makes {kind!r} tokens in {len(modules)} modules {list(modules)}, "
                           "not one; a cross-attention entry names the module of its keys")
        return modules[0]

    def stream(self, name: str) -> Stream:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(f"No stream {name!r}. Streams: {[s.name for s in self.streams]}")

    def stream_of(self, layer: str) -> Stream:
        """The stream whose blocks include ``layer``."""
        for s in self.streams:
            if layer in s.layers:
                return s
        raise KeyError(f"No stream has layer {layer!r}. Layers: {[name for s in self.streams for name in s.layers]}")

    def attention_layers(self, kind: TokenKind | None = None) -> list[str]:
        """Self-attention layers in forward order, those whose sequence holds ``kind`` if given."""
        return [layer for s in self.streams if kind is None or kind in s.kinds for layer in s.layers]

    def cam_targets_at(self, layer: str) -> list[CamTarget]:
        """The targets of module ``layer``, one per token kind: a declared target, or any module
        inside a declared block (the block's own output, ``"blocks.3"``, its ``mlp``...), which reads
        that block's layout. Empty when ``layer`` outputs no tokens or feature map."""
        declared = [t for t in self.cam_targets if t.layer == layer]
        if declared:
            return declared
        for s in self.streams:
            for block in s.layers:
                if layer == block or layer.startswith(f"{block}."):
                    return [CamTarget(layer, kind, "tokens", block) for kind in s.kinds]
        return []

    def default_cam_target(self, kind: TokenKind | None = None) -> CamTarget:
        """The last trunk stage for ``kind`` None or ``"cnn"`` when the model has a trunk; otherwise
        the last target of ``kind`` (default ``"patch"``) in the readout stream."""
        if kind in (None, "cnn") and self.trunk_stages:
            return next(t for t in self.cam_targets if t.layer == self.trunk_stages[-1])
        kind = kind or "patch"
        readout = self.readout
        for t in reversed(self.cam_targets):
            if t.kind == kind and readout is not None and t.layout_of in readout.layers:
                return t
        raise KeyError(f"No CAM target of {kind!r} tokens. Targets: {[(t.layer, t.kind) for t in self.cam_targets]}")


def block_targets(streams: tuple[Stream, ...]) -> tuple[CamTarget, ...]:
    """``norm1`` of every self-attention block, once for each image-token kind its stream holds.

    ``norm1`` rather than the block's output: the head reads only the class token, so the last
    block's other outputs get no gradient."""
    return tuple(CamTarget(f"{layer}.norm1", kind, "tokens", layer) for s in streams for layer in s.layers
                 for kind in s.kinds)


def stage_targets(stages: tuple[str, ...]) -> tuple[CamTarget, ...]:
    """Every trunk stage, a CNN feature map."""
    return tuple(CamTarget(stage, "cnn", "feature_map") for stage in stages)
