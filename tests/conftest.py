"""Shared fixtures: the MicroPython runner (ESP32 heap imposed) and the real data folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from roadnode.mpy import runtime
from roadnode.paths import SHARED_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # the checks against outside sources must never quietly stop running: missing data is a
    # failure (set ROADNODE_SHARED to the folder that holds data/ when the checkout lives elsewhere)
    if not SHARED_DATA_DIR.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA_DIR}: these tests check the code against real "
                    "recordings and published results; set ROADNODE_SHARED=/path/to/shared", pytrace=False)
    return SHARED_DATA_DIR


def run_cli(*args: str, input: str | None = None):
    """Run the real ``roadnode`` console entry point in a subprocess; returns CompletedProcess."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", "from roadnode.cli import entry; entry()", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def mpy():
    """Run MicroPython code: ``mpy(code, sim=False, input=None) -> stdout text``; raises on error."""

    def _run(code: str, *, sim: bool = False, input: bytes | None = None, path=(), emit=None) -> str:
        return runtime.run_code(code, sim=sim, input=input, path=path, emit=emit).stdout.decode()

    return _run
