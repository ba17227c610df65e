"""Two gloo processes under torchrun train exactly what one process trains with their batches together."""
import json
import os
import subprocess
import sys

import torch

from tokenfusion.models import create

from .conftest import QUICK, ROOT

WORKER = str(ROOT / "tests/train/ddp_worker.py")
# 4 steps, no MixUp, CutMix or drop-path: their draws are seeded per rank, so they differ by design.
STEPS = ["--epochs", "1", "--max-steps", "4", "--drop-path", "0"]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_gloo_ranks_equal_one_process_with_their_batches_together(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    assert QUICK[QUICK.index("--batch-size") + 1] == "8"
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", WORKER,
          *QUICK, *STEPS, "--output-dir", str(two)])
    _run([sys.executable, WORKER, *QUICK, *STEPS, "--batch-size", "16", "--output-dir", str(one)])

    rank0, rank1 = (torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
    saved = torch.load(two / "checkpoint.pt", weights_only=True)
    assert saved["resume"]["state"]["global_step"] == 4
    assert saved["provenance"]["world_size"] == 2

    # The ranks load disjoint halves of the samples the single process loads.
    seen0, seen1 = (json.loads((two / f"samples{r}.json").read_text()) for r in (0, 1))
    seen = json.loads((one / "samples0.json").read_text())
    assert len(seen0) == len(seen1) == len(seen) // 2 >= 4 * 8
    assert not set(seen0) & set(seen1)
    assert set(seen0) | set(seen1) == set(seen)

    # Their averaged gradients are the single process's: the same weights, up to summation order.
    single = torch.load(one / "rank0.pt", weights_only=True)
    torch.manual_seed(0)  # the engine seeds with --seed before building the model
    initial = create("vit", "tiny", img_size=32).state_dict()
    moved = max((single[k] - initial[k]).abs().max().item() for k in single)
    worst = max((rank0[k] - single[k]).abs().max().item() for k in single)
    # AdamW moves a weight by up to about the learning rate per step: a few warm-up steps towards 1e-3
    # move some weight far beyond float noise (1e-7)
    assert moved > 1e-4, "training did not change the weights"
    # measured: 0.2% of the distance trained; a learning rate off by the world size gives ~50%
    assert worst < 0.02 * moved, f"two ranks differ from one process by up to {worst:.2e} (training moved {moved:.2e})"
