"""Register-level models of the MPU-6050 and ICM-42688-P as seen over I2C (simulated board).

Data are produced lazily at the configured ODR from the board clock whenever a register is
accessed: all samples due since the last access are pushed into a FIFO of the part's real size.
When the FIFO is full the oldest record is dropped and the overflow flag set (stream mode).

Data source protocol: ``source.next(v)`` fills ``v`` (array('i', 3)) with the acceleration in
units of g/16384 (the +-2 g LSB); the model scales to the configured range and clips to int16.
Faults (simhw.faults): "imu_nack" = until_us (NACK every access until then; from "imu_nack_from"
us if given), "imu_stuck" = True
(FIFO count frozen, no new data).
"""

import errno
import micropython
from array import array

import simclock
import simhw
from tape import copy_bytes


def _stream_start(t_us):
    """The scenario's t = 0 is the IMU's first sample: the GPS tape plays on the same time base."""
    if simhw.stream_t0_us is None:
        simhw.stream_t0_us = t_us


class StillSource:
    """A sensor at rest: +1 g on z with a little deterministic noise (LCG)."""

    def __init__(self, seed=1):
        self.s = seed

    def next(self, v):
        """A board lying still: 1 g on z, a few counts of noise."""
        s = self.s
        for i in range(3):
            s = (s * 1103515245 + 12345) & 0x7FFFFFFF
            v[i] = ((s >> 16) & 15) - 8
        v[2] += 16384
        self.s = s


class _FifoImu:
    who_am_i = 0
    fifo_size = 1024
    rec = 6

    def __init__(self, source=None):
        self.source = source or StillSource()
        self.regs = bytearray(128)
        self.fifo = bytearray(self.fifo_size)
        self.head = 0  # read position
        self.count = 0  # bytes stored
        self.odr_hz = 0  # 0 = not producing
        self.range_g = 2
        self.enabled = False
        self.t_next = 0
        self.overflowed = False
        self.produced = 0
        self._v = array("i", (0, 0, 0))
        self._st = array("i", bytes(4 * 5))  # the bulk path's FIFO state (head, count, flags, ...)
        self._m = array("i", bytes(4 * 14))  # the bulk path's parameters (_pack)
        self._rec = bytearray(self.rec)
        self.reset()

    def reset(self):
        """Power-on state: registers cleared, FIFO empty and off."""
        for i in range(128):
            self.regs[i] = 0
        self.regs[0x75] = self.who_am_i
        self.head = self.count = 0
        self.enabled = False
        self.overflowed = False

    @micropython.native
    def _fault(self):
        f = simhw.faults
        until = f.get("imu_nack", -1)
        if until >= 0:
            now = simclock.now_us()
            if f.get("imu_nack_from", 0) <= now < until:
                raise OSError(errno.ENODEV)
        st = f.get("imu_stuck", -1)
        if st is True:
            return True
        if st >= 0:
            now = simclock.now_us()
            return f.get("imu_stuck_from", 0) <= now < st
        return False

    @micropython.native
    def _push(self, rec):
        n = len(rec)
        size = self.fifo_size
        if self.count + n > size - size % n:
            # stream mode: the oldest record goes
            self.head = (self.head + n) % size
            self.count -= n
            self.overflowed = True
        tail = (self.head + self.count) % size
        if tail + n <= size:
            self.fifo[tail : tail + n] = rec  # one copy in C (a slice store allocates nothing)
        else:
            f = self.fifo
            for i in range(n):
                f[(tail + i) % size] = rec[i]
        self.count += n

    def _make_record(self, v):
        raise NotImplementedError

    @micropython.native
    def update(self):
        """Push every sample due by now into the FIFO. Runs at each register access, once per
        sample of the drive: a source with a bulk path (dev_tape.ImuTape.take) has its samples
        converted in machine code (_bulk, per part), others go one next() call each."""
        now = simclock.now_us()
        if not self.enabled or self.odr_hz <= 0:
            self.t_next = now
            return
        t = self.t_next
        if t > now:
            return
        period = 1000000 // self.odr_hz
        src = self.source
        if src is not self._bulk_src:
            self._bulk_src = src
            self._take = getattr(src, "take", None) if self._bulk_ok else None
        n = (now - t) // period + 1
        while n > 0:
            if self._take is not None and self._bulk_now():
                k = self._take()
                if k > 0:
                    if k > n:
                        k = n
                    self._bulk(src.buf, src._j, k, src.scale)
                    src.took(k)
                    n -= k
                    t += k * period
                    self.t_next = t
                    self.produced += k
                    continue
            self._one(src)
            n -= 1
            t += period
            self.t_next = t

    def _pack(self, b, j, k, scale, rec, shape):
        """Run _pack with the FIFO's state; ``shape``: m's fields but j, k, scale and shift."""
        m = self._m
        m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7] = shape[:8]
        m[8] = j
        m[9] = k
        m[10] = scale
        div = self.range_g // 2
        sh = 0
        while (1 << sh) < div:
            sh += 1
        m[11] = sh
        m[12] = shape[8]
        m[13] = shape[9]
        st = self._st
        st[0] = self.head
        st[1] = self.count
        st[2] = 0
        st[3] = 0
        st[4] = self._ts
        _pack(self.fifo, st, b, rec, m)
        self.head = st[0]
        self.count = st[1]
        self._ts = st[4]
        if st[2]:
            self.overflowed = True
        return st[3]

    _bulk_ok = False  # the part has a _bulk
    _ts = 0  # FIFO timestamp of the last packet (the parts that have one)
    _bulk_src = None
    _take = None

    def _bulk_now(self):
        return True

    def _one(self, src):
        """One sample from the source's next(), scaled to the configured range, into the FIFO."""
        v = self._v
        div = self.range_g // 2  # source counts are at +-2 g: 16384 LSB/g
        half = div // 2
        src.next(v)
        x = (v[0] + half) // div
        v[0] = 32767 if x > 32767 else (-32768 if x < -32768 else x)
        x = (v[1] + half) // div
        v[1] = 32767 if x > 32767 else (-32768 if x < -32768 else x)
        x = (v[2] + half) // div
        v[2] = 32767 if x > 32767 else (-32768 if x < -32768 else x)
        self._push(self._make_record(v))
        self.produced += 1

    def _pop_into(self, out):
        n = len(out)
        c = self.count
        k = n if n < c else c
        h = self.head
        size = self.fifo_size
        a = size - h if k > size - h else k  # to the FIFO's end, then from its start
        copy_bytes(out, 0, self.fifo, h, a)
        copy_bytes(out, a, self.fifo, 0, k - a)
        for i in range(k, n):
            out[i] = 0xFF
        h += k
        self.head = h - size if h >= size else h
        self.count = c - k

    @micropython.native
    def i2c_read_into(self, reg, out):
        """Read registers (the FIFO port pops records), catching up on samples first."""
        stuck = self._fault()
        if not stuck:
            self.update()
        if reg == self._fifo_port:
            self._pop_into(out)
        else:
            for i in range(len(out)):
                out[i] = self._reg(reg + i)


class Mpu6050(_FifoImu):
    """MPU-6050: 6-byte big-endian accel records in a 1 KB FIFO."""

    who_am_i = 0x68
    fifo_size = 1024
    rec = 6

    @micropython.native
    def _make_record(self, v):
        r = self._rec
        x = v[0] & 0xFFFF
        r[0] = x >> 8
        r[1] = x & 0xFF
        x = v[1] & 0xFFFF
        r[2] = x >> 8
        r[3] = x & 0xFF
        x = v[2] & 0xFFFF
        r[4] = x >> 8
        r[5] = x & 0xFF
        return r

    _bulk_ok = True

    def _bulk(self, b, j, k, scale):
        size = self.fifo_size
        self._pack(b, j, k, scale, self._rec, (size, 6, 256, 1, 0, 0, 0, 0, size - size % 6, 6))

    def _rate(self):
        dlpf = self.regs[0x1A] & 7
        base = 8000 if dlpf in (0, 7) else 1000
        return base // (self.regs[0x19] + 1)

    def i2c_write(self, reg, data):
        """Write registers: reset, FIFO reset, range, rate, FIFO enable."""
        stuck = self._fault()
        self.update()
        for i, b in enumerate(data):
            r = reg + i
            if r == 0x6B and b & 0x80:
                self.reset()
                continue
            if r == 0x6A:
                if b & 0x04:  # FIFO_RST
                    self.head = self.count = 0
                    self.overflowed = False
                b &= ~0x04
            self.regs[r] = b
        self.range_g = 2 << ((self.regs[0x1C] >> 3) & 3)
        self.odr_hz = 1000 // (self.regs[0x19] + 1)  # accel samples at 1 kHz max
        on = (self.regs[0x6A] & 0x40) and (self.regs[0x23] & 0x08) and not (self.regs[0x6B] & 0x40)
        if on and not self.enabled:
            self.t_next = simclock.now_us() + 1000000 // max(1, self.odr_hz)
            _stream_start(self.t_next)
        self.enabled = bool(on) and not stuck

    _fifo_port = 0x74

    @micropython.native
    def _reg(self, r):
        if r == 0x3A:
            v = (0x10 if self.overflowed else 0) | (1 if self.count else 0)
            self.overflowed = False  # cleared on read
            return v
        if r == 0x72:
            return self.count >> 8
        if r == 0x73:
            return self.count & 0xFF
        return self.regs[r & 0x7F]


@micropython.viper
def _pack(fifo: ptr8, st: ptr32, b: ptr16, rec: ptr8, m: ptr32):
    """The models' bulk path: m[9] samples of b (int16 x, y, z from value m[8]) x scale (m[10]), into
    the +-2 g LSB, shifted (m[11]) to the configured range with the one-sample path's rounding
    ((v + div // 2) // div), clipped to int16, each made a record (rec) and pushed into the FIFO ring
    fifo[m[0]] at st = [head, count, overflowed, a record was dropped, timestamp]. m: FIFO size,
    record length, header (256: none), accel on, zero gyro bytes, temperature byte, hires, timestamp
    step (0: none), j, k, scale, shift, the bytes that fit (whole records), the record length to drop
    when full (0: read from the oldest record's header, the ICM-42688's packets)."""
    size = m[0]
    plen = m[1]
    hdr = m[2]
    acc = m[3]
    gyr = m[4]
    temp = m[5]
    hires = m[6]
    step = m[7]
    j = m[8]
    k = m[9]
    scale = m[10]
    sh = m[11]
    cap = m[12]
    drop = m[13]
    half = 0
    if sh > 0:
        half = 1 << (sh - 1)
    head = st[0]
    count = st[1]
    ts = st[4]
    q = 0
    while q < k:
        o = 0
        if hdr < 256:
            rec[0] = hdr
            o = 1
        if acc:
            a = 0
            while a < 3:
                x = int(b[j + a])
                if x >= 32768:
                    x -= 65536
                x = (x * scale + half) >> sh
                if x > 32767:
                    x = 32767
                elif x < -32768:
                    x = -32768
                rec[o] = (x >> 8) & 0xFF
                rec[o + 1] = x & 0xFF
                o += 2
                a += 1
        i = 0
        while i < gyr:
            rec[o] = 0
            o += 1
            i += 1
        if temp:
            rec[o] = 25
            o += 1
        if hires:
            rec[o] = 0
            o += 1
        if step:
            ts = (ts + step) & 0xFFFF
            rec[o] = ts >> 8
            rec[o + 1] = ts & 0xFF
            o += 2
        while o < plen:
            rec[o] = 0
            o += 1
        while count + plen > cap:
            n = drop
            if n == 0:
                h = int(fifo[head])
                n = 8
                if h & 0x80:
                    n = 1
                elif h & 0x60 == 0x60:
                    n = 16
                    if h & 0x10:
                        n = 20
            head += n
            if head >= size:
                head -= size
            if n < count:
                count -= n
            else:
                count = 0
            st[2] = 1
            st[3] = 1
        pos = head + count
        if pos >= size:
            pos -= size
        i = 0
        while i < plen:
            fifo[pos] = rec[i]
            pos += 1
            if pos >= size:
                pos = 0
            i += 1
        count += plen
        j += 3
        q += 1
    st[0] = head
    st[1] = count
    st[4] = ts


class Icm42688(_FifoImu):
    """FIFO packets as the datasheet's four structures, chosen by FIFO_CONFIG1 when each sample is
    produced: accel only -> packet 1 (8 B: header 0x40, accel, int8 temp); gyro only -> packet 2
    (header 0x20); both -> packet 3 (16 B: header 0x68, accel, gyro, temp, u16 timestamp); both
    with HIRES_EN -> packet 4 (20 B: header 0x78, ..., int16 temp, timestamp, 3 extension bytes).
    The first packet after an ODR change has header bit 1 set. Reading past the data gives
    header 0x80 (FIFO empty) then 0xFF. Without RESUME_PARTIAL_RD a packet read in part is
    presented again whole at the next read; with it, reading resumes where it stopped.

    Faults: "imu_fifo_cfg" = [at_us, value]: FIFO_CONFIG1 takes ``value`` then (a sensor glitch
    behind the driver's back, until it is written again); "imu_misalign" = at_us: one stray byte
    enters the FIFO then.
    """

    who_am_i = 0x47
    fifo_size = 2048
    rec = 8
    _ODR = {6: 1000, 15: 500, 7: 200, 8: 100, 9: 50, 10: 25}

    def __init__(self, source=None):
        self._r = (bytearray(8), bytearray(16), bytearray(20))
        self._odr_code = -1  # ODR of the last packet made: a change sets header bit 1
        self._pk_left = 0  # bytes of the packet being read still to come
        self._pk_done = 0  # bytes of it read so far
        self._ts = 0
        self.big = 0  # packets 3/4 made (tests)
        _FifoImu.__init__(self, source)

    def reset(self):
        """Power-on state, packet framing included."""
        _FifoImu.reset(self)
        self._pk_left = self._pk_done = 0

    @staticmethod
    def _size(h):
        if h & 0x80:
            return 1
        if h & 0x60 == 0x60:
            return 20 if h & 0x10 else 16
        return 8

    _bulk_ok = True

    def _bulk_now(self):
        # the bulk path keeps the configuration fixed: not while a fault may change it mid-way, nor
        # for the first packet after an ODR change (header bit 1): those go one by one
        f = simhw.faults
        return (not f.get("imu_fifo_cfg") and f.get("imu_misalign", -1) < 0
                and self.regs[0x50] & 0x0F == self._odr_code)

    def _bulk(self, b, j, k, scale):
        cfg = self.regs[0x5F]
        acc, gyr, hires = cfg & 1, cfg & 2, cfg & 0x10
        if acc and gyr:
            r = self._r[2] if hires else self._r[1]
            h = 0x78 if hires else 0x68
            self.big += k
        else:
            r = self._r[0]
            h = 0x40 if acc else 0x20
        step = 1000000 // max(1, self.odr_hz) if len(r) > 8 else 0
        size = self.fifo_size
        if self._pack(b, j, k, scale, r, (size, len(r), h, 1 if acc else 0, 6 if gyr or not acc else 0, 1,
                                          1 if hires else 0, step, size, 0)):
            self._pk_left = self._pk_done = 0

    @micropython.native
    def _make_record(self, v):
        f = simhw.faults
        glitch = f.get("imu_fifo_cfg")
        if glitch and simclock.now_us() >= glitch[0]:
            f["imu_fifo_cfg"] = None  # once: the config stays until someone writes it again
            self.regs[0x5F] = (self.regs[0x5F] & 0x40) | glitch[1]
        at = f.get("imu_misalign", -1)
        if 0 <= at <= simclock.now_us():
            f["imu_misalign"] = -1
            self._push(b"\x00")  # a stray byte: every packet after it is off by one
        cfg = self.regs[0x5F]
        acc, gyr, hires = cfg & 1, cfg & 2, cfg & 0x10
        if acc and gyr:
            r = self._r[2] if hires else self._r[1]
            h = 0x78 if hires else 0x68
            self.big += 1
        else:
            r = self._r[0]
            h = 0x40 if acc else 0x20
        code = self.regs[0x50] & 0x0F
        if code != self._odr_code:
            h |= 0x02
            self._odr_code = code
        r[0] = h
        o = 1
        if acc:
            for i in range(3):
                x = v[i] & 0xFFFF
                r[o] = x >> 8
                r[o + 1] = x & 0xFF
                o += 2
        if gyr or not acc:
            for i in range(6):
                r[o + i] = 0  # gyro: the road model has no rotation
            o += 6
        r[o] = 25  # temperature (int8; int16 in packet 4)
        o += 1
        if hires:
            r[o] = 0
            o += 1
        if len(r) > 8:
            self._ts = (self._ts + 1000000 // max(1, self.odr_hz)) & 0xFFFF
            r[o] = self._ts >> 8
            r[o + 1] = self._ts & 0xFF
            o += 2
        while o < len(r):
            r[o] = 0  # 20-bit extension nibbles
            o += 1
        return r

    @micropython.native
    def _push(self, rec):
        n = len(rec)
        while self.count + n > self.fifo_size:  # stream mode: the oldest packets go
            k = self._size(self.fifo[self.head])
            self.head = (self.head + k) % self.fifo_size
            self.count -= k if k < self.count else self.count
            self._pk_left = self._pk_done = 0
            self.overflowed = True
        tail = (self.head + self.count) % self.fifo_size
        for i in range(n):
            self.fifo[(tail + i) % self.fifo_size] = rec[i]
        self.count += n

    @micropython.native
    def _pop_into(self, out):
        empty = True
        for i in range(len(out)):
            if self.count > 0:
                b = self.fifo[self.head]
                if self._pk_left == 0:
                    self._pk_left = self._size(b)
                    self._pk_done = 0
                out[i] = b
                self.head = (self.head + 1) % self.fifo_size
                self.count -= 1
                self._pk_left -= 1
                self._pk_done += 1
            else:
                out[i] = 0x80 if empty else 0xFF
                empty = False
        if self._pk_left and not self.regs[0x5F] & 0x40:
            # no RESUME_PARTIAL_RD: the packet read in part comes again whole next time
            d = self._pk_done
            self.head = (self.head - d) % self.fifo_size
            self.count += d
            self._pk_left = self._pk_done = 0

    def i2c_write(self, reg, data):
        """Write registers: soft reset, FIFO flush, config."""
        stuck = self._fault()
        self.update()
        for i, b in enumerate(data):
            r = reg + i
            if r == 0x11 and b & 1:
                self.reset()
                continue
            if r == 0x4B and b & 0x02:  # FIFO flush
                self.head = self.count = 0
                self._pk_left = self._pk_done = 0
                self.overflowed = False
                continue
            self.regs[r & 0x7F] = b
        self.range_g = 16 >> ((self.regs[0x50] >> 5) & 3)
        self.odr_hz = self._ODR.get(self.regs[0x50] & 0x0F, 0)
        on = (self.regs[0x4E] & 0x03) == 0x03 and (self.regs[0x5F] & 0x01) and (self.regs[0x16] & 0xC0)
        if on and not self.enabled:
            self.t_next = simclock.now_us() + 1000000 // max(1, self.odr_hz)
            _stream_start(self.t_next)
        self.enabled = bool(on) and not stuck

    _fifo_port = 0x30

    @micropython.native
    def _reg(self, r):
        if r == 0x2D:
            v = (0x02 if self.overflowed else 0) | (0x08 if self.count else 0)
            self.overflowed = False
            return v
        if r == 0x2E:
            return self.count >> 8
        if r == 0x2F:
            return self.count & 0xFF
        return self.regs[r & 0x7F]
