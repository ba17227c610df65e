"""Save and load models in one checkpoint format, read with ``torch.load(weights_only=True)`` only.

A checkpoint is a dict of tensors and builtins::

    format, format_version   "tokenfusion-checkpoint", 1
    config                   ModelConfig.to_dict(): rebuilds the model with no outside knowledge
    state_dict               the weights (EMA weights when trained with EMA)
    class_names              list[str]
    training                 dataset, epochs, top1/top5 (final and best), per-epoch history, ...
    provenance               command, seed, library versions, date; ``weights``: per part started
                             from a file (``model.weight_sources``), its path, SHA-256, format, modules
    resume                   optional: optimiser, scheduler, EMA, step, RNG states (for --resume)
"""
from __future__ import annotations

import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .memory import estimate_memory, estimated, on_meta
from .models import ModelConfig, TokenFusionModel, build
from .models.adapters import AdaptedConfig
from .models.config import shown
from .models.pretrained import strip_prefixes
from .pickle_inspection import asks_to_run_code, starts_as_zip
from .training_record import TrainingRecord

__all__ = [
    "DEFAULT_MAX_MODEL_GB", "FORMAT", "FORMAT_VERSION", "MAX_MODEL_GB_ENV", "Checkpoint", "CheckpointError",
    "estimate_memory", "load_checkpoint", "save_checkpoint",
]

FORMAT = "tokenfusion-checkpoint"
FORMAT_VERSION = 1
#: Largest model :func:`load_checkpoint` builds unless told otherwise, in GB (weights plus the
#: attention maps of one traced forward); raised with ``max_model_gb=`` or :data:`MAX_MODEL_GB_ENV`.
DEFAULT_MAX_MODEL_GB = 4.0
MAX_MODEL_GB_ENV = "TOKENFUSION_MAX_MODEL_GB"
_RESAVE = "Save it again with tokenfusion.checkpoint.save_checkpoint."


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

    @property
    def record(self) -> TrainingRecord:
        """The ``training`` record, typed (:class:`~tokenfusion.training_record.TrainingRecord`)."""
        return TrainingRecord.from_dict(self.training)


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
        "state_dict": {strip_prefixes(k): v.detach().cpu() for k, v in weights.items()},
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


def _not_a_checkpoint(path: Path) -> CheckpointError:
    """The refusal of a file that ``torch.load`` cannot read at all: what was expected, what to do."""
    return CheckpointError(
        f"{path.name} is not a PyTorch checkpoint: expected a file written by torch.save (a zip archive or a "
        "pickle). Save one with tokenfusion.checkpoint.save_checkpoint, or convert a timm or torchvision "
        "model with python -m tokenfusion.models.convert."
    )


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    arch: str | None = None,
    num_classes: int | None = None,
    max_model_gb: float | None = None,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` and rebuild its model (in eval mode).

    ``arch`` and ``num_classes``, when given, must match the checkpoint. Everything in the file is
    checked before the model is allocated: the payload's structure and types, the config's values,
    the size of the model it describes (at most ``max_model_gb``, default the environment variable
    ``TOKENFUSION_MAX_MODEL_GB`` or :data:`DEFAULT_MAX_MODEL_GB`; see :func:`estimate_memory`) and
    the names, shapes and types of the weights. Raises :class:`CheckpointError` with a plain message
    for every file that cannot be used; a pickle carrying code is refused before any of it runs.
    """
    path = Path(path)
    payload = _read(path, map_location)
    _check_payload(payload, path.name)
    config = _config_of(payload, path)
    if arch is not None and config.arch != arch:
        raise CheckpointError(f"{path.name} holds a {config.arch!r} model, not {arch!r}. Pick a {arch!r} checkpoint.")
    if num_classes is not None and config.num_classes != num_classes:
        raise CheckpointError(
            f"{path.name} has {config.num_classes} classes, expected {num_classes}. "
            "Use a checkpoint trained on the same classes."
        )
    names = _class_names(payload.get("class_names"), config.num_classes, path.name)
    limit = max_model_gb if max_model_gb is not None else _env_limit()
    skeleton = _skeleton(config, path.name)
    _check_size(config, estimate_memory(skeleton, attention=False), path.name, limit)
    state = {strip_prefixes(k): v for k, v in payload["state_dict"].items()}
    _check_weights(skeleton, state, path.name)
    _check_size(config, _estimate(config, path.name), path.name, limit)
    model = build(config)
    model.load_state_dict(state)
    return Checkpoint(
        model=model.eval(),
        class_names=names,
        training=payload.get("training") or {},
        provenance=payload.get("provenance") or {},
        resume=payload.get("resume"),
        path=path,
    )


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} is empty (0 bytes). Save or copy the checkpoint again.")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the refusal below says it better
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        imports = asks_to_run_code(path, e)
        if imports is not None:
            named = f" (it imports {', '.join(imports[:3])})" if imports else ""
            raise CheckpointError(
                f"{path.name} was refused: it is a pickle that carries Python objects or code{named}, which "
                "is never run here. Save checkpoints with tokenfusion.checkpoint.save_checkpoint."
            ) from None
        raise _not_a_checkpoint(path) from None
    except Exception as e:  # torch raises many types for files it cannot parse
        if starts_as_zip(path) and not zipfile.is_zipfile(path):  # no central directory at the end
            raise CheckpointError(
                f"{path.name} is truncated or corrupt: the file ends before the checkpoint does. "
                "Copy or save it again."
            ) from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". This is an internal")[0]
        if starts_as_zip(path) and re.search(r"cuda|device|mps|xpu", reason, re.I):  # tensors for a missing GPU
            raise CheckpointError(
                f"{path.name} could not be loaded with map_location={map_location!r}: {reason}"
            ) from None
        if starts_as_zip(path):  # a whole archive whose contents are damaged
            raise CheckpointError(
                f"{path.name} is damaged: its archive cannot be read ({reason}). Copy or save it again."
            ) from None
        raise _not_a_checkpoint(path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path.name} is a PyTorch file but not a Token Fusion Lab checkpoint (found {found}). "
            "Train or convert it with this project's tools."
        )
    version = payload.get("format_version")
    if type(version) is not int:
        raise CheckpointError(
            f"{path.name} has format_version {shown(version)}, not an integer from 1 to {FORMAT_VERSION}. {_RESAVE}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has format version {version}; this version reads up to "
            f"{FORMAT_VERSION}. Update tokenfusion."
        )
    if version < 1:
        raise CheckpointError(f"{path.name} has format version {version}; versions start at 1. {_RESAVE}")
    return payload


def _check_payload(payload: dict[str, Any], name: str) -> None:
    """The payload's parts have the types :func:`save_checkpoint` writes (the config is checked apart)."""
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        found = "no state_dict" if state is None else f"a state_dict of type {type(state).__name__}"
        raise CheckpointError(f"{name} has {found}; a checkpoint keeps its weights there as a dict of tensors. {_RESAVE}")
    if not state:
        raise CheckpointError(f"{name} has an empty state_dict: it holds no weights. {_RESAVE}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{name}: the state_dict has a key {shown(key)}; weight names are strings. {_RESAVE}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: weight {key!r} is {shown(value)}, not a tensor. The file is damaged or was "
                f"not written by this project. {_RESAVE}"
            )
        if value.layout != torch.strided:
            raise CheckpointError(f"{name}: weight {key!r} is a {value.layout} tensor; weights are dense tensors. {_RESAVE}")
        if value.is_meta:
            raise CheckpointError(f"{name}: weight {key!r} holds no values (a tensor of the meta device). {_RESAVE}")
    for part, kinds in (("config", (dict,)), ("training", (dict, type(None))), ("provenance", (dict, type(None))),
                        ("resume", (dict, type(None)))):
        value = payload.get(part)
        if not isinstance(value, kinds):
            what = "a dict" if part == "config" else "a dict, when present"
            found = "nothing" if value is None else shown(value)
            raise CheckpointError(f"{name}: its {part} is {found}, expected {what}. {_RESAVE}")


def _config_of(payload: dict[str, Any], path: Path) -> ModelConfig | AdaptedConfig:
    """The checkpoint's config, its keys read by ``from_dict`` and its values checked by
    :meth:`~tokenfusion.models.ModelConfig.validate`; nothing is built here."""
    data = payload["config"]
    if "library" in data:  # a model of another library (tokenfusion.models.convert)
        try:
            return AdaptedConfig.from_dict(data)
        except ValueError as e:
            raise CheckpointError(f"{path.name} has an invalid config of an adapted model: {e}. {_RESAVE}") from None
    try:
        config = ModelConfig.from_dict(data)
    except ValueError as e:
        raise CheckpointError(f"{path.name} has an unreadable model config: {e}. {_RESAVE}") from None
    try:
        return config.validate()
    except ValueError as e:
        raise CheckpointError(f"{path.name} has an invalid model config: {e}. {_RESAVE}") from None


def _class_names(names: Any, num_classes: int, name: str) -> list[str]:
    if names is None or (isinstance(names, (list, tuple)) and not names):
        return _default_class_names(num_classes)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(
            f"{name}: its class_names is {shown(names)}, expected a list of {num_classes} strings. {_RESAVE}"
        )
    if len(names) != num_classes:
        raise CheckpointError(f"{name} lists {len(names)} class names for {num_classes} classes. {_RESAVE}")
    return list(names)


def _skeleton(config: ModelConfig | AdaptedConfig, name: str) -> torch.nn.Module:
    """The model ``config`` describes, on the ``meta`` device: shapes only, nothing allocated."""
    try:
        return on_meta(config)
    except Exception as e:  # a config that passed the checks above and still describes no model
        raise CheckpointError(f"{name}: its config describes no model that can be built ({_reason(e)}). {_RESAVE}") from None


def _estimate(config: ModelConfig | AdaptedConfig, name: str) -> dict[str, int]:
    try:
        return estimated(config)
    except Exception as e:  # the forward of the described model fails: it could never be used
        raise CheckpointError(
            f"{name}: its config describes a model whose forward fails on a {config.img_size} px image "
            f"({_reason(e)}). {_RESAVE}"
        ) from None


def _check_size(config: ModelConfig, size: dict[str, int], name: str, limit: float) -> None:
    """Refuse a model that needs more than ``limit`` GB, before it is allocated."""
    need = (size["weights_bytes"] + size["attention_bytes"]) / 1e9
    if need > limit:
        parts = f"weights {size['weights_bytes'] / 1e9:,.1f} GB" + (
            f", attention maps of one traced forward {size['attention_bytes'] / 1e9:,.1f} GB"
            if size["attention_bytes"] else "")
        raise CheckpointError(
            f"{name} describes a {config.arch}/{config.size} model of {size['parameters'] / 1e6:,.1f} million "
            f"parameters that needs about {need:,.1f} GB ({parts}), more than the {limit:g} GB allowed. "
            f"If this machine has the memory, raise the limit: {MAX_MODEL_GB_ENV}={math.ceil(need)} or "
            f"load_checkpoint(..., max_model_gb={math.ceil(need)})."
        )


def _env_limit() -> float:
    text = os.environ.get(MAX_MODEL_GB_ENV, "")
    if not text:
        return DEFAULT_MAX_MODEL_GB
    try:
        limit = float(text)
    except ValueError:
        limit = math.nan
    if not limit > 0:
        raise CheckpointError(f"{MAX_MODEL_GB_ENV}={text!r} is not a positive number of GB; set it to e.g. 8.")
    return limit


def _check_weights(skeleton: TokenFusionModel, state: dict[str, torch.Tensor], name: str) -> None:
    """The weights' names, shapes and kinds fit the model, and every float in them is finite."""
    own = skeleton.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    kinds = [f"{k}: {state[k].dtype} vs {v.dtype}" for k, v in own.items()
             if k in state and (state[k].is_floating_point() != v.is_floating_point() or state[k].is_complex())]
    if missing or unexpected or wrong or kinds:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"wrong shapes {wrong[:5]}" if wrong else "", f"wrong types {kinds[:5]}" if kinds else ""]
        raise CheckpointError(
            f"{name}: weights do not fit a {skeleton.config.arch}/{skeleton.config.size} model: "
            + "; ".join(p for p in parts if p)
            + ". The weights and the config come from different models; save the trained model again "
            "with tokenfusion.checkpoint.save_checkpoint."
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(
            f"{name}: weights {broken[:5]} hold NaN or infinite values; the model would predict nothing. "
            "Use an earlier checkpoint of the run, or train again."
        )


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


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _default_class_names(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from torchvision.models import ResNet50_Weights  # metadata only; nothing is downloaded

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [f"class {i}" for i in range(num_classes)]
