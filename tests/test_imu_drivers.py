"""IMU drivers on MicroPython against the register-level models below machine.I2C."""

from __future__ import annotations

import pytest

from roadnode.mpy import runtime

SETUP = """
import machine, time, simhw, dev_imu
from array import array
from rnfw import imu

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
micropython.heap_lock()
n = drv.read(out)
micropython.heap_unlock()
print(n)
""", cls=cls)
    assert int(out) >= 10
