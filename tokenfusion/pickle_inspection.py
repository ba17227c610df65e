"""What a refused pickle asked for, read from its bytes without running any of it: the globals it
would import, and whether ``torch.load(weights_only=True)`` refused it for carrying code."""
from __future__ import annotations

import pickletools
from pathlib import Path

__all__ = ["CODE_SIGNS", "asks_to_run_code", "pickle_imports", "starts_as_zip"]

#: Words of ``torch.load(weights_only=True)`` refusals that mean the pickle asked to build an object or
#: call a function (torch words every refusal "Weights only load failed", a PNG's bytes included).
CODE_SIGNS = ("Unsupported global", "GLOBAL ", "unrecognized function", "Can only create new object", "Can only build")


def pickle_imports(path: Path, limit: int = 1 << 20) -> list[str]:
    """The ``module.name`` globals that the pickle at the start of ``path`` would import, read from its
    opcodes (nothing is run); empty for a file that is not a pickle."""
    with path.open("rb") as f:
        data = f.read(limit)
    imports, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                imports.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                imports.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - damaged or not a pickle: what was read so far is the answer
        pass
    return imports


def asks_to_run_code(path: Path, refusal: BaseException) -> list[str] | None:
    """The imports of the pickle at ``path`` when ``refusal`` (an ``UnpicklingError`` of a
    ``weights_only`` load) means it asked to run code (possibly none named), else None."""
    imports = pickle_imports(path)
    return imports if imports or any(sign in str(refusal) for sign in CODE_SIGNS) else None


def starts_as_zip(path: Path) -> bool:
    """Whether ``path`` begins as a zip archive does (``torch.save``'s format)."""
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"
