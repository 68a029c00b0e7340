"""Import the firmware's hardware-free modules (``rnfw.*``) under CPython.

The packet codec, NMEA parser and config schema are single sources of truth shared by device and
host. They use ``micropython.const`` and may carry ``@micropython.native``/``viper`` decorators, so
CPython gets a tiny stand-in ``micropython`` module: const is the identity and the code emitters
become no-ops (only plain-Python code paths may be imported this way; viper functions with typed
pointers are not valid CPython and stay device-side).
"""

from __future__ import annotations

import importlib
import sys
import types

from roadnode.paths import FIRMWARE_DIR


def _install_micropython_stub() -> None:
    if "micropython" in sys.modules:
        return
    mp = types.ModuleType("micropython")
    mp.const = lambda x: x
    mp.native = lambda f: f
    mp.viper = lambda f: f
    mp.alloc_emergency_exception_buf = lambda n: None
    mp.schedule = lambda f, a: f(a)
    sys.modules["micropython"] = mp


def fw(module: str):
    """Return firmware module ``rnfw.<module>`` imported under CPython."""
    _install_micropython_stub()
    p = str(FIRMWARE_DIR)
    if p not in sys.path:
        sys.path.append(p)
    return importlib.import_module(f"rnfw.{module}")
