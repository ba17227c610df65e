"""Save and load models in one checkpoint format, read with ``torch.load(weights_only=True)`` only.

A checkpoint is a dict of tensors and builtins::

    format, format_version   "tokenfusion-checkpoint", 1
    config                   ModelConfig.to_dict(): rebuilds the model with no outside knowledge
    state_dict               the weights (EMA weights when trained with EMA)
    class_names              list[str]
    training                 dataset, epochs, top1/top5 (final and best), per-epoch history, ...
    provenance               command, seed, library versions, date
    resume                   optional: optimiser, scheduler, EMA, step, RNG states (for --resume)
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .models import ARCHITECTURES, ModelConfig, TokenFusionModel, build

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "tokenfusion-checkpoint"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
_CODE_SIGNS = ("Unsupported global", "GLOBAL ", "unrecognized function", "Can only create new object", "Can only build")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says what is wrong and what to do."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and everything saved beside it."""

    model: TokenFusionModel
    class_names: list[str]
    training: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(
    path: str | Path,
    model: TokenFusionModel,
    *,
    class_names: list[str],
    training: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file in the same folder, then a rename),
    so a reader never sees a half-written file. ``state_dict`` overrides the model's own weights
    (pass the EMA weights here)."""
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {model.config.num_classes} classes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = state_dict if state_dict is not None else model.state_dict()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {_strip(k): v.detach().cpu() for k, v in weights.items()},
        "class_names": list(class_names),
        "training": _builtins(training or {}),
        "provenance": _builtins(provenance or {}),
    }
    if resume is not None:
        payload["resume"] = resume
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    arch: str | None = None,
    num_classes: int | None = None,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` and rebuild its model (in eval mode).

    ``arch`` and ``num_classes``, when given, must match the checkpoint. Raises
    :class:`CheckpointError` with a plain message for every file that cannot be used; a pickle
    carrying code is refused before any of it runs.
    """
    path = Path(path)
    payload = _read(path, map_location)
    config = _config_of(payload, path)
    if arch is not None and config.arch != arch:
        raise CheckpointError(f"{path.name} holds a {config.arch!r} model, not {arch!r}. Pick a {arch!r} checkpoint.")
    if num_classes is not None and config.num_classes != num_classes:
        raise CheckpointError(
            f"{path.name} has {config.num_classes} classes, expected {num_classes}. "
            "Use a checkpoint trained on the same classes."
        )
    model = build(config)
    state = {_strip(k): v for k, v in payload["state_dict"].items()}
    _load_state(model, state, path)
    names = list(payload.get("class_names") or _default_class_names(config.num_classes))
    if len(names) != config.num_classes:
        raise CheckpointError(f"{path.name} lists {len(names)} class names for {config.num_classes} classes.")
    return Checkpoint(
        model=model.eval(),
        class_names=names,
        training=payload.get("training", {}),
        provenance=payload.get("provenance", {}),
        resume=payload.get("resume"),
        path=path,
    )


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} is empty (0 bytes). Save or copy the checkpoint again.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch words every weights_only failure "Weights only load failed", a PNG's bytes included;
        # only these reasons mean the pickle asked to import or call something
        if any(sign in str(e) for sign in _CODE_SIGNS):
            raise CheckpointError(
                f"{path.name} was refused: it is a pickle that carries Python objects or code, which "
                "is never run here. Save checkpoints with tokenfusion.checkpoint.save_checkpoint."
            ) from None
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (unreadable pickle data).") from None
    except Exception as e:  # torch raises many types for files it cannot parse
        if _starts_as_zip(path) and not zipfile.is_zipfile(path):  # no central directory at the end
            raise CheckpointError(
                f"{path.name} is truncated or corrupt: the file ends before the checkpoint does. "
                "Copy or save it again."
            ) from None
        if _starts_as_zip(path):  # a whole archive that still fails, e.g. tensors for a missing GPU
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CheckpointError(
                f"{path.name} could not be loaded with map_location={map_location!r}: {reason}"
            ) from None
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint ({type(e).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path.name} is a PyTorch file but not a Token Fusion Lab checkpoint (found {found}). "
            "Train or convert it with this project's tools."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has format version {payload['format_version']}; this version reads up to "
            f"{FORMAT_VERSION}. Update tokenfusion."
        )
    return payload


def _config_of(payload: dict[str, Any], path: Path) -> ModelConfig:
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path.name} has an unreadable model config: {e}") from None
    if config.arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{path.name} holds an unknown architecture {config.arch!r}. Expected one of "
            f"{list(ARCHITECTURES)}; it may need a newer tokenfusion."
        )
    return config


def _load_state(model: TokenFusionModel, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"wrong shapes {wrong[:5]}" if wrong else ""]
        raise CheckpointError(
            f"{path.name}: weights do not fit a {model.config.arch}/{model.config.size} model: "
            + "; ".join(p for p in parts if p)
        )
    model.load_state_dict(state)


def _builtins(value: Any) -> Any:
    """``value`` as plain builtins that ``weights_only`` loading accepts (``str`` subclasses such as
    ``torch.__version__`` become ``str``; NumPy scalars become numbers)."""
    if isinstance(value, dict):
        return {str(k): _builtins(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_builtins(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in a checkpoint; use builtins (dict, list, str, numbers)")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _starts_as_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _default_class_names(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from torchvision.models import ResNet50_Weights  # metadata only; nothing is downloaded

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [f"class {i}" for i in range(num_classes)]
