"""HIL: `roadnode flash` updates a node that is running and measuring, again and again, with a
firmware that really differs (several modules, >= 30 KB of changed compiled bytes), each update
verified on the board and switched. Runs on the simulated board or a real one (`--port`)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roadnode.usb.link import NodeLink
from roadnode.paths import FIRMWARE_DIR

UPDATES = 20
BLOB_MODULES = 3  # modules the node never imports: their constants change, not its heap
BLOB_BYTES = 11000  # incompressible bytes per module and update


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True, timeout=timeout)


def release(src: Path, dst: Path, n: int, rng: random.Random) -> None:
    """Firmware release n: a copy of firmware/ with its own version, two of the node's modules
    changed and BLOB_MODULES modules of new incompressible constants."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    rn = dst / "rnfw"
    (rn / "version.py").write_text(f'VERSION = (0, 9, {n})\nVERSION_STR = "%d.%d.%d" % VERSION\n')
    for mod in ("uplink.py", "pipeline.py"):  # imported by the node: a tiny change each
        with open(rn / mod, "a") as f:
            f.write(f"\n_RELEASE = {n}\n")
    for k in range(BLOB_MODULES):
        (rn / f"blob{k}.py").write_text(f"# release {n}: data the node never imports\nDATA = {rng.randbytes(BLOB_BYTES)!r}\n")


def measuring(port, advancing: bool = True) -> dict:
    """The node runs and measures: its main loop answers a status, the IMU is healthy and the
    watchdog armed; ``advancing``: and its uptime advances (up to a second's wait)."""
    with NodeLink(port) as link:
        a = b = link.status()
        t_end = time.monotonic() + 10
        while advancing:
            b = link.status()
            if b["uptime_s"] > a["uptime_s"] or time.monotonic() > t_end:
                break
            time.sleep(0.2)
    assert (b["uptime_s"] > a["uptime_s"] or not advancing) and "imu_fault" not in b["flags"] \
        and "wdt_armed" in b["flags"], (a, b)
    return b


@pytest.mark.slow
def test_twenty_updates_of_a_running_node(flashed, tmp_path):
    port = flashed.port
    rng = random.Random(10)
    ok = 0
    slot = None
    try:
        for n in range(1, UPDATES + 1):
            rel = tmp_path / "release"
            release(FIRMWARE_DIR, rel, n, rng)
            before = measuring(port, advancing=n % 5 == 1)  # the uptime's second awaited every 5th
            r = cli("flash", "--port", port, "--firmware", str(rel), "--json")
            d = json.loads(r.stdout)
            assert r.returncode == 0 and d["ok"], (n, d["error"])
            assert d["changed"] and d["version"] == f"0.9.{n}" == d["heartbeat"]["fw_version"]
            assert slot is None or d["slot"] != slot, (n, d["slot"])  # switched: the slots alternate
            # the changed files travelled (the rest was copied on the board) and were verified
            assert d["sent"] >= BLOB_MODULES + 2 and d["bytes_sent"] >= 30000, d
            with NodeLink(port) as link:
                m = json.loads(link.call(link.P.MANIFEST, b"\0\0"))
            assert m["slot"] == d["slot"] and m["d"] == d["digest"] and m["fw"] == f"0.9.{n}"
            assert d["heartbeat"]["device_id"] == before["device_id"]
            slot = d["slot"]
            ok += 1
        # the no-change path: the same release again touches nothing, the node never stops
        r = cli("flash", "--port", port, "--firmware", str(rel), "--json")
        d = json.loads(r.stdout)
        assert r.returncode == 0 and d["ok"] and not d["changed"] and d["bytes_sent"] == 0
        after = measuring(port)
        assert d["heartbeat"]["uptime_s"] <= after["uptime_s"] and after["fw_version"] == f"0.9.{UPDATES}"
    finally:
        print(f"\nupdates of a running node: {ok}/{UPDATES} verified and switched")
        # back to the checkout's firmware for the rest of the session
        r = cli("flash", "--port", port, "--json")
        assert json.loads(r.stdout)["ok"], r.stdout
    assert ok == UPDATES
