"""Where the folders that are not Python modules live: the firmware, the board definitions, the
build cache, the shared data.

Installed from a wheel, firmware/ and boards/ ship inside the package (roadnode/_data/, put there
by setup.py); installed editable from a checkout, they are the checkout's own folders, found beside
the source. ROADNODE_ROOT overrides either (a folder holding firmware/ and boards/).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SHIPPED = _PACKAGE / "_data"  # a wheel's copy of firmware/ and boards/

if os.environ.get("ROADNODE_ROOT"):
    ROOT = Path(os.environ["ROADNODE_ROOT"])
elif (_SHIPPED / "firmware").is_dir():
    ROOT = _SHIPPED
else:
    ROOT = _PACKAGE.parents[1]  # the checkout: host/roadnode/ -> the repository
INSTALLED = ROOT == _SHIPPED  # a wheel install, not a checkout
FIRMWARE_DIR = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
DOCS_DIR = ROOT / "docs"


def _build_dir() -> Path:
    if os.environ.get("ROADNODE_BUILD"):
        return Path(os.environ["ROADNODE_BUILD"])
    if not INSTALLED:
        return ROOT / "build"
    from platformdirs import user_cache_dir  # an installed package's folder may be read-only

    return Path(user_cache_dir("roadnode", appauthor=False)) / "build"


# the compiled-firmware cache (roadnode.mpy.build); ROADNODE_BUILD overrides
BUILD_DIR = _build_dir()
# Simulated hardware that runs *inside* the MicroPython interpreter, below the firmware.
SIM_MPY_DIR = _PACKAGE / "sim" / "mpy"
# The project's shared data (real GPS logs, road profiles) sits beside the checkout.
SHARED_DATA_DIR = Path(os.environ.get("ROADNODE_SHARED", ROOT.parent / "shared")) / "data"
