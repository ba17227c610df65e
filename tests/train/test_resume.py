"""A killed run resumes to exactly the weights of an uninterrupted one; checkpoints are never half-written."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tokenfusion.checkpoint import CheckpointError, load_checkpoint

from .conftest import QUICK, ROOT, run_train

# 2 epochs of 12 steps, a checkpoint every 2 steps, EMA and drop-path on (their state must resume too).
RUN = [*QUICK, "--epochs", "2", "--save-every-steps", "2", "--ema-decay", "0.9", "--drop-path", "0.1"]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_train(*RUN, "--output-dir", str(straight))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "train", *RUN, "--output-dir", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, step, deadline = killed / "checkpoint.pt", 0, time.time() + 240
    while step < 6 and time.time() < deadline:  # kill mid-way through the first epoch or early in the second
        time.sleep(0.05)
        if checkpoint.exists():
            step = load_checkpoint(checkpoint).resume["state"]["global_step"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= step < 24, f"the run was not caught mid-way (step {step})"
    assert not (killed / "model.pt").exists()

    resumed = run_train(*RUN, "--output-dir", str(killed), "--resume", "auto")
    assert "Resumed from" in resumed.stdout
    a, b = _weights(straight / "model.pt"), _weights(killed / "model.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    history = [line for line in (killed / "metrics.jsonl").read_text().splitlines() if line]
    assert len(history) == 2


def _tiny_imagefolder(root):
    """2 classes x 4 training images (one of which does not decode) and 1 validation image each."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 1)):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    (root / "train" / "bee" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken after the signature")
    return root


def test_imagenet_recipe_with_accumulation_resumes_exactly(tmp_path):
    """MixUp, CutMix, RandAugment, random erasing, drop-path and EMA, with 2 micro-batches per step:
    stopped mid-epoch and resumed, the run ends with exactly the uninterrupted run's weights."""
    data = _tiny_imagefolder(tmp_path / "data")
    # The imagenet-small recipe at tiny size: 8 images / (2 x 2 accumulated) = 2 steps per epoch.
    run = ["--arch", "early", "--preset", "imagenet-small", "--data-path", str(data), "--size", "tiny",
           "--img-size", "32", "--batch-size", "2", "--accum-steps", "2", "--epochs", "2", "--lr-batch", "4",
           "--ema-decay", "0.5", "--workers", "0", "--threads", "1", "--no-progress"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    result = run_train(*run, "--output-dir", str(straight))
    assert "Skipping unreadable image" in result.stderr and "3.png" in result.stderr  # replaced, not fatal
    run_train(*run, "--max-steps", "3", "--output-dir", str(stopped))  # stops in the middle of epoch 2
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["resume"]["state"]["step_in_epoch"] == 1
    assert "Resumed from" in run_train(*run, "--resume", "auto", "--output-dir", str(stopped)).stdout

    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (straight, stopped))
    assert a["resume"]["state"]["global_step"] == b["resume"]["state"]["global_step"] == 4
    assert a["training"]["ema"] and a["training"]["global_batch"] == 4
    ema, raw = _weights(straight / "model.pt"), a["resume"]["model"]
    assert any(not torch.equal(ema[k], raw[k]) for k in ema), "EMA weights are the raw weights"
    for ours, theirs, what in ((ema, _weights(stopped / "model.pt"), "EMA"), (raw, b["resume"]["model"], "raw")):
        for name, value in ours.items():
            assert torch.equal(value, theirs[name]), f"{what} {name} differs after resume"


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    """A save that dies while writing leaves the previous checkpoint whole and no partial file."""
    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.models import create

    model = create("vit", "tiny", img_size=32)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, class_names=[str(i) for i in range(12)], training={"epochs_done": 1})
    real_save = torch.save

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, class_names=[str(i) for i in range(12)], training={"epochs_done": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path).training["epochs_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_resume_from_another_model_is_refused(tmp_path):
    run_train(*QUICK, "--epochs", "1", "--max-steps", "1", "--output-dir", str(tmp_path / "vit"))
    quick_cnn = [a if a != "vit" else "cnn" for a in QUICK]
    result = run_train(*quick_cnn, "--epochs", "1", "--output-dir", str(tmp_path / "cnn"),
                       "--resume", str(tmp_path / "vit" / "checkpoint.pt"), check=False)
    assert result.returncode != 0
    assert "Cannot resume" in result.stderr and "'vit' model, not 'cnn'" in result.stderr
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "vit" / "checkpoint.pt", arch="cnn")
