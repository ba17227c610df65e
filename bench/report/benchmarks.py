"""Every other benchmark's figures against their targets: forward, SynthShapes, training, explanations,
notebooks and the analysis, each with the run that measured it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.provenance import describe
from tokenfusion.analysis.summary import summary_markdown
from tokenfusion.viz.duration import duration

from .app import APP_PARTS, app_rows
from .sources import checkpoints, load
from .text import met

__all__ = ["analysis_section", "bench_table", "explain_ms_table", "forward_parts", "notebook_runtime",
           "notebook_times", "threads_and_jobs", "train_table"]


def bench_table(root: Path) -> str:
    """The benchmark summary of docs/results.md: one row per figure, its command, and each target met or missed."""
    fwd = load(root, "forward_cpu.json")
    fwd1 = load(root, "forward_cpu_threads1.json")
    shapes = load(root, "synthshapes.json")
    train = load(root, "train_cpu.json")
    explain = load(root, "explain_cpu.json")
    app = load(root, "app_cpu.json")
    notebooks = load(root, "notebooks_cpu.json")

    def traced(report: dict[str, Any]) -> list[str]:
        target = report["targets"]["traced_over_plain_max"]
        ratios = [m["traced_over_plain"] for m in report["models"]]
        missed = [f"{m['arch']}/{m['size']} {m['traced_over_plain']:.2f}x" for m in report["models"]
                  if m["traced_over_plain"] > target]
        verdict = f"**missed** by {', '.join(missed)}" if missed else "met"
        return [f"forward, traced / plain, every model, batch 1, {report['threads']} thread{'s' * (report['threads'] != 1)}",
                f"`{report['command']}`", f"{min(ratios):.2f}-{max(ratios):.2f}x", f"<= {target}x: {verdict}"]

    fusion = [m for m in fwd1["models"] if "latency_over_parts" in m and m["arch"] in ("late", "early", "layerwise")]
    parts_target = fwd1["targets"]["small_fusion_over_parts_max"]
    shape_rate = {(r["image_size"], r["function"]): r["images_per_s"] for r in shapes["results"]}
    ms, tms = explain["ms"], explain["targets_ms"]
    explain_names = ("attention", "fusion_weights", "gradcam", "integrated_gradients")
    nb_target = notebooks.get("target_wall_s")
    rows = [
        traced(fwd), traced(fwd1),
        ["forward, `small` fusion / (ResNet-50 to layer3 + ViT-S/16), 1 thread", "same run",
         ", ".join(f"{m['arch']} {m['latency_over_parts']:.2f}x" for m in fusion)
         + " (FLOPs " + ", ".join(f"{m['flops_over_parts']:.2f}x" for m in fusion) + ")",
         f"<= {parts_target}x: " + ("met" if all(m["latency_over_parts"] <= parts_target for m in fusion)
                                    else "**missed**, by the extra arithmetic of fusion")],
        ["SynthShapes rendering, one core", f"`{shapes['command']}`",
         ", ".join(f"{rate:,.0f} images/s at {size} px" for (size, fn), rate in shape_rate.items() if fn == "render_sample"),
         ""],
        [f"training step, tiny, batch {train['batch_size']}, {train['threads']} thread", f"`{train['command']}`",
         ", ".join(f"{r['arch']} {r['images_per_s']:,.0f}" for r in train["rows"])
         + f" images/s; data pipeline {train['loader_images_per_s']:,.0f} images/s", ""],
        [f"explanations, tiny `{explain['arch']}`, batch {explain['batch']}", f"`{explain['command'].strip()}`",
         ", ".join(f"{n} {ms['tiny'][n]:.1f} ms" for n in explain_names),
         " / ".join(str(tms[n]) for n in explain_names) + " ms: "
         + met(max(ms["tiny"][n] / tms[n] for n in explain_names), 1)],
        [f"explanations, `small` `{explain['arch']}`, 224 px", "same run",
         ", ".join(f"{n} {ms['small'][n] / 1000:.2f} s" for n in explain_names), ""],
        *app_rows(app),
        ["notebooks, top to bottom, kernel CPU time", f"`{notebooks['command']}`",
         ", ".join(f"{r['kernel_cpu_s']:.0f} s" for r in notebooks["results"]),
         f"<= {nb_target:g} s each: " + met(max(r["kernel_cpu_s"] for r in notebooks["results"]), nb_target)
         if nb_target else ""],
    ]
    files = [("forward_cpu.json", fwd, ""), ("forward_cpu_threads1.json", fwd1, ""), ("synthshapes.json", shapes, ""),
             ("train_cpu.json", train, ""), ("explain_cpu.json", explain, ""),
             *(("app_cpu.json", app[part]["provenance"], f" ({part})") for part in APP_PARTS if part in app),
             ("notebooks_cpu.json", notebooks, "")]
    table = "| what | command | figure | target |\n|---|---|---|---|\n" + "\n".join(f"| {' | '.join(r)} |" for r in rows)
    sources = "\n".join(f"- `bench/results/{name}`{part}: {describe(report)}" for name, report, part in files)
    return f"{table}\n\nEach row from its results file:\n\n{sources}\n"


def explain_ms_table(root: Path) -> str:
    """``bench/bench_explain.py``'s medians per method, tiny and small, with the targets it records."""
    report = load(root, "explain_cpu.json")
    ms, targets = report["ms"], report["targets_ms"]
    lines = ["| method | tiny 48 px (ms) | target (ms) | small 224 px (ms) |", "|---|---:|---|---:|"]
    for method, value in ms["tiny"].items():
        target = targets.get(method)
        small = ms["small"].get(method)
        lines.append(f"| {method} | {value:.1f} | {f'<= {target}: {met(value, target)}' if target else ''} "
                     f"| {f'{small:.0f}' if small is not None else 'not timed'} |")
    return "\n".join(lines) + f"\n\n`{report['command'].strip()}` ({describe(report)}).\n"


def train_table(root: Path) -> str:
    """``bench/bench_train.py``'s images/s per teaching model, the minutes of its teaching run at that
    rate, and the data pipeline's rate alone."""
    report = load(root, "train_cpu.json")
    lines = ["| model | images/s | images in its teaching run | minutes at this rate |", "|---|---:|---:|---:|"]
    lines += [f"| `{r['arch']}` | {r['images_per_s']:,.0f} | {r['teaching_images'] / 1e3:,.0f} k "
              f"| {r['teaching_minutes']:.1f} |" for r in report["rows"]]
    total = sum(r["teaching_minutes"] for r in report["rows"])
    return ("\n".join(lines) + f"\n\nData pipeline alone: {report['loader_images_per_s']:,.0f} images/s. "
            f"The whole teaching set is {total:.0f} minutes of optimiser steps at these rates. "
            f"`{report['command']}` ({describe(report)}).\n")


def forward_parts(root: Path) -> str:
    """The ``small`` fusion models against their parts: FLOPs, and CPU time per FLOP."""
    report = load(root, "forward_cpu_threads1.json")
    fusion = [m for m in report["models"] if "latency_over_parts" in m and m["arch"] in ("late", "early", "layerwise")]
    per_flop = [m["latency_per_flop_over_parts"] for m in fusion]
    return ("At `small` the fusion models take " + ", ".join(f"{m['flops_over_parts']:.2f}x (`{m['arch']}`)" for m in fusion)
            + f" the FLOPs of their parts, torchvision's ResNet-50-to-layer3 plus ViT-S/16 "
            f"({report['parts']['sum']['flops'] / 1e9:.2f} GFLOPs), and CPU latency follows FLOPs "
            f"({min(per_flop):.2f}-{max(per_flop):.2f}x the parts' time per FLOP; `{report['command']}`, "
            f"{describe(report)}).\n")


def threads_and_jobs(root: Path) -> str:
    """The teaching runs' images/s (two one-thread jobs side by side) against the bench's step plus loader."""
    bench = load(root, "train_cpu.json")
    loader = bench["loader_images_per_s"]
    alone = {r["arch"]: 1 / (1 / r["images_per_s"] + 1 / loader) for r in bench["rows"]}
    run = {arch: c.record.images_per_second for arch, c in checkpoints(root).items()}
    rows = [f"| `{arch}` | {run[arch]:.0f} | {alone[arch]:.0f} | {run[arch] / alone[arch]:.0%} |"
            for arch in run if arch in alone]
    return ("| model | teaching run (images/s) | bench: one step plus its loader pass, one quiet thread | run / bench |\n"
            "|---|---:|---:|---:|\n" + "\n".join(rows) + f"\n\nTeaching runs: the checkpoints' histories (mean over "
            f"epochs); bench: `{bench['command']}` ({describe(bench)}).\n")


def notebook_times(root: Path) -> str:
    """One row per notebook from ``bench/bench_notebooks.py``: wall and kernel CPU time, against the target
    the script records (judged on CPU time, which the load inflates less than wall time)."""
    report = load(root, "notebooks_cpu.json")
    target = report.get("target_wall_s")
    head = "| notebook | wall time | kernel CPU time |" + (f" CPU time <= {target:g} s |" if target else "")
    rows = [f"| `{r['notebook']}` | {r['wall_s']:.0f} s | {r['kernel_cpu_s']:.0f} s |"
            + (f" {met(r['kernel_cpu_s'], target)} |" if target else "") for r in report["results"]]
    rule = "|---|---:|---:|" + ("---|" if target else "")
    own = "".join(f"; `{r['notebook']}`: `{r['command']}` ({describe(r)})" for r in report["results"] if "command" in r)
    return (f"{head}\n{rule}\n" + "\n".join(rows) + f"\n\n`{report['command']}` ({describe(report)}){own}, in the "
            "solution mode the tests use. Wall time grows with the machine's load, CPU time less (cores shared with "
            "other work also run each instruction slower): read both against the load average.\n")


def notebook_runtime(root: Path, notebook: str) -> str:
    """The opening line of a notebook: how long it runs, from ``bench/bench_notebooks.py``."""
    report = load(root, "notebooks_cpu.json")
    row = next(r for r in report["results"] if r["notebook"] == notebook)
    cpu = row["kernel_cpu_s"]
    run = row if "command" in row else report  # a row of bench_notebooks.py --merge carries its own run
    return (f"Runs top to bottom in about {duration(cpu, spelled=True)} on one CPU thread (`{run['command']}`, "
            f"{run.get('date', 'date not recorded')[:10]}).\n")


def analysis_section(root: Path) -> str:
    """What the shipped models show over held-out SynthShapes (:func:`~tokenfusion.analysis.summary.summary_markdown`
    of the analysis ``bench/bench_analysis.py`` keeps), and what the analysis costs on this CPU."""
    bench = load(root, "analysis_cpu.json")
    tiny, memory, small, targets = bench["tiny"], bench["tiny_memory"], bench.get("small"), bench["targets"]
    measured = sum(tiny["per_measure_s"].values())
    text = (summary_markdown(load(root, "analysis_synthshapes.json")) + f"\nCost: every measure over {tiny['images']} "
            f"images for the five models took {tiny['wall_s']:.0f} s on one thread, "
            + ("alone" if bench.get("order", "").startswith("tiny alone") else "side by side with the two runs below")
            + f" on the 2-core machine at load average {tiny['load_1min_before']:.1f} ({measured:.0f} s in "
            f"the forwards and measures, the rest starting Python and loading; {tiny['cpu_s']:.0f} s of CPU time"
            + (", waiting for a core the rest of the wall time" if tiny["wall_s"] > 1.1 * tiny["cpu_s"] else "")
            + f"; target {targets['seconds_2000_max']} s wall: "
            f"{met(tiny['wall_s'], targets['seconds_2000_max'])}); peak memory {tiny['peak_rss_mb']:.0f} MB over "
            f"{tiny['images']} images and {memory['peak_rss_mb']:.0f} MB over {memory['images']} "
            f"({bench['peak_rss_ratio']:.3f}x; target within 10%: "
            f"{met(bench['peak_rss_ratio'], targets['peak_rss_ratio_max'])}; importing torch and the explanation "
            f"libraries alone takes {bench['import_rss_mb']:.0f} MB)."
            + (f" The issue asks for 20,000 images; {memory['images']:,} were measured." * (memory["images"] < 20_000))
            + " Class sensitivity, image by image and opt-in, is in none of these runs.")
    if small:
        per_image = sum(small["per_measure_s"].values()) / small["images"]
        text += (f" The five `small` models at 224 px (random weights) over {small['images']} images, batch "
                 f"{small['batch_size']}: {per_image:.1f} s per image for all five in the forwards and measures "
                 f"({small['cpu_s'] / small['images']:.1f} s of CPU time per image, start included), "
                 f"peak {small['peak_rss_mb'] / 1024:.1f} GB; at that rate ImageNet's 50,000 `val/` images would "
                 f"take {50_000 * per_image / 3600:.0f} hours on {bench['threads']} CPU thread"
                 f"{'s' * (bench['threads'] != 1)}.")
    if bench.get("unfinished"):
        text += f" Cut short before they finished: {', '.join(bench['unfinished'])}."
    return text + f"\n\n`{bench['command']}` ({describe(bench)}).\n"

