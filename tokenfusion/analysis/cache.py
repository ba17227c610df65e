"""Results of :func:`~tokenfusion.analysis.analyze` kept on disk, so that the same question over the
same checkpoints and images is answered again at once.

A result is filed under a key: the SHA-256 of the checkpoints' bytes (by model name), of the
images (SynthShapes: seed and count; an ImageFolder: the chosen files with their sizes and
modification times), of the options that change the numbers, and of the library's source code
(any change to ``tokenfusion`` makes a new key). One JSON file per key, written atomically.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from .. import __version__
from .data import AnalysisData

__all__ = ["CACHE_ENV", "AnalysisCache", "analysis_key", "code_version", "default_folder"]

#: Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/tokenfusion/analysis``).
CACHE_ENV = "TOKENFUSION_CACHE"
_LIBRARY = Path(__file__).resolve().parents[1]


def default_folder() -> Path:
    """``$TOKENFUSION_CACHE``, else ``$XDG_CACHE_HOME/tokenfusion/analysis`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tokenfusion" / "analysis"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The library's version and a digest of every source file of ``tokenfusion/``."""
    digest = hashlib.sha256()
    for path in sorted(_LIBRARY.rglob("*.py")):
        digest.update(path.relative_to(_LIBRARY).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def _file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, read once per file version (size and modification time)."""
    info = path.stat()
    return _digest(str(path.resolve()), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(dataset: Dataset) -> list[str] | None:
    """The image files a dataset reads, in order (an ImageFolder or a Subset of one); None when it
    reads none (generated images)."""
    if isinstance(dataset, Subset):
        files = _files(dataset.dataset)
        return None if files is None else [files[i] for i in dataset.indices]
    samples = getattr(dataset, "samples", None)
    return None if samples is None else [str(path) for path, _ in samples]


def _images(data: AnalysisData) -> dict[str, Any]:
    """What identifies the images: ``data.source``, and for files a digest of their listing."""
    identity: dict[str, Any] = dict(data.source)
    files = _files(data.dataset)
    if files is not None:
        listing = hashlib.sha256()
        for name in files:
            info = os.stat(name)
            listing.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        identity["listing"] = listing.hexdigest()
    return identity


def analysis_key(checkpoints: Mapping[str, Path], data: AnalysisData, options: Mapping[str, Any]) -> str:
    """The key of one analysis: ``checkpoints`` (model name -> file, read whole), ``data``, the
    keyword arguments of :func:`analyze` that change its numbers (``measures``, ``batch_size``...)
    and :func:`code_version`."""
    inputs = {
        "checkpoints": {name: _file_digest(Path(path)) for name, path in checkpoints.items()},
        "images": _images(data),
        "options": dict(options),  # sort_keys orders it, and JSON writes tuples as lists
        "code": code_version(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class AnalysisCache:
    """A folder of analysis results, one ``<key>.json`` each (:func:`analysis_key`)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The result filed under ``key``, or None (never stored, or unreadable: computed again)."""
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, result: dict[str, Any]) -> Path:
        """File ``result`` under ``key`` (a temporary file, then renamed: a reader never sees half of it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
        return path
