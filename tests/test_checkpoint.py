"""Checkpoints: what was saved comes back, wrappers and devices do not matter, and every file that
cannot be used is refused with a message that says why, before any of its content runs."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.serialization
from torch import nn

from tokenfusion.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from tokenfusion.models import ARCHITECTURES, TokenFusionModel, create

CLASS_NAMES = [f"shape {i}" for i in range(12)]
TRAINING = {
    "dataset": "synthshapes", "epochs": 2, "top1": 81.5, "top5": 99.0, "best_top1": 82.0,
    "history": [{"epoch": 0, "top1": 50.0, "loss": 1.9}, {"epoch": 1, "top1": 81.5, "loss": 0.6}],
}
PROVENANCE = {"command": "python -m train --arch early", "seed": 0, "torch": torch.__version__}


def saved(tmp_path: Path, arch: str = "early", name: str = "model.pt", **kw) -> tuple[Path, TokenFusionModel]:
    model = create(arch, "tiny").eval()
    path = save_checkpoint(tmp_path / name, model, class_names=CLASS_NAMES, training=TRAINING,
                           provenance=PROVENANCE, **kw)
    return path, model


def payload_of(model: TokenFusionModel, **changes) -> dict:
    """The dict ``save_checkpoint`` writes, for files other tools (or damage) produce."""
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(),
        "state_dict": model.state_dict(), "class_names": CLASS_NAMES, "training": {}, "provenance": {},
    }
    payload.update(changes)
    return payload


def refused(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kw)
    return str(info.value)


# --------------------------------------------------------------------------- what comes back


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_gives_the_same_model(tmp_path: Path, arch: str) -> None:
    path, model = saved(tmp_path, arch)
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.config == model.config
    assert loaded.class_names == CLASS_NAMES
    assert loaded.training == TRAINING and loaded.provenance == PROVENANCE
    assert loaded.resume is None and loaded.path == path
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), model(x))


def test_a_given_state_dict_is_saved_instead_of_the_model_weights(tmp_path: Path) -> None:
    ema = create("vit", "tiny")
    path, _ = saved(tmp_path, "vit", state_dict=ema.state_dict())
    loaded = load_checkpoint(path).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ema.state_dict().items())


def test_resume_state_comes_back(tmp_path: Path) -> None:
    resume = {"step": 7, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}}
    path, _ = saved(tmp_path, "vit", resume=resume)
    back = load_checkpoint(path).resume
    assert back["step"] == 7 and torch.equal(back["optimizer"]["state"][0]["exp_avg"], torch.ones(3))


def test_a_1000_class_checkpoint_without_names_uses_imagenet_names(tmp_path: Path) -> None:
    model = create("vit", "tiny", num_classes=1000)
    torch.save(payload_of(model, class_names=[]), tmp_path / "imagenet.pt")
    names = load_checkpoint(tmp_path / "imagenet.pt").class_names
    assert len(names) == 1000 and names[0] == "tench"


def test_saving_refuses_a_wrong_number_of_class_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 class names for a model of 12 classes"):
        save_checkpoint(tmp_path / "x.pt", create("vit", "tiny"), class_names=["a", "b", "c"])
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- wrappers and devices


class Wrapper(nn.Module):
    """Names its child ``module``, exactly as ``DistributedDataParallel`` does."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_ddp_prefixed_weights_are_stored_plain_and_load(tmp_path: Path) -> None:
    model = create("early", "tiny").eval()
    state = Wrapper(model).state_dict()
    assert all(k.startswith("module.") for k in state)
    path = save_checkpoint(tmp_path / "ddp.pt", model, class_names=CLASS_NAMES, state_dict=state)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith("module.") for k in stored)
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(load_checkpoint(path).model(x), model(x))


@pytest.mark.parametrize("wrap", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_prefixed_weights_written_by_other_tools_load(tmp_path: Path, wrap: str) -> None:
    model = create("layerwise", "tiny").eval()
    state = {wrap + k: v for k, v in model.state_dict().items()}
    torch.save(payload_of(model, state_dict=state), tmp_path / "wrapped.pt")
    loaded = load_checkpoint(tmp_path / "wrapped.pt").model
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_weights_of_a_torch_compiled_model_load(tmp_path: Path) -> None:
    model = create("late", "tiny").eval()
    compiled = torch.compile(model)  # compiles lazily: nothing is compiled here
    state = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in state)
    torch.save(payload_of(model, state_dict=state), tmp_path / "compiled.pt")
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(load_checkpoint(tmp_path / "compiled.pt").model(x), model(x))


def test_tensors_saved_on_a_gpu_load_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file records, per storage, the device it was saved from. Tagging every storage
    ``cuda:0`` while saving writes the same file a GPU run writes (optimiser state in ``resume``
    is saved where it lives), so this runs on machines without a GPU."""
    model = create("early", "tiny").eval()
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    path = save_checkpoint(tmp_path / "gpu.pt", model, class_names=CLASS_NAMES,
                           resume={"optimizer": {"exp_avg": torch.ones(4)}})
    monkeypatch.undo()
    if not torch.cuda.is_available():  # the file really asks for a GPU: a naive load fails
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    assert loaded.resume["optimizer"]["exp_avg"].device.type == "cpu"
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_checkpoint_written_on_a_real_gpu_loads_on_cpu(tmp_path: Path) -> None:
    model = create("layerwise", "tiny").cuda().eval()
    state = model.state_dict()
    torch.save(payload_of(model, state_dict=state, resume={"exp_avg": torch.ones(4, device="cuda")}), tmp_path / "g.pt")
    loaded = load_checkpoint(tmp_path / "g.pt")
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    assert loaded.resume["exp_avg"].device.type == "cpu"
    assert all(torch.equal(loaded.model.state_dict()[k], v.cpu()) for k, v in state.items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_loading_onto_a_missing_gpu_says_so_and_not_truncated(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "vit")
    message = refused(path, map_location="cuda")
    assert "map_location='cuda'" in message and "CUDA" in message
    assert "truncated" not in message


# --------------------------------------------------------------------------- atomic save


def test_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    saved(tmp_path)
    saved(tmp_path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o644  # readable by others, to share


def test_training_records_must_be_builtins(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Cannot store object in a checkpoint"):
        save_checkpoint(tmp_path / "m.pt", create("vit", "tiny"), class_names=CLASS_NAMES, training={"x": object()})
    assert not list(tmp_path.iterdir())
    path = save_checkpoint(tmp_path / "m.pt", create("vit", "tiny"), class_names=CLASS_NAMES,
                           training={"top1": torch.tensor(81.5), "sizes": (48, 64)})
    assert load_checkpoint(path).training == {"top1": 81.5, "sizes": [48, 64]}


def test_a_save_that_fails_midway_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, old = saved(tmp_path)
    before = path.read_bytes()

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, create("early", "tiny"), class_names=CLASS_NAMES)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(load_checkpoint(path).model(x), old(x))


# --------------------------------------------------------------------------- refused files


def test_missing_file(tmp_path: Path) -> None:
    assert "No checkpoint file at" in refused(tmp_path / "nowhere.pt")


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    assert "No checkpoint file at" in refused(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").touch()
    assert "empty.pt is empty (0 bytes)" in refused(tmp_path / "empty.pt")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    path, _ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    message = refused(path)
    assert "model.pt is truncated or corrupt" in message and "save it again" in message


def test_text_file(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("epoch 3: top-1 81.5%\n")
    assert "notes.pt is not a PyTorch checkpoint" in refused(tmp_path / "notes.pt")


def test_an_image_renamed_to_pt(tmp_path: Path) -> None:
    (tmp_path / "photo.pt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "photo.pt is not a PyTorch checkpoint" in refused(tmp_path / "photo.pt")


def test_a_plain_state_dict_is_not_our_format(tmp_path: Path) -> None:
    torch.save(create("vit", "tiny").state_dict(), tmp_path / "weights.pth")
    message = refused(tmp_path / "weights.pth")
    assert "weights.pth is a PyTorch file but not a Token Fusion Lab checkpoint" in message
    assert "blocks.0.attn.kv.bias" in message  # it shows what it found


def test_a_newer_format_version_asks_for_an_update(tmp_path: Path) -> None:
    torch.save(payload_of(create("vit", "tiny"), format_version=FORMAT_VERSION + 1), tmp_path / "new.pt")
    message = refused(tmp_path / "new.pt")
    assert f"format version {FORMAT_VERSION + 1}" in message and "Update tokenfusion" in message


def test_an_unknown_architecture_in_the_config(tmp_path: Path) -> None:
    model = create("vit", "tiny")
    torch.save(payload_of(model, config={**model.config.to_dict(), "arch": "hybrid"}), tmp_path / "h.pt")
    message = refused(tmp_path / "h.pt")
    assert "unknown architecture 'hybrid'" in message and "'layerwise'" in message


def test_an_unreadable_config(tmp_path: Path) -> None:
    model = create("vit", "tiny")
    torch.save(payload_of(model, config={**model.config.to_dict(), "colour": "red"}), tmp_path / "c.pt")
    assert "c.pt has an unreadable model config" in refused(tmp_path / "c.pt")


class _Plants:
    """A pickle that runs code when unpickled: it creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_carrying_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    model = create("vit", "tiny")
    torch.save(payload_of(model, training={"callback": _Plants(marker)}), tmp_path / "evil.pt")
    message = refused(tmp_path / "evil.pt")
    assert "evil.pt was refused" in message and "carries Python objects or code" in message
    assert not marker.exists()
    # control: the file does carry code, which an unsafe load would have run
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol,says", [(2, "was refused: it is a pickle that carries Python objects or code"),
                                           (4, "is not a PyTorch checkpoint"), (5, "is not a PyTorch checkpoint")])
def test_a_raw_pickle_carrying_code_is_refused(tmp_path: Path, protocol: int, says: str) -> None:
    """Protocol 2 names its imports up front, so the refusal can say why; protocols 4 and 5 open
    with a frame that the safe unpickler does not read, so such a file is refused as unreadable."""
    marker = tmp_path / "code-ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Plants(marker), f, protocol=protocol)
    assert f"evil.pkl {says}" in refused(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_another_architecture_than_asked_for(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "early")
    message = refused(path, arch="layerwise")
    assert "holds a 'early' model, not 'layerwise'" in message
    assert load_checkpoint(path, arch="early").config.arch == "early"


def test_another_class_count_than_asked_for(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "vit")
    message = refused(path, num_classes=1000)
    assert "has 12 classes, expected 1000" in message
    assert len(load_checkpoint(path, num_classes=12).class_names) == 12


def test_weights_that_do_not_fit_are_named(tmp_path: Path) -> None:
    model = create("early", "tiny")
    state = dict(model.state_dict())
    del state["cls_token"]
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(5, model.config.embed_dim)
    torch.save(payload_of(model, state_dict=state), tmp_path / "bad.pt")
    message = refused(tmp_path / "bad.pt")
    assert "bad.pt: weights do not fit a early/tiny model" in message
    assert "missing ['cls_token']" in message
    assert "unexpected ['extra.weight']" in message
    assert "head.weight: (5, 64) vs (12, 64)" in message


def test_wrong_number_of_class_names_in_the_file(tmp_path: Path) -> None:
    torch.save(payload_of(create("vit", "tiny"), class_names=["a", "b"]), tmp_path / "n.pt")
    assert "n.pt lists 2 class names for 12 classes" in refused(tmp_path / "n.pt")
