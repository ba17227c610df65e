"""Checkpoints: what was saved comes back, wrappers and devices do not matter, and every file that
cannot be used is refused with a message that says why, before any of its content runs."""
from __future__ import annotations

import math
import pickle
import pickletools
import re
import struct
import zipfile
from pathlib import Path

import pytest
import torch
import torch.serialization
from torch import nn

from tokenfusion.checkpoint import (
    FORMAT, FORMAT_VERSION, CheckpointError, estimate_memory, load_checkpoint, save_checkpoint,
)
from tokenfusion.models import ARCHITECTURES, TokenFusionModel, create, make_config

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


def relocated(pickled: bytes, location: str) -> bytes:
    """A protocol-2 pickle (``torch.save``'s ``data.pkl``) with the string ``'cpu'`` re-encoded as
    ``location``. torch memoises the location, so its first occurrence names the device of every
    storage; protocol 2 has no frames, so the length may change."""
    ops = list(pickletools.genops(pickled))
    ends = [pos for _, _, pos in ops[1:]] + [len(pickled)]
    out = bytearray()
    for (op, arg, pos), end in zip(ops, ends):
        if op.name == "BINUNICODE" and arg == "cpu":
            out += b"X" + struct.pack("<I", len(location)) + location.encode()
        else:
            out += pickled[pos:end]
    assert out != pickled, "no storage location found to rewrite"
    return bytes(out)


def test_a_checkpoint_recorded_as_saved_on_cuda_loads_on_cpu(tmp_path: Path) -> None:
    """A file written by ``torch.save`` on the CPU, its archive rewritten so that every storage
    records ``cuda:0`` (byte for byte what a GPU run writes there), loads on the CPU."""
    model = create("layerwise", "tiny").eval()
    path = tmp_path / "gpu.pt"
    torch.save(payload_of(model, resume={"exp_avg": torch.ones(4)}), path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            archive.writestr(info, relocated(data, "cuda:0") if info.filename.endswith("/data.pkl") else data)

    if torch.cuda.is_available():  # the file really asks for a GPU
        assert torch.load(path, weights_only=True)["resume"]["exp_avg"].device.type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    assert loaded.resume["exp_avg"].device.type == "cpu"
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in model.state_dict().items())


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
    assert "notes.pt is not a PyTorch checkpoint: expected a file written by torch.save" in refused(tmp_path / "notes.pt")


def test_an_image_renamed_to_pt(tmp_path: Path) -> None:
    (tmp_path / "photo.pt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    message = refused(tmp_path / "photo.pt")
    assert "photo.pt is not a PyTorch checkpoint: expected a file written by torch.save" in message
    assert "Error" not in message  # says what to do, not which exception was raised


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


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_raw_pickle_carrying_code_is_refused_as_code(tmp_path: Path, protocol: int) -> None:
    """Whatever the protocol (4 and 5 open with a frame that torch's safe unpickler does not read),
    the refusal names the import the pickle asked for, read from its opcodes without running it."""
    marker = tmp_path / "code-ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Plants(marker), f, protocol=protocol)
    message = refused(tmp_path / "evil.pkl")
    assert "evil.pkl was refused: it is a pickle that carries Python objects or code" in message
    assert "builtins.open" in message or "io.open" in message
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


# --------------------------------------------------------------------------- malformed payloads, checked before allocation


def _written(tmp_path: Path, payload: dict, name: str = "m.pt") -> Path:
    torch.save(payload, tmp_path / name)
    return tmp_path / name


@pytest.fixture
def never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``load_checkpoint`` allocates a model (the refusal must come first); a
    model on the ``meta`` device, shapes only, may be built to check the weights and the size."""
    from tokenfusion.models import build as real_build

    def build(config):
        if torch.empty(0).device.type != "meta":
            raise AssertionError(f"a {config.arch} model was allocated before the checkpoint was refused")
        return real_build(config)

    monkeypatch.setattr("tokenfusion.checkpoint.build", build)


def _vit(**changes) -> dict:
    return payload_of(create("vit", "tiny"), **changes)


def _config(**changes) -> dict:
    return {**create("vit", "tiny").config.to_dict(), **changes}


MALFORMED = {
    "no state_dict": (lambda: {k: v for k, v in _vit().items() if k != "state_dict"},
                      ["has no state_dict", "dict of tensors", "save_checkpoint"]),
    "state_dict a list": (lambda: _vit(state_dict=[1, 2]), ["a state_dict of type list"]),
    "string format_version": (lambda: _vit(format_version="1"), ["format_version '1' (str), not an integer from 1 to"]),
    "format_version 0": (lambda: _vit(format_version=0), ["format version 0; versions start at 1"]),
    "non-tensor weight": (lambda: _vit(state_dict={**create("vit", "tiny").state_dict(), "head.bias": [0.0] * 12}),
                          ["weight 'head.bias' is a list, not a tensor"]),
    "weight of the meta device": (lambda: _vit(state_dict={**create("vit", "tiny").state_dict(),
                                                           "head.bias": torch.empty(12, device="meta")}),
                                  ["weight 'head.bias' holds no values (a tensor of the meta device)"]),
    "sparse weight": (lambda: _vit(state_dict={**create("vit", "tiny").state_dict(), "head.bias": torch.zeros(12).to_sparse()}),
                      ["weight 'head.bias' is a torch.sparse_coo tensor; weights are dense tensors"]),
    "integer weight name": (lambda: _vit(state_dict={3: torch.zeros(1)}), ["has a key 3 (int); weight names are strings"]),
    "integer class_names": (lambda: _vit(class_names=12), ["class_names is 12 (int), expected a list of 12 strings"]),
    "numbers as class_names": (lambda: _vit(class_names=list(range(12))), ["expected a list of 12 strings"]),
    "config a list": (lambda: _vit(config=[1, 2]), ["its config is [1, 2] (list), expected a dict"]),
    "training a string": (lambda: _vit(training="good"), ["its training is 'good' (str), expected a dict, when present"]),
    "num_heads not dividing embed_dim": (lambda: _vit(config=_config(num_heads=5)),
                                         ["embed_dim 64 is not divisible by num_heads 5"]),
    "depth a string": (lambda: _vit(config=_config(depth="4")), ["invalid model config: depth is '4' (str), expected an integer"]),
    "depth a bool": (lambda: _vit(config=_config(depth=True)), ["depth is True (bool), expected an integer"]),
    "depth a float": (lambda: _vit(config=_config(depth=4.0)), ["depth is 4.0 (float), expected an integer"]),
    "negative classes": (lambda: _vit(config=_config(num_classes=-3)), ["num_classes is -3 (int), outside the accepted range 1 to"]),
    "NaN mlp_ratio": (lambda: _vit(config=_config(mlp_ratio=float("nan"))), ["mlp_ratio is nan (float), outside the accepted range"]),
    "two std values": (lambda: _vit(config=_config(std=[0.2, 0.2])), ["std is (0.2, 0.2) (tuple), expected 3 numbers"]),
    "zero std": (lambda: _vit(config=_config(std=[0.2, 0.0, 0.2])), ["std is (0.2, 0.0, 0.2) (tuple), outside the accepted range"]),
    "huge image": (lambda: _vit(config=_config(img_size=1_000_000)), ["img_size is 1000000 (int), outside the accepted range 8 to 2048"]),
    "patch larger than image": (lambda: _vit(config=_config(patch_size=96)), ["patch_size 96 is larger than img_size 64"]),
    "missing depth": (lambda: _vit(config={k: v for k, v in _config().items() if k != "depth"}), ["unreadable model config: missing keys ['depth']"]),
    "unknown trunk": (lambda: payload_of(create("early", "tiny"), config={**create("early", "tiny").config.to_dict(), "trunk": "vgg"}),
                      ["describes no model that can be built", "Unknown trunk 'vgg'"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_payload_is_refused_before_any_model_is_built(tmp_path: Path, never_built: None, case: str) -> None:
    make, says = MALFORMED[case]
    message = refused(_written(tmp_path, make()))
    assert message.startswith("m.pt")
    for part in says:
        assert part in message, message


def test_huge_dimensions_are_refused_naming_the_size_and_the_limit(tmp_path: Path, never_built: None) -> None:
    path = _written(tmp_path, _vit(config=_config(embed_dim=8192, depth=96, num_heads=64, mlp_ratio=8.0, num_classes=50_000),
                                   class_names=[]), "huge.pt")
    message = refused(path)
    found = re.search(r"huge.pt describes a vit/tiny model of ([\d,.]+) million parameters that needs about ([\d,.]+) GB",
                      message)
    parameters, gb = (float(g.replace(",", "")) for g in found.groups())
    per_block = 4 * 8192**2 + 2 * 8 * 8192**2  # q, k, v, projection and the 8x MLP's weight matrices
    assert 96 * per_block <= parameters * 1e6 <= 1.01 * 96 * per_block
    assert 4 * parameters / 1e3 <= gb <= 1.01 * 4 * parameters / 1e3  # float32
    assert "more than the 4 GB allowed" in message
    assert f"TOKENFUSION_MAX_MODEL_GB={math.ceil(gb)} or load_checkpoint(..., max_model_gb={math.ceil(gb)})" in message


def test_the_size_limit_can_be_lowered_and_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = saved(tmp_path, "late")
    assert "more than the 0.001 GB allowed" in refused(path, max_model_gb=0.001)
    monkeypatch.setenv("TOKENFUSION_MAX_MODEL_GB", "0.001")
    assert "more than the 0.001 GB allowed" in refused(path)
    assert load_checkpoint(path, max_model_gb=1).config.arch == "late"  # the keyword wins over the variable
    monkeypatch.setenv("TOKENFUSION_MAX_MODEL_GB", "lots")
    assert "TOKENFUSION_MAX_MODEL_GB='lots' is not a positive number of GB" in refused(path)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_imagenet_sizes_pass_the_checks_within_the_default_limit(tmp_path: Path, never_built: None, arch: str) -> None:
    """A ``base`` config (the largest shipped size) is accepted: only its tiny weights are refused."""
    path = _written(tmp_path, payload_of(create(arch, "tiny"), config=make_config(arch, "base").to_dict(), class_names=[]))
    assert f"weights do not fit a {arch}/base model" in refused(path)


def test_the_config_checks_are_one_and_the_same_for_create_and_load(tmp_path: Path, never_built: None) -> None:
    """``ModelConfig.validate`` owns the ranges: ``create`` and ``load_checkpoint`` refuse a config with
    the same words."""
    with pytest.raises(ValueError, match="img_size is 4 \\(int\\), outside the accepted range 8 to 2048") as raised:
        make_config("vit", "tiny", img_size=4)
    assert f"invalid model config: {raised.value}." in refused(_written(tmp_path, _vit(config=_config(img_size=4))))


def test_a_model_with_drop_path_builds_on_the_meta_device() -> None:
    """The drop-path ramp is plain numbers (no tensor to read back), so the shape-only skeleton that
    checks a checkpoint builds with no special device handling; the ramp is DeiT's, linear from 0."""
    from tokenfusion.memory import on_meta

    model = on_meta(make_config("early", "small"))
    assert next(model.parameters()).is_meta
    rates = [block.drop_path.p for block in model.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.1, len(rates)).tolist())


def test_estimated_memory_matches_the_real_model() -> None:
    model = create("late", "small")
    estimate = estimate_memory(model)
    assert estimate["parameters"] == sum(p.numel() for p in model.parameters())
    assert estimate["weights_bytes"] == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    _, trace = model.eval()(torch.zeros(1, 3, 224, 224), trace=True)
    assert estimate["attention_bytes"] >= sum(a.numel() * 4 for a in trace.attention.values())


@pytest.mark.parametrize(("dtype", "says"), [(torch.int64, "wrong types ['head.weight: torch.int64 vs torch.float32']"),
                                             (torch.complex64, "wrong types ['head.weight: torch.complex64")])
def test_weights_of_the_wrong_kind_are_named(tmp_path: Path, never_built: None, dtype: torch.dtype, says: str) -> None:
    state = dict(create("vit", "tiny").state_dict())
    state["head.weight"] = state["head.weight"].to(dtype)
    assert says in refused(_written(tmp_path, _vit(state_dict=state)))


def test_half_precision_weights_load_as_float(tmp_path: Path) -> None:
    model = create("vit", "tiny")
    state = {k: v.half() for k, v in model.state_dict().items()}
    loaded = load_checkpoint(_written(tmp_path, payload_of(model, state_dict=state))).model
    assert loaded.head.weight.dtype == torch.float32
    assert torch.equal(loaded.head.weight, model.head.weight.half().float())


def test_weights_with_nan_are_refused(tmp_path: Path) -> None:
    state = dict(create("vit", "tiny").state_dict())
    state["head.bias"] = torch.full((12,), float("nan"))
    assert "weights ['head.bias'] hold NaN or infinite values" in refused(_written(tmp_path, _vit(state_dict=state)))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_shipped_checkpoints_load_unchanged(arch: str) -> None:
    path = Path(__file__).resolve().parents[1] / "checkpoints" / f"{arch}.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    stored = torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert loaded.config.to_dict() == {**loaded.config.to_dict(), **stored["config"]}
    assert loaded.class_names == stored["class_names"]
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in stored["state_dict"].items())


def test_a_damaged_archive_is_called_damaged_not_a_device_problem(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "vit")
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry; its signature is damaged
    data[entry:entry + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "model.pt is damaged: its archive cannot be read" in message and "Copy or save it again" in message
    assert "map_location" not in message and "internal miniz error" not in message
