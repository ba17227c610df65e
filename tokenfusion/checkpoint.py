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

import functools
import math
import os
import pickle
import pickletools
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .models import ARCHITECTURES, ModelConfig, TokenFusionModel, build
from .models.adapters import AdaptedConfig
from .training_record import TrainingRecord
from .models.blocks import Attention

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
_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
_CODE_SIGNS = ("Unsupported global", "GLOBAL ", "unrecognized function", "Can only create new object", "Can only build")
_RESAVE = "Save it again with tokenfusion.checkpoint.save_checkpoint."
#: Accepted range of each numeric config field: (low, high), both included. Bounds that no model of
#: the field comes near keep a damaged or hostile config from describing an absurd model.
_RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (1, 100_000), "img_size": (8, 2048), "patch_size": (1, 2048), "embed_dim": (1, 16_384),
    "depth": (1, 128), "num_heads": (1, 1024), "mlp_ratio": (0.01, 64.0), "fusion_depth": (0, 128),
    "tiny_trunk_channels": (1, 4096), "drop_rate": (0.0, 1.0), "drop_path_rate": (0.0, 1.0),
    "kind_drop_rate": (0.0, 1.0),
    "mean": (-10.0, 10.0), "std": (1e-6, 10.0), "crop_pct": (0.01, 1.0), "norm_eps": (1e-12, 1.0),
}
_TRIPLES = ("tiny_trunk_channels", "mean", "std")


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
    state = {_strip(k): v for k, v in payload["state_dict"].items()}
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


def estimate_memory(model: TokenFusionModel, attention: bool = True) -> dict[str, int]:
    """Parameters of ``model`` and the bytes it needs, from shapes alone (``model`` may live on the
    ``meta`` device, where nothing is allocated): ``weights_bytes`` for its parameters and buffers,
    and, when ``attention``, ``attention_bytes`` for the attention maps ``(B=1, heads, N_q, N_k)``
    that one traced forward of an ``img_size`` image keeps (found by running a forward on the
    model's own device; on ``meta`` that takes a fraction of a second, nothing is computed)."""
    size = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]),
        "attention_bytes": 0,
    }
    if not attention:
        return size
    maps: list[int] = []

    def count(module: Attention, args: tuple, kwargs: dict, output: Any) -> None:
        queries = args[0]
        context = args[1] if len(args) > 1 and args[1] is not None else kwargs.get("context")
        keys = (context if context is not None else queries).shape[1]
        maps.append(queries.shape[0] * module.num_heads * queries.shape[1] * keys * queries.element_size())

    handles = [m.register_forward_hook(count, with_kwargs=True) for m in model.modules() if isinstance(m, Attention)]
    device = next(model.parameters()).device
    image = model.config.img_size
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, image, image, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return {**size, "attention_bytes": sum(maps)}


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
        # torch words every weights_only failure "Weights only load failed", a PNG's bytes included;
        # only these reasons, or imports found in the pickle itself, mean it asked to run something
        imports = _pickle_imports(path)
        if imports or any(sign in str(e) for sign in _CODE_SIGNS):
            named = f" (it imports {', '.join(imports[:3])})" if imports else ""
            raise CheckpointError(
                f"{path.name} was refused: it is a pickle that carries Python objects or code{named}, which "
                "is never run here. Save checkpoints with tokenfusion.checkpoint.save_checkpoint."
            ) from None
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (unreadable pickle data).") from None
    except Exception as e:  # torch raises many types for files it cannot parse
        if _starts_as_zip(path) and not zipfile.is_zipfile(path):  # no central directory at the end
            raise CheckpointError(
                f"{path.name} is truncated or corrupt: the file ends before the checkpoint does. "
                "Copy or save it again."
            ) from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". This is an internal")[0]
        if _starts_as_zip(path) and re.search(r"cuda|device|mps|xpu", reason, re.I):  # tensors for a missing GPU
            raise CheckpointError(
                f"{path.name} could not be loaded with map_location={map_location!r}: {reason}"
            ) from None
        if _starts_as_zip(path):  # a whole archive whose contents are damaged
            raise CheckpointError(
                f"{path.name} is damaged: its archive cannot be read ({reason}). Copy or save it again."
            ) from None
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint ({type(e).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path.name} is a PyTorch file but not a Token Fusion Lab checkpoint (found {found}). "
            "Train or convert it with this project's tools."
        )
    version = payload.get("format_version")
    if type(version) is not int:
        raise CheckpointError(
            f"{path.name} has format_version {_shown(version)}, not an integer from 1 to {FORMAT_VERSION}. {_RESAVE}"
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
            raise CheckpointError(f"{name}: the state_dict has a key {_shown(key)}; weight names are strings. {_RESAVE}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: weight {key!r} is {_shown(value)}, not a tensor. The file is damaged or was "
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
            found = "nothing" if value is None else _shown(value)
            raise CheckpointError(f"{name}: its {part} is {found}, expected {what}. {_RESAVE}")


def _config_of(payload: dict[str, Any], path: Path) -> ModelConfig | AdaptedConfig:
    """The checkpoint's config, after checking its keys, the type and range of every value and
    that ``num_heads`` divides ``embed_dim``; nothing is built here."""
    data = payload["config"]
    if "library" in data:  # a model of another library (tokenfusion.models.convert)
        try:
            return AdaptedConfig.from_dict(data)
        except ValueError as e:
            raise CheckpointError(f"{path.name} has an invalid config of an adapted model: {e}. {_RESAVE}") from None
    known = {f.name: f for f in fields(ModelConfig)}
    required = sorted(k for k, f in known.items() if f.default is MISSING and f.default_factory is MISSING)
    problems = []
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown:
        problems.append(f"unknown keys {unknown}")
    missing = [k for k in required if k not in data]
    if missing:
        problems.append(f"missing keys {missing}")
    if problems:
        raise CheckpointError(
            f"{path.name} has an unreadable model config: {'; '.join(problems)} "
            f"(expected keys from {sorted(known)}). {_RESAVE}"
        )
    for key, value in data.items():
        problem = _value_problem(key, value)
        if problem:
            raise CheckpointError(f"{path.name} has an invalid model config: {key} {problem}. {_RESAVE}")
    if data["arch"] not in ARCHITECTURES:
        raise CheckpointError(
            f"{path.name} holds an unknown architecture {data['arch']!r}. Expected one of "
            f"{list(ARCHITECTURES)}; it may need a newer tokenfusion."
        )
    if data["embed_dim"] % data["num_heads"]:
        raise CheckpointError(
            f"{path.name} has an invalid model config: embed_dim {data['embed_dim']} is not divisible by "
            f"num_heads {data['num_heads']}, so attention cannot split it into heads. {_RESAVE}"
        )
    if data.get("patch_size", 0) > data["img_size"]:
        raise CheckpointError(
            f"{path.name} has an invalid model config: patch_size {data['patch_size']} is larger than "
            f"img_size {data['img_size']}. {_RESAVE}"
        )
    return ModelConfig.from_dict(data)


def _value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be config field ``key``, or None when it can."""
    kind = {f.name: f.type for f in fields(ModelConfig)}[key]
    if kind == "str":
        return None if isinstance(value, str) and len(value) <= 64 else f"is {_shown(value)}, expected a short string"
    if key in _TRIPLES:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            return f"is {_shown(value)}, expected a list of 3 numbers"
        items = value
    else:
        items = [value]
    whole = kind == "int" or key == "tiny_trunk_channels"
    low, high = _RANGES.get(key, (-math.inf, math.inf))
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int if whole else (int, float)):
            return f"is {_shown(value)}, expected {'an integer' if whole else 'a number'}" + (" per entry" if key in _TRIPLES else "")
        if not (math.isfinite(item) and low <= item <= high):
            return f"is {_shown(value)}, outside the accepted range {low} to {high}"
    return None


def _class_names(names: Any, num_classes: int, name: str) -> list[str]:
    if names is None or (isinstance(names, (list, tuple)) and not names):
        return _default_class_names(num_classes)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(
            f"{name}: its class_names is {_shown(names)}, expected a list of {num_classes} strings. {_RESAVE}"
        )
    if len(names) != num_classes:
        raise CheckpointError(f"{name} lists {len(names)} class names for {num_classes} classes. {_RESAVE}")
    return list(names)


class _RangesOnCpu(TorchFunctionMode):
    """Inside ``torch.device("meta")``: ``torch.linspace`` stays on the CPU, because constructors
    read its values as numbers (the drop-path rate of each block)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.linspace:
            kwargs.setdefault("device", "cpu")
        return func(*args, **kwargs)


def _skeleton(config: ModelConfig, name: str) -> TokenFusionModel:
    """The model ``config`` describes, on the ``meta`` device: shapes only, nothing allocated."""
    try:
        return _on_meta(config)
    except Exception as e:  # a config that passed the checks above and still describes no model
        raise CheckpointError(f"{name}: its config describes no model that can be built ({_reason(e)}). {_RESAVE}") from None


def _on_meta(config: ModelConfig) -> TokenFusionModel:
    with torch.device("meta"), _RangesOnCpu():
        return build(config)


@functools.lru_cache(maxsize=32)
def _estimated(config: ModelConfig) -> dict[str, int]:
    """:func:`estimate_memory` of ``config``'s model, once per config (its meta forward is the slow part)."""
    return estimate_memory(_on_meta(config))


def _estimate(config: ModelConfig, name: str) -> dict[str, int]:
    try:
        return _estimated(config)
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


def _pickle_imports(path: Path, limit: int = 1 << 20) -> list[str]:
    """The ``module.name`` globals that the pickle at the start of ``path`` would import, read from
    its opcodes (nothing is run); empty for a file that is not a pickle."""
    with path.open("rb") as f:
        data = f.read(limit)
    imports, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                imports.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                imports.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - damaged or not a pickle: what was read so far is the answer
        pass
    return imports


def _shown(value: Any) -> str:
    """``value`` for a message: its type, and its repr when short."""
    text = repr(value)
    return f"{text} ({type(value).__name__})" if len(text) <= 40 else f"a {type(value).__name__}"


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _default_class_names(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from torchvision.models import ResNet50_Weights  # metadata only; nothing is downloaded

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [f"class {i}" for i in range(num_classes)]
