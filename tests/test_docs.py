"""The docs say what is so. Every block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in the
docs is what ``python -m bench.report --write`` renders now from ``checkpoints/`` and ``bench/results/``;
every Python block of README.md and docs/*.md runs as written, from the repository's root, unless the
line before it says why it cannot (``<!-- skip-test: needs a GPU -->``), which the skip shows."""
import re
import shutil
from pathlib import Path

import pytest

from bench.report.docs import DOCS, blocks, main, render_docs, stale_blocks
from bench.report.sources import RESULTS

ROOT = Path(__file__).resolve().parents[1]
#: A Python block, with the reason it cannot run here when the line before it gives one.
PYTHON_BLOCK = re.compile(r"(?:<!-- skip-test: (?P<reason>[^>]+?) -->\n)?```python\n(?P<code>.*?)```", re.S)
#: A Markdown link or image to a file of the repository (its anchor aside).
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")
README_LINES_MAX = 220
READ_FIRST = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list:
    """One parameter per Python block of README.md and docs/*.md: its doc, first line, code and skip reason."""
    params = []
    for doc in READ_FIRST:
        text = (ROOT / doc).read_text()
        for found in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, found.start("code")) + 1
            params.append(pytest.param(doc, line, found["code"], found["reason"], id=f"{doc}:{line}"))
    return params


@pytest.mark.parametrize(("doc", "line", "code", "reason"), _python_blocks())
def test_every_python_block_of_the_docs_runs(doc: str, line: int, code: str, reason: str | None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What a newcomer copies runs: each block alone, in a fresh namespace, with its line numbers in
    the traceback."""
    if reason:
        pytest.skip(f"{doc}:{line}: {reason}")
    monkeypatch.chdir(ROOT)
    exec(compile("\n" * (line - 1) + code, str(ROOT / doc), "exec"), {"__name__": "__main__"})  # noqa: S102


def test_the_readme_is_short_and_its_test_command_is_what_ci_runs():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert len(readme.splitlines()) <= README_LINES_MAX
    command = "pip install -r requirements-dev.txt && python -m pytest"
    assert command in readme and command in ci.splitlines()


def test_every_relative_link_of_the_docs_finds_its_file():
    broken = [f"{doc}: {target}" for doc in READ_FIRST for target in RELATIVE_LINK.findall((ROOT / doc).read_text())
              if not ((ROOT / doc).parent / target).exists()]
    assert not broken


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
    results = tmp_path / "docs" / "results.md"
    text = results.read_text()
    start = text.index("<!-- bench:start -->")
    digit = next(i for i in range(start, text.index("<!-- bench:end -->")) if text[i].isdigit())
    results.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    with pytest.raises(SystemExit, match=r"docs/results\.md: bench"):
        main(["--root", str(tmp_path), "--check"])
    main(["--root", str(tmp_path), "--write"])
    assert stale_blocks(results.read_text(), text, ["bench"]) == []
