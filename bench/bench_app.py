"""Benchmark the Streamlit app on this machine's CPU.

Usage: ``nice python bench/bench_app.py [--checkpoints DIR] [--repeats 5] [--threads 1] [--no-browser]``

1. **startup**: ``streamlit run app/main.py`` until its health endpoint answers, and until a headless
   Chromium (Playwright, ``/usr/bin/chromium``) shows the finished Explore page (title, every chart
   drawn, no script run in progress). The browser is started first, so its own start is not counted.
2. **explore (tiny)**: the Explore page of the real app (``AppTest``) on the default ``early`` model,
   once imports and the model are loaded: each repeat picks a SynthShapes image never seen before, so
   every computation of the page runs (prediction, CNN and patch attention, fusion weights, the
   default gallery, branch ablation) and is drawn. Also the rerun of an image already computed.
3. **explore (small)**: the same for an ``early`` model at size ``small`` (224 px, ResNet-50 trunk +
   ViT-S), random weights, written to a temporary folder.
4. **compare**: the Compare page over every model of the checkpoint folder, a new image each repeat.

Prints the figures and writes them with the command, load average and versions to
``bench/results/app_cpu.json``. Targets: explore tiny <= 1 s, explore small <= 5 s, compare <= 2 s.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from app.harness import CHROMIUM, CHROMIUM_ARGS, apptest_navigation, start_server, wait_until_healthy  # noqa: E402
from bench.provenance import commit  # noqa: E402

RESULTS = REPO / "bench" / "results" / "app_cpu.json"
TARGETS = {"explore_tiny_s": 1.0, "explore_small_s": 5.0, "compare_s": 2.0}


def startup(checkpoints: Path, threads: int, timeout: float = 300) -> dict[str, float]:
    """Seconds from ``streamlit run`` to a healthy server, and to the first finished page in Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        process, url = start_server(checkpoints, threads)
        try:
            wait_until_healthy(process, url, timeout)
            healthy = time.perf_counter() - start
            page.goto(url)
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 9"
                " && !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                timeout=timeout * 1000, polling=50,
            )
            finished = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=20)
            browser.close()
    return {"startup_health_s": round(healthy, 2), "startup_first_page_s": round(finished, 2)}


def _page_times(checkpoints: Path, page: str | None, repeats: int) -> tuple[list[float], float]:
    """Wall-clock seconds of reruns of ``page`` (None: Explore), each on a new SynthShapes image,
    after one warm run; and the seconds of a rerun on an image already computed."""
    from streamlit.testing.v1 import AppTest

    os.environ["TOKENFUSION_CHECKPOINTS"] = str(checkpoints)
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=600).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    times = []
    for i in range(1, repeats + 1):
        before = [c.value for c in at.sidebar.caption]
        at.sidebar.number_input(key="synth_example").set_value(100 + i)  # the widget of the latest run
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
        assert not at.exception, [e.value for e in at.exception]
        assert [c.value for c in at.sidebar.caption] != before, "the image did not change"
    start = time.perf_counter()
    at.run()
    return times, time.perf_counter() - start


def _small_checkpoint(folder: Path) -> Path:
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.models import create

    torch.manual_seed(0)
    model = create("early", "small")
    save_checkpoint(folder / "early.pt", model, class_names=[f"class {i}" for i in range(model.config.num_classes)])
    return folder


def _default_checkpoints() -> Path:
    """The shipped checkpoints when all five are there, else tiny random-weight ones in a temporary folder."""
    import torch

    from tokenfusion.checkpoint import save_checkpoint
    from tokenfusion.data import CLASS_NAMES
    from tokenfusion.models import ARCHITECTURES, create

    shipped = REPO / "checkpoints"
    if all((shipped / f"{arch}.pt").is_file() for arch in ARCHITECTURES):
        return shipped
    folder = Path(tempfile.mkdtemp(prefix="bench-app-"))
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        save_checkpoint(folder / f"{arch}.pt", create(arch, "tiny"), class_names=list(CLASS_NAMES))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: checkpoints/ (else random tiny ones)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the 2 cores are shared)")
    parser.add_argument("--no-browser", action="store_true", help="skip the startup figures (no Chromium)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    import streamlit

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    checkpoints = args.checkpoints or _default_checkpoints()
    results: dict[str, object] = {}
    if not args.no_browser:
        results.update(startup(checkpoints, args.threads))
        print(f"startup: healthy after {results['startup_health_s']} s, first page finished after "
              f"{results['startup_first_page_s']} s", flush=True)
    runs = {}
    with apptest_navigation():
        for name, folder, page in [
            ("explore_tiny", checkpoints, None),
            ("explore_small", _small_checkpoint(Path(tempfile.mkdtemp(prefix="bench-app-small-"))), None),
            ("compare", checkpoints, "pages/compare.py"),
        ]:
            times, cached = _page_times(folder, page, args.repeats)
            runs[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                          "cached_rerun_s": round(cached, 3)}
            results[f"{name}_s"] = runs[name]["median_s"]
            target = TARGETS[f"{name}_s"]
            print(f"{name}: median {runs[name]['median_s']:.2f} s over {args.repeats} new images (target <= {target} s; "
                  f"cached rerun {cached:.2f} s)", flush=True)
    report = {
        "figures": results, "runs": runs, "targets_s": TARGETS,
        "checkpoints": str(checkpoints), "threads": args.threads, "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__, "streamlit": streamlit.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "command": shlex.join(["python", *sys.argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {report['load_average_before']} -> {report['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
