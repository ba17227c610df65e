"""What the app loads ahead of need: the chart module the browser is asked for first thing is the one
Streamlit's first chart imports; the explanation back-ends and the listed models load in the background for a
browser session, and no AppTest session starts that."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app import preload
from app.preload import CHART_MODULE

from .helpers import no_exception

ROOT = Path(__file__).resolve().parents[2]


def test_the_preloaded_module_is_the_one_the_first_chart_imports() -> None:
    assert CHART_MODULE is not None and CHART_MODULE.is_file()
    entry = [p for p in Path(CHART_MODULE).parent.glob("index.*.js") if f"./{CHART_MODULE.name}" in p.read_text()]
    assert entry, f"no Streamlit entry module imports {CHART_MODULE.name}: the preload would load a module nobody uses"


def test_every_page_asks_for_it_before_drawing(app) -> None:
    at = app()
    no_exception(at)
    drawn = [e for e in at.main if e.type != "main"]  # the page's elements in order, after its container
    assert drawn[0].type == "html" and CHART_MODULE.name in drawn[0].proto.body
    assert drawn[0].proto.unsafe_allow_javascript


BACKGROUND = """
import gc, json, sys, types
from pathlib import Path
import app.preload as preload, app.state as state

before = [m for m in ("captum", "pytorch_grad_cam") if m in sys.modules]
loaded = []
state.load_model = lambda path, name: loaded.append(name)
preload.st = types.SimpleNamespace(context=types.SimpleNamespace(headers={"Host": "localhost"}))  # a browser session
listed = {name: Path(f"checkpoints/{name}.pt") for name in ("early", "late", "cnn")}
preload.AHEAD_MB = (listed["early"].stat().st_size + listed["late"].stat().st_size) / 2**20  # room for two
preload.load_ahead({"gone": Path("checkpoints/gone.pt"), **listed})
started = preload._background is not None
preload.load_ahead(listed)  # a second session: the same thread
preload.wait_for_background()
loaded_modules = [m for m in ("captum", "pytorch_grad_cam") if m in sys.modules]
print(json.dumps([before, started, loaded_modules, loaded, gc.get_freeze_count()]))
"""


def test_a_browser_session_loads_the_backends_and_the_listed_models_in_the_background() -> None:
    done = subprocess.run([sys.executable, "-c", BACKGROUND], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, started, after, loaded, frozen = json.loads(done.stdout.splitlines()[-1])
    assert before == [] and started and after == ["captum", "pytorch_grad_cam"]
    assert loaded == ["gone", "early", "late"]  # in order, up to AHEAD_MB; a missing file is the page's to report
    assert frozen > 100_000  # what stays for the server's life, out of the collector's full passes


def test_a_session_without_a_browser_starts_no_import_beside_it(app) -> None:
    no_exception(app())  # AppTest: no request headers; its test code goes on at once and could import beside it
    assert preload._background is None
