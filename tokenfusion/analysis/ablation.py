"""Ablation curves: top-1 with one kind of token removed from place ``k`` onward, for every ``k``.

The removal is :func:`tokenfusion.interventions.ablate_from` (the places a kind is read, in forward
order; replaced by their mean, zero or noise; cross-attention closed). ``k = L + 1`` ablates nothing.

Each batch's traced forward (the one every measure reads) is recorded: the output of every module
the model's forward calls directly (trunk, token modules, blocks, cross-attention entries, norm,
head). An ablation from place ``S`` serves the recorded outputs of every module it cannot change
instead of computing them again: those called before ``S``, and those of streams that ``S``'s stream
does not feed (``late``'s patch stream when its CNN stream is ablated); a closed cross-attention
entry is not computed at all. So the trunk runs once per batch for every ablation, and ablating late
layers costs little. The plain top-1 (``k = L + 1``) is the traced forward's.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..interventions import ablate_from, ablation_sites
from ..models import TokenFusionModel, TokenLayout

__all__ = ["AblationCurves", "Recording"]


class Recording:
    """The outputs of the modules a model's ``forward`` calls directly (trunk, token modules, blocks,
    cross-attention entries, norm, head) in one forward, in call order. A module called with
    ``need_weights=True`` (a traced block) returned ``(output, weights)``: its output is kept, what it
    returns untraced."""

    def __init__(self, model: TokenFusionModel) -> None:
        self.model = model
        self.order: list[str] = []
        self.outputs: dict[str, Any] = {}

    @contextmanager
    def record(self) -> Iterator[None]:
        """Within the block, the model's forwards are recorded (the last one wins)."""
        self.order, self.outputs = [], {}
        depth = [0]  # modules running: a module entered at depth 0 is called by the model's forward

        def enter(module: nn.Module, args: tuple, kwargs: dict, name: str) -> None:
            if depth[0] == 0:
                self.order.append(name)
            depth[0] += 1

        def leave(module: nn.Module, args: tuple, kwargs: dict, output: Any, name: str) -> None:
            depth[0] -= 1
            if depth[0] == 0:
                self.outputs[name] = output[0] if kwargs.get("need_weights") else output

        handles = []
        for name, module in self.model.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, kw, name=name: enter(m, a, kw, name), with_kwargs=True))
                handles.append(module.register_forward_hook(
                    lambda m, a, kw, out, name=name: leave(m, a, kw, out, name), with_kwargs=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def unchanged_by(self, site: str) -> list[str]:
        """The recorded modules whose output an ablation from ``site`` (a block or cross-attention entry)
        cannot change: those called before it, and those of streams its stream does not feed, directly
        or through others. A module called more than once is left to compute."""
        structure = self.model.structure
        stream_of = {layer: s.name for s in structure.streams for layer in s.layers}
        stream_of.update({e.layer: e.stream for e in structure.cross_entries})
        feeds = {s.name: s.feeds for s in structure.streams}
        changed, stream = set(), stream_of[site]
        while stream is not None and stream not in changed:
            changed.add(stream)
            stream = feeds[stream]
        if site not in self.order:  # called inside a module the model calls (an adapted library model): recompute all
            return []
        position = self.order.index(site)
        once = {n for n, calls in Counter(self.order).items() if calls == 1}
        return [n for i, n in enumerate(self.order) if n in once
                and (i < position or (n in stream_of and stream_of[n] not in changed))]

    @contextmanager
    def serving(self, site: str) -> Iterator[int]:
        """Within the block, every module of :meth:`unchanged_by` ``(site)`` returns its recorded output
        without computing (its ``forward`` is replaced on the instance, and restored on exit). Yields how
        many."""
        modules = [(self.model.get_submodule(n), self.outputs[n]) for n in self.unchanged_by(site)]
        for module, output in modules:
            module.forward = lambda *args, output=output, **kwargs: output
        try:
            yield len(modules)
        finally:
            for module, _ in modules:
                del module.forward


class AblationCurves:
    """Counts, batch by batch, the correct predictions of one model with each kind of token ablated
    from every place ``k``: overall, per class, and per cue (``cues``: name -> label to cue index)."""

    def __init__(self, model: TokenFusionModel, num_classes: int, modes: tuple[str, ...] = ("mean",),
                 cues: dict[str, Callable[[Tensor], Tensor]] | None = None, seed: int = 0) -> None:
        self.model = model
        self.modes = modes
        self.cues = cues or {}
        self.sites = {kind: ablation_sites(model.structure, kind) for kind in model.structure.token_kinds}
        self.generator = torch.Generator().manual_seed(seed)
        self.per_class_total = torch.zeros(num_classes, dtype=torch.long)
        self._correct: dict[tuple[str, str, int], Tensor] = {}  # (kind, mode, k) -> (classes,)
        self._cue: dict[tuple[str, str, int, str], int] = {}
        self.num_classes = num_classes

    @torch.no_grad()
    def update(self, x: Tensor, labels: Tensor, logits: Tensor, layouts: dict[str, TokenLayout],
               recording: Recording) -> None:
        """One batch: ``x`` the model's input, ``labels`` ``(B,)``; ``logits`` ``(B, classes)``,
        ``layouts`` and ``recording`` from the traced forward of ``x`` run within ``recording.record()``.
        Costs, per kind, mode and place, the modules that ablation can change."""
        labels = labels.cpu()
        self.per_class_total += torch.bincount(labels, minlength=self.num_classes)
        for kind, sites in self.sites.items():
            for mode in self.modes:
                self._count(kind, mode, len(sites) + 1, logits, labels)
                for k, (site, _) in enumerate(sites, start=1):
                    with recording.serving(site), ablate_from(self.model, layouts, kind, k, mode, self.generator):
                        self._count(kind, mode, k, self.model(x), labels)

    def _count(self, kind: str, mode: str, k: int, logits: Tensor, labels: Tensor) -> None:
        predicted = logits.argmax(-1).cpu()
        right = labels[predicted == labels]
        key = (kind, mode, k)
        self._correct[key] = self._correct.get(key, 0) + torch.bincount(right, minlength=self.num_classes)
        for cue, of in self.cues.items():
            self._cue[(*key, cue)] = self._cue.get((*key, cue), 0) + int((of(predicted) == of(labels)).sum())

    def result(self) -> dict[str, Any]:
        """``{kind: {"sites": [...], "site_types": ["block" or "cross"...], mode: {"top1": [% for k = 1..L+1], "per_class": [[%...] per k],
        cue: [% per k]}}}``."""
        total = int(self.per_class_total.sum())
        per_class = self.per_class_total.clamp_min(1)
        out: dict[str, Any] = {}
        for kind, sites in self.sites.items():
            entry: dict[str, Any] = {"sites": [name for name, _ in sites], "site_types": [t for _, t in sites]}
            for mode in self.modes:
                ks = range(1, len(sites) + 2)
                correct = [self._correct[(kind, mode, k)] for k in ks]
                entry[mode] = {
                    "top1": [100 * float(c.sum()) / max(total, 1) for c in correct],
                    "per_class": [(100 * c / per_class).tolist() for c in correct],
                    **{cue: [100 * self._cue[(kind, mode, k, cue)] / max(total, 1) for k in ks] for cue in self.cues},
                }
            out[kind] = entry
        return out
