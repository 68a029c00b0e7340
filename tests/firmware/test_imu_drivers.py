"""IMU drivers on MicroPython against the register-level models below machine.I2C."""

from __future__ import annotations

from array import array

import pytest

from roadnode.mpy import runtime

SETUP = """
import machine, time, simhw, dev_imu
from array import array
from rnfw import imu, board
board.quiet_idf_log()  # as the node does: IDF's NACK lines would mix with the printed results

class Ramp:
    # x counts up, y counts down (negative values check big-endian sign handling), z = 1 g
    def __init__(self):
        self.n = 0
    def next(self, v):
        self.n += 1
        v[0] = self.n * 16
        v[1] = -self.n * 16
        v[2] = 16384

src = Ramp()
model = dev_imu.{cls}(src)
simhw.attach_i2c(0, 0x68, model)
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
drv = imu.detect(i2c, 0x68)
drv.configure(odr_hz={odr}, range_g={rng})
out = array('h', bytearray(2 * 3 * 256))
"""


def run(code, cls="Mpu6050", odr=200, rng=8):
    return runtime.run_code(SETUP.format(cls=cls, odr=odr, rng=rng) + code, sim=True).stdout.decode()


@pytest.mark.parametrize("cls, part", [("Mpu6050", "mpu6050"), ("Icm42688", "icm42688")])
def test_detect_rate_and_values(cls, part):
    out = run("""
drv.read(out)
t0 = time.ticks_us(); p0 = model.produced
total = 0
first = None
for i in range(20):
    time.sleep_ms(60)
    n = drv.read(out)
    if n and first is None:
        first = (out[0], out[1], out[2])
    total += n
el = time.ticks_diff(time.ticks_us(), t0)
print(drv.part, drv.odr_hz, drv.lsb_per_g, total, el * 200 // 1000000, first[0], first[1], first[2], out[3*(n-1)], model.produced - p0, model.produced)
""", cls=cls)
    p, odr, lsb, total, expect, x0, y0, z0, xl, produced, allp = out.split()
    assert p == part and int(odr) == 200 and int(lsb) == 4096
    assert abs(int(total) - int(expect)) <= 1 and 0 <= int(produced) - int(total) <= 1
    # +-8 g: source counts (16384/g) / 4
    assert int(x0) > 0 and int(y0) == -int(x0) and int(z0) == 4096
    assert int(allp) - 1 <= int(xl) // 4 <= int(allp)  # ramp n*16 at +-2 g -> n*4 at +-8 g: nothing skipped


def test_wrong_part_and_nack_give_clear_errors():
    code = """
import machine, simhw, dev_imu
from rnfw import imu
class Other(dev_imu.Mpu6050):
    who_am_i = 0x71
i2c = machine.I2C(0)
for setup in ('none', 'other'):
    simhw.clear()
    if setup == 'other':
        simhw.attach_i2c(0, 0x68, Other())
    try:
        imu.detect(i2c, 0x68)
    except imu.ImuError as e:
        print(e)
"""
    out = runtime.run_code(code, sim=True).stdout.decode()
    assert "no device answers at 0x68" in out
    assert "WHO_AM_I=0x71 (MPU-9250); expected 0x68 (MPU-6050) or 0x47 (ICM-42688-P)" in out


@pytest.mark.parametrize("cls", ["Mpu6050", "Icm42688"])
def test_overflow_counted_and_resynchronised(cls):
    out = run("""
time.sleep_ms(100); drv.read(out)
time.sleep_ms(3000)            # far longer than the FIFO holds at 1 kHz
n = drv.read(out)
lost = drv.take_overflow()
print(n, drv.overflows, lost, drv.take_overflow())
time.sleep_ms(50)
n = drv.read(out)
ok = all(out[3*i] + out[3*i+1] == 0 and out[3*i+2] == 2048 for i in range(n))
steps = all(out[3*i+3] - out[3*i] == out[3] - out[0] for i in range(n-1))
print(n, ok, steps)
""", cls=cls, odr=1000, rng=16)
    l1, l2 = out.strip().splitlines()
    n, ovf, lost, again = map(int, l1.split())
    assert n == 0 and ovf == 1 and again == 0
    assert abs(lost - 3000) <= 60  # ~3 s at 1 kHz
    n2, ok, steps = l2.split()
    assert abs(int(n2) - 50) <= 2 and ok == "True" and steps == "True"  # whole records, in order


def test_nack_period_is_counted_and_recovers():
    out = run("""
time.sleep_ms(60); a = drv.read(out)
simhw.faults['imu_nack'] = time.ticks_us() + 500000
errs = 0
for i in range(5):
    time.sleep_ms(60)
    n = drv.read(out)      # must not raise
    errs += (n == 0)
print(a > 0, errs, drv.i2c_errors > 0, drv.healthy)
time.sleep_ms(300)
n = drv.read(out)
print(n > 0, drv.healthy)
""")
    l1, l2 = out.strip().splitlines()
    assert l1.split()[0] == "True" and int(l1.split()[1]) == 5 and l1.split()[2] == "True"
    assert l2 == "True True"


@pytest.mark.parametrize("cls", ["Mpu6050", "Icm42688"])
def test_read_allocates_nothing(cls):
    out = run("""
import micropython, gc
time.sleep_ms(60); drv.read(out)
gc.collect()
time.sleep_ms(60)
model.update()           # the simulated part produces its data first (the model may allocate)
n = 0                    # the global exists before the lock (a new one may grow the module dict)
micropython.heap_lock()
n = drv.read(out)
micropython.heap_unlock()
print(n)
""", cls=cls)
    assert int(out) >= 10


# ---- ICM-42688-P FIFO packets as a real part sends them ------------------------------------------
CONT = """
def drain(rounds, gap_ms=60):
    xs = []
    for i in range(rounds):
        time.sleep_ms(gap_ms)
        n = drv.read(out)
        xs += [out[3 * k] for k in range(n)]
    return xs
def steps(xs):
    return sorted(set(xs[i + 1] - xs[i] for i in range(len(xs) - 1)))
"""


@pytest.mark.parametrize("cfg, size", [(0x43, 16), (0x53, 20)])
def test_icm42688_packets_3_and_4_read_without_losing_a_sample(cfg, size):
    """The sensor's FIFO config changes behind the driver (gyro on, high resolution): packets of
    16 or 20 bytes, cut by the 8-byte bursts, are carried over, every sample is kept, and the
    driver writes its own config again."""
    out = run(CONT + """
a = drain(3)
simhw.faults['imu_fifo_cfg'] = [time.ticks_us() + 20000, %d]
b = drain(10)
print(steps(a + b), len(a + b), model.produced, drv.resyncs, drv.samples_lost, drv.invalid)
print(model.big, model.regs[0x5F])
""" % cfg, cls="Icm42688")
    l1, l2 = out.strip().splitlines()
    st, n, produced, resyncs, lost, invalid = l1.split(" ", 1)[0], *map(int, l1.rsplit("]", 1)[1].split())
    assert st == "[4]" and resyncs == 0 and lost == 0 and invalid == 0  # consecutive ramp: nothing skipped
    assert 0 <= produced - n <= 2
    big, cfg1 = map(int, l2.split())
    assert big >= 8 and cfg1 == 0x41  # bigger packets were read, then the driver set its config again


def test_icm42688_misaligned_fifo_is_resynchronised_and_counted():
    """A stray byte shifts every packet: the driver flushes, counts a resync and the samples the
    flush cost, and reads on (the old driver died with AttributeError here)."""
    out = run(CONT + """
a = drain(3)
simhw.faults['imu_misalign'] = time.ticks_us() + 10000
b = drain(2)
c = drain(5)
print(drv.resyncs, drv.samples_lost, drv.take_overflow() > 0, len(c), steps(c))
""", cls="Icm42688")
    resyncs, lost, pending, n, st = out.split(" ", 4)
    assert int(resyncs) == 1 and int(lost) >= 1 and pending == "True"
    assert int(n) >= 55 and st.strip() == "[4]"


def test_icm42688_empty_fifo_header_ends_the_drain_and_keeps_the_samples():
    """FIFO_COUNT can claim more than the FIFO holds (the part's first count after a reset, a
    flush between the two reads): past the data the part sends header 0x80 (empty)."""
    out = run(CONT + """
class Stale(dev_imu.Icm42688):
    extra = 0
    def _reg(self, r):
        if r in (0x2E, 0x2F):
            c = self.count + self.extra
            return c >> 8 if r == 0x2E else c & 0xFF
        return dev_imu.Icm42688._reg(self, r)
model2 = Stale(Ramp())
simhw.attach_i2c(0, 0x68, model2)
drv = imu.detect(i2c, 0x68)
drv.configure(odr_hz=200, range_g=8)
time.sleep_ms(40)
model2.extra = 48                       # 6 packets more than there are
n = drv.read(out)
print(n, model2.produced, drv.resyncs, drv.samples_lost, drv.healthy)
model2.extra = 0
print(steps(drain(3)))
""", cls="Icm42688")
    l1, l2 = out.strip().splitlines()
    n, produced, resyncs, lost, healthy = l1.split()
    assert int(n) == int(produced) - 0 or int(produced) - int(n) <= 1
    assert int(n) >= 7 and resyncs == "0" and lost == "0" and healthy == "True"
    assert l2 == "[4]"


def test_icm42688_invalid_and_gyro_only_slots_are_skipped_and_counted():
    out = run(CONT + """
class Gap(Ramp):
    def next(self, v):
        Ramp.next(self, v)
        if self.n == 30:
            v[0] = v[1] = v[2] = -200000     # the part marks a slot without data as -32768 on every axis
src2 = Gap()
model.source = src2
xs = drain(5)
print(drv.invalid, drv.samples_lost, -32768 in xs, steps(xs))
""", cls="Icm42688")
    inv, lost, has, st = out.split(" ", 3)
    assert inv == "1" and lost == "1" and has == "False" and st.strip() in ("[4, 8]", "[4]")


def test_icm42688_model_rereads_a_partial_packet_unless_resume_is_set():
    """The model is as strict as the part: without RESUME_PARTIAL_RD (FIFO_CONFIG1 bit 6) a packet
    read in part comes again whole; with it the read goes on where it stopped."""
    out = runtime.run_code("""
import simhw, dev_imu, machine, time
m = dev_imu.Icm42688()
simhw.attach_i2c(0, 0x68, m)
i2c = machine.I2C(0)
for cfg in (0x01, 0x41):
    for r, v in ((0x4E, 3), (0x50, 0x67), (0x5F, cfg), (0x16, 0x40), (0x4B, 2)):
        i2c.writeto_mem(0x68, r, bytes([v]))
    time.sleep_ms(30)
    a = i2c.readfrom_mem(0x68, 0x30, 3)
    b = i2c.readfrom_mem(0x68, 0x30, 8)
    print(hex(a[0]), hex(b[0]), a == b[:3])
m.regs[0x5F] = 0x41
i2c.writeto_mem(0x68, 0x4B, b'\\x02')
print(list(i2c.readfrom_mem(0x68, 0x30, 3)))
""", sim=True).stdout.decode()
    l1, l2, l3 = out.strip().splitlines()
    assert l1.split()[2] == "True" and int(l1.split()[1], 16) & 0xE0 == 0x40  # whole packet again
    assert l2.split()[2] == "False"  # resumed mid-packet: b starts inside the first packet
    assert l3 == "[128, 255, 255]"  # empty FIFO: header 0x80, then 0xFF


def test_mpu6050_decodes_every_int16_and_takes_one_burst_per_set_bit_of_the_batch():
    """The viper decoder against struct's big-endian int16 (the extremes included), and the I2C
    transactions a drain costs: status, count, then one burst per set bit of the records (16 at
    most per burst) — a 200 Hz pass's 10 records in 2 bursts, not 4."""
    out = runtime.run_code("""
import random, struct
from array import array
from rnfw import imu
class Bus:  # the MPU-6050's registers as the driver reads them, counting transactions
    def __init__(self):
        self.fifo = b''
        self.calls = 0
    def readfrom_mem_into(self, addr, reg, buf):
        self.calls += 1
        if reg == 0x75:
            buf[0] = 0x68
        elif reg == 0x3A:
            buf[0] = 1
        elif reg == 0x72:
            buf[0] = len(self.fifo) >> 8
            buf[1] = len(self.fifo) & 255
        else:
            buf[:] = self.fifo[:len(buf)]
            self.fifo = self.fifo[len(buf):]
    def writeto_mem(self, addr, reg, buf):
        pass
bus = Bus()
d = imu.detect(bus, 0x68)
d.configure(200, 8, 0)
out = array('h', bytes(2 * 3 * 128))
random.seed(5)
bad = 0
bursts = []
for n in range(1, 40):
    raw = bytes([0x80, 0, 0x7F, 0xFF, 0xFF, 0xFF]) + bytes(random.getrandbits(8) for _ in range(6 * n - 6))
    bus.fifo = raw
    bus.calls = 0
    k = d.read(out)
    if k != n or tuple(out[:3 * n]) != struct.unpack('>%dh' % (3 * n), raw):
        bad += 1
    bursts.append(bus.calls - 2)
print(bad, ' '.join(str(b) for b in bursts))
""").stdout.decode().split()
    assert out[0] == "0"
    assert [int(b) for b in out[1:]] == [n // 16 + bin(n % 16).count("1") for n in range(1, 40)]


BULK = """
import simclock, simhw, dev_imu, dev_tape

class Plain:  # the same tape without the bulk path: one next() per sample
    def __init__(self, t):
        self.t = t
    def next(self, v):
        return self.t.next(v)

cls = dev_imu.%(cls)s
a = cls(dev_tape.ImuTape(%(p)r))
b = cls(Plain(dev_tape.ImuTape(%(p)r)))
for m in (a, b):  # 200 Hz, FIFO on, as the drivers configure the parts
    for reg, val in %(regs)r:
        m.i2c_write(reg, bytes([val]))
CNT, STATUS, OVF, PORT = %(cnt)d, %(status)d, %(ovf)d, %(port)d
ra = bytearray(600)
rb = bytearray(600)
s = 7
same = True
ovf = 0
n = 0
faults = %(faults)r
fired = 0
while a.produced < %(n)d + 400:  # to past the tape's end (the still sensor after it)
    s = (s * 1103515245 + 12345) & 0x7FFFFFFF
    simclock.sleep_us(((s >> 8) %% 1200) * 1000)  # up to 1.2 s: past the FIFO's size at times
    now = [(name, val) for at, name, val in faults if at <= a.produced // 200]
    faults = [f for f in faults if f[0] > a.produced // 200]
    fired += len(now)
    c = bytearray(3)
    for m, r in ((a, ra), (b, rb)):
        for name, val in now:  # injected glitches, once per model (a model consumes its fault)
            simhw.faults[name] = val
        m.i2c_read_into(CNT, memoryview(c)[0:2])
        m.i2c_read_into(STATUS, memoryview(c)[2:3])
        k = (c[0] << 8 | c[1])
        k = k if k < len(r) else len(r) - (s & 7)  # a part of the FIFO at times, not whole records
        m.i2c_read_into(PORT, memoryview(r)[:k])
        if m is a:
            ca, ka = bytes(c), k
    same = same and ca == bytes(c) and ka == k and ra[:k] == rb[:k]
    ovf += 1 if c[2] & OVF else 0
    n += k
print(same, a.produced, b.produced, a.head, b.head, a.count, b.count, ovf, n, fired)
"""

_MPU = dict(cls="Mpu6050", cnt=0x72, status=0x3A, ovf=0x10, port=0x74)
_ICM = dict(cls="Icm42688", cnt=0x2E, status=0x2D, ovf=0x02, port=0x30)
# ICM-42688: PWR_MGMT0 accel+gyro on, FIFO_CONFIG stream, ACCEL_CONFIG0 (range << 5 | 200 Hz), FIFO_CONFIG1
_ICM_REGS = lambda fs, cfg1: [(0x4E, 0x0F), (0x16, 0x40), (0x50, fs << 5 | 7), (0x5F, cfg1)]


@pytest.mark.parametrize("part, rec_g, setup, faults", [
    (_MPU, 8, [(0x6B, 0), (0x1C, 0 << 3), (0x19, 4), (0x23, 0x08), (0x6A, 0x40)], []),
    (_MPU, 2, [(0x6B, 0), (0x1C, 2 << 3), (0x19, 4), (0x23, 0x08), (0x6A, 0x40)], []),
    (_MPU, 16, [(0x6B, 0), (0x1C, 3 << 3), (0x19, 4), (0x23, 0x08), (0x6A, 0x40)], []),
    (_ICM, 16, _ICM_REGS(3, 0x01), []),  # +-2 g, accel packets (8 B), partial reads presented again
    (_ICM, 4, _ICM_REGS(0, 0x43), []),  # +-16 g, accel + gyro (16 B), partial reads resume
    (_ICM, 8, _ICM_REGS(1, 0x53), [(3, "imu_misalign", 0), (6, "imu_fifo_cfg", [0, 0x01])]),  # 20 B, glitches
], ids=["mpu-8g-tape-at-2g", "mpu-2g-tape-at-4g", "mpu-16g-tape-at-16g", "icm-8B", "icm-16B", "icm-20B-glitches"])
def test_bulk_fifo_fill_is_the_per_sample_path(tmp_path, part, rec_g, setup, faults):
    """The IMU models convert a tape's samples in bulk (machine code) when they catch up: their
    FIFO, counts and overflow flags equal those of the one-sample-at-a-time path over a tape of
    full-scale values (rounding, clipping where the recording's range exceeds the configured one),
    reads of whole and partial records, FIFO overflows, the ICM-42688's three packet sizes, the
    glitches injected mid-drive, and the sensor at rest after the tape."""
    import random

    from roadnode.sim.tape import header

    rng = random.Random(rec_g)
    vals = [rng.randint(-32768, 32767) for _ in range(3 * 3000)]
    vals[:6] = [-32768, 32767, -1, 1, -2, 2]
    counts = array("h", vals)
    p = tmp_path / "full.tape"
    p.write_bytes(header(200, rec_g, 32768 // rec_g, 9600, len(counts) // 3, 0) + counts.tobytes())
    code = BULK % {**part, "p": str(p), "regs": setup, "n": len(counts) // 3, "faults": faults}
    out = runtime.run_code(code, sim=True).stdout.decode().split()
    same, pa, pb, ha, hb, ca, cb, ovf, n, fired = out
    assert same == "True" and pa == pb and ha == hb and ca == cb
    assert int(ovf) >= 3 and int(n) > 1000  # the FIFO overflowed, and most samples went through reads
    assert int(fired) == len(faults)
