"""What the node does when it cannot start normally: loaded only then (the node's heap is tight).

app.main() builds the Node in safe mode after a failure (no board file, buses or IMU touched:
it answers the console protocol so `roadnode flash` / `config` can repair it, keeps the watchdog
fed, and tries a normal start again after 10 minutes). If even that fails, main.py calls fail():
the reason goes to RTC memory for the next boot's heartbeat and the watchdog resets the board.
Only a technician's Ctrl-C leaves the node at the REPL.
"""

import gc
import time

import machine

from rnfw.packet import BOOT_ERRORS


def code_of(e):
    """packet.BOOT_ERRORS index for an exception raised while the node started."""
    if isinstance(e, MemoryError):
        return 4
    n = type(e).__name__
    if n == "BoardError":
        return 1 if "no board definition" in str(e) else 2
    if n == "ConfigError":
        return 5
    if isinstance(e, (OSError, ValueError, TypeError, KeyError)):
        return 3  # a bus constructor refused the board's ids/pins, or the bus driver failed
    return 6


def safe_node(node_cls, vitals, e):
    """A node in safe mode after start-up failed with ``e``: the reason printed and kept for its status."""
    code = code_of(e)
    why = "%s: %s" % (BOOT_ERRORS[code], e)
    print("roadnode: cannot start (%s); safe mode" % why)
    e = None
    gc.collect()
    node = node_cls(boot_error=code, vitals=vitals)
    node.boot_text = why[:100]
    return node


def fail(e):
    """Even safe mode failed: keep the reason for the next boot and let the watchdog reset the
    board (a running ESP32 watchdog cannot be stopped; this arms it if it was not)."""
    code = code_of(e)
    try:
        from rnfw.vitals import _MAGIC

        m = machine.RTC()
        rec = m.memory()
        head = rec[:4] if rec[:3] == _MAGIC and len(rec) > 3 else _MAGIC + b"\x00"
        m.memory(head + bytes((code,)))  # byte 4: read by rnfw.vitals at the next boot
    except Exception:
        pass
    print("roadnode: failed (%s: %s); restarting" % (BOOT_ERRORS[code], e))
    e = None
    gc.collect()
    machine.WDT(timeout=5000)  # not fed: the board resets
    while True:
        time.sleep_ms(1000)
