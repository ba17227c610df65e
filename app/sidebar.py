"""The shared sidebar (model picker, image source) and what it selected, for every page."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from tokenfusion.checkpoint import CheckpointError
from tokenfusion.data import CLASS_NAMES
from tokenfusion.data.images import ImageError

from . import state, url
from .sources import (
    CHECKPOINT_TYPES, IMAGE_TYPES, SYNTH_SEED, ImageChoice, UploadFolder, checkpoint_dir, listed_models,
    photo_image, photo_names, synthshapes_image,
)
from .ui import show_failure

__all__ = ["Selection", "draw_sidebar", "load_alike", "load_models", "require", "selection"]

SOURCES = ("SynthShapes", "Photo", "Upload")
DEFAULT_MODEL = "early"
DEFAULT_CLASS = "striped cross"
MAX_EXAMPLE = 9999
_SELECTION = "_selection"
_UPLOADED_MODELS = "_uploaded_models"
_SEEN_UPLOADS = "_seen_checkpoint_uploads"
_UPLOAD_FOLDER = "_upload_folder"


@dataclass
class Selection:
    """What the sidebar selected: the checkpoint folder and every model in it (plus uploads),
    the chosen model (or why it failed to load) and the chosen image (or why it is unusable)."""

    folder: Path
    models: dict[str, Path]
    model: state.LoadedModel | None = None
    model_error: str | None = None
    model_failure: Exception | None = None  # an unexpected error behind ``model_error``: its details
    image: ImageChoice | None = None
    image_error: str | None = None
    image_failure: Exception | None = None
    image_hint: str | None = None


def _unexpected(what: str, error: Exception) -> str:
    """A plain message for an error that no check anticipated."""
    lines = str(error).strip().splitlines()
    return (f"{what} failed unexpectedly ({type(error).__name__}: {lines[0] if lines else 'no message'}). "
            "Try another file; the details below help a bug report.")


@st.cache_data(max_entries=64, show_spinner=False)
def _synthshapes(index: int, size: int) -> ImageChoice:
    return synthshapes_image(index, size)


@st.cache_data(max_entries=16, show_spinner=False)
def _photo(name: str) -> ImageChoice:
    return photo_image(name)


def _checkpoint_upload(models: dict[str, Path]) -> None:
    """The checkpoint uploader: a usable upload joins ``models`` (and is selected the first time
    it is seen); an unusable one shows why, under the uploader."""
    upload = st.file_uploader("Upload a checkpoint", type=CHECKPOINT_TYPES, key="checkpoint_file",
                              help="A .pt file written by tokenfusion.checkpoint.save_checkpoint.")
    if upload is None:
        return
    data = upload.getvalue()
    label = f"{Path(upload.name).stem} (uploaded)"
    if _UPLOAD_FOLDER not in st.session_state:  # deleted with the session (see UploadFolder)
        st.session_state[_UPLOAD_FOLDER] = UploadFolder()
    path, evicted = st.session_state[_UPLOAD_FOLDER].store(upload.name, data)
    uploaded = st.session_state.setdefault(_UPLOADED_MODELS, {})
    for gone in [name for name, p in uploaded.items() if p in evicted]:
        del uploaded[gone]
        models.pop(gone, None)
    try:
        with st.spinner("Loading the checkpoint…"):
            state.load_model(path, label)
    except CheckpointError as e:
        st.error(str(e))
        return
    except Exception as e:  # noqa: BLE001 - a file no check anticipated: say so, keep serving
        show_failure(_unexpected(f"Loading {upload.name}", e), e)
        return
    models[label] = path
    uploaded[label] = path
    seen = st.session_state.setdefault(_SEEN_UPLOADS, set())
    digest = hashlib.sha256(data).hexdigest()
    if digest not in seen:
        seen.add(digest)
        url.keep("model", label)


def _pick_model(selection: Selection, slot: DeltaGenerator) -> None:
    names = list(selection.models)
    if not names:
        selection.model_error = (
            f"No checkpoints in {selection.folder}. Train them with `python -m train.teach`, start the app "
            "with `-- --checkpoints DIR`, or upload one below."
        )
        return
    name = slot.selectbox("Model", names, help=f"Checkpoints in {selection.folder}",
                          key=url.bind("model", DEFAULT_MODEL if DEFAULT_MODEL in names else names[0], names))
    try:
        with st.spinner(f"Loading {name}…"):
            selection.model = state.load_model(selection.models[name], name)
    except CheckpointError as e:
        selection.model_error = str(e)
        return
    except Exception as e:  # noqa: BLE001 - a file no check anticipated: every page says so
        selection.model_error, selection.model_failure = _unexpected(f"Loading {name}", e), e
        return
    config = selection.model.config
    slot.caption(f"`{config.arch}` · `{config.size}` · {config.img_size} px · {config.num_classes} classes · "
                 f"on {state.DEVICE.type.upper()}")


def _pick_image(selection: Selection) -> None:
    source = st.radio("Image", SOURCES, horizontal=True, key=url.bind("image", SOURCES[0], SOURCES))
    size = selection.model.config.img_size if selection.model else 64
    if source == "SynthShapes":
        name = st.selectbox("Class", CLASS_NAMES, key=url.bind("class", DEFAULT_CLASS, CLASS_NAMES))
        example = st.number_input("Example", min_value=0, max_value=MAX_EXAMPLE,
                                  help=f"Images of the held-out SynthShapes seed {SYNTH_SEED}, never trained on.",
                                  key=url.bind("example", 0, url.within(0, MAX_EXAMPLE, int)))
        image = _synthshapes(int(example) * len(CLASS_NAMES) + CLASS_NAMES.index(name), size)
        selection.image = replace(image, label=f"SynthShapes {name}, example {example}")  # as the sidebar says
    elif source == "Photo":
        selection.image = _photo(st.selectbox("Photo", photo_names(),
                                              help="Public-domain / CC0 photos, see assets/photos/LICENSE.md",
                                              key=url.bind("photo", photo_names()[0], photo_names())))
    else:
        # Any type reaches the decoder, which says why a file is refused: a type the uploader refused in
        # the browser (an SVG) would leave the previous file, and its error, on the page.
        upload = st.file_uploader("Upload an image", key="image_file", help=f"One of {', '.join(IMAGE_TYPES)}.")
        if upload is None:
            selection.image_hint = "Upload an image in the sidebar (JPEG, PNG, WebP, BMP, GIF or TIFF)."
            return
        try:
            selection.image = state.uploaded(upload.name, upload.getvalue())
        except ImageError as e:
            selection.image_error = f"{upload.name}: {e}"
            return
        except Exception as e:  # noqa: BLE001 - an image no check anticipated
            selection.image_error, selection.image_failure = _unexpected(f"Decoding {upload.name}", e), e
            return
    image = selection.image
    pictures = [image.image] + ([np.asarray(image.mask, dtype=np.uint8) * 255] if image.mask is not None else [])
    st.image(pictures, caption=["image", "object mask"][: len(pictures)], width=110)
    st.caption(image.label + "".join(f" · {note}" for note in image.notes))


def draw_sidebar() -> None:
    """Draw the sidebar and remember its :class:`Selection` for the page of this run."""
    folder = checkpoint_dir(sys.argv[1:], os.environ)
    selection = Selection(folder, {**listed_models(folder), **st.session_state.get(_UPLOADED_MODELS, {})})
    with st.sidebar:
        model_slot = st.container()
        with st.expander("Another checkpoint"):
            _checkpoint_upload(selection.models)
        _pick_model(selection, model_slot)
        st.divider()
        _pick_image(selection)
    st.session_state[_SELECTION] = selection


def selection() -> Selection:
    """The sidebar's selection of this run."""
    return st.session_state[_SELECTION]


def load_models(names: list[str] | None = None) -> dict[str, state.LoadedModel]:
    """The models of the sidebar's list named ``names`` (default: all of them) that load, by name; an
    error line in the page for each that does not."""
    models = selection().models
    loaded = {}
    for name in models if names is None else names:
        try:
            loaded[name] = state.load_model(models[name], name)
        except CheckpointError as e:
            st.error(f"{name}: {e}")
    return loaded


def load_alike() -> dict[str, state.LoadedModel]:
    """The listed models that take the selected model's input (size, crop, normalisation) and classes, by
    name: those a page can run side by side on one image or one data set (all of them when none is selected)."""
    chosen = selection().model

    def task(loaded: state.LoadedModel) -> tuple:
        config = loaded.config
        return config.img_size, config.crop_pct, tuple(config.mean), tuple(config.std), tuple(loaded.class_names)

    return {name: loaded for name, loaded in load_models().items() if chosen is None or task(loaded) == task(chosen)}


def require(image: bool = True) -> tuple[state.LoadedModel, ImageChoice | None] | None:
    """The selected model (and image, when ``image``), or None after telling the user, in the
    page, what is missing or what is wrong with the input."""
    chosen = selection()
    if chosen.model is None:
        _say(chosen.model_error or "No model is selected.", chosen.model_failure)
        return None
    if image and chosen.image is None:
        if chosen.image_error:
            _say(chosen.image_error, chosen.image_failure)
        else:
            st.info(chosen.image_hint or "Choose an image in the sidebar.")
        return None
    return chosen.model, chosen.image


def _say(message: str, failure: Exception | None) -> None:
    if failure is None:
        st.error(message)
    else:
        show_failure(message, failure)
