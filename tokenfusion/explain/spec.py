"""What an explanation method is, written once: the :class:`Method` spec, and a :class:`Request` as a value.

A method is one subclass (or one instance) of :class:`Method`, as a pytorch-grad-cam CAM is one
subclass of ``BaseCAM`` and a captum method one subclass of ``Attribution``: its name, its family,
its options with their defaults, the ``(layer, kind)`` targets it has on a model (read from
``model.structure``), the forward and backward passes it needs (the cost model) and how it makes
its grid on an explanation session. :data:`tokenfusion.explain.registry.METHODS` is the one table
of them; the registry, the cost model, the session, the app, the scoring command and the export
snippets all read it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from torch import Tensor

from ..models import ModelStructure, TokenFusionModel, Trace
from ._utils import ExplainError

__all__ = ["FAMILIES", "Method", "Passes", "Request", "Session", "Target", "Targets"]

#: ``(layer, kind)``: a module name and a token kind, ``None`` where the method takes no layer or no kind.
Target = tuple[str | None, str | None]

#: What a method reads: attention weights, a CAM of a layer, input gradients, or the output under perturbed inputs.
FAMILIES = ("attention", "cam", "gradient", "perturbation")


@dataclass(frozen=True)
class Targets:
    """Every ``(layer, kind)`` a method may target on one model (``pairs``, in forward order) and
    the one it targets when the request names neither (``default``)."""

    pairs: tuple[Target, ...]
    default: Target


@dataclass(frozen=True)
class Passes:
    """The images a method sends through the model's forward (``forwards``) and those it also
    sends backward (``backwards``); ``batched`` when it sends them in batches."""

    forwards: int
    backwards: int
    batched: bool = False

    @property
    def equivalent(self) -> int:
        """Forward-pass equivalents, a backward counted as two forwards."""
        return self.forwards + 2 * self.backwards


@dataclass(frozen=True)
class Request:
    """One explanation asked of a session: ``method`` at ``layer``/``kind`` (None: chosen by the
    method, see :meth:`Method.resolve`) with ``options``, sorted ``(name, value)`` pairs so that
    equal requests are equal and hash alike. The app uses one value to ask, to key its cache and
    to write the export snippet, so the three cannot differ."""

    method: str
    layer: str | None = None
    kind: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, method: str, layer: str | None = None, kind: str | None = None, **options: Any) -> Request:
        """``Request.of("gradcam", "trunk.stage2", batch_size=8)``."""
        return cls(method, layer, kind, tuple(sorted(options.items())))

    @property
    def kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments."""
        return dict(self.options)


class Session(Protocol):
    """What a method reads from an explanation session (:class:`~tokenfusion.explain.Explainer`):
    the model, the image ``x`` ``(1, 3, H, W)`` and its traced forward (``logits`` ``(1, classes)``)."""

    model: TokenFusionModel
    x: Tensor
    logits: Tensor
    trace: Trace


class Method:
    """One explanation method. A subclass sets ``name``, ``family``, ``options`` (every option it
    takes, with its default) and ``gradients`` (whether its map comes from gradients, so that the
    randomisation test should change it), and overrides :meth:`targets`, :meth:`passes` and
    :meth:`grid`.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}
    gradients: ClassVar[bool] = False
    #: True when :meth:`passes` reads the channels of the target layer (one masked image per channel).
    per_channel: ClassVar[bool] = False

    def targets(self, structure: ModelStructure) -> Targets | None:
        """The targets on a model of this ``structure``; None when the method does not apply."""
        raise NotImplementedError

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        """The passes of one request on one image beyond the session's traced forward, ``options``
        complete (:meth:`settings`); ``channels``: the channels of ``layer`` where :attr:`per_channel`."""
        raise NotImplementedError

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        """The raw map ``(h, w)`` of class ``target`` for the resolved ``layer``/``kind`` with the
        complete ``options``, and the layer it was read at (recorded in ``Explanation.layer``)."""
        raise NotImplementedError

    def settings(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated by the ``given`` options; an unknown option is an error."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ExplainError(f"Unknown options {unknown} for {self.name!r}. Expected some of {list(self.options)}")
        return {**self.options, **given}

    def resolve(self, structure: ModelStructure, targets: Targets, layer: str | None,
                kind: str | None) -> Target:
        """The target of a request: the default when neither ``layer`` nor ``kind`` is given, the
        last layer holding ``kind`` when only it is; an :class:`ExplainError` listing the allowed
        targets otherwise."""
        if layer is None and kind is None:
            return targets.default
        if (layer, kind) in targets.pairs:
            return layer, kind
        matches = [t for t in targets.pairs if (layer is None or t[0] == layer) and (kind is None or t[1] == kind)]
        if not matches:
            raise ExplainError(f"{self.name!r} cannot target layer={layer!r}, kind={kind!r} on this model. "
                               f"Expected (layer, kind) one of {list(targets.pairs)}")
        if layer is not None and len({t[1] for t in matches}) > 1:
            raise ExplainError(f"Layer {layer!r} holds {[t[1] for t in matches]} tokens: pass kind= one of them")
        return matches[-1]
