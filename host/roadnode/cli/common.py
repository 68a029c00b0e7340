"""Helpers shared by the CLI modules: JSON output, warnings and rich consoles on stderr."""

from __future__ import annotations

import json
import signal
import sys
import threading

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


def stop_on_signals() -> threading.Event:
    """Ctrl-C (SIGINT) and SIGTERM end a watch (monitor, capture) at its next read: the port closed,
    the recording flushed, the summary printed, exit 0. A flag, not an exception thrown wherever the interpreter
    happens to be (inside the port lock's mutex, a finalizer, the live table's refresh), which could
    leave a lock held and the process hung. A second Ctrl-C interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop  # (signals reach the main thread only: a caller running us in a thread stops us itself)

    def handler(signum, frame):
        """First signal: stop cleanly; a second one interrupts at once."""
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
