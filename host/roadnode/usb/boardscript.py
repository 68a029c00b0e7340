"""The board-side scripts of `roadnode flash` (usb/scripts/*.py: real files, compiled for the
ESP32 by the tests) as the code sent to a board's raw REPL.

A script gets its parameters as data: a first line ``_A = {...}`` (Python literals), never code
generated around them. Sent compacted: comment and blank lines dropped, 1-space indents (fewer
bytes over a 115200 baud line).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


def compact(code: str) -> str:
    """Board code with 1-space indents and no blank or comment lines."""
    out = []
    for line in code.splitlines():
        s = line.lstrip(" ")
        if s and not s.startswith("#"):
            out.append(" " * ((len(line) - len(s)) // 4) + s)
    return "\n".join(out)


@lru_cache(maxsize=None)
def _text(name: str) -> str:
    return compact((SCRIPTS_DIR / f"{name}.py").read_text())


def script(*names: str, **data) -> str:
    """The code of the named scripts, in order, after ``_A = data`` when data is given."""
    parts = [f"_A = {data!r}"] if data else []
    return "\n".join(parts + [_text(n) for n in names])
