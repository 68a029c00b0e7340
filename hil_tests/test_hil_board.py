"""HIL checks that hold on any board: the REPL, the filesystem, the firmware's boot heartbeat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_repl_answers(mpremote):
    r = mpremote("exec", "import sys; print(sys.implementation.name)")
    assert r.returncode == 0 and r.stdout.strip() == "micropython"


def test_flash_filesystem_is_mounted_at_root(mpremote):
    r = mpremote("exec", "import os; s = os.statvfs('/'); print(s[0] * s[2], os.getcwd())")
    size, cwd = r.stdout.split()
    assert int(size) >= 1024 * 1024 and cwd == "/"


@pytest.mark.sim_only
def test_deployed_firmware_sends_a_boot_heartbeat(board, tmp_path):
    # (on a real board this needs `roadnode flash`, which comes with the tools issue)
    board.deploy({"heartbeat_s": 10, "device_id": 77})
    r = subprocess.run([sys.executable, "-m", "roadnode.cli", "monitor", "--port", board.port, "--json",
                        "--duration", "3"], capture_output=True, text=True, timeout=60)
    hb = [json.loads(x) for x in r.stdout.splitlines() if '"status"' in x]
    assert hb and hb[0]["device_id"] == 77 and hb[0]["fw_version"] == "0.1.0"
