"""``ruff check`` passes on the whole repository, with the rules of ``pyproject.toml``."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"ruff check . (fix with ruff check --fix, or answer each):\n{done.stdout}{done.stderr}"
