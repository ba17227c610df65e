"""Running the app outside a user's browser: a ``streamlit run`` server for Chromium, and AppTest.

Shared by the browser test (``tests/app/``) and the app benchmark (``bench/bench_app.py``).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ServerError", "browser_missing", "start_server",
           "wait_for_script_run", "wait_until_healthy"]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium, driven by Playwright
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Streamlit's own run state, on its root element (what Streamlit's end-to-end tests wait on).
APP_CONNECTED = '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


class ServerError(RuntimeError):
    """The server exited or did not answer its health check in time."""


def browser_missing() -> str | None:
    """Why Chromium cannot be driven here (``CHROMIUM`` or Playwright absent), or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoints: Path, threads: int = 1, output: IO | int = subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """``streamlit run app/main.py`` on a free local port over ``checkpoints``: the process and its URL."""
    port = _free_port()
    env = {**os.environ, "TOKENFUSION_CHECKPOINTS": str(checkpoints), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
               "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen, timeout: float = 20) -> None:
    """End a server from :func:`start_server`: terminate, and kill it if it has not exited within
    ``timeout`` seconds (on a loaded machine a script run may still be in progress)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_healthy(process: subprocess.Popen, url: str, timeout: float, poll: float = 0.05) -> None:
    """Return once ``url``'s health check answers; raise :class:`ServerError` if the process exits
    or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise ServerError(f"streamlit exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise ServerError(f"streamlit did not answer within {timeout:.0f} s")
        time.sleep(poll)


def wait_for_script_run(page: Page, timeout: float, quiet: float = 0.5) -> None:
    """Return once the app's script run has finished and no new run started for ``quiet`` seconds.

    Reads Streamlit's run state (``data-test-script-state`` on ``stApp``: ``running``,
    ``rerunRequested``, ``notRunning``) rather than guessing from spinners, so a slow machine only
    makes the wait longer. Raises Playwright's ``TimeoutError`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    page.wait_for_selector(APP_CONNECTED, state="attached", timeout=timeout * 1000)
    idle_since = None
    while time.monotonic() < deadline:
        # a widget's rerun is requested a moment after the previous run ends: idle must hold
        page.wait_for_selector(APP_IDLE, state="attached", timeout=max(deadline - time.monotonic(), 0.001) * 1000)
        idle_since = idle_since or time.monotonic()
        page.wait_for_timeout(100)
        if page.locator(APP_IDLE).count() == 0:
            idle_since = None
        elif time.monotonic() - idle_since >= quiet:
            return
    raise TimeoutError(f"the app's script run did not finish within {timeout:.0f} s")
