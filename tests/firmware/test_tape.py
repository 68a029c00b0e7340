"""The one tape format and reader (roadnode/mpy/lib/tape.py): what the host writes is what CPython
and MicroPython read, batch by batch as the node's main loop takes it; a damaged tape says so;
the simulated IMU's read allocates nothing per sample."""

from __future__ import annotations

import random
import struct
from array import array

import numpy as np
import pytest

from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from roadnode.mpy.lib import tape as T
from roadnode.paths import SIM_MPY_DIR
from roadnode.scenario import make_scenario
from roadnode.sim.tape import header, record, tape_bytes, write_tape, write_tapes

# Plays a tape through rnfw.pipeline.run_batches with a recorder in place of the pipeline and
# writes what it was fed: the same code under CPython and on MicroPython.
DUMP = """
class Rec:
    def __init__(self, out):
        self.out = out
    def feed_gps(self, data, n, t):
        self.out.write(b'G' + struct.pack('<IH', t, n) + bytes(data[:n]))
    def feed_imu(self, s, n, t):
        self.out.write(b'I' + struct.pack('<IH', t, n) + bytes(memoryview(s)[:3 * n]))

def dump(T, run_batches, src, dst):
    imu = T.ImuReader(src)
    gps = T.GpsReader(src)
    with open(dst, 'wb') as out:
        for _ in run_batches(Rec(out), imu, gps, array('h', bytes(6 * 128)), bytearray(256)):
            pass
    imu.f.close()
    gps.f.close()
"""


def _dump_cpython(src, dst):
    ns = {"struct": struct, "array": array}
    exec(DUMP, ns)
    ns["dump"](T, fw("pipeline").run_batches, str(src), str(dst))
    return dst.read_bytes()


def _dump_micropython(src, dst):
    runtime.run_code(f"import struct, tape\nfrom array import array\nfrom rnfw.pipeline import run_batches\n"
                     f"{DUMP}\ndump(tape, run_batches, {str(src)!r}, {str(dst)!r})")
    return dst.read_bytes()


def _parse(dump: bytes):
    """[(kind, t_ms, payload)] from a dump."""
    out, o = [], 0
    while o < len(dump):
        kind = dump[o : o + 1]
        t, n = struct.unpack_from("<IH", dump, o + 1)
        size = n * 6 if kind == b"I" else n
        out.append((kind, t, dump[o + 7 : o + 7 + size]))
        o += 7 + size
    return out


LAST = b"$GPVTG,last,arrives,after,the,imu*22\r\n"


def _edge_tape(tmp_path):
    """A hand-made tape: the int16 extremes, a sentence longer than the reader's buffer, an empty
    record, a sentence still arriving when the IMU's tape ends (at 10 s, 100 Hz)."""
    rng = random.Random(5)
    counts = array("h", [-32768, 32767, 0, 32767, -32768, -1] + [rng.randint(-32768, 32767) for _ in range(3 * 998)])
    sents = [(0, b"$GPRMC,first*00\r\n"), (120_000, bytes(range(32, 232))), (400_000, b""),
             (700_000, b"$GPGGA," + b"9" * 60 + b"*11\r\n"), (10_020_000, LAST)]
    gps = b"".join(record(t, s) for t, s in sents)
    p = tmp_path / "edge.tape"
    p.write_bytes(header(100, 16, 2048, 9600, len(counts) // 3, len(gps)) + counts.tobytes() + gps)
    return p, np.array(counts, dtype=np.int16).reshape(-1, 3), sents, 10, 9600


def _check(batches, counts, sents, period_ms, baud):
    """The batches carry every sample and every GPS byte in order, each when the node would have it."""
    imu = b"".join(p for k, _, p in batches if k == b"I")
    assert imu == counts.astype("<i2").tobytes()
    n = 0
    for k, t, p in batches:
        if k == b"I":
            n += len(p) // 6
            assert n == min(t // period_ms + 1, len(counts))  # all samples with time <= t, no more
    arrive = [(ts + i * (10_000_000 // baud), b) for ts, s in sents for i, b in enumerate(s)]
    got = [(t, p[i]) for k, t, p in batches if k == b"G" for i in range(len(p))]
    assert [b for _, b in got] == [b for _, b in arrive[: len(got)]]
    for (t, _), (ta, _) in zip(got, arrive):
        assert ta <= t * 1000 and (t == 50 or ta > t * 1000 - 50_000)  # in the first batch that had it
    last_t = max(t for _, t, _ in batches)
    assert len(got) == sum(1 for ta, _ in arrive if ta <= last_t * 1000)


def test_scenario_tape_round_trip_cpython_equals_micropython(tmp_path):
    sc = make_scenario(iso_class="C", length_m=400, speed_kmh=50, seed=8)
    p = write_tape(sc, tmp_path / "drive.tape")
    a = _dump_cpython(p, tmp_path / "cp.bin")
    b = _dump_micropython(p, tmp_path / "mp.bin")
    assert a == b
    sents = [(int(round(t * 1e6)), s) for t, s in sc.gps_sentences()]
    _check(_parse(a), sc.imu_counts, sents, 1000 // int(sc.meta["imu"]["odr_hz"]), sc.meta["gps"]["baud"])
    # the file is the bytes the golden model and replay read from memory, record by record
    assert p.read_bytes() == tape_bytes(sc)
    assert p.read_bytes().endswith(b"".join(record(t, s) for t, s in sents))


def test_edge_values_round_trip_cpython_equals_micropython(tmp_path):
    p, counts, sents, period, baud = _edge_tape(tmp_path)
    a = _dump_cpython(p, tmp_path / "cp.bin")
    assert a == _dump_micropython(p, tmp_path / "mp.bin")
    batches = _parse(a)
    _check(batches, counts, sents, period, baud)
    gps = b"".join(x for k, _, x in batches if k == b"G")
    assert bytes(range(32, 232)) in gps and b"9" * 60 + b"*11\r\n" in gps
    # the run ends at the batch after the last sample (10.05 s): the last sentence is cut there
    assert gps.endswith(LAST[: (10_050_000 - 10_020_000) // (10_000_000 // baud) + 1]) and not gps.endswith(LAST)


def test_tape_folder_for_the_simulated_board(tmp_path):
    sc = make_scenario(iso_class="B", length_m=200, speed_kmh=40, seed=1)
    info = write_tapes(sc, tmp_path / "t")
    imu = T.ImuReader(info["tape"])
    assert info["tape"] == str(tmp_path / "t" / T.FILE)
    assert (imu.samples, imu.odr_hz, imu.range_g, imu.baud) == (len(sc.imu_counts), sc.meta["imu"]["odr_hz"],
                                                               sc.meta["imu"]["range_g"], sc.meta["gps"]["baud"])
    v = [0, 0, 0]
    imu.seek(imu.samples - 1)
    assert imu.next(v) and v == sc.imu_counts[-1].tolist()  # as recorded (scale 1)
    assert not imu.next(v) and v == [0, 0, sc.meta["imu"]["lsb_per_g"]]  # then at rest, 1 g up
    imu.f.close()


@pytest.mark.parametrize("cut, msg", [(7, "truncated tape: "), (3000, "truncated tape: "), (-5, "after the end"),
                                      (None, "not a roadnode tape")])
def test_a_damaged_tape_is_refused_with_a_clear_error_on_both(tmp_path, cut, msg):
    p, *_ = _edge_tape(tmp_path)
    data = p.read_bytes()
    bad = tmp_path / "bad.tape"
    bad.write_bytes(data[:10] if cut is None else (data[:-cut] if cut > 0 else data + bytes(-cut)))
    for cls in (T.ImuReader, T.GpsReader):
        with pytest.raises(T.TapeError, match=msg) as e:
            cls(str(bad))
        assert str(bad) in str(e.value)
    out = runtime.run_code(f"import tape\ntry:\n    tape.GpsReader({str(bad)!r})\nexcept tape.TapeError as e:\n"
                           f"    print(e)").stdout.decode().strip()
    assert out == str(e.value)  # the same one line on MicroPython


def test_a_tape_with_a_header_that_lies_is_caught_while_reading(tmp_path):
    """Sizes that agree but GPS records that do not fit their section: an error, not garbage."""
    gps = record(0, b"$GPRMC*00\r\n")
    p = tmp_path / "lie.tape"
    p.write_bytes(header(100, 8, 4096, 9600, 0, len(gps) - 4) + gps[:-4])
    with pytest.raises(T.TapeError, match="runs past the end"):
        T.GpsReader(str(p))


SIM_IMU = """
import micropython, gc, tape, dev_tape
from array import array
t = dev_tape.ImuTape(%r)
v = array('i', (0, 0, 0))
first = []
for i in range(3):
    t.next(v)
    first += [v[0], v[1], v[2]]
t.seek(0)
k = 0
a0 = 0  # every global exists before the count (a new one may grow the module's dict)
gc.collect()
a0 = gc.mem_alloc()
micropython.heap_lock()  # any allocation from here on raises MemoryError
while k < %d:  # the IMU's whole tape (block after block) and past its end
    t.next(v)
    k += 1
micropython.heap_unlock()
d = gc.mem_alloc() - a0
x, y, z = v[0], v[1], v[2]
t.seek(5)  # a node powered up mid-drive: its IMU starts at that moment's sample
t.next(v)
print(d, x, y, z, t.range_g, v[0], v[1], v[2], *first)
"""


def test_simulated_imu_reads_allocate_nothing_and_give_g_over_16384(tmp_path):
    """dev_tape.ImuTape is on the simulated node's sampling path (dev_imu pulls a sample per ODR
    tick): with the heap locked it reads the whole tape, block by block, and then the still sensor;
    the counts come in the models' g/16384 units (x range_g/2)."""
    sc = make_scenario(iso_class="B", length_m=30, speed_kmh=30, seed=4, odr_hz=100)
    write_tapes(sc, tmp_path)
    out = runtime.run_code(SIM_IMU % (str(tmp_path / T.FILE), len(sc.imu_counts) + 50),
                           path=[SIM_MPY_DIR]).stdout.split()
    delta, x, y, z, rng, *rest = map(int, out)
    sixth, first = rest[:3], rest[3:]
    assert delta == 0
    assert (x, y, z) == (0, 0, 16384)  # past the end: at rest, 1 g up
    scaled = sc.imu_counts.astype(int) * (rng // 2)
    assert rng == sc.meta["imu"]["range_g"] and first == scaled[:3].ravel().tolist() and sixth == scaled[5].tolist()


def test_estimate_reader_allocates_nothing_per_batch(tmp_path):
    p, counts, *_ = _edge_tape(tmp_path)
    code = f"""
import micropython, gc, tape
from array import array
imu = tape.ImuReader({str(p)!r})
out = array('h', bytes(6 * 128))
t = 0
n = 0
k = 0
a0 = 0  # every global exists before the count (a new one may grow the module's dict)
gc.collect()
a0 = gc.mem_alloc()
micropython.heap_lock()
while k >= 0:
    t += 50
    k = imu.read_until(t, out)
    if k > 0:
        n += k
micropython.heap_unlock()
print(gc.mem_alloc() - a0, n, out[0], out[1], out[2])
"""
    delta, n, *last_batch_first = map(int, runtime.run_code(code).stdout.split())
    assert delta == 0 and n == len(counts)
    starts = [0, *range(6, n, 5)]  # 100 Hz: 6 samples by t = 50 ms, then 5 per batch
    assert last_batch_first == counts[starts[-1]].tolist()
