"""TDK ICM-42688-P accelerometer over I2C, read through its 2048-byte FIFO (8-byte packets:
header, accel x/y/z big-endian, temperature)."""

import time

from micropython import const

from rnfw.imu import FifoImu

_DEVICE_CONFIG = const(0x11)
_FIFO_CONFIG = const(0x16)
_INT_STATUS = const(0x2D)
_FIFO_COUNTH = const(0x2E)
_FIFO_DATA = const(0x30)
_SIGNAL_PATH_RESET = const(0x4B)
_INTF_CONFIG0 = const(0x4C)
_PWR_MGMT0 = const(0x4E)
_ACCEL_CONFIG0 = const(0x50)
_GYRO_ACCEL_CONFIG0 = const(0x52)
_FIFO_CONFIG1 = const(0x5F)
_BANK_SEL = const(0x76)

_FIFO_FULL = const(0x02)
_PKT = const(8)
_CHUNK = const(16)
_FIFO_BYTES = const(2048)

_ODR_CODES = ((1000, 6), (500, 15), (200, 7), (100, 8))
_FS = {16: 0, 8: 1, 4: 2, 2: 3}


class Icm42688(FifoImu):
    part = "icm42688"
    fifo_bytes = _FIFO_BYTES

    def __init__(self, dev):
        FifoImu.__init__(self, dev, _PKT, _CHUNK)

    def configure(self, odr_hz=200, range_g=8, aaf_hz=0):
        d = self.dev
        best = _ODR_CODES[0]
        for o in _ODR_CODES:  # nearest supported ODR
            if abs(o[0] - odr_hz) < abs(best[0] - odr_hz):
                best = o
        self.odr_hz = best[0]
        self.period_ms = 1000 // best[0]
        if range_g not in _FS:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        self.range_g = range_g
        self.lsb_per_g = 32768 // range_g
        self.aaf_hz = self.odr_hz // 2  # UI filter, low-noise mode: BW = ODR/2
        ok = d.write8(_BANK_SEL, 0) and d.write8(_DEVICE_CONFIG, 0x01)  # soft reset
        time.sleep_ms(2)
        ok = ok and d.write8(_INTF_CONFIG0, 0x30)  # big-endian data and count, count in bytes
        ok = ok and d.write8(_PWR_MGMT0, 0x03)  # accel low-noise
        time.sleep_us(300)
        ok = ok and d.write8(_ACCEL_CONFIG0, (_FS[range_g] << 5) | best[1])
        ok = ok and d.write8(_GYRO_ACCEL_CONFIG0, 0x00)
        ok = ok and d.write8(_FIFO_CONFIG1, 0x01)  # accel (+temp) packets
        ok = ok and d.write8(_FIFO_CONFIG, 0x40)  # stream mode
        ok = ok and d.write8(_SIGNAL_PATH_RESET, 0x02)  # flush
        self.t_fifo_us = time.ticks_us()  # the first record lands one sample period later
        if not ok:
            raise OSError("ICM-42688-P did not accept its configuration")
        time.sleep_ms(20)
        self._t_last = time.ticks_us()
        return self

    def read(self, out):
        d = self.dev
        cap = len(out) // 3
        st = d.read8(_INT_STATUS)
        count = d.read16be(_FIFO_COUNTH)
        if st < 0 or count < 0:
            self.healthy = d.consecutive_errors < 9
            return 0
        now = time.ticks_us()
        elapsed = time.ticks_diff(now, self._t_last)
        if st & _FIFO_FULL:
            d.write8(_SIGNAL_PATH_RESET, 0x02)
            self._overflowed(now, elapsed)
            return 0
        npkt = count // _PKT
        if npkt > cap:
            npkt = cap
        left = npkt
        j = 0
        views = self._views
        buf = self._buf
        while left > 0:
            k, vi = (16, 0) if left >= 16 else ((4, 1) if left >= 4 else (1, 2))
            if not d.read_into(_FIFO_DATA, views[vi]):
                self.healthy = False
                break
            b = 0
            for _ in range(k):
                if buf[b] & 0xE0 != 0x40:  # not an accel packet: misaligned, flush and resync
                    d.write8(_SIGNAL_PATH_RESET, 0x02)
                    self.resyncs += 1
                    self._t_last = now
                    return j // 3
                for a in range(3):
                    v = (buf[b + 1 + 2 * a] << 8) | buf[b + 2 + 2 * a]
                    if v & 0x8000:
                        v -= 0x10000
                    out[j] = v
                    j += 1
                b += _PKT
            left -= k
        self.healthy = True
        self._t_last = now
        return j // 3
