"""The firmware's NMEA parser, run on MicroPython with the ESP32 heap, against gpsd and fuzzing."""

from __future__ import annotations

import collections
import json
import random
from decimal import Decimal
from pathlib import Path

import pytest

from roadnode.gnss import check_log
from roadnode.mpy import runtime

from roadnode.paths import SHARED_DATA_DIR

LOGS = sorted((SHARED_DATA_DIR / "nmea/gpsd").glob("*.log"))
NAV = ("RMC", "GGA", "VTG")


def _gpsd_accepted(log: Path) -> list[str]:
    chk = log.with_name(log.name + ".chk").read_bytes().decode("latin1").splitlines()
    return [ln.strip() for ln in chk if ln.startswith("$") and ln[3:6] in NAV]


def _ref_angle(field: str, hemi: str, degw: int) -> Decimal:
    v = Decimal(field[:degw]) + Decimal(field[degw:]) / 60
    return -v if hemi in "SW" else v


@pytest.fixture(scope="module")
def results(shared_data):
    return {log.name: check_log(log)[0] for log in LOGS}


def test_accepts_exactly_what_gpsd_accepted(results):
    total = agreed = 0
    for log in LOGS:
        gpsd = collections.Counter(_gpsd_accepted(log))
        mine = collections.Counter(r["sentence"] for r in results[log.name] if r["ok"] and r["type"] in NAV)
        assert not (mine - gpsd), f"{log.name}: accepted what gpsd rejected: {list(mine - gpsd)[:3]}"
        total += sum(gpsd.values())
        agreed += sum((gpsd & mine).values())
    assert total > 1000
    assert agreed / total >= 0.99, (agreed, total)


def test_values_agree_with_the_sentence_fields(results):
    checked = 0
    for rows in results.values():
        for r in rows:
            if not (r["ok"] and r["type"] in NAV):
                continue
            f = r["sentence"].split("*")[0].split(",")
            if r["type"] in ("RMC", "GGA"):
                i = 3 if r["type"] == "RMC" else 2
                if f[i]:
                    assert abs(Decimal(str(r["lat"])) - _ref_angle(f[i], f[i + 1], 2)) <= Decimal("1e-7")
                    assert abs(Decimal(str(r["lon"])) - _ref_angle(f[i + 2], f[i + 3], 3)) <= Decimal("1e-7")
                    checked += 1
                else:
                    assert r["lat"] is None
            if r["type"] == "RMC" and f[7]:
                assert abs(r["speed_mps"] - float(Decimal(f[7]) * 1852 / 3600)) <= 0.01
            if r["type"] == "VTG" and len(f) > 7 and f[8] == "K" and f[7]:
                assert abs(r["speed_mps"] - float(Decimal(f[7]) / Decimal("3.6"))) <= 0.01
            if r["time"] is not None:
                hh, mm, ss = f[1][:2], f[1][2:4], f[1][4:]
                assert r["time"].startswith(f"{hh}:{mm}:{ss[:2]}")
    assert checked > 500


def test_known_bad_inputs_are_named(results):
    fire = [r for r in results["firefly-II.log"] if r["type"] in NAV]
    assert sum(r["error"] == "checksum" for r in fire) >= 20
    hp = [r for r in results["hp58534a.log"] if r["type"] in NAV]
    assert hp and all(r["error"] == "no_checksum" for r in hp)
    ub = results["ublox-8.log"]
    assert ub[-1]["error"] == "no_checksum"  # the truncated last line


FUZZ = r"""
import random, sys, gc
from rnfw import nmea
random.seed(%d)
base = [%s]
p = nmea.NmeaParser()
n = 0
buf = bytearray(300)
for i in range(%d):
    s = bytearray(base[random.getrandbits(8) %% len(base)])
    op = random.getrandbits(3)
    if op == 0:
        for k in range(1 + random.getrandbits(3)):
            j = random.getrandbits(8) %% len(s); s[j] ^= 1 << random.getrandbits(3)
    elif op == 1:
        s = s[: random.getrandbits(8) %% len(s)]
    elif op == 2:
        t = base[random.getrandbits(8) %% len(base)]
        s = s[: random.getrandbits(8) %% len(s)] + t[random.getrandbits(8) %% len(t):]
    elif op == 3:
        s = bytearray(random.getrandbits(8) for _ in range(random.getrandbits(7)))
    elif op == 4:
        s = s.replace(b"\r\n", b"\n")
    elif op == 5:
        s = s.replace(b",", b"", 1)
    elif op == 6:
        s = s + b"9" * random.getrandbits(8)
    try:
        p.feed(s)
    except Exception as e:
        print("EXC", repr(e), bytes(s))
        sys.exit(1)
    n += 1
print("done", n, p.sentences_ok, p.checksum_errors, p.malformed, p.overflows)
"""


def test_fuzz_on_micropython_raises_nothing(shared_data):
    lines = []
    for log in LOGS:
        lines += [ln + b"\r\n" for ln in log.read_bytes().split(b"\r\n") if ln.startswith(b"$")][:30]
    base = ",".join(repr(bytes(x)) for x in lines[:200])
    out = runtime.run_code(FUZZ % (1, base, 100_000), timeout=900).stdout.decode()
    assert out.startswith("done 100000"), out
    counts = [int(x) for x in out.split()[2:]]
    assert counts[0] > 1000 and counts[1] > 1000 and counts[2] > 1000  # all paths exercised


def test_no_allocation_per_byte_and_bounded_buffer(shared_data):
    log = str(LOGS[[p.name for p in LOGS].index("ublox-neo-m9n-nmea.log")])
    code = f"""
import gc, micropython
from rnfw import nmea
p = nmea.NmeaParser()
data = open({log!r}, 'rb').read(4000)
chunks = [bytearray(data[k:k + 64]) for k in range(0, len(data), 64)]
p.feed(data)  # warm up (first fix may allocate for big longitudes)
gc.collect()
i = 0
nc = len(chunks)
micropython.heap_lock()
while i < nc:
    p.feed(chunks[i])
    i += 1
micropython.heap_unlock()
print('ok', p.sentences_ok)
junk = bytearray(b'A' * 1000)
junk[0] = 36
gc.collect()
free0 = gc.mem_free()
for i in range(1000):  # 1 MB line that never ends
    p.feed(junk)
    junk[0] = 65
gc.collect()
print('drift', free0 - gc.mem_free(), p.overflows)
"""
    out = runtime.run_code(code).stdout.decode().split()
    assert out[0] == "ok" and int(out[1]) > 10
    assert out[2] == "drift" and abs(int(out[3])) < 256 and int(out[4]) >= 1


def test_spliced_truncated_and_mixed_line_endings(mpy):
    code = r"""
from rnfw import nmea
got = []
p = nmea.NmeaParser(callback=lambda p, t, e: got.append((nmea.TYPES[t], nmea.ERRORS[e])))
good = b"$GPRMC,081836.75,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*%02X\r\n"
x = 0
for c in good[1:good.index(b"*")]:
    x ^= c
good = good.replace(b"%02X", b"%02X" % x)
p.feed(b"\x00\xff garbage $GPGGA,0818" + good)        # spliced: truncated, then good
p.feed(good.replace(b"\r\n", b"\n") + good[:20])       # LF only, then cut
p.feed(good[20:])                                      # ...rest of the cut one arrives later
p.feed(b"$GPRMC,081836.75,A,3751.65,S,14507.36,E*00\r")
print(got)
print(p.lat_e7, p.lon_e7, p.tod_ms, p.fix_valid)
"""
    lines = mpy(code).strip().splitlines()
    got = eval(lines[0])
    assert got == [("other", "truncated"), ("RMC", ""), ("RMC", ""), ("RMC", ""), ("other", "checksum")]
    lat, lon, tod, valid = lines[1].split()
    assert int(lat) == -378608333 and int(lon) == 1451226667 and int(tod) == 29916750 and valid == "True"


def test_cli_nmea_json_and_table(cli, shared_data):
    log = shared_data / "nmea/gpsd/ublox-8.log"
    r = cli("nmea", str(log), "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    first = rows[0]
    assert set(first) >= {"line", "sentence", "ok", "error", "lat", "lon", "speed_mps", "time"}
    assert first["sentence"] == "$GNRMC,000941.00,A,4404.13387,N,12118.85628,W,0.029,,100117,,,A*7D"
    assert first["line"] == 11 and first["ok"] and first["time"] == "00:09:41.000"
    assert first["lat"] == pytest.approx(44.0688978, abs=1e-7) and first["lon"] == pytest.approx(-121.3142713, abs=1e-7)
    r = cli("nmea", str(log))
    assert r.returncode == 0 and "no_checksum" in r.stdout and "positions: 144" in r.stdout
    r = cli("nmea", str(shared_data / "nope.log"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_checksum_in_either_case_every_value(mpy):
    """NMEA 0183 writes the checksum as two hex digits; receivers differ in case. Every one of the 256
    values, upper and lower case, is accepted when it is right and refused when one digit is off."""
    code = r"""
from rnfw import nmea
body = b"GPRMC,081836.75,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E"
x = 0
for c in body:
    x ^= c
ok = bad = 0
for v in range(256):
    p = nmea.NmeaParser()
    for fmt in (b"%02X", b"%02x"):
        p.feed(b"$" + body + b"*" + (fmt % v) + b"\r\n")
    if v == x:
        ok = p.sentences_ok
    else:
        bad += p.checksum_errors
# the right value with its digits in lower case, one by one
p = nmea.NmeaParser()
for s in (b"%02x" % x, (b"%02X" % x)[:1] + (b"%02x" % x)[1:], (b"%02x" % x)[:1] + (b"%02X" % x)[1:]):
    p.feed(b"$" + body + b"*" + s + b"\r\n")
print(x, ok, bad, p.sentences_ok)
"""
    x, ok, bad, mixed = (int(v) for v in mpy(code).split())
    # both spellings of the right value accepted, every wrong one refused as a checksum error
    assert ok == 2 and bad == 2 * 255 and mixed == 3
    assert any(c in "abcdef" for c in f"{x:02x}")  # the vector really has a letter digit


def test_viper_byte_work_equals_its_plain_twin_on_micropython(shared_data):
    """rnfw.nmea_viper (taking bytes, checksum, field offsets) against rnfw.nmea_twin on MicroPython:
    every gpsd log and a corrupted copy of them (bytes flipped, dropped, lines spliced, cut into
    random chunks) give the same sentences, errors, lines and values."""
    data = b"".join(log.read_bytes()[:6000] for log in LOGS)
    code = r"""
import random
from rnfw import nmea, nmea_twin, nmea_viper
data = bytearray(open(%r, 'rb').read())
random.seed(7)
bad = bytearray(data)
for k in range(600):
    j = random.getrandbits(16) %% len(bad)
    r = random.getrandbits(2)
    if r == 0:
        bad[j] ^= 1 << random.getrandbits(3)
    elif r == 1:
        bad[j] = 36
    else:
        bad[j] = 10
def run():
    random.seed(8)  # the same chunks both times
    got = []
    p = nmea.NmeaParser(callback=lambda p, t, e: got.append((t, e, p.start_line, p.s_lat_e7, p.s_lon_e7, p.s_speed_mmps, p.s_tod_ms)))
    p.feed(data)
    i = 0
    while i < len(bad):
        n = random.getrandbits(7) + 1
        p.feed(memoryview(bad)[i:i + n], min(n, len(bad) - i))
        i += n
    got.append((p.line, p.sentences_ok, p.checksum_errors, p.malformed, p.overflows, p.ignored))
    return got
a = run()
nmea._take = nmea_twin.take
nmea._check = nmea_twin.check
b = run()
print(len(a), a == b, a[-1][1], a[-1][2], a[-1][3], a[-1][4])
"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "in.bin"
        f.write_bytes(data)
        # (a logic test: a heap for the records of both runs, not the ESP32's)
        out = runtime.run_code(code % str(f), timeout=600, heap=8 << 20).stdout.decode().split()
    n, same, ok, chk, malformed, over = out
    assert same == "True" and int(n) > 1000
    assert int(ok) > 500 and int(chk) > 50 and int(malformed) > 50  # every path taken


def test_stream_state_layout_is_the_same_in_parser_viper_and_twin():
    import re

    from roadnode.paths import FIRMWARE_DIR

    def consts(name):
        src = (FIRMWARE_DIR / "rnfw" / name).read_text()
        return dict(re.findall(r"^(_(?:N|IN|LINE|START|MAXLEN|EV\w*)) = const\((\d+)\)", src, re.M))

    parser, viper, twin = consts("nmea.py"), consts("nmea_viper.py"), consts("nmea_twin.py")
    assert len(viper) == 10 and viper == twin
    assert parser == {k: v for k, v in viper.items() if k in parser} and len(parser) == 9
