"""Seeded mutation fuzzing of the files users hand in: checkpoints and images.

Hundreds of files are mutated from valid ones (payload keys dropped or renamed, types swapped,
tensors reshaped or retyped, config values out of range, bytes truncated, flipped, inserted or
overwritten). Each case must either load or raise the plain error (``CheckpointError`` /
``ImageError``), nothing else, within :data:`TIME_LIMIT_S` seconds and without growing the
process's peak memory by more than :data:`MEMORY_LIMIT_MB`. A checkpoint that loads must also run
a forward pass. ``bench/bench_fuzz.py`` runs the same cases and records the counts.
"""
from __future__ import annotations

import io
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tokenfusion.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tokenfusion.data.images import ImageError, load_image
from tokenfusion.models import create

__all__ = ["Case", "Outcome", "checkpoint_cases", "image_cases", "run_cases"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # PIL warns about each damaged TIFF tag

SEED = 1201
CHECKPOINT_CASES = 320
IMAGE_CASES = 360
TIME_LIMIT_S = 20.0  # a hang detector, not a speed target (speeds are in bench/bench_fuzz.py)
MEMORY_LIMIT_MB = 512  # peak resident memory one case may add
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")
MAX_SIDE = 1024  # as the app decodes uploads


@dataclass(frozen=True)
class Case:
    """One fuzzed file: ``kind`` is ``checkpoint`` or ``image``; ``family`` the kind of mutation;
    ``name`` says exactly what was done, so a failure can be reproduced from the report."""

    kind: str
    family: str
    name: str
    data: bytes


@dataclass(frozen=True)
class Outcome:
    """What loading a case gave: ``result`` is ``loaded``, ``refused`` (the plain error) or
    ``failed`` (anything else, with its ``message``); ``peak_mb`` the peak memory it added."""

    case: Case
    result: str
    message: str
    seconds: float
    peak_mb: float


# --------------------------------------------------------------------------- checkpoints

_STRANGE = [None, 0, -1, 7, 2**63, 1.5, float("nan"), float("inf"), True, "", "text" * 50, [], [1, "a"], {},
            {"a": 1}, (1, 2, 3), torch.zeros(2), b"bytes"]
_DTYPES = [torch.int64, torch.int8, torch.uint8, torch.bool, torch.float16, torch.bfloat16, torch.float64,
           torch.complex64]
_BASES = ("vit", "early", "late", "layerwise", "cnn")


def _base_payloads() -> dict[str, dict[str, Any]]:
    """Valid payloads of very small models of every architecture (small enough to load in milliseconds)."""
    payloads = {}
    with tempfile.TemporaryDirectory() as folder:
        for arch in _BASES:
            torch.manual_seed(0)
            model = create(arch, "tiny", num_classes=3, img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2,
                           tiny_trunk_channels=(4, 4, 8))
            path = save_checkpoint(Path(folder) / f"{arch}.pt", model, class_names=["a", "b", "c"],
                                   training={"top1": 50.0, "history": [{"epoch": 1, "top1": 50.0}]},
                                   provenance={"seed": 0})
            payloads[arch] = torch.load(path, weights_only=True)
    return payloads


def _mutate_top(rng: random.Random, p: dict) -> str:
    key = rng.choice(sorted(p))
    how = rng.randrange(3)
    if how == 0:
        del p[key]
        return f"dropped {key}"
    if how == 1:
        p[key.upper() if rng.random() < 0.5 else key + "_old"] = p.pop(key)
        return f"renamed {key}"
    p[key] = rng.choice(_STRANGE)
    return f"{key} = {_short(p[key])}"


def _mutate_state(rng: random.Random, p: dict) -> str:
    state = p.get("state_dict")
    if not isinstance(state, dict) or not state:
        return "state_dict (gone) left as is"
    key = rng.choice(sorted(state))
    t = state[key]
    how = rng.randrange(8)
    if how == 0:
        del state[key]
        return f"state_dict dropped {key}"
    if how == 1:
        state[rng.choice(["module.", "_orig_mod.", "x.", ""]) + key + rng.choice(["", "_", ".0"])] = state.pop(key)
        return f"state_dict renamed {key}"
    if how == 2:
        state[key] = rng.choice(_STRANGE)
        return f"state_dict {key} = {_short(state[key])}"
    if how == 3:
        shapes = [t.reshape(-1), t.reshape(1, *t.shape), t[..., :1] if t.dim() else t.reshape(1), torch.zeros(0),
                  t.reshape(-1)[: max(t.numel() // 2, 1)], torch.zeros(3, 3)]
        state[key] = rng.choice(shapes)
        return f"state_dict {key} reshaped {tuple(t.shape)} -> {tuple(state[key].shape)}"
    if how == 4:
        dtype = rng.choice(_DTYPES)
        state[key] = t.to(dtype)
        return f"state_dict {key} retyped to {dtype}"
    if how == 5:
        value = rng.choice([float("nan"), float("inf"), 1e38, -1e38, 0.0, "meta", "sparse"])
        if value == "meta":
            state[key] = t.to("meta")
        elif value == "sparse":
            state[key] = t.to_sparse()
        elif t.is_floating_point():
            state[key] = torch.full_like(t, value)
        return f"state_dict {key} made {value}"
    if how == 6:
        state[rng.choice(["extra.weight", "blocks.99.attn.q.weight", ""])] = torch.zeros(2, 2)
        return "state_dict gained an unexpected key"
    p["state_dict"] = rng.choice([dict(list(state.items())[: len(state) // 2]), {}, {1: t}, [t], t])
    return "state_dict replaced"


def _mutate_config(rng: random.Random, p: dict) -> str:
    config = p.get("config")
    if not isinstance(config, dict) or not config:
        return "config (gone) left as is"
    key = rng.choice(sorted(config))
    how = rng.randrange(5)
    if how == 0:
        del config[key]
        return f"config dropped {key}"
    if how == 1:
        config[rng.choice(["colour", "Depth", "embed dim"])] = config.get(key)
        return "config gained an unknown key"
    if how == 2:
        config[key] = rng.choice(_STRANGE)
        return f"config {key} = {_short(config[key])}"
    if how == 3:
        value = rng.choice([0, -1, 3, 5, 10**6, 2**31, 2**62, 0.5, 1e300, -1e-9])
        config[key] = [value] * 3 if isinstance(config[key], list) else value
        return f"config {key} = {_short(config[key])}"
    big = rng.choice([("embed_dim", 8192), ("depth", 120), ("num_classes", 100_000), ("img_size", 2048),
                      ("patch_size", 1), ("num_heads", 3), ("tiny_trunk_channels", [4096] * 3), ("fusion_depth", 100)])
    config[big[0]] = big[1]
    return f"config {big[0]} = {_short(big[1])}"


def _mutate_names(rng: random.Random, p: dict) -> str:
    p["class_names"] = rng.choice([["a"], ["a", "b", "c", "d"], [1, 2, 3], "abc", 3, None, [], ["a", None, "c"],
                                   {"a": 1}, ["x" * 10_000] * 3])
    return f"class_names = {_short(p['class_names'])}"


def _mutate_version(rng: random.Random, p: dict) -> str:
    key = rng.choice(["format", "format_version"])
    p[key] = rng.choice(["1", 1.0, 0, -1, 2, 10**30, None, True, "tokenfusion-checkpoint", [1]])
    return f"{key} = {_short(p[key])}"


_PAYLOAD_MUTATIONS: dict[str, Callable[[random.Random, dict], str]] = {
    "top-level keys": _mutate_top, "weights": _mutate_state, "config": _mutate_config,
    "class names": _mutate_names, "versions": _mutate_version,
}


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """A byte-level mutation of ``data``; image headers (the first 64 bytes) are hit more often."""
    n = len(data)
    how = rng.randrange(6)
    start = rng.randrange(min(n, 64)) if rng.random() < 0.4 else rng.randrange(n)
    if how == 0:
        return f"truncated to {start} of {n} bytes", data[:start]
    if how == 1:
        out = bytearray(data)
        spots = [rng.randrange(n) for _ in range(rng.choice([1, 2, 8, 64]))]
        for i in spots:
            out[i] ^= 1 << rng.randrange(8)
        return f"{len(spots)} bits flipped", bytes(out)
    if how == 2:
        chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 100])))
        return f"{len(chunk)} bytes overwritten at {start}", data[:start] + chunk + data[start + len(chunk):]
    if how == 3:
        chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 1000])))
        return f"{len(chunk)} bytes inserted at {start}", data[:start] + chunk + data[start:]
    if how == 4:
        length = rng.choice([1, 16, 1000])
        return f"{length} bytes deleted at {start}", data[:start] + data[start + length:]
    value = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"])
    return f"4-byte field at {start} set to {value.hex()}", data[:start] + value + data[start + 4:]


def checkpoint_cases(seed: int = SEED, count: int = CHECKPOINT_CASES) -> Iterator[Case]:
    """``count`` mutated checkpoints: half with a changed payload (1 to 3 changes), half changed byte by byte."""
    rng = random.Random(seed)
    bases = _base_payloads()
    files = {arch: _saved(payload) for arch, payload in bases.items()}
    for i in range(count):
        arch = _BASES[i % len(_BASES)]
        if i % 2 == 0:
            payload = {k: dict(v) if isinstance(v, dict) else v for k, v in bases[arch].items()}  # tensors shared:
            # mutations replace values, never change a tensor in place
            families = rng.sample(sorted(_PAYLOAD_MUTATIONS), rng.choice([1, 1, 2, 3]))
            changes = [_PAYLOAD_MUTATIONS[f](rng, payload) for f in families]
            yield Case("checkpoint", families[0], f"{arch}: " + "; ".join(changes), _saved(payload))
        else:
            name, data = _mutate_bytes(rng, files[arch])
            yield Case("checkpoint", "bytes", f"{arch}: {name}", data)


def _saved(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- images


def _base_images() -> list[tuple[str, str, bytes]]:
    """``(format, description, bytes)`` of valid images in every upload format and several modes."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    modes = {
        "RGB": rgb, "L": rgb.convert("L"), "P": rgb.convert("P"), "RGBA": rgb.convert("RGBA"),
        "I;16": Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16)),
        "F": Image.fromarray(rng.normal(size=(24, 32)).astype(np.float32), "F"), "CMYK": rgb.convert("CMYK"),
    }
    wanted = {"PNG": ["RGB", "L", "P", "RGBA", "I;16"], "JPEG": ["RGB", "L", "CMYK"], "GIF": ["P", "animated"],
              "WEBP": ["RGB", "RGBA"], "TIFF": ["RGB", "I;16", "F", "CMYK"], "BMP": ["RGB", "P"]}
    out = []
    for fmt, names in wanted.items():
        for mode in names:
            buffer = io.BytesIO()
            if mode == "animated":
                frames = [rgb.rotate(90 * k).convert("P") for k in range(3)]
                frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
            else:
                modes[mode].save(buffer, fmt)
            out.append((fmt, mode, buffer.getvalue()))
    return out


def image_cases(seed: int = SEED, count: int = IMAGE_CASES) -> Iterator[Case]:
    """``count`` byte-level mutations, spread evenly over the six formats."""
    rng = random.Random(seed + 1)
    bases = _base_images()
    by_format = {fmt: [b for b in bases if b[0] == fmt] for fmt in IMAGE_FORMATS}
    for i in range(count):
        fmt, mode, data = rng.choice(by_format[IMAGE_FORMATS[i % len(IMAGE_FORMATS)]])
        name, mutated = _mutate_bytes(rng, data)
        yield Case("image", fmt, f"{fmt} {mode}: {name}", mutated)


# --------------------------------------------------------------------------- running cases


class _TimedOut(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a case that runs longer than ``seconds`` (main thread, POSIX; elsewhere unbounded)."""
    if not hasattr(signal, "setitimer") or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise _TimedOut(f"still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (since the last :func:`_reset_peak`)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _reset_peak() -> None:
    """Start a new peak-memory measurement (Linux); elsewhere the peak is the process's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _peak_rss_mb()


def _load_checkpoint(data: bytes, folder: Path) -> None:
    path = folder / "fuzzed.pt"
    path.write_bytes(data)
    checkpoint = load_checkpoint(path)
    size = checkpoint.config.img_size
    with torch.inference_mode():
        logits = checkpoint.model(torch.zeros(1, 3, size, size))
    assert logits.shape == (1, len(checkpoint.class_names)), f"logits of shape {tuple(logits.shape)}"


def _load_image(data: bytes, folder: Path) -> None:
    image = load_image(data, max_side=MAX_SIDE)
    assert image.mode == "RGB" and max(image.size) <= MAX_SIDE, f"{image.mode} image of {image.size}"


_LOADERS = {"checkpoint": (_load_checkpoint, CheckpointError), "image": (_load_image, ImageError)}


def run_cases(cases: Iterator[Case], folder: Path, time_limit: float = TIME_LIMIT_S) -> list[Outcome]:
    """Load every case; record how it ended, how long it took and the peak memory it added."""
    outcomes = []
    for case in cases:
        load, plain = _LOADERS[case.kind]
        _reset_peak()
        before = _current_rss_mb()
        start = time.perf_counter()
        try:
            with _time_limit(time_limit):
                load(case.data, folder)
            result, message = "loaded", ""
        except plain as e:
            result, message = "refused", str(e)
        except Exception as e:  # noqa: BLE001 - anything but the plain error is what the fuzzer looks for
            result, message = "failed", f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - start
        outcomes.append(Outcome(case, result, message, seconds, max(_peak_rss_mb() - before, 0.0)))
    return outcomes


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def checkpoint_outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    return run_cases(checkpoint_cases(), tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def image_outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    return run_cases(image_cases(), tmp_path_factory.mktemp("fuzz"))


def _check(outcomes: list[Outcome], families: set[str]) -> Counter:
    failed = [f"{o.case.name}: {o.message[:300]}" for o in outcomes if o.result == "failed"]
    assert not failed, f"{len(failed)} cases raised something else than the plain error:\n" + "\n".join(failed[:20])
    slow = [(o.case.name, round(o.seconds, 1)) for o in outcomes if o.seconds > TIME_LIMIT_S]
    assert not slow, slow
    heavy = [(o.case.name, round(o.peak_mb)) for o in outcomes if o.peak_mb > MEMORY_LIMIT_MB]
    assert not heavy, heavy
    assert {o.case.family for o in outcomes} == families  # every kind of mutation was tried
    refused = [o for o in outcomes if o.result == "refused"]
    assert all(o.message and "Traceback" not in o.message for o in refused)
    return Counter(o.result for o in outcomes)


def test_every_mutated_checkpoint_loads_and_runs_or_is_refused_plainly(checkpoint_outcomes: list[Outcome]) -> None:
    assert len(checkpoint_outcomes) == CHECKPOINT_CASES >= 300
    counts = _check(checkpoint_outcomes, {*_PAYLOAD_MUTATIONS, "bytes"})
    assert counts["refused"] >= CHECKPOINT_CASES // 2 and counts["loaded"] >= 5, counts  # both paths exercised
    refused = [o for o in checkpoint_outcomes if o.result == "refused"]
    assert all(o.message.startswith("fuzzed.pt") for o in refused)  # each message names the file


def test_every_mutated_image_loads_or_is_refused_plainly(image_outcomes: list[Outcome]) -> None:
    assert len(image_outcomes) == IMAGE_CASES >= 300
    counts = _check(image_outcomes, set(IMAGE_FORMATS))
    assert counts["refused"] >= 50 and counts["loaded"] >= 50, counts


def test_the_fuzzer_is_seeded() -> None:
    """The same seed gives the same files, so a failure seen on CI is reproduced locally."""
    first = [(c.name, c.data) for c in image_cases(count=24)]
    assert first == [(c.name, c.data) for c in image_cases(count=24)]
    assert first != [(c.name, c.data) for c in image_cases(SEED + 1, count=24)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"<{type(value).__name__}>"
