"""The app's benchmark (``bench/results/app_cpu.json``, one part per run): the rows of docs/results.md and
bench/README's section."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.provenance import describe

from .sources import load
from .text import met, ms

__all__ = ["APP_PARTS", "app_bench", "app_rows", "browser_timings", "where_the_time_goes"]


APP_PARTS = ("startup", "pages", "controls", "methods")


def app_rows(app: dict[str, Any]) -> list[list[str]]:
    """The benchmark rows (docs/results.md) of ``bench/bench_app.py`` (its parts in ``app_cpu.json``), each
    target judged; a part not measured yet is said so."""
    rows = []
    if "pages" in app:
        pages, keys = app["pages"], ("explore_tiny", "explore_small", "compare")
        rows.append(["app: Explore (its opening tab) on tiny `early` / on `small` 224 px / Compare over five models, a new image",
                     f"`{pages['provenance']['command']}`", " / ".join(f"{pages[k]['median_s']:.2f} s" for k in keys),
                     " / ".join(f"{pages[k]['target_s']:g}" for k in keys) + " s: "
                     + met(max(pages[k]["median_s"] / pages[k]["target_s"] for k in keys), 1)])
    if "startup" in app:
        start = app["startup"]
        rows.append(["app: `streamlit run` to first finished page in Chromium", f"`{start['provenance']['command']}`",
                     f"{start['first_page_s']:.1f} s (server healthy after {start['health_s']:.1f} s)",
                     f"<= {start['target_s']:g} s: {met(start['first_page_s'], start['target_s'])}"])
    if "controls" in app:
        c = app["controls"]
        missed = _missed_controls(c)
        rows.append([f"app: server time of each Explore control, tiny models ({c['changes']} changes of "
                     f"{len(c['controls'])} controls)", f"`{c['provenance']['command']}`",
                     f"median {ms(c['median_s'])}, worst {ms(c['worst_s'])} (CPU {ms(c['median_cpu_s'])}, "
                     f"{ms(c['worst_cpu_s'])})",
                     f"<= {ms(c['target_s'])} each: " + (f"**missed** by {len(missed)} of {len(c['controls'])} "
                                                         "(bench/README.md)" if missed else "met")])
    if "methods" in app:
        m = app["methods"]
        slowest = max(m["methods"], key=lambda r: r["seconds"])
        rows.append([f"app: every explanation method once, `{m['size']}` `{m['arch']}` at {m['img_size']} px, "
                     "beside the app's estimate", f"`{m['provenance']['command']}`",
                     f"{len(m['methods'])} methods, slowest {slowest['method']} {slowest['seconds']:.0f} s "
                     f"(estimate {slowest['estimate_s']:.0f} s)" if slowest["estimate_s"] is not None else
                     f"{len(m['methods'])} methods, slowest {slowest['method']} {slowest['seconds']:.0f} s", ""])
    return rows or [["app", "`python bench/bench_app.py`", "not measured yet", ""]]


def _before_controls(c: dict[str, Any]) -> str:
    """A sentence on the controls measured on an earlier commit in the same run, if any."""
    if "before" not in c:
        return ""
    b = c["before"]
    scopes = {row["scope"] for row in b["controls"].values()}
    reran = "the whole page" if scopes == {"page"} else "their fragment" if scopes == {"fragment"} else "a page or fragment"
    return (f" Measured just before in the same run, the code of `{b['provenance']['code'][:7]}` (each control reran "
            f"{reran}; {len(b['controls'])} of these controls there): median {ms(b['median_s'])}, worst "
            f"{ms(b['worst_s'])} (CPU {ms(b['median_cpu_s'])}, {ms(b['worst_cpu_s'])}), load average "
            f"{b['provenance']['load_average'][0]:.1f}.")


def _missed_controls(c: dict[str, Any]) -> list[str]:
    """The controls of the ``controls`` part whose worst change misses its target, each with the value it
    was slowest on (where the row names its values)."""
    def slowest(row: dict[str, Any]) -> str:
        return row["values"][max(range(len(row["runs_s"])), key=row["runs_s"].__getitem__)]

    return [f"{name}, worst on {slowest(row)}" if row.get("values") else name
            for name, row in c["controls"].items() if row["worst_s"] > c["target_s"]]


def app_bench(root: Path) -> str:
    """bench/README's app section: time to the first page, each Explore control's server time (with
    the code before, when the run measured it), and every method at 224 px beside its estimate."""
    app = load(root, "app_cpu.json")
    out = []
    if "startup" in app:
        start = app["startup"]
        before = start.get("before")
        was = (f" (before, `{before['provenance']['code'][:7]}`: {before['first_page_s']:.1f} s, healthy after "
               f"{before['health_s']:.1f} s)") if before else ""
        out.append(f"From `streamlit run` to the first finished Explore page in Chromium: {start['first_page_s']:.1f} s, "
                   f"server healthy after {start['health_s']:.1f} s{was}; target {start['target_s']:g} s: "
                   f"{met(start['first_page_s'], start['target_s'])}."
                   + (f" The page connected (its websocket opened, and the first run began) after "
                      f"{start['connected_s']:.1f} s; with torch and torchvision imported, "
                      f"{start['connected_s'] + start['imports_s']['torch'] + start['imports_s']['torchvision']:.1f} s "
                      "have passed before a line of the app's own code runs." if "connected_s" in start else "")
                   + " What the first page imports, one after another "
                   f"in a fresh interpreter of the same run ({sum(start['imports_s'].values()):.1f} s in all): "
                   + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in start["imports_s"].items())
                   + "".join("; then, in the background once the page is drawn (`app/preload.py`; else the first "
                             "CAM or attribution map would), the server imports "
                             + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in later.items())
                             for later in [start.get("first_map_imports_s")] if later)
                   + f". `{start['provenance']['command']}` ({describe(start['provenance'])}, load average after "
                   f"{start['provenance']['load_average_after'][0]:.1f}).\n")
    if "controls" in app:
        c = app["controls"]
        before = c.get("before", {}).get("controls", {})
        head = "| control | reruns | values | median (ms) | worst (ms) | CPU median / worst (ms) |"
        rule = "|---|---|---:|---:|---:|---:|"
        if before:
            head += f" before `{c['before']['provenance']['code'][:7]}`: median / worst (CPU median) (ms) |"
            rule += "---:|"
        lines = [head + " target |", rule + "---|"]
        for name, row in c["controls"].items():
            cells = [name, row["scope"], str(len(row["runs_s"])), f"{row['median_s'] * 1000:.0f}",
                     f"{row['worst_s'] * 1000:.0f}", f"{row['median_cpu_s'] * 1000:.0f} / {row['worst_cpu_s'] * 1000:.0f}"]
            if before:
                b = before.get(name)
                cells.append(f"{b['median_s'] * 1000:.0f} / {b['worst_s'] * 1000:.0f} ({b['median_cpu_s'] * 1000:.0f})"
                             if b else "")
            cells.append(f"<= {c['target_s'] * 1000:.0f}: {met(row['worst_s'], c['target_s'])}")
            lines.append("| " + " | ".join(cells) + " |")
        missed = _missed_controls(c)
        cpu_missed = [name for name, row in c["controls"].items() if row["worst_cpu_s"] > c["target_s"]]
        out.append(f"Server time of each Explore control on the `tiny` `{c['model']}` model (and the model picker "
                   f"over every listed model), each value shown for the first time: every change median "
                   f"{ms(c['median_s'])}, worst {ms(c['worst_s'])} (CPU {ms(c['median_cpu_s'])}, "
                   f"{ms(c['worst_cpu_s'])}); target {ms(c['target_s'])} for every change: "
                   + (f"**missed** by {len(missed)} of {len(c['controls'])} controls ({'; '.join(missed)}); "
                      f"in CPU time by {len(cpu_missed)}" if missed else "met") + "."
                   + (f" Before timing, what the server loads ahead in the background once the first page of a "
                      f"browser session is drawn (`app/preload.py`: the explanation back-ends, the listed "
                      f"checkpoints) was loaded: {c['ahead_s']:.1f} s." if c.get("ahead_s") is not None else "")
                   + _before_controls(c) + "\n\n" + "\n".join(lines)
                   + f"\n\n`{c['provenance']['command']}` ({describe(c['provenance'])}, load average after "
                   f"{c['provenance']['load_average_after'][0]:.1f}).\n")
    if "methods" in app:
        m = app["methods"]
        lines = ["| method | target | measured (s) | app's estimate (s) | measured / estimate | load average |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in m["methods"]:
            where = " · ".join(str(v) for v in (r["layer"], r["kind"]) if v) or "pixels"
            est = r["estimate_s"]
            ratio = f"{r['seconds'] / est:.2f}" if est else ""
            lines.append(f"| {r['method']} | {where} | {r['seconds']:.2f} | {'' if est is None else f'{est:.2f}'} "
                         f"| {ratio} | {r['load_average']:.1f} |")
        timed = {r["method"] for r in m["methods"]}
        missing = [n for n in m["every_method"] if n not in timed]
        if missing:
            lines.append(f"\nNot timed yet: {', '.join(missing)}.")
        out.append(f"Every method once at {m['img_size']} px (`{m['size']}` `{m['arch']}`, random weights), its own time "
                   f"beyond the session's traced forward ({m['traced_forward_s']:.2f} s), beside the estimate the app "
                   f"shows before slow work (measured forward {m['forward_s'] * 1000:.0f} ms alone, "
                   f"{m['forward_batched_s'] * 1000:.0f} ms per image in a batch of {m['batch']}, measured once at "
                   "the start: a row run at another load average than the first has its ratio moved by it):\n\n"
                   + "\n".join(lines)
                   + f"\n\n`{m['provenance']['command']}` ({describe(m['provenance'])}; each row's load average "
                   "taken as it started).\n")
    return "\n".join(out) or "Not measured yet: `python bench/bench_app.py`.\n"



BROWSER_MEASURES = {
    "deep_link_s": "a deep link to `/compare` on a fresh server",
    "page_switch_s": "a page switch",
    "model_change_s": "a model change",
    "example_change_s": "an example change",
    "control_s": "an in-view control (Explore's Layer slider)",
}


#: The parts of an action's time (``bench/bench_app.py``'s ``BREAKDOWN``, phases of ``app/timing.py``), in words.
PARTS = {
    "until_run": "browser before the server's run",
    "imports": "imports",
    "wait": "waiting for the background loading",
    "load": "loading checkpoints",
    "compute": "computing (tokenfusion)",
    "estimates": "timing forwards for estimates",
    "figures": "building figures",
    "charts": "sending charts",
    "other": "rest of the server's run",
    "after_run": "transfer and drawing in the browser",
}


def where_the_time_goes(what: str, m: dict[str, Any], parts: int = 3) -> str:
    """One line for a missed target: by how much its median misses, and the ``parts`` largest parts of
    its time (medians of :data:`PARTS`, from ``m["phases_s"]``), largest first; "" when it is met or
    its parts were not recorded."""
    if m["median_s"] <= m["target_s"] or "phases_s" not in m:
        return ""
    largest = sorted(m["phases_s"].items(), key=lambda item: -item[1])[:parts]
    return (f"- {what}: {m['median_s'] - m['target_s']:.2f} s over; largest parts: "
            + ", ".join(f"{PARTS.get(name, name)} {seconds:.2f} s" for name, seconds in largest) + ".")


def browser_timings(root: Path) -> str:
    """The README's table of the app's speed in the browser's clock (``bench/bench_app.py --parts
    browser``): median and worst of each measure against its target; then, for each target missed,
    where its time goes (:func:`where_the_time_goes`)."""
    browser = load(root, "app_cpu.json")["browser"]
    lines = ["| in Chromium, from the action to the view drawn | median | worst | target |", "|---|---:|---:|---|"]
    for key, what in BROWSER_MEASURES.items():
        m = browser[key]
        lines.append(f"| {what} | {m['median_s']:.2f} s | {m['worst_s']:.2f} s "
                     f"| {m['target_s']:g} s: {met(m['median_s'], m['target_s'])} |")
    missed = [line for key, what in BROWSER_MEASURES.items() if (line := where_the_time_goes(what, browser[key]))]
    why = ("\n\nWhere the time of a missed target goes (medians; how to read it: [docs/app.md]"
           "(docs/app.md#how-fast-it-answers)):\n\n" + "\n".join(missed)) if missed else ""
    before = browser.get("before")
    was = (f"\n\nMeasured just before in the same run on the code of `{before['provenance']['code'][:7]}` (load average "
           f"{before['provenance']['load_average'][0]:.1f}), medians: "
           + ", ".join(f"{what} {before[key]['median_s']:.2f} s" for key, what in BROWSER_MEASURES.items())
           + ".") if before else ""
    prov = browser["provenance"]
    return ("\n".join(lines) + why + was + f"\n\n`{prov['command']}` ({describe(prov)}, load average after "
            f"{prov['load_average_after'][0]:.1f}; the shipped models, one Streamlit server).\n")
