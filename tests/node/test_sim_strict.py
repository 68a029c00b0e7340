"""The simulated board is as strict as an ESP32: CPU time costs board time, UART buffers are
bounded, the watchdog outlives a soft reset."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from roadnode.mpy import runtime
from roadnode.sim.board import SimBoard, wait_repl

MPREMOTE = [sys.executable, "-m", "mpremote"]

_SRC = """
import simhw, machine
class Wire:  # 2000 bytes have arrived on the GPS line, none read yet
    def __init__(self):
        self.i = 0
    def any(self, now):
        return 2000 - self.i
    def read_into(self, buf, now, n):
        k = min(n, 2000 - self.i)
        for j in range(k):
            buf[j] = (self.i + j) & 255
        self.i += k
        return k
simhw.attach_uart(2, Wire())
"""


def test_uart_bytes_beyond_the_fifo_and_rxbuf_are_lost_and_counted():
    code = _SRC + """
u = machine.UART(2, 9600, rxbuf=256)
n = u.any()
b = bytearray(2000)
k = u.readinto(b)
print(n, k, simhw.uart_lost[2], b[k - 1], u.any())
"""
    out = runtime.run_code(code, sim=True).stdout.decode().split()
    # 256-byte driver ring + 128-byte hardware FIFO hold the first 384 bytes; the rest is lost
    assert out == ["384", "384", str(2000 - 384), str(383 & 255), "0"]


def _clock_after_busy_work(ratio: str) -> int:
    code = """
import time
t0 = time.ticks_us()
x = 0
for i in range(400000):  # a fixed amount of work (~10 ms here), whatever the machine's load
    x += 1
time.sleep_us(1000)
print(time.ticks_diff(time.ticks_us(), t0))
"""
    env_ratio = {"RNSIM_CPU_RATIO": ratio}
    import os

    old = os.environ.get("RNSIM_CPU_RATIO")
    os.environ.update(env_ratio)
    try:
        return int(runtime.run_code(code, sim=True).stdout)
    finally:
        if old is None:
            os.environ.pop("RNSIM_CPU_RATIO", None)
        else:
            os.environ["RNSIM_CPU_RATIO"] = old


def test_firmware_cpu_time_is_charged_to_the_board_clock():
    # at 100 ESP32 us per unix us, ~10 ms of work is ~1 s of board time; it lands at the sleep
    charged = _clock_after_busy_work("100")
    assert charged > 250_000, charged
    assert _clock_after_busy_work("0") < 5_000  # without charging only the sleep counts


def mp(board, *args, timeout=180):  # against a hang only
    return subprocess.run([*MPREMOTE, "connect", board.port, *args], capture_output=True, text=True, timeout=timeout)


def test_watchdog_keeps_counting_across_a_soft_reset(tmp_path):
    b = SimBoard(flash_dir=tmp_path).start()
    try:
        wait_repl(b.port)  # the board is up (a condition, not a fixed wait)
        assert mp(b, "exec", "import machine; machine.WDT(timeout=2000)").returncode == 0
        assert mp(b, "soft-reset").returncode == 0
        r = mp(b, "resume", "exec", "import machine; print(machine.reset_cause())")
        assert r.stdout.strip() == "5"
        resets = b.resets
        mp(b, "resume", "exec", "import time; time.sleep_ms(3000)", timeout=20)  # nobody feeds it
        end = time.monotonic() + 10
        while b.resets == resets and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)
        r = mp(b, "resume", "exec", "import machine; print(machine.reset_cause())")
        assert r.stdout.strip() == "3"  # WDT_RESET
        # a watchdog reset stops the watchdog: the board stays up now
        mp(b, "resume", "exec", "import time; time.sleep_ms(3000)", timeout=20)
        r = mp(b, "resume", "exec", "import machine; print(machine.reset_cause())")
        assert r.stdout.strip() == "3" and b.resets == resets + 1
    finally:
        b.stop()


def _slow_firmware_root(tmp_path, iterations: int):
    """A copy of the checkout's firmware (boards linked) whose every pass first burns ``iterations``
    turns of an empty loop: ROADNODE_ROOT points the tools at it."""
    import shutil

    from roadnode.paths import BOARDS_DIR, FIRMWARE_DIR

    root = tmp_path / "slow"
    shutil.copytree(FIRMWARE_DIR, root / "firmware")
    (root / "boards").symlink_to(BOARDS_DIR)
    app = root / "firmware" / "rnfw" / "app.py"
    src = app.read_text()
    anchor = "        prev = self.ms\n"
    assert src.count(anchor) == 1, "Node.step() changed: update this test's anchor"
    app.write_text(src.replace(anchor, anchor + f"        for _ in range({iterations}):\n            pass\n"))
    return root


def _vitals_after_drive(scenario, root=None) -> dict:
    import json
    import os

    env = dict(os.environ)
    env.pop("RNSIM_CPU_RATIO", None)  # the default: charged at the ratio measured now
    if root is not None:
        env["ROADNODE_ROOT"] = str(root)
    r = subprocess.run([sys.executable, "-m", "roadnode.cli", "sim", "run", str(scenario), "--json",
                        "--set", "heartbeat_s=10"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    return [x for x in rows if x["type"] == "status"][-1]


@pytest.mark.slow
def test_a_slow_firmware_overflows_the_imu_fifo_where_todays_does_not(tmp_path, cli):
    """CPU time is charged by default: a firmware whose passes cost ~1.5 s of ESP32 time (400k empty
    loop turns, ~10 ms here) cannot drain a 200 Hz MPU-6050 FIFO (170 samples, 64 drained a pass)
    and loses samples; today's firmware on the same drive loses none. Margins of 3x either way:
    the machine's load moves the ratio and the measured time together (same process, schedstat)."""
    f = tmp_path / "d.npz"
    assert cli("scenario", "make", "--iso-class", "B", "--length-m", "300", "--speed-kmh", "45", "--seed", "4",
               "-o", str(f)).returncode == 0
    ok = _vitals_after_drive(f)
    assert ok["fifo_overflows"] == 0 and ok["samples_lost"] == 0, ok
    slow = _vitals_after_drive(f, _slow_firmware_root(tmp_path, 400_000))
    print("slow firmware:", {k: slow[k] for k in ("fifo_overflows", "samples_lost", "uptime_s")})
    assert slow["fifo_overflows"] >= 3 and slow["samples_lost"] >= 500, slow
