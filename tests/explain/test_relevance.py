"""Chefer et al.'s gradient-weighted relevance: the rule as the paper's code writes it, across streams."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tokenfusion.explain import Explainer
from tokenfusion.explain.relevance import Relevance
from tokenfusion.models import create


def _reference(model: torch.nn.Module, x: torch.Tensor, target: int, stream: str) -> torch.Tensor:
    """The class token's relevance row over ``stream``'s sequence, as Chefer et al.'s code computes it:
    weights kept with ``retain_grad``, one ``backward``, ``R += mean_h((grad * A).clamp(0)) @ R`` per block."""
    with torch.enable_grad():
        logits, trace = model(x, trace=True)
        weights = trace.streams[stream].attention
        for w in weights:
            w.retain_grad()
        logits[0, target].backward()
    relevance = torch.eye(weights[0].shape[-1])
    for w in weights:
        relevance = relevance + (w.grad[0] * w[0]).clamp(min=0).mean(0) @ relevance
    model.zero_grad(set_to_none=True)
    return relevance.detach()


@pytest.mark.parametrize("arch", ["vit", "early"])
def test_relevance_is_the_paper_s_rule(arch: str) -> None:
    torch.manual_seed(0)
    model = create(arch, "tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    session = Explainer(model, x)
    for kind in model.structure.token_kinds:
        found = session.explain("relevance", kind=kind, target=3)
        layout = session.trace.layouts["blocks.3"]
        expected = layout.to_grid(_reference(model, x, 3, "blocks")[0], kind)
        assert torch.allclose(found.grid, expected, atol=1e-6)


def test_late_relevance_is_carried_back_through_the_stream_that_fed_the_kind() -> None:
    torch.manual_seed(0)
    model = create("late", "tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    session = Explainer(model, x)
    fusion, cnn = (_reference(model, x, 5, s) for s in ("fusion_blocks", "cnn_blocks"))
    inner = session.trace.streams["cnn_blocks"].layout
    start = 1  # [cls; cnn_cls; CNN; ...]: the CNN stream's sequence sits after the head's class token
    expected = inner.to_grid(fusion[0, start:start + inner.num_tokens] @ cnn, "cnn")
    found = session.explain("relevance", kind="cnn", target=5)
    assert torch.allclose(found.grid, expected, atol=1e-6) and found.layer == "fusion_blocks.0"


def test_relevance_depends_on_the_class_and_is_left_out_where_no_gradient_reaches_attention() -> None:
    torch.manual_seed(0)
    model = create("vit", "tiny").eval()
    session = Explainer(model, torch.randn(1, 3, 64, 64))
    one, other = (session.explain("relevance", target=t).grid for t in (0, 1))
    assert not torch.allclose(one, other)
    assert "relevance" not in Explainer(create("cnn", "tiny").eval(), torch.randn(1, 3, 64, 64)).methods
    assert Relevance().targets(replace(model.structure, attention_gradients=False)) is None


def _handle_residual(relevance: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s ``handle_residual``: the identity out, rows normalised, the identity back (a row
    with nothing left, as at the first layer, stays zero where their code would divide by zero)."""
    rest = relevance - torch.eye(relevance.shape[-1])
    sums = rest.sum(-1, keepdim=True)
    return torch.where(sums > 0, rest / sums.clamp(min=1e-12), 0.0) + torch.eye(relevance.shape[-1])


def test_layerwise_relevance_on_cnn_keys_follows_the_bi_modal_rules() -> None:
    torch.manual_seed(0)
    model = create("layerwise", "tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    assert Explainer(model, x).explain("relevance", "cnn_tokens.1", kind="cnn").grid.abs().max() == 0  # gates 0
    with torch.no_grad():
        for block in model.cross_blocks:
            block.gate.fill_(0.5)
    session = Explainer(model, x)
    assert session.methods["relevance"].targets == ((None, "patch"), ("cnn_tokens.0", "cnn"), ("cnn_tokens.1", "cnn"))
    with torch.enable_grad():
        logits, trace = model(x, trace=True)
        selfs = trace.streams["blocks"].attention
        crosses = [trace.cross_attention[e.layer].weights for e in model.structure.cross_entries]
        for w in (*selfs, *crosses):
            w.retain_grad()
        logits[0, 2].backward()
    model.zero_grad(set_to_none=True)

    def cam(w: torch.Tensor) -> torch.Tensor:
        return (w.grad[0] * w[0]).clamp(min=0).mean(0).detach()

    for tokens in ("cnn_tokens.0", "cnn_tokens.1"):
        r_ss, r_sq = torch.eye(selfs[0].shape[-1]), None
        for entry, self_attention, cross in zip(model.structure.cross_entries, selfs, crosses):
            if entry.tokens == tokens:  # rule 10 with R_qq = I: R_sq += R̄_ssᵀ Ā_sq
                added = _handle_residual(r_ss).t() @ cam(cross)
                r_sq, key_layout = (added if r_sq is None else r_sq + added), trace.cross_attention[entry.layer].key_layout
            if r_sq is not None:  # rule 7
                r_sq = r_sq + cam(self_attention) @ r_sq
            r_ss = r_ss + cam(self_attention) @ r_ss  # rule 6
        found = session.explain("relevance", tokens, kind="cnn", target=2)
        assert found.grid.shape == key_layout.grid("cnn")
        assert torch.allclose(found.grid, key_layout.to_grid(r_sq[0], "cnn"), atol=1e-7)
