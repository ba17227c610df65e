"""Fine-tuning presets: pretrained parts at a lower learning rate than the new fusion parts, and
the files they came from recorded in the checkpoint."""
import hashlib

import pytest
import timm
import torch
import torchvision

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import create
from train.engine import get_args_parser, main, param_groups
from train.presets import PRESETS

from .conftest import run_train
from .test_imagefolder import _folder


def _weights(tmp_path) -> tuple[str, str]:
    """A DeiT-S (timm) and a ResNet-50 (torchvision) state dict with random weights, on disk."""
    vit, trunk = tmp_path / "deit_small.pth", tmp_path / "resnet50.pth"
    torch.save(timm.create_model("deit_small_patch16_224", pretrained=False).state_dict(), vit)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), trunk)
    return str(vit), str(trunk)


def test_finetune_preset_trains_two_steps_with_the_parameter_groups_it_claims(tmp_path):
    vit, trunk = _weights(tmp_path)
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    result = run_train("--arch", "layerwise", "--preset", "imagenet-small-finetune", "--data-path", str(data),
                       "--vit-weights", vit, "--trunk-weights", trunk, "--batch-size", "2", "--max-steps", "2",
                       "--workers", "0", "--threads", "1", "--no-progress", "--output-dir", str(out))
    assert f"patch stream from {vit} (timm ViT state dict)" in result.stdout
    assert "parameter groups: new/decay" in result.stdout

    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved.resume["state"]["global_step"] == 2
    groups = {g["name"]: g for g in saved.resume["optimizer"]["param_groups"]}
    assert set(groups) == {"new/decay", "new/no_decay", "pretrained/decay", "pretrained/no_decay"}
    scale = PRESETS["imagenet-small-finetune"]["pretrained_lr_scale"]
    assert scale < 1
    for decay in ("decay", "no_decay"):
        assert groups[f"pretrained/{decay}"]["lr"] == scale * groups[f"new/{decay}"]["lr"] > 0
    # The groups hold the parts the files gave (head: 2 classes here, 1000 in the file, so fresh).
    model = create("layerwise", "small", num_classes=2, vit_weights=vit, trunk_weights=trunk)
    names = {id(p): n.split(".")[0] for n, p in model.named_parameters()}
    built = {g["name"]: g for g in param_groups(model, 0.05, 1.0, scale)}
    assert {names[id(p)] for g in ("pretrained/decay", "pretrained/no_decay") for p in built[g]["params"]} == {
        "trunk", "patch_tokens", "cls_token", "blocks", "norm"}
    assert {names[id(p)] for g in ("new/decay", "new/no_decay") for p in built[g]["params"]} == {
        "cnn_tokens", "cross_blocks", "head"}
    for name, group in groups.items():
        assert len(group["params"]) == len(built[name]["params"])

    sources = saved.provenance["weights"]
    assert sources["patch stream"]["sha256"] == hashlib.sha256(open(vit, "rb").read()).hexdigest()
    assert sources["trunk"]["path"] == trunk and sources["trunk"]["format"] == "torchvision ResNet-50 state dict"


def test_finetune_preset_without_weights_is_refused(tmp_path):
    args = get_args_parser().parse_args(["--arch", "early", "--preset", "imagenet-base-finetune", "--data-path",
                                         str(tmp_path), "--output-dir", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="fine-tunes pretrained parts: give --vit-weights"):
        main(args)


def test_vit_weights_of_another_size_give_a_plain_error(tmp_path):
    vit = tmp_path / "deit_small.pth"
    torch.save(timm.create_model("deit_small_patch16_224", pretrained=False).state_dict(), vit)
    data = _folder(tmp_path / "data", per_class=1)
    args = get_args_parser().parse_args(["--arch", "vit", "--preset", "imagenet-base-finetune", "--data-path", str(data),
                                         "--vit-weights", str(vit), "--workers", "0", "--no-progress",
                                         "--output-dir", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="does not fit vit/base: width 384 vs 768"):
        main(args)


@pytest.mark.parametrize("arch, patch_only", [("early", {"patch_tokens"}), ("late", {"patch_tokens", "patch_blocks"})])
def test_patch_lr_scale_speeds_up_only_what_patch_tokens_alone_pass_through(arch, patch_only):
    model = create(arch, "tiny")
    names = {id(p): n.split(".")[0] for n, p in model.named_parameters()}
    groups = {g["name"]: g for g in param_groups(model, 0.05, 1e-3, patch_lr_scale=10)}
    assert set(groups) == {"new/decay", "new/no_decay", "new/patch/decay", "new/patch/no_decay"}
    assert {names[id(p)] for g in ("new/patch/decay", "new/patch/no_decay") for p in groups[g]["params"]} == patch_only
    assert groups["new/patch/decay"]["lr"] == pytest.approx(10 * groups["new/decay"]["lr"])
    assert set(g["name"] for g in param_groups(model, 0.05, 1e-3)) == {"new/decay", "new/no_decay"}
