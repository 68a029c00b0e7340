"""Helpers shared by the CLI modules: JSON output, warnings and rich consoles on stderr."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

from roadnode.jsonsafe import json_safe

# Human output goes to stdout; warnings/progress to stderr so that --json stdout stays clean.
out = Console()
err = Console(stderr=True)



def print_json(obj) -> None:
    """Print one JSON object on one line (NaN/inf become null: JSON has neither)."""
    sys.stdout.write(json.dumps(json_safe(obj), separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def warn(msg: str) -> None:
    """One yellow warning line on stderr, so that --json stdout stays clean."""
    err.print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)  # one line
