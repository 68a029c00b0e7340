"""Helpers shared by the CLI modules: JSON output, warnings and rich consoles on stderr."""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console
from rich.markup import escape

# Human output goes to stdout; warnings/progress to stderr so that --json stdout stays clean.
out = Console()
err = Console(stderr=True)


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalars
        return _clean(o.item())
    return o


def print_json(obj) -> None:
    """Print one JSON object on one line (NaN/inf become null: JSON has neither)."""
    sys.stdout.write(json.dumps(_clean(obj), separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)  # one line
