"""The layering the design promises: models declare their structure, nothing else guesses it; the
library imports no app, training or notebook code; the app draws and holds no tensor arithmetic."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_MODELS = sorted(
    p for folder in ("tokenfusion", "app", "train", "bench") for p in (ROOT / folder).rglob("*.py")
    if "tokenfusion/models" not in p.as_posix()
)
#: Ways code guessed a model's structure before models declared it: architecture names compared,
#: attributes probed by name, token modules found by type, layer groups cut out of module names.
GUESSES = {
    "architecture name compared": re.compile(r"""config\.arch\s*(==|!=|in\b|not in\b)|\barch\s*(==|!=)\s*["']"""),
    "attribute probed by name": re.compile(r"""getattr\(\s*model\s*,\s*["'](trunk|blocks|cross_blocks|cnn_tokens|patch_tokens)"""),
    "token module found by type": re.compile(r"isinstance\([^)]*(CNNTokens|PatchTokens|Trunk|CrossBlock)\b"),
    "layer group cut from a name": re.compile(r"""rpartition\(\s*["']\.["']\s*\)"""),
    "module-name prefix matched": re.compile(r"""\.startswith\(\s*f?["'](trunk|blocks|cross_blocks|fusion_blocks|cnn_blocks|patch_blocks)"""),
}

#: Names that are not guesses: the file, the text matched, and why it is allowed.
ALLOWED = {
    ("tokenfusion/checkpoint.py", "config.arch !="): "a file named after an architecture must hold it",
    ("tokenfusion/viz/diagrams.py", 'arch == "'): "draws the diagram of a named strategy, loaded or not",
}


@pytest.mark.parametrize("path", OUTSIDE_MODELS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_structure_guessed_outside_models(path: Path) -> None:
    text, where = path.read_text(), path.relative_to(ROOT).as_posix()
    found = [f"{what}: {m.group(0)!r}" for what, pattern in GUESSES.items() for m in pattern.finditer(text)
             if (where, m.group(0)) not in ALLOWED]
    assert not found, f"{path.relative_to(ROOT)} guesses a model's structure: {found}. Read model.structure instead."


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}


def test_library_imports_no_app_training_or_notebooks() -> None:
    bad = {f"{p.relative_to(ROOT)}: {name}" for p in (ROOT / "tokenfusion").rglob("*.py") for name in _imports(p)
           if name.split(".")[0] in ("app", "train", "notebooks", "solutions")}
    assert not bad


def test_training_imports_no_benchmark() -> None:
    """``train`` sits below ``bench``: the report and the benchmarks read what training wrote, never the reverse."""
    bad = {f"{p.relative_to(ROOT)}: {name}" for p in (ROOT / "train").rglob("*.py") for name in _imports(p)
           if name.split(".")[0] == "bench"}
    assert not bad


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_imports(path: Path, modules: set[str]) -> set[str]:
    """The library modules ``path`` imports, anywhere in it (inside functions too), relative imports
    resolved; ``from package import module`` counts the module."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            found |= {source, *(f"{source}.{alias.name}" for alias in node.names)}
    return {m for m in found if m in modules and m != name}


LIBRARY = {_module(p): p for p in (ROOT / "tokenfusion").rglob("*.py")}


def test_explanations_import_no_analysis() -> None:
    """``explain`` sits below ``analysis`` (docs/design.md, layers): the analysis builds on the
    explanation session, never the other way round; both use ``tokenfusion.interventions``."""
    bad = {f"{name}: {m}" for name, p in LIBRARY.items() if name.startswith("tokenfusion.explain")
           for m in _library_imports(p, set(LIBRARY)) if m.startswith("tokenfusion.analysis")}
    assert not bad


def test_no_import_circle_in_the_library() -> None:
    """No module of ``tokenfusion`` reaches itself through its imports (a circle works only by the
    order Python happens to run them in)."""
    graph = {name: _library_imports(p, set(LIBRARY)) for name, p in LIBRARY.items()}
    circles = []
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == start:
                circles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo += graph[name]
    assert not circles, f"modules in an import circle: {sorted(circles)}"


def test_the_app_holds_no_tensor_arithmetic() -> None:
    """``app/`` asks the library and draws: it neither imports torch's functional API nor calls
    tensor maths (only the device choice and the loader's lock touch torch)."""
    maths = re.compile(r"torch\.(nn\.functional|softmax|matmul|einsum|stack|cat|topk|mean|sum|no_grad)|\.softmax\(|@ ")
    bad = {f"{p.relative_to(ROOT)}: {m.group(0)}" for p in (ROOT / "app").rglob("*.py")
           for m in maths.finditer(p.read_text())}
    assert not bad
