import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A few SynthShapes steps of the ViT: the smallest real training run.
QUICK = ["--arch", "vit", "--preset", "synthshapes-tiny", "--img-size", "32", "--train-samples", "96",
         "--val-samples", "24", "--batch-size", "8", "--threads", "1", "--no-progress"]


def run_train(*args: str, module: str = "train", check: bool = True, **kw) -> subprocess.CompletedProcess:
    """``python -m train ARGS`` from the repository root, output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=check, **kw)


@pytest.fixture
def quick_args() -> list[str]:
    return list(QUICK)
