"""Where the repository's non-Python-package folders live (firmware, boards, shared data).

roadnode is installed editable (``pip install -e .``) from a checkout, so these are found
relative to this file. ROADNODE_ROOT overrides the checkout root (e.g. for a packaged copy).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("ROADNODE_ROOT", Path(__file__).resolve().parents[2]))
FIRMWARE_DIR = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
DOCS_DIR = ROOT / "docs"
# Simulated hardware that runs *inside* the MicroPython interpreter, below the firmware.
SIM_MPY_DIR = Path(__file__).resolve().parent / "sim" / "mpy"
# The project's shared data (real GPS logs, road profiles) sits beside the checkout.
SHARED_DATA_DIR = Path(os.environ.get("ROADNODE_SHARED", ROOT.parent / "shared")) / "data"
