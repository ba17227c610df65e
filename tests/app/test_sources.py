"""The app's inputs and shared state without a browser: checkpoint folders, uploads, images, the model lock."""
from __future__ import annotations

import gc
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from app import sources, state
from tokenfusion.data import CLASS_NAMES
from tokenfusion.explain import explain
from tokenfusion.models import ARCHITECTURES
from tokenfusion.data.transforms import mask_view


def test_checkpoint_folder_comes_from_the_command_line_then_the_environment(tmp_path: Path) -> None:
    env = {sources.CHECKPOINTS_ENV: str(tmp_path / "env")}
    assert sources.checkpoint_dir(["--checkpoints", str(tmp_path / "cli")], env) == tmp_path / "cli"
    assert sources.checkpoint_dir(["--checkpoints=x", "--other"], {}) == Path("x")
    assert sources.checkpoint_dir([], env) == tmp_path / "env"
    assert sources.checkpoint_dir(["--check", "nope"], {}) == sources.DEFAULT_CHECKPOINTS  # no abbreviations


def test_checkpoints_are_listed_in_strategy_order(tmp_path: Path) -> None:
    for name in ["zeta.pt", "layerwise.pt", "cnn.pt", "notes.txt", "early.pth", "vit.pt"]:
        (tmp_path / name).write_bytes(b"x")
    assert list(sources.list_checkpoints(tmp_path)) == ["cnn", "vit", "early", "layerwise", "zeta"]
    assert sources.list_checkpoints(tmp_path / "missing") == {}


def test_uploads_are_stored_once_under_a_safe_name(tmp_path: Path) -> None:
    uploads = sources.UploadFolder(root=tmp_path)
    first, _ = uploads.store("../../etc/my model?.pt", b"abc")
    again, _ = uploads.store("../../etc/my model?.pt", b"abc")
    other, _ = uploads.store("my model?.pt", b"abcd")
    assert first == again and first.name == "my_model_.pt" and first.read_bytes() == b"abc"
    assert uploads.folder in first.parents and tmp_path in uploads.folder.parents and other.parent != first.parent


def test_uploads_are_bounded_and_deleted_with_their_session(tmp_path: Path) -> None:
    uploads = sources.UploadFolder(keep=2, root=tmp_path)
    a, _ = uploads.store("a.pt", b"a")
    b, _ = uploads.store("b.pt", b"b")
    assert uploads.store("a.pt", b"a") == (a, [])  # stored again: the most recent now
    c, evicted = uploads.store("c.pt", b"c")
    assert evicted == [b] and not b.exists() and a.is_file() and c.is_file()
    folder = uploads.folder
    del uploads  # what happens to a session's state when the session ends
    gc.collect()
    assert not folder.exists()


def test_synthshapes_gallery_images_come_with_their_mask_and_class() -> None:
    choice = sources.synthshapes_image(9, 48)
    assert choice.image.size == (48, 48) and choice.mask.shape == (48, 48) and choice.mask.any()
    assert choice.true_class == CLASS_NAMES[9] == "striped cross"
    assert choice.key == sources.synthshapes_image(9, 48).key != sources.synthshapes_image(9, 64).key


def test_shipped_photos_are_small_licensed_jpegs() -> None:
    names = sources.photo_names()
    licence = (sources.PHOTOS / "LICENSE.md").read_text()
    assert len(names) >= 3
    for name in names:
        assert (sources.PHOTOS / name).stat().st_size < 60_000 and f"`{name}`" in licence
        choice = sources.photo_image(name)
        assert max(choice.image.size) <= 256 and choice.mask is None and choice.true_class is None


def test_mask_follows_the_models_crop(checkpoint_dir: Path) -> None:
    loaded = state.load_model(checkpoint_dir / "early.pt", "early")
    wide = np.zeros((60, 120), dtype=bool)
    wide[:, 30:90] = True  # the centre square of a wide image
    view = mask_view(wide, loaded.config)
    assert view.shape == (64, 64) and view.all()  # the model crops exactly that centre square


def test_a_renamed_checkpoint_is_refused(checkpoint_dir: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "late.pt"
    renamed.write_bytes((checkpoint_dir / "vit.pt").read_bytes())
    with pytest.raises(ValueError, match="holds a 'vit' model, not 'late'"):
        state.load_model(renamed, "late")
    other = tmp_path / "my_vit.pt"
    other.write_bytes(renamed.read_bytes())
    assert state.load_model(other, "mine").config.arch == "vit"  # any other name is taken as it is


def test_sessions_share_one_model_and_take_turns(checkpoint_dir: Path) -> None:
    """Two threads explaining on the shared model at once get what one thread alone gets, and
    leave no hooks, gradients or training mode behind."""
    loaded = state.load_model(checkpoint_dir / "early.pt", "early")
    assert state.load_model(checkpoint_dir / "early.pt", "early") is loaded  # cached resource
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with state.exclusive(loaded) as model:
        alone = {m: explain(model, x, m).map for m in ("gradcam", "eigencam", "attention")}
    results: list[dict] = []

    def work() -> None:
        with state.exclusive(loaded) as model:
            results.append({m: explain(model, x, m).map for m in ("gradcam", "eigencam", "attention")})

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        for method, expected in alone.items():
            torch.testing.assert_close(result[method], expected)
    model = loaded.model
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in model.modules())


def test_every_architecture_loads_on_the_app_device(checkpoint_dir: Path) -> None:
    for arch in ARCHITECTURES:
        loaded = state.load_model(checkpoint_dir / f"{arch}.pt", arch)
        assert next(loaded.model.parameters()).device.type == state.DEVICE.type
