"""Which block of which doc each render fills, filling them, and the command line."""
from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import nbformat

from bench.score_explanations import findings_text

from . import __doc__ as DESCRIPTION
from .app import app_bench, browser_timings
from .benchmarks import (
    analysis_section,
    bench_table,
    explain_ms_table,
    forward_parts,
    notebook_runtime,
    notebook_times,
    threads_and_jobs,
    train_table,
)
from .scores import score_times, scores_table
from .sources import RESULTS, checkpoints
from .teaching import attempts_section, leaving_chance, results_summary, results_table, teach_time, vit_history

__all__ = ["DOCS", "blocks", "fill_block", "main", "render_docs", "stale_blocks"]


NOTEBOOKS = ("01_tokens.ipynb", "02_fusion_strategies.ipynb", "03_explanations.ipynb", "04_train_and_compare.ipynb",
             "05_analysis.ipynb")


DOCS = ("README.md", "docs/results.md", "bench/README.md", "docs/design.md", "notebooks/README.md",
        *(f"notebooks/{name}" for name in NOTEBOOKS))


def fill_block(text: str, name: str, content: str) -> str:
    """``text`` with everything between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} block to fill")
    return re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: f"{start}\n{content}{end}", text, flags=re.S)


def blocks(root: Path) -> dict[str, dict[str, Callable[[], str]]]:
    """Every rendered block of every doc: ``{doc: {block name: render}}``."""
    root = Path(root)
    scores = sorted((root / RESULTS).glob("explain_scores_*.json"))
    return {
        "README.md": {"app-browser": lambda: browser_timings(root)},
        "docs/results.md": {
            "results": lambda: results_table(root / "checkpoints"),
            "teach-time": lambda: teach_time(root),
            "results-summary": lambda: results_summary(root),
            "teaching-attempts": lambda: attempts_section(root),
            "explain-scores": lambda: scores_table(scores),
            "explain-findings": lambda: findings_text(scores),
            "analysis": lambda: analysis_section(root),
            "bench": lambda: bench_table(root),
        },
        "bench/README.md": {
            "explain-ms": lambda: explain_ms_table(root),
            "app-bench": lambda: app_bench(root),
            "score-times": lambda: score_times(root),
            "train-throughput": lambda: train_table(root),
            "teach-time": lambda: teach_time(root),
        },
        "docs/design.md": {
            "vit-history": lambda: vit_history(root),
            "vit-leaving-chance": lambda: leaving_chance(root),
            "forward-parts": lambda: forward_parts(root),
            "threads-and-jobs": lambda: threads_and_jobs(root),
        },
        "notebooks/README.md": {"notebook-times": lambda: notebook_times(root)},
        **{f"notebooks/{name}": {"runtime": functools.partial(notebook_runtime, root, name)} for name in NOTEBOOKS},
    }


def _fill(doc: str, text: str, name: str, content: str) -> str:
    """``text`` of ``doc`` with block ``name`` filled; in a notebook, the block lives in a Markdown cell."""
    if not doc.endswith(".ipynb"):
        return fill_block(text, name, content)
    nb = nbformat.reads(text, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "markdown" and f"<!-- {name}:start -->" in c.source]
    if len(cells) != 1:
        raise ValueError(f"no Markdown cell holds one <!-- {name}:start --> ... <!-- {name}:end --> block to fill")
    cells[0].source = fill_block(cells[0].source, name, content)
    return nbformat.writes(nb) + "\n"


def render_docs(root: str | Path = ".") -> dict[str, tuple[str, str]]:
    """``{doc: (text now, text with every block rendered)}`` for the docs under ``root``."""
    out = {}
    for doc, renders in blocks(Path(root)).items():
        text = new = (Path(root) / doc).read_text()
        for name, render in renders.items():
            try:
                new = _fill(doc, new, name, render())
            except ValueError as error:
                raise SystemExit(f"{doc}: {error}") from None
        out[doc] = (text, new)
    checkpoints.cache_clear()  # a later render reads the files again
    return out


def stale_blocks(text: str, new: str, names: Iterable[str]) -> list[str]:
    """Those of the blocks ``names`` whose content differs between ``text`` and ``new``."""
    def body(doc: str, name: str) -> str | None:
        found = re.search(f"<!-- {name}:start -->(.*?)<!-- {name}:end -->", doc, re.S)
        return found.group(1) if found else None

    return [name for name in names if body(text, name) != body(new, name)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository (its checkpoints/, bench/results/ and docs)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write every block into " + ", ".join(DOCS))
    mode.add_argument("--check", action="store_true", help="exit 1 naming each block that differs from its files")
    args = parser.parse_args(argv)
    stale = []
    for doc, (text, new) in render_docs(args.root).items():
        names = stale_blocks(text, new, blocks(Path(args.root))[doc])
        stale += [f"{doc}: {name}" for name in names]
        if args.write and names:
            (Path(args.root) / doc).write_text(new)
            print(f"updated {doc}: {', '.join(names)}")
        elif not args.write and not args.check:
            print(f"# {doc}\n\n" + "\n".join(f"## {n}\n\n{r()}" for n, r in blocks(Path(args.root))[doc].items()))
    if args.check and stale:
        raise SystemExit("stale (run python -m bench.report --write): " + "; ".join(stale))

