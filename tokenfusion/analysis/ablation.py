"""Ablation curves: top-1 with one kind of token removed from layer ``k`` onward, for every ``k``.

The places where a kind of token is read are found in ``model.structure``, in forward order: every
self-attention block whose stream holds that kind (``late``'s CNN tokens: ``cnn_blocks.0-3``, then
``fusion_blocks.0``) and every cross-attention entry whose keys are made by that kind's token
modules (``layerwise``'s CNN tokens). "From layer ``k`` onward" (1-based) means at places
``k..L``: a forward pre-hook replaces the kind's positions (from the trace's layout) of the block's
input, by their mean over those tokens (per image and channel), by zero, or by Gaussian noise of
their per-image mean and standard deviation per channel; a cross-attention entry is closed (its
output is its input: gate contribution zero), whatever the mode. ``k = L + 1`` ablates nothing.

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
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..models import ModelStructure, TokenFusionModel, TokenLayout

__all__ = ["MODES", "AblationCurves", "Recording", "ablate_from", "ablate_region", "ablation_sites"]

MODES = ("mean", "zero", "noise")


def ablation_sites(structure: ModelStructure, kind: str) -> list[tuple[str, str]]:
    """``[(module name, "block" or "cross"), ...]``: where ``kind`` tokens are read, in forward order."""
    modules = set(structure.token_modules.get(kind, ()))
    keys_of = {e.layer: e.tokens for e in structure.cross_entries}  # cross entry -> the module making its keys
    blocks = set(structure.attention_layers(kind))
    return [(name, "cross" if name in keys_of else "block") for name in _forward_order(structure)
            if keys_of.get(name) in modules or name in blocks]


def _forward_order(structure: ModelStructure) -> list[str]:
    """Every self-attention block and cross-attention entry, in the order the forward calls them (an
    entry just before the block it precedes)."""
    return [name for stream in structure.streams for layer in stream.layers
            for name in (*(e.layer for e in structure.cross_entries if e.before == layer), layer)]


def _replace(tokens: Tensor, mode: str, generator: torch.Generator | None) -> Tensor:
    """``(B, n, D)`` tokens replaced by their mean, zero or noise (per image and channel)."""
    if mode == "zero":
        return torch.zeros_like(tokens)
    mean = tokens.mean(1, keepdim=True)
    if mode == "mean":
        return mean.expand_as(tokens)
    noise = torch.randn(tokens.shape, generator=generator, device="cpu").to(tokens)
    return mean + noise * tokens.std(1, keepdim=True, correction=0)


@contextmanager
def ablate_from(
    model: TokenFusionModel, layouts: dict[str, TokenLayout], kind: str, k: int, mode: str = "mean",
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Within the block, ``kind`` tokens are ablated at places ``k..L`` of :func:`ablation_sites`
    (1-based; ``k = L + 1``: nothing). ``layouts``: every self-attention layer's layout
    (``trace.layouts`` of a traced forward on inputs of the same size). Yields the number of places
    ablated; the hooks are removed on exit, also on error."""
    if mode not in MODES:
        raise ValueError(f"Unknown ablation mode {mode!r}. Expected one of {list(MODES)}")
    sites = ablation_sites(model.structure, kind)
    if not 1 <= k <= len(sites) + 1:
        raise ValueError(f"k must be in 1..{len(sites) + 1} for {kind!r} tokens, got {k}")
    with ExitStack() as stack:
        for name, site in sites[k - 1:]:
            module = model.get_submodule(name)
            if site == "cross":
                stack.enter_context(_skipped(module))
            else:
                mask = layouts[name].mask(kind)
                hook = _region_hook([(mask, mask)], mode, generator)  # the region: every token of the kind
                stack.callback(module.register_forward_pre_hook(hook).remove)
        yield len(sites) - k + 1


@contextmanager
def _skipped(module: nn.Module) -> Iterator[None]:
    """Within the block, the cross-attention entry ``module`` is closed without being computed: it
    returns the stream it was given (gate contribution zero); traced, also its attention weights."""
    compute = module.forward

    def closed(x: Tensor, context: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return (x, compute(x, context, need_weights=True)[1]) if need_weights else x

    module.forward = closed
    try:
        yield
    finally:
        del module.forward


@contextmanager
def ablate_region(
    model: TokenFusionModel, layouts: dict[str, TokenLayout], cells: dict[str, Callable[[tuple[int, int]], Tensor]],
    k: int, mode: str = "mean", generator: torch.Generator | None = None,
) -> Iterator[list[str]]:
    """Within the block, the tokens of each kind of ``cells`` that lie in a region are ablated at that
    kind's places ``k..`` of :func:`ablation_sites` (1-based; past the last: nothing there).
    ``cells[kind]((h, w))`` is the ``(h, w)`` boolean mask of the region's cells on a grid of that kind.
    At a block they are replaced as :func:`ablate_from` replaces the whole kind (by the mean of every
    token of their kind, by zero, or by noise): a region holding every token of a kind ablates it as
    :func:`ablate_from` does. A cross-attention entry no longer sees the region's keys, whatever the
    mode, and is closed when none is left. ``layouts``: every self-attention layer's layout and every
    cross-attention entry's key layout, by module name. Yields the places, in forward order."""
    if mode not in MODES:
        raise ValueError(f"Unknown ablation mode {mode!r}. Expected one of {list(MODES)}")
    sites = {kind: ablation_sites(model.structure, kind) for kind in cells}
    depth = max((len(s) for s in sites.values()), default=0)
    if not 1 <= k <= depth + 1:
        raise ValueError(f"k must be in 1..{depth + 1}, got {k}")
    blocks: dict[str, list[tuple[Tensor, Tensor]]] = {}
    keys: dict[str, Tensor] = {}
    for kind, found in sites.items():
        for name, site in found[k - 1:]:
            layout = layouts[name]
            span = layout.grid_span(kind)  # at a cross entry: its keys, which are tokens of this kind
            region = torch.zeros(layout.num_tokens, dtype=torch.bool)
            region[span.start:span.stop] = cells[kind](span.grid).flatten()  # type: ignore[arg-type]
            if site == "cross":
                keys[name] = ~region
            else:
                blocks.setdefault(name, []).append((layout.mask(kind), region))
    order = [name for name in _forward_order(model.structure) if name in blocks or name in keys]
    with ExitStack() as stack:
        for name, groups in blocks.items():
            hook = _region_hook(groups, mode, generator)
            stack.callback(model.get_submodule(name).register_forward_pre_hook(hook).remove)
        for name, keep in keys.items():
            module = model.get_submodule(name)
            if keep.any():
                stack.callback(module.register_forward_pre_hook(_kept_keys(keep)).remove)
            else:
                stack.enter_context(_skipped(module))
        yield order


def _region_hook(groups: list[tuple[Tensor, Tensor]], mode: str,
                 generator: torch.Generator | None) -> Callable[[nn.Module, tuple], tuple]:
    """``groups``: ``(positions of a kind (N,), positions of its tokens in the region (N,))``."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0].clone()
        for kind, region in groups:
            kind, region = kind.to(x.device), region.to(x.device)
            x[:, region] = _replace(x[:, kind], mode, generator)[:, region[kind]]
        return (x, *args[1:])
    return hook


def _kept_keys(keep: Tensor) -> Callable[[nn.Module, tuple], tuple]:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0], args[1][:, keep.to(args[1].device)], *args[2:])
    return hook


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
