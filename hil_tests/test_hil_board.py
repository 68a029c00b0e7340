"""HIL checks that hold on any MicroPython board, firmware or not: the REPL and the filesystem.
(The firmware's boot heartbeat and the rest of the node: test_hil_node.py.)"""

from __future__ import annotations


def test_repl_answers(mpremote):
    r = mpremote("exec", "import sys; print(sys.implementation.name)")
    assert r.returncode == 0 and r.stdout.strip() == "micropython"


def test_flash_filesystem_is_mounted_at_root(mpremote):
    r = mpremote("exec", "import os; s = os.statvfs('/'); print(s[0] * s[2], os.getcwd())")
    size, cwd = r.stdout.split()
    assert int(size) >= 1024 * 1024 and cwd == "/"
