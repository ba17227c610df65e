"""How much each kind of token a model uses: fusion weights, gates, and branch ablation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..interventions import INTERVENTIONS, intervene
from ..models import TokenFusionModel, Trace
from ._utils import ExplainError, device_of, traced

__all__ = [
    "BranchAblation", "FusionWeights", "branch_ablation", "fusion_weights", "fusion_weights_of", "gates",
]


@dataclass(frozen=True)
class FusionWeights:
    """How much each kind of token a fusion model uses, layer by layer.

    ``cls_share[kind]`` and ``mean_share[kind]`` are ``(B, L, heads)``: the share of attention
    mass that the class token (position 0), or the mean over all queries, puts on ``kind``
    tokens, for every layer in ``layers`` whose sequence holds both CNN and patch tokens.
    ``gates`` ``(L,)`` and ``update_ratio`` ``(B, L)`` are set where CNN tokens enter by gated
    cross-attention (``layerwise``), with ``cross_layers`` naming those layers.
    """

    layers: list[str]
    cls_share: dict[str, Tensor]
    mean_share: dict[str, Tensor]
    gates: Tensor | None = None
    update_ratio: Tensor | None = None
    cross_layers: list[str] | None = None

    def shares(self, query: str = "cls") -> dict[str, Tensor]:
        """Per kind, ``(B, L, heads)``: what the class token (``query="cls"``) or the mean query
        (``"mean"``) puts on that kind of token."""
        if query not in ("cls", "mean"):
            raise ExplainError(f"Unknown query {query!r}. Expected one of ['cls', 'mean']")
        return self.cls_share if query == "cls" else self.mean_share

    def layer_shares(self, query: str = "cls") -> dict[str, Tensor]:
        """Per kind, ``(B, L)``: :meth:`shares` averaged over heads."""
        return {kind: share.mean(-1) for kind, share in self.shares(query).items()}


def fusion_weights_of(trace: Trace) -> FusionWeights:
    """The :class:`FusionWeights` read from one traced forward."""
    layers: list[str] = []
    cls_share: dict[str, list[Tensor]] = {}
    mean_share: dict[str, list[Tensor]] = {}
    for stream in trace.streams.values():
        layout = stream.layout
        if len({span.kind for span in layout.spans if span.grid is not None}) < 2:  # one kind of image token
            continue
        for layer, weights in zip(stream.layers, stream.attention):
            layers.append(layer)
            for kind in layout.kinds:
                mass = weights[..., layout.mask(kind).to(weights.device)].sum(-1)  # (B, heads, N)
                cls_share.setdefault(kind, []).append(mass[..., 0])
                mean_share.setdefault(kind, []).append(mass.mean(-1))
    gates = ratio = cross = None
    if trace.cross_attention:
        cross = list(trace.cross_attention)
        gates = torch.tensor([c.gate for c in trace.cross_attention.values()])
        ratio = torch.stack([c.update_ratio for c in trace.cross_attention.values()], dim=1)
    return FusionWeights(
        layers=layers,
        cls_share={k: torch.stack(v, dim=1) for k, v in cls_share.items()},
        mean_share={k: torch.stack(v, dim=1) for k, v in mean_share.items()},
        gates=gates,
        update_ratio=ratio,
        cross_layers=cross,
    )


def fusion_weights(model: TokenFusionModel, x: Tensor) -> FusionWeights:
    """The model's :class:`FusionWeights` for a batch ``x`` ``(B, 3, H, W)`` (or one ``(3, H, W)``).

    ``early``/``late``: ``cls_share[kind]``, ``mean_share[kind]`` ``(B, L, heads)`` for every layer
    holding both kinds. ``layerwise``: ``gates`` ``(L,)`` = ``tanh(g_l)`` and ``update_ratio``
    ``(B, L)`` = norm of the injected CNN update over the norm of the patch stream.
    """
    if not model.structure.is_fusion:
        raise ExplainError(f"Fusion weights need a fusion model (both CNN and patch tokens); a {model.config.arch!r} "
                           f"model has {list(model.structure.token_kinds)}")
    if x.dim() == 3:
        x = x[None]
    return fusion_weights_of(traced(model, x)[1])


def gates(model: TokenFusionModel) -> Tensor:
    """The learned gates ``tanh(g_l)`` ``(L,)`` of the model's cross-attention entries, read from the
    weights (no input needed); the same numbers as :attr:`FusionWeights.gates`."""
    entries = model.structure.cross_entries
    if not entries:
        raise ExplainError(f"Only models whose CNN tokens enter by gated cross-attention ('layerwise') have gates; "
                           f"got {model.config.arch!r}")
    return torch.stack([torch.tanh(model.get_submodule(e.layer).gate.detach()) for e in entries]).cpu()


@dataclass
class BranchAblation:
    """Branch ablation of a batch: ``target`` ``(B,)`` classes, ``logit`` ``(B,)`` their logits,
    ``ablated[kind]`` ``(B,)`` the logits under the token intervention ``how`` on every ``kind`` token
    (:mod:`tokenfusion.interventions`; ``"zero"``: without them), ``delta[kind] = ablated[kind] - logit``
    (negative: the model relied on that kind)."""

    target: Tensor
    logit: Tensor
    ablated: dict[str, Tensor]
    how: str = "zero"

    @property
    def delta(self) -> dict[str, Tensor]:
        return {k: v - self.logit for k, v in self.ablated.items()}


@torch.no_grad()
def branch_ablation(
    model: TokenFusionModel, x: Tensor, target: int | Tensor | None = None, how: str = "zero",
) -> BranchAblation:
    """Change of the target logit (default: the predicted class) when every CNN token, or every patch
    token, is changed by the intervention ``how`` (``zero``, ``contents_averaged`` or ``layout_shuffled``;
    ``dataset_mean`` needs training images: see :func:`tokenfusion.interventions.dataset_means`).
    ``x``: ``(B, 3, H, W)`` or ``(3, H, W)``."""
    present = model.structure.token_kinds
    if len(present) < 2:
        raise ExplainError(f"Branch ablation needs both CNN and patch tokens; {model.config.arch!r} has {list(present)}")
    if how not in INTERVENTIONS or how == "dataset_mean":
        raise ExplainError(f"Unknown branch ablation {how!r}. Expected one of "
                           f"{[h for h in INTERVENTIONS if h != 'dataset_mean']}")
    model.eval()
    x = (x[None] if x.dim() == 3 else x).to(device_of(model))
    logits = model(x)
    if target is None:
        target = logits.argmax(-1)
    target = torch.as_tensor(target, device=logits.device).expand(len(x))
    pick = lambda out: out.gather(1, target[:, None])[:, 0].cpu()  # noqa: E731
    ablated = {}
    for kind in present:
        with intervene(model, kind, how, generator=torch.Generator().manual_seed(0)):
            ablated[kind] = pick(model(x))
    return BranchAblation(target=target.cpu(), logit=pick(logits), ablated=ablated, how=how)
