"""Two gloo processes under torchrun end with identical weights."""
import os
import subprocess
import sys

import torch

from tokenfusion.models import create

from .conftest import QUICK, ROOT


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests/train/ddp_worker.py"), *QUICK, "--epochs", "1", "--max-steps", "4",
           "--drop-path", "0.1", "--output-dir", str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["resume"]["state"]["global_step"] == 4
    assert saved["provenance"]["world_size"] == 2
    torch.manual_seed(0)  # the engine seeds with --seed before building the model
    initial = create("vit", "tiny", img_size=32, drop_path_rate=0.1).state_dict()
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0), "training did not change the weights"
