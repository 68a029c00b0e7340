"""Tapes: a recorded drive as the node's sensors deliver it, and the one reader of them.

`roadnode estimate`, `roadnode sim run`/`serve` and `roadnode replay` must agree bit for bit, so
the IMU samples and GPS bytes they feed the firmware come from this one module: under CPython for
the golden model and replay (roadnode.accuracy.golden, roadnode.usb.replay), on the MicroPython
unix port for mpy/scripts/estimate.py and the simulated board (sim/mpy/dev_tape.py). It is plain
logic with no hardware behind it and never goes on a board, which is why it lives in
roadnode/mpy/lib (see its __init__) and not in firmware/. The host writes tapes with
roadnode.sim.tape from a scenario, packing the layout defined here (HEADER, RECORD; docs/tapes.md).

One file, little-endian::

    header  24 B  "RNTP", u8 version (1), u8 range_g, u16 odr_hz, u16 lsb_per_g, u16 0,
                  u32 GPS baud, u32 samples, u32 bytes of the GPS section
    IMU     6 B per sample: int16 counts x, y, z at the recording's range; sample i at i * period_ms
    GPS     records of u64 t_us (first byte on the wire), u16 length, the sentence's bytes;
            byte k arrives at t_us + k * 10e6 / baud (10 bits per byte on the UART)

int16 is what every modelled part delivers (MPU-6050, ICM-42688-P: the node reads the 16-bit data
even from its 20-bit packets). The readers read blocks straight into preallocated buffers and
allocate nothing per sample (the simulated IMU reads on the node's sampling path). A tape whose
size disagrees with its header raises TapeError when opened.
"""

import struct
import sys
from array import array

MAGIC = b"RNTP"
VERSION = 1
HEADER = "<4sBBHHHIII"
HEADER_SIZE = 24
RECORD = "<QH"  # a GPS record's head: t_us, length
RECORD_SIZE = 10
FILE = "drive.tape"  # its name in a tape folder (sim run, the simulated board)


try:  # MicroPython (the simulated board, estimate.py): a byte copy in machine code, allocating nothing
    import micropython

    @micropython.viper
    def copy_bytes(dst: ptr8, do: int, src: ptr8, so: int, n: int):
        """dst[do:do + n] = src[so:so + n] (buffers: bytearray, bytes, memoryview)."""
        i = 0
        while i < n:
            dst[do + i] = src[so + i]
            i += 1
except (ImportError, NameError, SyntaxError, AttributeError):  # CPython: slices

    def copy_bytes(dst, do, src, so, n):
        """dst[do:do + n] = src[so:so + n] (buffers: bytearray, bytes, memoryview)."""
        dst[do:do + n] = src[so:so + n]


class TapeError(ValueError):
    """The file is not a tape this reader knows, or it was cut short."""


def _open(r, src):
    """Open a path, or the bytes of a tape held in memory, for reader ``r`` and set its header's
    fields; the size is checked against the header, so a truncated tape fails here and not
    halfway through a drive."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        import io

        f, name = io.BytesIO(src), "tape in memory"
    else:
        f, name = open(src, "rb"), str(src)
    r.f = f
    r.name = name
    try:
        if sys.byteorder != "little":
            raise TapeError("%s: tapes are read on little-endian machines only" % name)
        h = f.read(HEADER_SIZE)
        if len(h) < HEADER_SIZE or h[:4] != MAGIC:
            raise TapeError("%s: not a roadnode tape" % name)
        _, ver, rng, odr, lsb, _, baud, n, gps = struct.unpack(HEADER, h)
        if ver != VERSION:
            raise TapeError("%s: tape version %d, this reader knows %d" % (name, ver, VERSION))
        if rng not in (2, 4, 8, 16) or not odr or not lsb or not baud:
            raise TapeError("%s: bad tape header (range %d g, %d Hz, %d LSB/g, %d baud)"
                            % (name, rng, odr, lsb, baud))
        want = HEADER_SIZE + 6 * n + gps
        size = f.seek(0, 2)
        if size < want:
            raise TapeError("%s: truncated tape: %d bytes, its header says %d (%d samples, %d GPS bytes)"
                            % (name, size, want, n, gps))
        if size > want:
            raise TapeError("%s: %d bytes after the end its header gives (not one tape)" % (name, size - want))
    except TapeError:
        f.close()  # (the reader is never made)
        raise
    r.odr_hz, r.range_g, r.lsb_per_g, r.baud, r.samples, r.gps_bytes = odr, rng, lsb, baud, n, gps
    r.period_ms = 1000 // odr  # 0 above 1 kHz: the node's config refuses those


class ImuReader:
    """The IMU samples in order: int16 counts x, y, z at the recording's range (``range_g``,
    ``lsb_per_g``), one per ``period_ms`` from t = 0. ``next`` multiplies them by ``scale`` and
    gives ``rest`` on z after the tape (the sensor still, 1 g up): a consumer that wants other units
    (the simulated IMU) sets both and pays one call per sample."""

    def __init__(self, src, block=32):
        _open(self, src)
        self.buf = array("h", bytes(6 * block))
        self.i = 0  # samples taken
        self._j = 0  # next value in buf
        self._m = 0  # values in buf
        self.scale = 1
        self.rest = self.lsb_per_g
        self.f.seek(HEADER_SIZE)

    def seek(self, i):
        """Go to sample ``i`` (clamped to the tape): a node powered up mid-drive."""
        i = 0 if i < 0 else (self.samples if i > self.samples else i)
        self.f.seek(HEADER_SIZE + 6 * i)
        self.i = i
        self._j = self._m = 0

    def _fill(self):
        k = self.f.readinto(self.buf) or 0
        self._m = k // 6 * 3  # whole samples (a block may run into the GPS section: never used)
        self._j = 0
        if not self._m:
            raise TapeError("%s: truncated tape at sample %d" % (self.name, self.i))

    def next(self, v):
        """Put the next sample x ``scale`` into v[0:3]; after the tape (0, 0, ``rest``) and False."""
        if self.i >= self.samples:
            v[0] = 0
            v[1] = 0
            v[2] = self.rest
            return False
        if self._j >= self._m:
            self._fill()
        b = self.buf
        j = self._j
        s = self.scale
        v[0] = b[j] * s
        v[1] = b[j + 1] * s
        v[2] = b[j + 2] * s
        self._j = j + 3
        self.i += 1
        return True

    def read_until(self, t_ms, out):
        """rnfw.pipeline.run_batches' IMU: the samples with time <= t_ms not yet read (at most
        len(out) // 3) into ``out``, as recorded; -1 once the tape is over."""
        i = self.i
        n = self.samples - i
        if n <= 0:
            return -1
        want = t_ms // self.period_ms + 1 - i
        if want > n:
            want = n
        if want > len(out) // 3:
            want = len(out) // 3
        if want <= 0:
            return 0
        o = 0
        end = 3 * want
        b = self.buf
        while o < end:
            if self._j >= self._m:
                self._fill()
            j = self._j
            k = self._m - j
            if k > end - o:
                k = end - o
            for q in range(k):
                out[o + q] = b[j + q]
            o += k
            self._j = j + k
        self.i = i + want
        return want


class GpsReader:
    """The NMEA bytes as the UART receives them: a byte is there once fully received."""

    def __init__(self, src):
        _open(self, src)
        self.us_per_byte = 10000000 // self.baud
        self.f.seek(HEADER_SIZE + 6 * self.samples)
        self._left = self.gps_bytes  # bytes of the GPS section not yet read
        self._hdr = bytearray(RECORD_SIZE)
        self.cur = bytearray(128)  # the current sentence (NMEA's are at most 82 bytes)
        self.cur_len = 0
        self.cur_t = 0  # its first byte's time, us
        self.pos = 0  # bytes of it already delivered
        self.eof = False
        try:
            self.next_sentence()
        except TapeError:
            self.f.close()
            raise

    def next_sentence(self):
        """Go to the next sentence: what is left of the current one is never delivered."""
        self.pos = 0
        n = 0
        while not n:  # (an empty record carries nothing: skipped)
            if self._left <= 0:
                self.eof = True
                self.cur_len = 0
                return
            h = self._hdr
            if self._left < RECORD_SIZE or self.f.readinto(h) != RECORD_SIZE:
                raise TapeError("%s: truncated tape in a GPS record" % self.name)
            t = 0
            for k in range(7, -1, -1):
                t = (t << 8) | h[k]
            n = h[8] | (h[9] << 8)
            self._left -= RECORD_SIZE + n
            if self._left < 0:
                raise TapeError("%s: truncated tape: a GPS record runs past the end" % self.name)
        if n > len(self.cur):
            self.cur = bytearray(n)
        if self.f.readinto(memoryview(self.cur)[:n]) != n:
            raise TapeError("%s: truncated tape in a GPS sentence" % self.name)
        self.cur_t = t
        self.cur_len = n

    def arrived(self, t_us):
        """Bytes of the current sentence received by t_us and not delivered yet (<= 0: none)."""
        if self.eof or t_us < self.cur_t:
            return 0
        k = (t_us - self.cur_t) // self.us_per_byte + 1
        return (self.cur_len if k > self.cur_len else k) - self.pos

    def read(self, out, t_us, nbytes):
        """Copy the bytes received by t_us (at most nbytes, across sentences) into out; how many."""
        o = 0
        while o < nbytes and not self.eof:
            k = self.arrived(t_us)
            if k <= 0:
                break
            if k > nbytes - o:
                k = nbytes - o
            p = self.pos
            copy_bytes(out, o, self.cur, p, k)
            o += k
            self.pos = p + k
            if self.pos >= self.cur_len:
                self.next_sentence()
        return o

    def read_until(self, t_ms, out):
        """rnfw.pipeline.run_batches' GPS: the bytes received by t_ms, at most len(out)."""
        return self.read(out, t_ms * 1000, len(out))

    def skip_to(self, t_us):
        """Drop what went on the wire before t_us: a node powered up mid-drive never got it."""
        ub = self.us_per_byte
        while not self.eof and self.cur_t + self.cur_len * ub <= t_us:
            self.next_sentence()
        if not self.eof and self.cur_t < t_us:
            k = (t_us - self.cur_t) // ub + 1
            self.pos = self.cur_len if k > self.cur_len else k
