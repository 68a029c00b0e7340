"""Faults a real ESP32 node meets: a failed start (board file missing or corrupt, a bus that cannot
be built), the supply ADC at its rails, ESP-IDF log lines and other text on the console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from roadnode.usb.stream import ConsoleSplitter
from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware
from roadnode.mpy.fwimport import fw
from roadnode.packets import decode_packet, split_frames
from roadnode.paths import BOARDS_DIR
from roadnode.sim.board import SimBoard, wait_repl

MPREMOTE = [sys.executable, "-m", "mpremote"]
BOARDS = sorted(BOARDS_DIR.glob("*.json"))


# ---- supply voltage: divider, attenuation, pin, rails ----------------------------------------------
@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_supply_divider_keeps_a_vehicle_supply_in_the_adc_range(path):
    """9-16 V (and an 18 V spike) must land inside the 150-2450 mV the ESP32's ADC1 reads at 11 dB,
    on an ADC1 pin (ADC2 is unusable with WiFi on)."""
    bd = json.loads(path.read_text())
    s = bd["supply"]
    assert s["atten_db"] == 11
    s3 = "S3" in bd["mcu"]["chip"]
    assert (1 <= s["adc_pin"] <= 10) if s3 else (32 <= s["adc_pin"] <= 39)
    top, bottom = s["divider_ohm"]
    assert s["divider"] == pytest.approx((top + bottom) / bottom, rel=1e-3)
    for volts in (9, 12, 16, 18):
        pin_mv = volts * 1000 / s["divider"]
        assert 150 * 1.5 < pin_mv < 2450, (volts, pin_mv)  # with margin above the floor


SUPPLY = r"""
import sys, json, simhw, dev_imu
import machine, os
bd_path, cfg_path, volts = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(bd_path) as f:
    bd = json.load(f)
os._machine = 'Generic %s module with %s' % ((bd['mcu']['chip'].replace('-', ''),) * 2)
simhw.attach_i2c(bd['i2c']['id'], bd['imu']['addr'], dev_imu.Mpu6050(None))
from rnfw import app
node = app.Node(bd_path, cfg_path, vitals_path=cfg_path + '.vitals')
pin = bd['supply']['adc_pin']
import binascii
for v in volts:
    if v == 'none':
        simhw.adc_uv.pop(pin, None)           # divider broken / not fitted: the pin floats to 0 V
    elif v.startswith('pin='):
        simhw.adc_uv[pin] = int(v[4:])        # microvolts straight on the pin
    else:
        simhw.adc_uv[pin] = int(float(v) * 1e6 / bd['supply']['divider'])
    n = node.status_packet()
    print(binascii.hexlify(node.pkt[:n]).decode())
"""


def _supply(tmp_path, board, *volts):
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    p = runtime.run(["-c", SUPPLY, str(BOARDS_DIR / f"{board}.json"), str(cfg), *volts], sim=True,
                    path=[compiled_firmware()], timeout=120)
    return [decode_packet(bytes.fromhex(x)) for x in p.stdout.decode().split()]


@pytest.mark.parametrize("board", [p.stem for p in BOARDS])
def test_supply_reported_for_9_12_16_volts_and_unknown_at_the_rails(tmp_path, board):
    # 3.15 V on the pin: what the old DevKitC divider (4.0) made of 12.6 V -> saturated
    hb = _supply(tmp_path, board, "9", "12", "16", "pin=3150000", "none", "pin=2600000")
    for h, volts in zip(hb[:3], (9, 12, 16)):
        assert h["supply_mv"] == pytest.approx(volts * 1000, rel=0.01) and "supply_at_rail" not in h["flags"]
    for h in hb[3:]:
        assert h["supply_mv"] is None and "supply_at_rail" in h["flags"], h


ADC = r"""
import machine, simhw
simhw.adc_uv[35] = 1500000
a = machine.ADC(machine.Pin(35))
print(a.read_uv() // 1000, a.read())            # 0 dB by default: 1.5 V is already saturated
a.atten(machine.ADC.ATTN_11DB)
for uv in (1000000, 2400000, 2800000, 3300000, 50000):
    simhw.adc_uv[35] = uv
    print(a.read_uv() // 1000, a.read())
simhw.adc_uv[35] = 4200000
a.read_uv()
print(sorted(simhw.adc_damaged))
for p in (5, 40):
    try:
        machine.ADC(machine.Pin(p))
    except ValueError as e:
        print(e)
"""


def test_simulated_adc_saturates_and_clamps_like_the_esp32():
    out = runtime.run_code(ADC, sim=True).stdout.decode().splitlines()
    mv, raw = map(int, out[0].split())
    assert mv == 1100 and raw == 4095
    rows = [tuple(map(int, x.split())) for x in out[1:6]]
    assert rows[0][0] == 1000 and rows[1][0] == 2400  # linear inside 150-2450 mV
    assert 2450 < rows[2][0] < 2800  # flattens above
    assert rows[3] == (3100, 4095)  # saturated: full scale
    assert rows[4][0] < 150  # below the range: stuck near the offset
    assert out[6] == "[35]"  # 4.2 V on a 3.3 V pin
    assert out[7:] == ["invalid pin for ADC"] * 2


# ---- the console carries text as well as frames ----------------------------------------------------
def _frames(n):
    P, C = fw("packet"), fw("cobs")
    out = []
    for i in range(n):
        buf = bytearray(64)
        k = P.encode_segment(buf, i, 77, i, 100, 481486000, 171077000, 345, 42, 31, 61, 0)
        enc = bytearray(C.max_encoded(k) + 2)
        m = C.encode(buf, k, memoryview(enc)[1:])
        out.append(b"\x00" + bytes(enc[1 : m + 1]) + b"\x00")
    return out


def _stream():
    f = _frames(6)
    idf = b"E (1234) i2c.master: I2C transaction unexpected nack detected\r\n"
    # opened mid-frame; IDF lines between frames; a stray 0x00 in the text; a REPL prompt
    return (f[0][9:] + idf + f[1] + f[2] + idf + b"roadnode: cannot\x00 start\r\n" + f[3] + b"\x1b[0;31m" + idf
            + b">>> " + f[4] + f[5]), 5


def test_splitter_resynchronises_on_stray_text_whatever_the_chunking():
    data, want = _stream()
    for size in (1, 3, 7, 64, len(data)):
        sp = ConsoleSplitter()
        items = []
        for i in range(0, len(data), size):
            items += sp.feed(data[i : i + size])
        frames = [decode_packet(_cobs(x)) for k, x in items if k == "frame"]
        assert [p["seg_index"] for p in frames] == list(range(1, 6)), (size, frames)
        text = b"".join(x for k, x in items if k == "text")
        assert b"i2c.master" in text and b">>> " in text
    # the stateless splitter (roadnode decode, offline runs) skips the text too; the frame cut by
    # the start of the capture is the only thing it cannot read
    got = [decode_packet(f) for f in split_frames(data)]
    assert [p["seg_index"] for p in got if p["type"] == "segment"] == list(range(1, 6)) and len(got) <= 6


def _cobs(raw):
    C = fw("cobs")
    dst = bytearray(len(raw))
    n = C.decode(raw, len(raw), dst)
    return bytes(dst[:n]) if n >= 0 else b""


def _holds(pid: int, path: str) -> bool:
    """Whether process pid has path open (its /proc fd links)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def test_monitor_skips_stray_text_between_frames(tmp_path):
    """`roadnode monitor` on a line that carries IDF log lines, prints and a REPL prompt between
    frames (and is opened in the middle of one): every frame decoded, none misread."""
    import pty
    import tty

    m, s = pty.openpty()
    tty.setraw(s)
    port = os.ttyname(s)
    data, want = _stream()
    p = subprocess.Popen([sys.executable, "-m", "roadnode.cli", "monitor", "--port", port, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        # the monitor has the port open (a condition, not a sleep: a loaded machine starts it late)
        end = time.monotonic() + 60
        while not _holds(p.pid, port):
            assert p.poll() is None and time.monotonic() < end, "the monitor did not open the port"
            time.sleep(0.02)
        for i in range(0, len(data), 40):
            os.write(m, data[i : i + 40])
            time.sleep(0.01)
        reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")), daemon=True)
        reader.start()
        end = time.monotonic() + 60
        while len(lines) < want and time.monotonic() < end and p.poll() is None:
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)  # (ends the watch cleanly: issue 10)
        p.wait(timeout=30)
        reader.join(10)  # (stdout is the reader's alone)
        errp = p.stderr.read()
    finally:
        os.close(m)
        os.close(s)
    assert p.returncode == 0, errp
    rows = [json.loads(x) for x in lines]
    assert [r["type"] for r in rows] == ["segment"] * want and [r["seg_index"] for r in rows] == list(range(1, 6))


IDF = r"""
import machine, esp, simhw
i2c = machine.I2C(0)
for lvl in ('default', 'none_only', 'off'):
    if lvl == 'none_only':
        esp.osdebug(None)          # what the port does with None: back to LOG_ERROR
    elif lvl == 'off':
        from rnfw import board
        board.quiet_idf_log()
    try:
        i2c.readfrom_mem(0x50, 0, 1)
    except OSError:
        print('nack', lvl)
"""


def test_idf_nack_lines_until_the_firmware_turns_idf_logging_off():
    out = runtime.run_code(IDF, sim=True).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("E (") and "i2c.master" in lines[0] and lines[1] == "nack default"
    assert lines[2].startswith("E (") and lines[3] == "nack none_only"  # osdebug(None) keeps errors
    assert lines[4:] == ["nack off"]


# ---- a node that cannot start comes back in safe mode and says why ---------------------------------
def mp(port, *args, timeout=180):  # against a hang only
    return subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=timeout)


def _status(port, timeout=150):
    """`roadnode status --json` once the node answers (it is booting; slowly on a loaded machine)."""
    end = time.monotonic() + timeout
    while True:
        r = subprocess.run([sys.executable, "-m", "roadnode.cli", "status", "--port", port, "--json"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0 or time.monotonic() > end:
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)
        time.sleep(0.3)


def _restart(b):
    b.run_main()


@pytest.mark.slow
def test_i2c_constructor_failure_gives_safe_mode_that_answers_and_reports(tmp_path):
    # in real time: the safe mode tries a normal boot again after 10 min of the board's clock, which
    # fast mode passes in seconds while the node idles, so a loaded machine's slow `status` found the
    # retry's reset reason ("deliberate") instead of the first boot's
    b = SimBoard(flash_dir=tmp_path, faults={"i2c_init": 1}, realtime=True).start()
    try:
        wait_repl(b.port)  # the board is up (a condition, not a fixed wait)
        b.deploy({"heartbeat_s": 10})
        st = _status(b.port)
        assert st["boot_error"] == "bus" and "safe_mode" in st["flags"] and "wdt_armed" in st["flags"]
        assert st["uptime_s"] >= 0 and st["reset_reason"] in ("soft", "power_on")
        # the console protocol works: `roadnode config` (what a repair needs) answers
        r = subprocess.run([sys.executable, "-m", "roadnode.cli", "config", "get", "heartbeat_s", "--port", b.port],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "10", r.stderr
    finally:
        b.stop()


@pytest.mark.slow
@pytest.mark.parametrize("damage, code", [("rm", "board_missing"), ("corrupt", "board_invalid")])
def test_missing_or_corrupt_board_file_gives_safe_mode(tmp_path, damage, code):
    b = SimBoard(flash_dir=tmp_path).start()
    try:
        wait_repl(b.port)  # the board is up (a condition, not a fixed wait)
        b.deploy({"heartbeat_s": 10})
        assert _status(b.port)["boot_error"] == "none"
        if damage == "rm":
            r = mp(b.port, "rm", ":board.json")
        else:
            r = mp(b.port, "exec", "f = open('board.json', 'w'); f.write('{\"name\": '); f.close()")
        assert r.returncode == 0, r.stderr
        _restart(b)
        st = _status(b.port)
        assert st["boot_error"] == code and "safe_mode" in st["flags"] and "wdt_armed" in st["flags"]
        # the heartbeats say so too, and `ping` has the reason in words
        from roadnode.usb.link import NodeLink

        with NodeLink(b.port) as link:
            ping = link.ping()
        assert ping["boot_error"].startswith(code) and "board.json" in ping["boot_error"]
    finally:
        b.stop()


FAIL = r"""
import machine, simhw, time
from rnfw import rescue, vitals
try:
    rescue.fail(MemoryError('memory allocation failed'))
except simhw.WatchdogReset:
    print('watchdog reset', machine.RTC().memory())
"""


def test_when_even_safe_mode_fails_the_watchdog_resets_and_the_next_boot_says_why(tmp_path):
    env = dict(os.environ, RNSIM_STATE=str(tmp_path))
    old = os.environ.copy()
    os.environ.update(env)
    try:
        out = runtime.run_code(FAIL, sim=True).stdout.decode()
        assert "watchdog reset" in out and "memory" in out
        os.environ["RNSIM_RESET_CAUSE"] = "3"
        nxt = runtime.run_code("from rnfw import vitals\nv = vitals.Vitals(%r)\nprint(v.reset_reason, v.boot_error)\n"
                               "v2 = vitals.Vitals(%r)\nprint(v2.boot_error)"
                               % (str(tmp_path / "v.json"), str(tmp_path / "v.json")), sim=True).stdout.decode()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert nxt.split() == ["watchdog", "4", "0"]  # reported once, by the boot after the failure


# ---- the console wait sleeps, it does not spin ---------------------------------------------------
WAIT = r"""
import time as T
class Spy:
    spun = 0
    def __getattr__(self, k):
        return getattr(T, k)
    def sleep_us(self, us):      # time.sleep_us spins the ESP32's CPU (mp_hal_delay_us)
        Spy.spun += us
        T.sleep_us(us)
from rnfw import console
console.time = Spy()
class Node:
    pass
c = console.Console(Node())
for us in (45000, 12345, 999):
    Spy.spun = 0
    t0 = T.ticks_us()
    c.wait(us)
    print(T.ticks_diff(T.ticks_us(), t0) - us, Spy.spun)
"""


def test_console_wait_polls_instead_of_spinning(monkeypatch):
    # the waiting mechanism alone: the CPU time of the wait's own code (and the spy's) is not charged
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    out = runtime.run_code(WAIT, sim=True, input=b"").stdout.decode().split("\n")
    rows = [tuple(map(int, x.split())) for x in out if x.strip()]
    assert len(rows) == 3
    for late, spun in rows:
        assert 0 <= late < 200 and spun < 1000  # on time; at most the last part of a millisecond spun


# ---- the ICM-42688-P's FIFO on the whole node --------------------------------------------------
@pytest.fixture(scope="module")
def icm_drive():
    from roadnode.scenario import make_scenario

    return make_scenario(iso_class="B", length_m=400, speed_kmh=60, imu="icm42688", odr_hz=500, seed=5)


def test_icm42688_fifo_surprises_on_the_simulated_node(icm_drive, monkeypatch):
    """A FIFO config glitch (packets 3 of 16 bytes for a while) costs nothing: same segments bit for
    bit; a stray byte costs one resync and the samples flushed, counted, and the node runs on."""
    from roadnode.sim.offline import run_scenario

    # bit for bit needs the same batches in every run: CPU charging off (its jitter moves pass ends)
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")

    def segs(r):
        return [(s["seg_index"], s["iri_m_per_km"], s["rms_g"], s["flags"]) for s in r["packets"] if s["type"] == "segment"]

    st = {"heartbeat_s": 10}
    clean = run_scenario(icm_drive, settings=st)
    glitch = run_scenario(icm_drive, settings=st, faults={"imu_fifo_cfg": [8_000_000, 0x03]})
    shifted = run_scenario(icm_drive, settings=st, faults={"imu_misalign": 8_000_000})
    assert len(segs(clean)) >= 3 and segs(glitch) == segs(clean)
    hb = [p for p in glitch["packets"] if p["type"] == "status"][-1]
    assert hb["samples_lost"] == 0 and hb["fifo_overflows"] == 0
    hb = [p for p in shifted["packets"] if p["type"] == "status"][-1]
    assert 1 <= hb["samples_lost"] <= 60 and "watchdog" not in shifted["stderr"]
    assert [s[0] for s in segs(shifted)] == [s[0] for s in segs(clean)]
    assert not [p for p in clean["packets"] + glitch["packets"] + shifted["packets"] if p["type"] == "error"]
