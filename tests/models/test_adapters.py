"""Models of other libraries, adapted: unchanged logits, attention weights equal to the explicit path's
while the fused one runs, declared structures, and the real EfficientNet-Lite0 against its package's model."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tokenfusion.data.transforms import preprocess
from tokenfusion.data.images import load_image
from tokenfusion.explain import Explainer
from tokenfusion.models.adapters import AdaptedModel, create_adapted
from tokenfusion.models.adapters.efficientnet_lite import efficientnet_lite0, lite0_weights_path
from tokenfusion.models.convert import imagenet_classes

PHOTOS = Path(__file__).resolve().parents[2] / "assets" / "photos"

#: (library, name, kind of the blocks' image tokens or None, grid, trunk stages)
SMALL = [
    ("timm", "deit_tiny_patch16_224", "patch", (14, 14), 0),
    ("timm", "vit_tiny_r_s16_p8_224", "cnn", (7, 7), 1),  # hybrid: a ResNet stem's tokens feed the blocks
    ("timm", "resnet18", None, None, 5),
    ("timm", "tf_efficientnet_lite0", None, None, 5),
    ("torchvision", "resnet18", None, None, 4),
    ("torchvision", "vit_b_32", "patch", (7, 7), 0),
]


@pytest.fixture(scope="module", params=SMALL, ids=lambda p: f"{p[0]}-{p[1]}")
def adapted(request: pytest.FixtureRequest) -> tuple[AdaptedModel, tuple]:
    torch.manual_seed(0)
    library, name, *_ = request.param
    return create_adapted(library, name).eval(), request.param


def _explicit_weights(model: AdaptedModel, x: Tensor) -> list[Tensor]:
    """Each stream layer's attention weights from the library's own explicit path: timm with
    ``fused_attn`` off (its softmax as ``attn_drop`` receives it), torchvision with ``need_weights``."""
    found: list[Tensor] = []
    inputs: list[tuple[torch.nn.Module, Tensor]] = []
    copied = copy.deepcopy(model)
    handles = []
    for layer in copied.structure.attention_layers():
        attn = copied.get_submodule(copied.attention[layer])
        if copied.config.library == "timm":
            attn.fused_attn = False
            handles.append(attn.attn_drop.register_forward_hook(lambda m, i, o: found.append(o)))
        else:
            handles.append(attn.register_forward_hook(lambda m, i, o: inputs.append((m, i[0]))))
    with torch.no_grad():
        copied.net(x)
        for h in handles:
            h.remove()
        found += [m(q, q, q, need_weights=True, average_attn_weights=False)[1] for m, q in inputs]
    return found


def test_traced_logits_and_attention_are_the_library_s_own(adapted: tuple[AdaptedModel, tuple]) -> None:
    model, (library, name, kind, grid, stages) = adapted
    x = torch.randn(1, 3, model.config.img_size, model.config.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.net(x)
        logits, trace = model(x, trace=True)
    assert torch.allclose(logits, plain, atol=1e-5)
    assert model.structure.token_kinds == ((kind,) if kind else ())
    assert len(trace.cnn_features) == len(model.structure.trunk_stages) == stages
    if kind is None:
        assert not trace.attention and not model.structure.streams
        return
    explicit = _explicit_weights(model, x)
    assert len(explicit) == len(trace.attention) == model.config.depth
    for read, reference in zip(trace.attention.values(), explicit):
        assert torch.allclose(read, reference, atol=1e-5)
    for layout in trace.layouts.values():
        assert layout.grid(kind) == grid


def test_explainer_maps_lie_on_the_declared_grids(adapted: tuple[AdaptedModel, tuple]) -> None:
    model, (library, name, kind, grid, _) = adapted
    x = torch.randn(1, 3, model.config.img_size, model.config.img_size)
    session = Explainer(model, x)
    cam = session.explain("gradcam")
    assert cam.grid.shape == tuple(session.trace.cnn_features[-1].shape[-2:] if kind != "patch" else grid)
    if kind is not None:
        for method in ("attention", "rollout"):
            assert session.explain(method, kind=kind).grid.shape == grid
        assert session.explain("gradcam", kind=kind, layer=model.structure.readout.layers[-1] + (
            ".norm1" if library == "timm" else ".ln_1")).grid.shape == grid


def test_parts_run_head_last(adapted: tuple[AdaptedModel, tuple]) -> None:
    model, _ = adapted
    parts = model.parts_in_forward_order()
    declared = {*model.structure.trunk_stages, *model.structure.attention_layers()}
    assert {d for d in declared if any(True for _ in model.get_submodule(d).parameters())} <= set(parts)
    assert parts[-1] in {"net.head", "net.fc", "net.classifier", "net.heads"}


def test_a_type_without_a_declared_structure_is_refused() -> None:
    with pytest.raises(ValueError, match="no declared structure"):
        create_adapted("timm", "convnext_atto")
    with pytest.raises(ValueError, match="timm has no model 'nope'"):
        create_adapted("timm", "nope")


def test_efficientnet_lite0_is_the_package_s_model_and_sees_a_cat() -> None:
    """The weights renamed onto timm's tf_efficientnet_lite0 give the logits of the package's own model."""
    from efficientnet_lite_pytorch import EfficientNet

    model = efficientnet_lite0()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(lite0_weights_path(), map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-4)
        image = preprocess(load_image((PHOTOS / "chelsea.jpg").read_bytes()), model.config)
        top = imagenet_classes()[int(model(image).argmax())]
    assert top in ("tabby", "tiger cat", "Egyptian cat")
    assert model.weight_sources["model"]["sha256"].startswith("579344248a93")


def _explicit_relevance(model: AdaptedModel, x: Tensor, target: int) -> Tensor:
    """Chefer et al.'s rule over the library's own explicit attention (timm with ``fused_attn`` off,
    torchvision with ``need_weights``), its weights kept with ``retain_grad``: the class token's row."""
    copied, weights = copy.deepcopy(model), []
    for layer in copied.structure.attention_layers():
        attn = copied.get_submodule(copied.attention[layer])
        if copied.config.library == "timm":
            attn.fused_attn = False
            attn.attn_drop.register_forward_hook(lambda m, i, o: weights.append(o) or o.retain_grad())
        else:
            def explicit(query, key, value, *args, m=attn, **kwargs):  # batch_first, self-attention
                q, k, v = (F.linear(query, w, b).unflatten(-1, (m.num_heads, -1)).transpose(1, 2)
                           for w, b in zip(m.in_proj_weight.chunk(3), m.in_proj_bias.chunk(3)))
                a = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
                a.retain_grad()
                weights.append(a)
                return m.out_proj((a @ v).transpose(1, 2).flatten(2)), None
            attn.forward = explicit
    with torch.enable_grad():
        copied.net(x)[0, target].backward()
    relevance = torch.eye(weights[0].shape[-1])
    for w in weights:
        relevance = relevance + (w.grad[0] * w[0]).clamp(min=0).mean(0) @ relevance
    return relevance[0, 1:].detach()


@pytest.mark.parametrize("library, name", [("timm", "deit_tiny_patch16_224"), ("torchvision", "vit_b_32")])
def test_relevance_of_an_adapted_vit_is_the_explicit_path_s(library: str, name: str) -> None:
    """With gradients on, the weights read beside the fused path enter the graph with a zero-valued term:
    the logits stay the plain ones and the gradient reaching the weights is the explicit path's."""
    torch.manual_seed(0)
    model = create_adapted(library, name).eval()
    x = torch.randn(1, 3, 224, 224)
    session = Explainer(model, x)
    found = session.explain("relevance", target=7)
    assert torch.allclose(found.grid.flatten(), _explicit_relevance(model, x, 7), rtol=1e-3, atol=1e-6)
    with torch.enable_grad():
        assert torch.allclose(model(x, trace=True)[0], model.net(x), atol=1e-6)
