"""Patch-stream weights from torchvision and timm ViT state dicts: the source's logits, and plain
errors for what does not fit. timm and torchvision build the sources with random weights."""
import pytest
import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer import checkpoint_filter_fn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from tokenfusion.models import create
from tokenfusion.models.config import SIZES

# timm's shape of our `tiny` size: 64 px, patch 8, width 64, depth 4, 4 heads, 12 classes.
TINY = {key: SIZES["tiny"][key] for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "num_classes")}


def _random(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with every parameter moved off its init (torchvision starts the
    class token and the head at 0, which would hide a wrong class token or head)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def _save(model: torch.nn.Module, path) -> str:
    torch.save(model.state_dict(), path)
    return str(path)


SOURCES = {
    "torchvision vit_b_16": (lambda: torchvision.models.vit_b_16(weights=None), "base"),
    "torchvision ViT-S/16": (lambda: TorchvisionViT(224, 16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536), "small"),
    "timm deit_small_patch16_224": (lambda: timm.create_model("deit_small_patch16_224", pretrained=False), "small"),
    "timm vit_base_patch16_224": (lambda: timm.create_model("vit_base_patch16_224", pretrained=False), "base"),
}


@pytest.mark.parametrize("name", SOURCES)
def test_vit_from_source_weights_gives_the_source_logits(tmp_path, name):
    build, size = SOURCES[name]
    source = _random(build())
    path = _save(source, tmp_path / "vit.pth")
    model = create("vit", size, vit_weights=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = source(x)
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=0)
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero outputs
    assert model.config.norm_eps == 1e-6
    record = model.weight_sources["patch stream"]
    assert record["format"] == f"{name.split()[0]} ViT state dict"
    assert record["modules"] == ["blocks", "cls_token", "head", "norm", "patch_tokens"]


def test_layerwise_from_deit_starts_with_the_source_logits(tmp_path):
    build, size = SOURCES["timm deit_small_patch16_224"]
    source = _random(build())
    model = create("layerwise", size, vit_weights=_save(source, tmp_path / "deit.pth")).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), atol=1e-4, rtol=0)
    assert all(cross.gate.item() == 0 for cross in model.cross_blocks)


def test_early_and_late_start_from_the_same_blocks(tmp_path):
    source = _random(TimmViT(**TINY))
    path = _save(source, tmp_path / "vit.pth")
    vit, early, late = (create(arch, "tiny", vit_weights=path) for arch in ("vit", "early", "late"))
    for key, value in vit.blocks.state_dict().items():
        assert torch.equal(early.blocks.state_dict()[key], value)
        assert torch.equal(late.patch_blocks.state_dict()[key], value)
    assert torch.equal(late.patch_cls_token, vit.cls_token)
    assert torch.equal(early.patch_tokens.pos_embed.weight, vit.patch_tokens.pos_embed.weight)
    assert torch.equal(early.head.weight, source.head.weight)
    assert not torch.equal(late.head.weight, source.head.weight)  # late's head follows its fusion blocks
    assert late.weight_sources["patch stream"]["modules"] == ["patch_blocks", "patch_cls_token", "patch_tokens"]
    # the CNN side and the fusion parts stay as a fresh model has them
    torch.manual_seed(0)
    fresh = create("late", "tiny", norm_eps=1e-6)
    torch.manual_seed(0)
    loaded = create("late", "tiny", vit_weights=path)
    for key in ("cnn_blocks.0.attn.q.weight", "fusion_blocks.0.mlp.0.weight", "cnn_cls_token", "cls_token"):
        assert torch.equal(fresh.state_dict()[key], loaded.state_dict()[key])


def test_head_is_kept_only_when_the_classes_match(tmp_path):
    source = _random(TimmViT(**TINY))
    path = _save(source, tmp_path / "vit.pth")
    model = create("vit", "tiny", num_classes=5, vit_weights=path).eval()
    side = model.config.img_size
    assert side == TINY["img_size"]  # same grid as the file: its position embedding is taken as it is
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        features = source.forward_head(source.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.forward_features(x), features, atol=1e-5, rtol=0)
    record = model.weight_sources["patch stream"]
    assert "head" not in record["modules"]
    assert "head: fresh (12 classes in the file, 5 in the model)" in record["notes"]


@pytest.mark.parametrize("img_size", [32, 96])  # a smaller and a larger grid than the file's
def test_position_embedding_is_resampled_as_timm_does(tmp_path, img_size):
    source = _random(TimmViT(**TINY))
    path = _save(source, tmp_path / "vit.pth")
    reference = TimmViT(**{**TINY, "img_size": img_size}).eval()
    reference.load_state_dict(checkpoint_filter_fn(source.state_dict(), reference))
    model = create("vit", "tiny", img_size=img_size, vit_weights=path).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=0)
    source_grid, grid = TINY["img_size"] // 8, img_size // 8
    note = f"position embedding resampled from {source_grid}x{source_grid} to {grid}x{grid} (bicubic)"
    assert note in model.weight_sources["patch stream"]["notes"]


@pytest.mark.parametrize("source, arch, size, message", [
    (dict(TINY, embed_dim=96, num_heads=4), "vit", "tiny", "width 96 vs 64"),
    (dict(TINY, depth=2), "layerwise", "tiny", "depth 2 vs 4"),
    (dict(TINY, patch_size=16), "early", "tiny", "patch size 16 vs 8"),
    (dict(TINY, mlp_ratio=2.0), "late", "tiny", "MLP width 128 vs 256"),
    (dict(TINY, init_values=1e-5), "vit", "tiny", "layer scale (DeiT III)"),
    (dict(TINY, qkv_bias=False), "vit", "tiny", "lacks parts of the patch stream: ['blocks.0.attn.kv.bias'"),
    (TINY, "cnn", "tiny", "'cnn' has no patch stream"),
])
def test_weights_that_do_not_fit_give_a_plain_error(tmp_path, source, arch, size, message):
    path = _save(TimmViT(**source), tmp_path / "vit.pth")
    with pytest.raises(ValueError) as error:
        create(arch, size, vit_weights=path)
    assert message in str(error.value)


def test_a_file_that_is_not_a_vit_gives_a_plain_error(tmp_path):
    path = _save(torchvision.models.resnet18(weights=None), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="not a torchvision VisionTransformer or timm ViT/DeiT state dict"):
        create("vit", "small", vit_weights=path)
    with pytest.raises(ValueError, match="No weights file"):
        create("vit", "small", vit_weights=tmp_path / "missing.pth")


def test_a_vit_trained_here_starts_a_patch_stream_with_its_own_logits(tmp_path):
    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.data import CLASS_NAMES

    torch.manual_seed(0)
    trained = _random(create("vit", "tiny"))
    path = tmp_path / "vit.pt"
    save_checkpoint(path, trained, class_names=CLASS_NAMES)
    x = torch.randn(2, 3, 64, 64)
    again = create("vit", "tiny", vit_weights=path).eval()
    torch.testing.assert_close(again(x), trained(x))
    early = create("early", "tiny", vit_weights=path)
    assert early.weight_sources["patch stream"]["format"] == "Token Fusion Lab ViT state dict"
    assert early.config.norm_eps == trained.config.norm_eps
    torch.testing.assert_close(early.blocks[3].mlp[0].weight, trained.blocks[3].mlp[0].weight)

    save_checkpoint(tmp_path / "early.pt", create("early", "tiny"), class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="is a Token Fusion Lab 'early' checkpoint; a patch stream starts from a 'vit'"):
        create("late", "tiny", vit_weights=tmp_path / "early.pt")


def test_a_cnn_trained_here_gives_its_trunk_to_a_fusion_model(tmp_path):
    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.data import CLASS_NAMES

    torch.manual_seed(0)
    trained = _random(create("cnn", "tiny")).eval()
    save_checkpoint(tmp_path / "cnn.pt", trained, class_names=CLASS_NAMES)
    late = create("late", "tiny", trunk_weights=tmp_path / "cnn.pt").eval()
    assert late.weight_sources["trunk"]["format"] == "Token Fusion Lab cnn checkpoint"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(late.trunk(x)[-1], trained.trunk(x)[-1])

    save_checkpoint(tmp_path / "vit.pt", create("vit", "tiny"), class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="is a Token Fusion Lab 'vit' checkpoint with trunk"):
        create("late", "tiny", trunk_weights=tmp_path / "vit.pt")
