"""How much each kind of token a model uses: fusion weights, gates, and branch ablation."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models import FusionWeights, TokenFusionModel
from ..models.cnn_tokens import CNNTokens
from ..models.patch_tokens import PatchTokens
from ._utils import ExplainError, device_of, traced

__all__ = ["BranchAblation", "TOKEN_MODULES", "token_kinds", "fusion_weights", "gates", "mean_tokens", "branch_ablation"]

#: The modules that produce each kind of token; their forward returns ``(tokens (B, N, D), grid)``.
TOKEN_MODULES: dict[str, type[nn.Module]] = {"cnn": CNNTokens, "patch": PatchTokens}


def token_kinds(model: nn.Module) -> list[str]:
    """The kinds of token (``"cnn"``, ``"patch"``) that ``model`` makes, in the order of ``TOKEN_MODULES``."""
    return [kind for kind, cls in TOKEN_MODULES.items() if any(isinstance(m, cls) for m in model.modules())]


def fusion_weights(model: TokenFusionModel, x: Tensor) -> FusionWeights:
    """The model's :class:`~tokenfusion.models.FusionWeights` for a batch ``x`` ``(B, 3, H, W)``.

    ``early``/``late``: ``cls_share[kind]``, ``mean_share[kind]`` ``(B, L, heads)`` for every layer
    holding both kinds. ``layerwise``: ``gates`` ``(L,)`` = ``tanh(g_l)`` and ``update_ratio``
    ``(B, L)`` = norm of the injected CNN update over the norm of the patch stream.
    """
    if model.config.arch not in ("early", "late", "layerwise"):
        raise ExplainError(
            f"Fusion weights need a fusion model ('early', 'late', 'layerwise'); got {model.config.arch!r}"
        )
    if x.dim() == 3:
        x = x[None]
    return traced(model, x)[1].fusion


def gates(model: TokenFusionModel) -> Tensor:
    """``layerwise`` only: the learned gates ``tanh(g_l)`` ``(L,)``, read from the weights (no input needed)."""
    blocks = getattr(model, "cross_blocks", None)
    if blocks is None:
        raise ExplainError(f"Only 'layerwise' models have gates; got {model.config.arch!r}")
    return torch.stack([torch.tanh(b.gate.detach()) for b in blocks]).cpu()


def _mean_hook(
    module: nn.Module, inputs: tuple, output: tuple[Tensor, tuple[int, int]]
) -> tuple[Tensor, tuple[int, int]]:
    tokens, grid = output
    return tokens.mean(dim=1, keepdim=True).expand_as(tokens), grid


@contextmanager
def mean_tokens(model: nn.Module, kind: str) -> Iterator[int]:
    """Within the block, every ``kind`` token module of ``model`` outputs the mean of its tokens
    at every position (position embeddings included, so position is erased too). Yields the
    number of modules hooked; the hooks are removed on exit, also on error."""
    if kind not in TOKEN_MODULES:
        raise ExplainError(f"Unknown token kind {kind!r}. Expected one of {list(TOKEN_MODULES)}")
    handles = [m.register_forward_hook(_mean_hook) for m in model.modules() if isinstance(m, TOKEN_MODULES[kind])]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


@dataclass
class BranchAblation:
    """Branch ablation of a batch: ``target`` ``(B,)`` classes, ``logit`` ``(B,)`` their logits,
    ``ablated[kind]`` ``(B,)`` the logits with every ``kind`` token replaced by the mean of its
    kind, ``delta[kind] = ablated[kind] - logit`` (negative: the model relied on that kind)."""

    target: Tensor
    logit: Tensor
    ablated: dict[str, Tensor]

    @property
    def delta(self) -> dict[str, Tensor]:
        return {k: v - self.logit for k, v in self.ablated.items()}


@torch.no_grad()
def branch_ablation(model: TokenFusionModel, x: Tensor, target: int | Tensor | None = None) -> BranchAblation:
    """Change of the target logit (default: the predicted class) when all CNN tokens, or all
    patch tokens, are replaced by their mean over tokens. ``x``: ``(B, 3, H, W)`` or ``(3, H, W)``."""
    present = token_kinds(model)
    if len(present) < 2:
        raise ExplainError(f"Branch ablation needs both CNN and patch tokens; {model.config.arch!r} has {present}")
    model.eval()
    x = (x[None] if x.dim() == 3 else x).to(device_of(model))
    logits = model(x)
    if target is None:
        target = logits.argmax(-1)
    target = torch.as_tensor(target, device=logits.device).expand(len(x))
    pick = lambda out: out.gather(1, target[:, None])[:, 0].cpu()  # noqa: E731
    ablated = {}
    for kind in present:
        with mean_tokens(model, kind):
            ablated[kind] = pick(model(x))
    return BranchAblation(target=target.cpu(), logit=pick(logits), ablated=ablated)
