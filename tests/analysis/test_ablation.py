"""Ablation from layer k onward, read from the models' declared streams and cross-attention entries."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenfusion.analysis import AblationCurves, Recording
from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.data import SynthShapes
from tokenfusion.data.transforms import eval_transform
from tokenfusion.interventions import ablate_from, ablation_sites
from tokenfusion.models import create

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def _model_and_batch(arch: str, n: int = 24):
    model = load_checkpoint(CHECKPOINTS / f"{arch}.pt").model
    data = SynthShapes(n, image_size=model.config.img_size, seed=12345, transform=eval_transform(model.config))
    x, y = zip(*(data[i] for i in range(n)))
    return model, torch.stack(x), torch.tensor(y)


def test_sites_follow_each_kind_through_the_declared_streams() -> None:
    late, layerwise = create("late", "tiny"), create("layerwise", "tiny")
    assert ablation_sites(late.structure, "cnn") == [(f"cnn_blocks.{i}", "block") for i in range(4)] + [
        ("fusion_blocks.0", "block")]
    assert ablation_sites(layerwise.structure, "cnn") == [(f"cross_blocks.{i}", "cross") for i in range(4)]
    assert ablation_sites(layerwise.structure, "patch") == [(f"blocks.{i}", "block") for i in range(4)]


@pytest.mark.parametrize("arch", ["late", "layerwise"])
def test_ablation_from_k_past_the_last_layer_equals_the_plain_model(arch: str) -> None:
    model, x, y = _model_and_batch(arch)
    with torch.no_grad():
        plain, trace = model(x, trace=True)
        untraced = model(x)
        for kind in model.structure.token_kinds:
            last = len(ablation_sites(model.structure, kind)) + 1
            with ablate_from(model, trace.layouts, kind, last) as hooked:
                assert hooked == 0
                assert torch.equal(model(x), untraced)
            with ablate_from(model, trace.layouts, kind, last - 1):
                assert not torch.allclose(model(x), plain)
        recording = Recording(model)
        with recording.record():
            plain, trace = model(x, trace=True)
        curves = AblationCurves(model, 12)
        curves.update(x, y, plain, trace.layouts, recording)
    top1 = 100 * float((untraced.argmax(-1) == y).float().mean())  # the plain model's, not the recorded logits
    for entry in curves.result().values():
        assert entry["mean"]["top1"][-1] == pytest.approx(top1)
        assert len(entry["mean"]["top1"]) == len(entry["sites"]) + 1


@pytest.mark.parametrize("kind", ["cnn", "patch"])
def test_mean_ablation_replaces_exactly_that_kinds_positions(kind: str) -> None:
    model, x, _ = _model_and_batch("early", 8)
    seen = []
    with torch.no_grad():
        _, trace = model(x, trace=True)
        plain_input = trace.streams["blocks"].tokens[-2]  # what the last block reads
        layout = trace.streams["blocks"].layout
        with ablate_from(model, trace.layouts, kind, len(model.blocks)):
            handle = model.blocks[-1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
            model(x)
            handle.remove()
    mask = layout.mask(kind)
    assert torch.allclose(seen[0][:, ~mask], plain_input[:, ~mask], atol=1e-4)  # traced vs fused attention
    expected = plain_input[:, mask].mean(1, keepdim=True).expand(-1, int(mask.sum()), -1)
    assert torch.allclose(seen[0][:, mask], expected, atol=1e-4)
    assert torch.allclose(seen[0][:, mask], seen[0][:, mask][:, :1].expand_as(seen[0][:, mask]))


@pytest.mark.parametrize("arch", ["late", "layerwise"])
def test_serving_recorded_outputs_changes_no_ablated_logit(arch: str) -> None:
    model, x, _ = _model_and_batch(arch, 8)
    plain, traced = Recording(model), Recording(model)
    with torch.no_grad():
        with traced.record():
            _, trace = model(x, trace=True)
        with plain.record():
            model(x)
        assert plain.order == traced.order and plain.order[0] == "trunk"  # the whole trunk, served as one
        for kind in model.structure.token_kinds:
            for k, (site, _) in enumerate(ablation_sites(model.structure, kind), start=1):
                with ablate_from(model, trace.layouts, kind, k):
                    computed = model(x)
                with plain.serving(site) as served, ablate_from(model, trace.layouts, kind, k):
                    assert torch.equal(model(x), computed)
                assert served > 0
                with traced.serving(site), ablate_from(model, trace.layouts, kind, k):
                    assert torch.allclose(model(x), computed, atol=1e-4)  # traced vs fused attention
    assert "forward" not in vars(model.get_submodule("trunk"))  # restored


def test_an_ablated_stream_leaves_the_stream_it_does_not_feed_served() -> None:
    model, x, _ = _model_and_batch("late", 4)
    recording = Recording(model)
    with torch.no_grad(), recording.record():
        model(x)
    unchanged = recording.unchanged_by("cnn_blocks.1")
    assert {"trunk", "cnn_tokens", "patch_tokens", "cnn_blocks.0", *(f"patch_blocks.{i}" for i in range(4))} <= set(unchanged)
    assert not {"cnn_blocks.1", "cnn_blocks.3", "fusion_blocks.0", "norm", "head"} & set(unchanged)
    assert "cnn_blocks.3" in recording.unchanged_by("patch_blocks.0")


@pytest.mark.parametrize("arch", ["early", "layerwise"])
def test_curves_equal_each_ablation_computed_in_full_and_the_trunk_runs_once(arch: str) -> None:
    model, x, y = _model_and_batch(arch, 16)
    calls = []
    handle = model.get_submodule(model.structure.trunk_stages[0]).register_forward_hook(lambda *a: calls.append(1))
    recording = Recording(model)
    with torch.no_grad():
        with recording.record():
            logits, trace = model(x, trace=True)
        curves = AblationCurves(model, 12, ("mean", "zero"))
        curves.update(x, y, logits, trace.layouts, recording)
        assert len(calls) == 1
        handle.remove()
        for kind, entry in curves.result().items():
            for mode in ("mean", "zero"):
                full = []
                for k in range(1, len(entry["sites"]) + 1):
                    with ablate_from(model, trace.layouts, kind, k, mode):
                        full.append(100 * float((model(x).argmax(-1) == y).float().mean()))
                assert entry[mode]["top1"][:-1] == pytest.approx(full)


def test_closing_every_cross_attention_equals_zero_gates() -> None:
    model, x, _ = _model_and_batch("layerwise", 8)
    with torch.no_grad():
        _, trace = model(x, trace=True)
        with ablate_from(model, trace.layouts, "cnn", 1, "noise"):  # closing ignores the mode
            closed = model(x)
        for entry in model.structure.cross_entries:
            model.get_submodule(entry.layer).gate.zero_()
        assert torch.allclose(closed, model(x), atol=1e-5)


def test_modes_differ_and_bad_requests_are_named() -> None:
    model, x, _ = _model_and_batch("early", 8)
    with torch.no_grad():
        _, trace = model(x, trace=True)
        outputs = []
        for mode in ("mean", "zero", "noise"):
            with ablate_from(model, trace.layouts, "cnn", 2, mode):
                outputs.append(model(x))
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[0], outputs[2])
    with pytest.raises(ValueError, match="mode"):
        with ablate_from(model, trace.layouts, "cnn", 1, "blur"):
            pass
    with pytest.raises(ValueError, match=r"1\.\.5"):
        with ablate_from(model, trace.layouts, "cnn", 6):
            pass
