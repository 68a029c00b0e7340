"""Config schema and store, vitals reset record, board definitions and the machine/time shims,
run on MicroPython with the ESP32 heap (sim shims on MICROPYPATH)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from roadnode.paths import BOARDS_DIR

CFG = fw("config")


def mp(code: str, **kw) -> str:
    return runtime.run_code(code, sim=True, **kw).stdout.decode()


# ---- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key, value, msg",
    [
        ("segment_length_m", 5, "segment_length_m: 5 is below the minimum 10 m"),
        ("odr_hz", 5000, "odr_hz: 5000 is above the maximum 1000 Hz"),
        ("mount", "roof", "mount: 'roof' is not one of axle, body"),
        ("accel_range_g", 3, "accel_range_g: 3 is not one of 2, 4, 8, 16"),
        ("colour", 1, "colour: unknown key"),
        ("heartbeat_s", "60", "heartbeat_s: expected a whole number"),
    ],
)
def test_validation_names_key_and_reason(key, value, msg):
    with pytest.raises(CFG.ConfigError, match=msg.replace("(", r"\(")):
        CFG.validate({key: value})


def test_parse_value_for_cli():
    from roadnode.errors import InputError
    from roadnode.nodeconfig import parse_value

    assert parse_value("segment_length_m", "200") == 200
    assert parse_value("body_gain", "1.25") == 1.25
    assert parse_value("accel_range_g", "16") == 16
    with pytest.raises(InputError, match="not a whole number"):
        parse_value("odr_hz", "fast")
    with pytest.raises(InputError, match="segment_length_m: 5 is below the minimum 10 m"):
        parse_value("segment_length_m", "5")


STORE = r"""
import os
from rnfw import config
D = %r
P = D + '/config.json'
def show(tag):
    cfg, st = config.load(P)
    print(tag, cfg['segment_length_m'], st.split(':')[0])
show('new')
config.save({'segment_length_m': 200}, P)
show('saved')
config.save({'segment_length_m': 300}, P)
show('second')
with open(P, 'w') as f:
    f.write('{"segment_length_m": 4')          # half-written
show('halfwritten')
with open(P, 'w') as f:
    f.write('{"segment_length_m": 4}')         # valid JSON, invalid value
show('invalid')
os.remove(P); os.remove(D + '/config.bak')
with open(P, 'w') as f:
    f.write('garbage')
show('nobackup')
os.remove(P)
with open(P + '.tmp', 'w') as f:
    f.write('{"segment_length_m": 500}')       # power cut between the renames
show('tmp')
try:
    config.save({'segment_length_m': 1}, P)
except config.ConfigError as e:
    print('refused', e)
show('after_refused')
"""


def test_store_atomic_and_fallbacks(tmp_path):
    out = mp(STORE % str(tmp_path)).split("\n")
    assert out[0] == "new 100 ok"
    assert out[1] == "saved 200 ok"
    assert out[2] == "second 300 ok"
    assert out[3] == "halfwritten 200 fallback"  # the last good copy
    assert out[4] == "invalid 200 fallback"
    assert out[5] == "nobackup 100 fallback"  # defaults
    assert out[6] == "tmp 500 ok"
    assert out[7].startswith("refused segment_length_m: 1 is below the minimum 10")
    assert out[8] == "after_refused 500 ok"


# ---- vitals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cause, rec, reason, unexpected",
    [
        (1, b"", "power_on", False),
        (1, b"RN1\x00", "brownout", True),
        (2, b"RN1\x01", "deliberate", False),
        (2, b"RN1\x00", "crash", True),
        (3, b"RN1\x00", "watchdog", True),
        (5, b"RN1\x00", "soft", False),
    ],
)
def test_reset_classification(tmp_path, cause, rec, reason, unexpected):
    (tmp_path / "rtc.bin").write_bytes(bytes((len(rec), 0)) + rec)  # the sim RTC file: u16 length, data
    code = f"""
from rnfw import vitals
v = vitals.Vitals({str(tmp_path / 'v.json')!r})
print(v.reset_reason, v.unexpected_reboots)
print(v._load_count())   # the count persists in flash
v2 = vitals.Vitals({str(tmp_path / 'v.json')!r})   # reboot again, power never lost: RTC record alive
print(v2.reset_reason)
"""
    import os

    env_extra = {"RNSIM_RESET_CAUSE": str(cause), "RNSIM_STATE": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra)
    try:
        out = mp(code).split()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert out[0] == reason and int(out[1]) == (1 if unexpected else 0) and int(out[2]) == int(out[1])
    if cause == 1:
        assert out[3] == "brownout"  # a second power-on with RTC memory intact was no real power-up


def test_status_packet_from_vitals_decodes_with_field_names():
    out = mp("""
from rnfw import vitals, packet
import binascii
v = vitals.Vitals('/tmp/_rn_vitals_test.json')
v.i2c_errors = 3; v.gps_sats = 7; v.supply_mv = 12345; v.config_fallback = True
buf = bytearray(64)
n = packet.encode_status(buf, 1, 42, v.status_values(120, (0, 0, 0, 0, 0xFFFF, 0)))
print(binascii.hexlify(buf[:n]).decode())
""").strip()
    d = fw("packet_decode").decode(bytes.fromhex(out))
    assert d["uptime_s"] == 120 and d["i2c_errors"] == 3 and d["gps_sats"] == 7 and d["supply_mv"] == 12345
    assert d["config_fallback"] is True and d["fw_version"] == fw("version").VERSION_STR and d["free_heap"] > 50000


# ---- boards --------------------------------------------------------------------------------------
BOARDS = sorted(BOARDS_DIR.glob("*.json"))


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_definitions_build_their_buses(path):
    code = f"""
from rnfw import board
bd = board.load({str(path)!r})
i2c = board.make_i2c(bd); uart = board.make_uart(bd); adc = board.supply_adc(bd); led = board.led(bd)
print(bd['name'], i2c.id, uart.id, uart.baudrate, bd['imu']['part'], adc is not None, led is not None)
"""
    name, i2c, uart, baud, part, adc, led = mp(code).split()
    bd = json.loads(path.read_text())
    assert name == bd["name"] == path.stem and int(i2c) == bd["i2c"]["id"] and int(uart) == bd["uart"]["id"]
    assert int(baud) == bd["gps"]["baud"] and part in ("mpu6050", "icm42688")
    assert bd["mcu"]["arch"] == "xtensawin" and adc == "True"


def test_board_errors(tmp_path):
    f = tmp_path / "b.json"
    f.write_text('{"name": "x"}')
    out = mp(f"""
from rnfw import board
for p in ({str(f)!r}, {str(tmp_path / 'none.json')!r}):
    try:
        board.load(p)
    except board.BoardError as e:
        print(e)
""")
    assert "missing key 'mcu'" in out and "no board definition" in out


# ---- shims ---------------------------------------------------------------------------------------
def test_shims_behave_like_the_esp32():
    out = mp("""
import machine, time, simhw, errno
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
try:
    i2c.readfrom_mem(0x68, 0x75, 1)
except OSError as e:
    print('nack', e.args[0] == errno.ENODEV)
try:
    machine.Timer(0).init(period=10, callback=lambda t: 0, hard=True)
except ValueError:
    print('hard timer refused')
hits = []
t = machine.Timer(1)
t.init(period=100, mode=machine.Timer.PERIODIC, callback=lambda t: hits.append(time.ticks_ms()))
t0 = time.ticks_ms()
time.sleep_ms(1000)
print('timer', len(hits), time.ticks_diff(time.ticks_ms(), t0) >= 1000)
t.deinit()
print('wrap', time.ticks_diff(time.ticks_add(5, -10), 5), time.ticks_add((1 << 30) - 1, 2))
w = machine.WDT(timeout=2000)
time.sleep_ms(1500); w.feed(); time.sleep_ms(1500); w.feed()
print('fed ok')
try:
    time.sleep_ms(2500)
    time.ticks_ms()
except simhw.WatchdogReset:
    print('watchdog fired')
print('cause', machine.reset_cause() == machine.PWRON_RESET)
""")
    assert "nack True" in out and "hard timer refused" in out
    assert ("timer 10 True" in out or "timer 9 True" in out) and "wrap -10 1" in out
    assert "fed ok" in out and "watchdog fired" in out and "cause True" in out
