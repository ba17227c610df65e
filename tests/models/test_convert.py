"""python -m tokenfusion.models.convert: a library model and its weights file as one of our checkpoints."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tokenfusion.checkpoint import CheckpointError, load_checkpoint
from tokenfusion.models import AdaptedConfig
from tokenfusion.models.adapters import create_adapted
from tokenfusion.models.convert import main

NAME = "resnet10t"  # a small timm ResNet: the format, not the architecture, is under test here


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / f"{NAME}.pth"
    torch.save({"model": create_adapted("timm", NAME, num_classes=3).net.state_dict()}, path)  # a release's wrapping
    return path


def test_a_converted_checkpoint_loads_with_its_names_weights_and_provenance(weights: Path, tmp_path: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n\nbird\n")
    out = main(["--timm", NAME, "--weights", str(weights), "--classes", str(classes), "--out", str(tmp_path / "m.pt")])
    checkpoint = load_checkpoint(out)
    assert isinstance(checkpoint.config, AdaptedConfig)
    assert (checkpoint.config.library, checkpoint.config.name, checkpoint.class_names) == ("timm", NAME, ["cat", "dog", "bird"])
    source = checkpoint.provenance["weights"]["model"]
    assert source["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "--timm resnet10t" in checkpoint.provenance["command"] and checkpoint.provenance["timm"]
    x = torch.randn(1, 3, 224, 224)
    reference = create_adapted("timm", NAME, num_classes=3).eval()
    reference.net.load_state_dict(torch.load(weights, weights_only=True)["model"])
    with torch.no_grad():
        assert torch.allclose(checkpoint.model(x), reference(x), atol=1e-5)


def test_weights_of_another_model_say_which_keys_do_not_fit(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"does not fit timm 'resnet18' with 1000 classes: missing \["):
        main(["--timm", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "m.pt")])
    with pytest.raises(SystemExit, match="torchvision has no model 'resnet10t'"):
        main(["--torchvision", NAME, "--weights", str(weights), "--out", str(tmp_path / "m.pt")])


def test_a_damaged_adapted_config_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    model = create_adapted("timm", NAME, num_classes=3)
    payload = {"format": "tokenfusion-checkpoint", "format_version": 1, "state_dict": model.state_dict(),
               "config": {**model.config.to_dict(), "library": "keras"}, "class_names": ["a", "b", "c"]}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"invalid config of an adapted model: library 'keras' is not one of"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_torchvision_model_converts_too(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(create_adapted("torchvision", "resnet18", num_classes=2).net.state_dict(), weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("yes\nno\n")
    out = main(["--torchvision", "resnet18", "--weights", str(weights), "--classes", str(classes), "--out",
                str(tmp_path / "r18.pt")])
    checkpoint = load_checkpoint(out)
    assert (checkpoint.config.library, checkpoint.config.crop_pct) == ("torchvision", 224 / 256)
    assert checkpoint.model.structure.trunk_stages == tuple(f"net.layer{i}" for i in range(1, 5))
