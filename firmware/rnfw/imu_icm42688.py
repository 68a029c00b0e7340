"""TDK ICM-42688-P accelerometer over I2C, read through its 2048-byte FIFO.

The part is set for accel-only packets (packet 1: header, accel x/y/z big-endian, int8
temperature = 8 bytes), but the reader walks the FIFO by each packet's header, as a real part
can hand over more than that: packet 3 (accel + gyro + temp + timestamp, 16 bytes) or 4 (high
resolution, 20 bytes) if its FIFO config changed behind our back (a glitch, a brownout of the
sensor alone), the ODR-changed bit after a configuration, and an empty FIFO (header bit 7) when
more is read than it holds. Partial reads resume (RESUME_PARTIAL_RD): a packet cut by the end of
a burst is carried over to the next one. A header that names no sensor means the stream lost
its alignment: the FIFO is flushed (counted in ``resyncs``; the samples it held are counted lost
so the time base stays right). No exception leaves read().
"""

import time

import micropython
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
_PKT = const(8)  # packet 1 (what the part is set for); sizes of others come from their headers
_FIFO_BYTES = const(2048)
_CARRY = const(20)  # room before the burst for a packet cut by the previous burst (max packet 20 B)
_H_EMPTY = const(0x80)  # header bit 7: FIFO empty / no packet
_H_ACCEL = const(0x40)
_H_GYRO = const(0x20)
_H_20 = const(0x10)  # packet 4: 20-bit data
_INVALID = const(-32768)  # an axis without valid data

_ODR_CODES = ((1000, 6), (500, 15), (200, 7), (100, 8))
_FS = {16: 0, 8: 1, 4: 2, 2: 3}


class Icm42688(FifoImu):
    """TDK ICM-42688-P through its FIFO: 8-byte packets (header, accelerometer, temperature)."""
    part = "icm42688"
    fifo_bytes = _FIFO_BYTES

    def __init__(self, dev):
        # burst views start after a carry area: a packet cut by one burst is finished by the next
        FifoImu.__init__(self, dev, _PKT, _CARRY)
        self._carry = 0  # bytes of a cut packet held just before _CARRY
        self.resyncs = 0  # FIFO flushed after a header that made no sense
        self.invalid = 0  # packets skipped: no accel data, or accel marked invalid (-32768)

    def _flush(self):
        self.dev.write8(_SIGNAL_PATH_RESET, 0x02)
        self._carry = 0

    def configure(self, odr_hz=200, range_g=8, aaf_hz=0):
        """Reset the part, set the nearest supported ODR and the range (its filter at ODR/2), and stream
        its FIFO; OSError if it does not take them."""
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
        ok = ok and d.write8(_FIFO_CONFIG1, 0x41)  # accel (+temp) packets; partial reads resume
        ok = ok and d.write8(_FIFO_CONFIG, 0x40)  # stream mode
        ok = ok and d.write8(_SIGNAL_PATH_RESET, 0x02)  # flush
        self._carry = 0
        self.t_fifo_us = time.ticks_us()  # the first record lands one sample period later
        if not ok:
            raise OSError("ICM-42688-P did not accept its configuration")
        time.sleep_ms(20)
        self._t_last = time.ticks_us()
        return self

    @micropython.native
    def read(self, out):
        """Drain the FIFO into ``out`` (array('h'), x,y,z interleaved); returns samples read."""
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
            self._flush()
            self._overflowed(now, elapsed)
            return 0
        # bursts of 128/64/32/16/8 bytes; the rest waits in the FIFO. Each burst must fit ``out``
        # even if it is all 8-byte packets (the smallest) completing a carried one
        left = count
        j = 0
        views = self._views
        buf = self._buf
        fix = False
        while left >= _PKT:
            room = (cap - j // 3) * _PKT - self._carry
            k = left if left < room else room
            vi = 0 if k >= 128 else 1 if k >= 64 else 2 if k >= 32 else 3 if k >= 16 else 4
            k = 128 >> vi
            if k > room:
                break
            if not d.read_into(_FIFO_DATA, views[vi]):
                self.healthy = False
                self._carry = 0  # how much the failed burst took is unknown: realign on headers
                break
            left -= k
            b = _CARRY - self._carry
            end = _CARRY + k
            self._carry = 0
            while b < end:
                h = buf[b]
                if h & _H_EMPTY:  # nothing more in the FIFO (count was stale): the rest is filler
                    left = 0
                    break
                hs = h & (_H_ACCEL | _H_GYRO)
                if hs == 0:  # no sensor named: not a header, the stream is misaligned
                    self._resync(now, left + end - b)
                    self._t_last = now
                    return j // 3
                n = _PKT
                if hs == _H_ACCEL | _H_GYRO:  # packet 3/4: the part's FIFO config changed behind us
                    n = 20 if h & _H_20 else 16
                    fix = True
                if b + n > end:  # cut by the burst: keep it in front of the next burst
                    c = end - b
                    for i in range(c):
                        buf[_CARRY - c + i] = buf[b + i]
                    self._carry = c
                    break
                if h & _H_ACCEL:
                    x = _s16(buf[b + 1], buf[b + 2])
                    y = _s16(buf[b + 3], buf[b + 4])
                    z = _s16(buf[b + 5], buf[b + 6])
                    if x == _INVALID and y == _INVALID and z == _INVALID:
                        self._skip()  # the part had no valid sample in this slot
                    else:
                        out[j] = x
                        out[j + 1] = y
                        out[j + 2] = z
                        j += 3
                else:
                    self._skip()  # gyro-only packet: a sample slot without acceleration
                b += n
        if fix:  # set accel-only packets again (the packets already queued are read as they are)
            d.write8(_FIFO_CONFIG1, 0x41)
        self.healthy = True
        self._t_last = now
        return j // 3

    def _skip(self):
        self.invalid += 1
        self.samples_lost += 1
        self._lost_pending += 1

    def _resync(self, now, nbytes):
        """Flush a misaligned FIFO; the samples it still held (~8 bytes each) are counted lost."""
        self._flush()
        self.resyncs += 1
        lost = nbytes // _PKT
        self.samples_lost += lost
        self._lost_pending += lost


def _s16(hi, lo):
    v = (hi << 8) | lo
    return v - 0x10000 if v & 0x8000 else v
