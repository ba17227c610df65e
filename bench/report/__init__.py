"""``python -m bench.report``: every figure of the docs, from the files that measured it.

``python -m bench.report --write`` rewrites every block between ``<!-- name:start -->`` and
``<!-- name:end -->`` in the docs and notebooks (:data:`~bench.report.docs.DOCS`, :func:`blocks`)
from the shipped checkpoints and the results files in ``bench/results/``, each block naming the
command that wrote its file and the file's date, commit, threads and load average
(:func:`bench.provenance.describe`); ``--check`` exits 1 naming each block that differs; with neither
it prints the blocks. It lives beside the benchmarks whose files it reads, so the training package
never imports ``bench``. It needs ``requirements-dev.txt`` (nbformat, for the notebooks' blocks).
"""
from .docs import DOCS, blocks, fill_block, main, render_docs, stale_blocks

__all__ = ["DOCS", "blocks", "fill_block", "main", "render_docs", "stale_blocks"]
