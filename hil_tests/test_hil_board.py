"""HIL checks that hold on any board: the REPL, the filesystem, the firmware's boot heartbeat."""

from __future__ import annotations



def test_repl_answers(mpremote):
    r = mpremote("exec", "import sys; print(sys.implementation.name)")
    assert r.returncode == 0 and r.stdout.strip() == "micropython"


def test_flash_filesystem_is_mounted_at_root(mpremote):
    r = mpremote("exec", "import os; s = os.statvfs('/'); print(s[0] * s[2], os.getcwd())")
    size, cwd = r.stdout.split()
    assert int(size) >= 1024 * 1024 and cwd == "/"
