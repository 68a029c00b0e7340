"""IMU detection and the parts both drivers share: bus access with retry/backoff, error counting.

Drivers take their I2C bus as a parameter and never raise into the main loop once configured:
a bus error is retried with growing backoff, counted, and after repeated failure the driver
reports ``healthy = False`` and read() returns 0 until the part answers again.
"""

import time

import micropython
from micropython import const

_WHO_AM_I = const(0x75)
_RETRIES = const(3)


class ImuError(Exception):
    """No device answers at the IMU's address, or it is not a supported part (named when known)."""


# WHO_AM_I values of look-alike parts, to name what was found (a string: a dict would cost heap)
_KNOWN = "68 MPU-6050|47 ICM-42688-P|70 MPU-6500|71 MPU-9250|73 MPU-9255|12 ICM-20602|98 ICM-20689|40 ICM-42600|67 ICM-42670"


def part_name(who):
    """The part a WHO_AM_I value names, or "unknown part"."""
    for e in _KNOWN.split("|"):
        if int(e[:2], 16) == who:
            return e[3:]
    return "unknown part"


class BusDevice:
    """Register access to one I2C device with retry/backoff and counters."""

    def __init__(self, i2c, addr):
        self.i2c = i2c
        self.addr = addr
        self.i2c_errors = 0
        self.consecutive_errors = 0
        self._b1 = bytearray(1)
        self._b2 = bytearray(2)

    def _fail(self, attempt):
        self.i2c_errors += 1
        self.consecutive_errors += 1
        time.sleep_us(200 << attempt)  # 200, 400, 800 us backoff

    @micropython.native
    def read_into(self, reg, buf):
        """True on success; False after _RETRIES failures (counted, never raised)."""
        for attempt in range(_RETRIES):
            try:
                self.i2c.readfrom_mem_into(self.addr, reg, buf)
                self.consecutive_errors = 0
                return True
            except OSError:
                self._fail(attempt)
        return False

    @micropython.native
    def read8(self, reg):
        """Register value, or -1 on failure."""
        return self._b1[0] if self.read_into(reg, self._b1) else -1

    @micropython.native
    def read16be(self, reg):
        """A big-endian 16-bit register pair from ``reg``; -1 when the bus fails."""
        b = self._b2
        return (b[0] << 8) | b[1] if self.read_into(reg, b) else -1

    def write8(self, reg, value):
        """Write one register, retried; True when the device acknowledged it."""
        self._b1[0] = value
        for attempt in range(_RETRIES):
            try:
                self.i2c.writeto_mem(self.addr, reg, self._b1)
                self.consecutive_errors = 0
                return True
            except OSError:
                self._fail(attempt)
        return False


def detect(i2c, addr=0x68, dev=None):
    """The driver for the part at ``addr``, chosen by WHO_AM_I; ImuError names what was found.
    Pass ``dev`` (a BusDevice) to keep one error count across re-detections."""
    dev = dev or BusDevice(i2c, addr)
    who = dev.read8(_WHO_AM_I)
    if who < 0:
        raise ImuError("no device answers at 0x%02X on I2C (check wiring and the board definition)" % addr)
    if who == 0x68:
        from rnfw.imu_mpu6050 import Mpu6050

        return Mpu6050(dev)
    if who == 0x47:
        from rnfw.imu_icm42688 import Icm42688

        return Icm42688(dev)
    raise ImuError("no supported IMU at 0x%02X: WHO_AM_I=0x%02X (%s); expected 0x68 (MPU-6050) or 0x47 (ICM-42688-P)"
                   % (addr, who, part_name(who)))



class FifoImu:
    """What both FIFO drivers share: burst buffers, overflow accounting, error counters."""

    part = ""

    def __init__(self, dev, rec_bytes, lead=0):
        self.dev = dev
        self.odr_hz = 200
        self.period_ms = 5
        self.range_g = 16
        self.lsb_per_g = 2048
        self.aaf_hz = 50
        self.overflows = 0
        self.samples_lost = 0
        self._lost_pending = 0
        # bursts of 16, 8, 4, 2 or 1 records after ``lead`` bytes (the ICM-42688's carry area):
        # views made once, as slicing would allocate; a batch of n records takes one burst per set
        # bit of n (a 200 Hz pass's 10: 8 + 2), and every I2C transaction costs the ESP32 CPU
        self._buf = bytearray(lead + 16 * rec_bytes)
        mv = memoryview(self._buf)
        self._views = tuple(mv[lead : lead + (16 >> i) * rec_bytes] for i in range(5))
        self._t_last = 0
        self.t_fifo_us = 0
        self.healthy = True

    @property
    def i2c_errors(self):
        """I2C transfers that failed since boot (the vitals' count)."""
        return self.dev.i2c_errors

    def take_overflow(self):
        """Samples lost since the last call (0 if none)."""
        n = self._lost_pending
        self._lost_pending = 0
        return n

    def _overflowed(self, now, elapsed_us):
        """The FIFO overflowed and was reset: count it and the samples it cost."""
        lost = elapsed_us * self.odr_hz // 1000000
        self.overflows += 1
        self.samples_lost += lost
        self._lost_pending += lost
        self._t_last = now
