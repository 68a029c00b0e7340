"""`os` as MicroPython's ESP32 port has it. The unix port's extras (getenv, system, putenv, ...) are
not here, so a firmware call that would fail on the board fails in the simulation too; the
simulation itself reaches the built-in module as `uos`."""

import uos as _os

chdir = _os.chdir
getcwd = _os.getcwd
ilistdir = _os.ilistdir
listdir = _os.listdir
mkdir = _os.mkdir
remove = _os.remove
rename = _os.rename
rmdir = _os.rmdir
stat = _os.stat
statvfs = _os.statvfs
mount = _os.mount
umount = _os.umount
urandom = _os.urandom
sep = "/"
VfsLfs2 = _os.VfsLfs2
VfsFat = _os.VfsFat


def sync():
    """Flush the filesystem (LittleFS writes through here; on the board this waits for flash)."""


_machine = "Generic ESP32 module with ESP32"  # simboot sets the simulated board's chip


def uname():
    """The ESP32 port's uname (machine: the simulated chip)."""
    from collections import namedtuple

    u = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    return u("esp32", "esp32", "1.29.0", "v1.29.0 on 2026-07-05", _machine)


def dupterm(stream=None, index=0):
    """No-op: no extra terminal."""
    return None
