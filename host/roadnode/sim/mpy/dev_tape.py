"""A tape as the simulated board's hardware inputs: IMU samples for the register models, NMEA
bytes for the UART, read with the one tape reader (roadnode/mpy/lib/tape.py, docs/tapes.md).

The tape is read in small blocks, never held in the ESP32-sized heap; the IMU side allocates
nothing per sample. The GPS bytes play on the scenario's clock, which starts at the IMU's first
sample (simhw.stream_t0_us), with the faults "gps_silent" and "gps_garbage" applied here.
"""

import micropython

import simhw
import tape


class ImuTape(tape.ImuReader):
    """dev_imu's data source (``next(v)``, one call per ODR tick): the tape's counts in g/16384
    units (the models rescale them to the configured range); after the tape the sensor sits
    still, 1 g up."""

    def __init__(self, path):
        tape.ImuReader.__init__(self, path)
        self.scale = self.range_g // 2  # counts at the recording's range -> the +-2 g LSB
        self.rest = 16384

    # The models' bulk path (dev_imu._FifoImu.update): a catch-up of several samples converts them
    # straight from the block in machine code instead of one next() call each.
    @micropython.native
    def take(self):
        """Samples in ``buf`` from value ``_j`` on, as recorded (x ``scale`` gives next()'s units;
        the block is refilled when empty); 0 after the tape, where next() goes on."""
        left = self.samples - self.i
        if left <= 0:
            return 0
        if self._j >= self._m:
            self._fill()
        k = (self._m - self._j) // 3
        return k if k < left else left

    @micropython.native
    def took(self, k):
        """The bulk path used k of take()'s samples."""
        self._j += 3 * k
        self.i += k


class GpsTape(tape.GpsReader):
    """The GPS UART's source (simhw's UART protocol: any, read_into)."""

    @micropython.native
    def _now(self, now_us):
        """Scenario time on the millisecond grid (the ESP32's UART driver hands bytes over in
        chunks, and offline runs use the same grid); -1 before the IMU's first sample. While the
        receiver is silent (antenna cable, power) the sentence being sent is lost."""
        t0 = simhw.stream_t0_us
        if t0 is None:
            return -1
        t = (now_us - t0) // 1000 * 1000
        f = simhw.faults
        if f.get("gps_silent_from", -1) <= t < f.get("gps_silent", -1) and not self.eof and t >= self.cur_t:
            self.next_sentence()
            return -1
        return t

    @micropython.native
    def due_us(self):
        """The board time before which no byte can be read (None: unknown): the next byte's time
        on the scenario's millisecond grid. The UART polls the tape only from then on."""
        t0 = simhw.stream_t0_us
        if t0 is None or self.eof:
            return None
        x = self.cur_t + self.pos * self.us_per_byte
        return t0 + (x + 999) // 1000 * 1000

    @micropython.native
    def any(self, now_us):
        """Bytes received by now_us and not read yet (of the sentence on the wire)."""
        t = self._now(now_us)
        k = self.arrived(t) if t >= 0 else 0
        return k if k > 0 else 0

    @micropython.native
    def read_into(self, buf, now_us, nbytes):
        """Copy up to nbytes received by now_us into buf; how many."""
        f = simhw.faults
        t0 = simhw.stream_t0_us or 0
        if f.get("gps_garbage_from", -1) <= now_us - t0 < f.get("gps_garbage", -1) and nbytes > 8:
            # line noise / a loose connector: bytes that are not NMEA, mixed into the stream
            self._lcg = (getattr(self, "_lcg", 12345) * 1103515245 + 12345) & 0x7FFFFFFF
            for i in range(8):
                buf[i] = (self._lcg >> (i * 3)) & 0xFF
            return 8 + self.read_into(memoryview(buf)[8:], now_us, nbytes - 8)
        t = self._now(now_us)
        return self.read(buf, t, nbytes) if t >= 0 else 0
