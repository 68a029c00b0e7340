"""InvenSense MPU-6050 accelerometer over I2C, read through its 1024-byte FIFO in bursts."""

import time

import micropython
from micropython import const

from rnfw.imu import FifoImu

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_FIFO_EN = const(0x23)
_INT_ENABLE = const(0x38)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_PWR_MGMT_1 = const(0x6B)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)

_FIFO_OFLOW = const(0x10)
_REC = const(6)  # accel x, y, z big-endian int16
_FIFO_BYTES = const(1024)

# DLPF code -> accelerometer bandwidth (Hz); internal sample rate is 1 kHz with the DLPF on
_DLPF_BW = (260, 184, 94, 44, 21, 10, 5)
_RANGES = (2, 4, 8, 16)


class Mpu6050(FifoImu):
    """InvenSense MPU-6050 through its FIFO: 6-byte accelerometer records."""
    part = "mpu6050"
    fifo_bytes = _FIFO_BYTES

    def __init__(self, dev):
        FifoImu.__init__(self, dev, _REC)

    def configure(self, odr_hz=200, range_g=8, aaf_hz=0):
        """Reset the part, set the ODR (1 kHz / (divider + 1)), the range and the widest DLPF not above
        ``aaf_hz`` (ODR/4 by default), and stream its FIFO."""
        d = self.dev
        div = max(0, min(255, (1000 + odr_hz // 2) // max(1, odr_hz) - 1))
        self.odr_hz = 1000 // (div + 1)
        self.period_ms = div + 1  # exact sample period: the 1 kHz internal rate / (div + 1)
        if range_g not in _RANGES:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        self.range_g = range_g
        self.lsb_per_g = 32768 // range_g
        want = aaf_hz or self.odr_hz // 4
        code = 6
        for i in range(1, 7):  # the widest DLPF not above the wanted corner (code 0 = 260 Hz)
            if _DLPF_BW[i] <= want:
                code = i
                break
        self.aaf_hz = _DLPF_BW[code]
        ok = d.write8(_PWR_MGMT_1, 0x80)  # device reset
        time.sleep_ms(100)
        ok = ok and d.write8(_PWR_MGMT_1, 0x01)  # wake, PLL on X gyro
        time.sleep_ms(10)
        ok = ok and d.write8(_CONFIG, code)
        ok = ok and d.write8(_SMPLRT_DIV, div)
        ok = ok and d.write8(_ACCEL_CONFIG, _RANGES.index(range_g) << 3)
        ok = ok and self._fifo_reset()
        ok = ok and d.write8(_INT_ENABLE, _FIFO_OFLOW | 0x01)
        if not ok:
            raise OSError("MPU-6050 did not accept its configuration")
        time.sleep_ms(20)  # accelerometer start-up
        self._t_last = time.ticks_us()
        return self

    def _fifo_reset(self):
        d = self.dev
        ok = d.write8(_USER_CTRL, 0x04) and d.write8(_FIFO_EN, 0x08) and d.write8(_USER_CTRL, 0x40)
        self.t_fifo_us = time.ticks_us()  # the first record lands one sample period later
        return ok

    @micropython.native
    def read(self, out):
        """Drain the FIFO into ``out`` (array('h'), x,y,z interleaved); returns samples read."""
        d = self.dev
        cap = len(out) // 3
        st = d.read8(_INT_STATUS)  # reading clears the flags
        count = d.read16be(_FIFO_COUNTH)
        if st < 0 or count < 0:
            self.healthy = d.consecutive_errors < 9
            return 0
        now = time.ticks_us()
        elapsed = time.ticks_diff(now, self._t_last)
        if st & _FIFO_OFLOW or count >= _FIFO_BYTES - 3 * _REC:
            # oldest bytes were overwritten: records are no longer aligned. Start clean.
            self._fifo_reset()
            self._overflowed(now, elapsed)
            return 0
        nrec = count // _REC
        if nrec > cap:
            nrec = cap
        pos = 0
        left = nrec
        views = self._views
        buf = self._buf
        while left > 0:
            vi = 0 if left >= 16 else 1 if left >= 8 else 2 if left >= 4 else 3 if left >= 2 else 4
            k = 16 >> vi
            if not d.read_into(_FIFO_R_W, views[vi]):
                self.healthy = False
                break
            pos = _be16(buf, k, out, pos)
            left -= k
        self.healthy = True
        self._t_last = now
        return pos // 3


@micropython.viper
def _be16(src: ptr8, nrec: int, out: ptr16, pos: int) -> int:
    """``nrec`` records of big-endian int16 x, y, z from ``src`` into ``out`` from ``pos``; returns
    the position after them. A ptr16 store keeps the low 16 bits, which array('h') reads back
    signed: no sign fix-up. (Viper checks no bounds: read() never asks for more than ``out`` holds.)"""
    b = 0
    j = pos
    end = pos + nrec * 3
    while j < end:
        out[j] = (src[b] << 8) | src[b + 1]
        j += 1
        b += 2
    return j
