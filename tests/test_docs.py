"""The docs quote only what the results files say: every block between ``<!-- name:start -->`` and
``<!-- name:end -->`` in README.md, bench/README.md and docs/design.md is what
``python -m bench.report --write`` renders now from ``checkpoints/`` and ``bench/results/``."""
import shutil
from pathlib import Path

import pytest

from bench.report.docs import DOCS, blocks, main, render_docs, stale_blocks
from bench.report.sources import RESULTS

ROOT = Path(__file__).resolve().parents[1]


def test_every_block_of_the_docs_is_what_its_files_render():
    renders = blocks(ROOT)
    stale = [f"{doc}: {name}" for doc, (text, new) in render_docs(ROOT).items()
             for name in stale_blocks(text, new, renders[doc])]
    assert not stale, f"typed by hand or stale (run python -m bench.report --write): {stale}"


def test_every_doc_has_blocks_and_every_block_has_its_markers():
    for doc, renders in blocks(ROOT).items():
        text = (ROOT / doc).read_text()
        assert renders and doc in DOCS
        for name in renders:
            assert text.count(f"<!-- {name}:start -->") == 1 == text.count(f"<!-- {name}:end -->"), f"{doc}: {name}"


def test_a_figure_typed_into_a_block_is_caught_and_rewritten(tmp_path):
    """On a copy of the docs: one digit changed inside a block fails ``--check``, naming that block;
    ``--write`` puts the rendered text back."""
    for doc in DOCS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)
    (tmp_path / RESULTS).symlink_to(ROOT / RESULTS, target_is_directory=True)
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints", target_is_directory=True)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    start = text.index("<!-- bench:start -->")
    digit = next(i for i in range(start, text.index("<!-- bench:end -->")) if text[i].isdigit())
    readme.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    with pytest.raises(SystemExit, match=r"README\.md: bench"):
        main(["--root", str(tmp_path), "--check"])
    main(["--root", str(tmp_path), "--write"])
    assert stale_blocks(readme.read_text(), text, ["bench"]) == []



def test_the_readmes_first_code_block_runs():
    """What a newcomer copies first: the model block of "The models" runs as written."""
    import re

    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The models\n\n```python\n(.*?)```", text, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["logits"].shape == (1, 1000)
