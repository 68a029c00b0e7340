"""Store-and-forward queue on the node's flash (issue 12; docs/queue.md).

Every packet gets a sequence number (below 2^30: ESP32 small ints) and waits in a RAM batch; commit()
appends the batch to the newest queue file with one write and one sync, and from then on the packets
survive any power cut. They leave only when the collector acknowledges them (ack(upto), after its
database commit); when the queue is full the oldest file is dropped and its unacknowledged records
are counted (dropped).

Layout under ``root``: a ring of files named by their first seq, oldest first.
  ``%08x.q``       the newest file, still taking appends (its record count is found by a scan at boot)
  ``%08x-%x.q``    a closed file and its record count (so dropping it counts without reading it)
  ``meta``         epoch, persisted ack point, dropped and torn totals; replaced by write + rename
A record is u8 len, len packet bytes, CRC-16/CCITT-FALSE (LE) over len + packet. Seqs inside a file
are consecutive; between files they may jump (after a damaged tail), never go back.

Power cuts: on LittleFS a sync commits a file's new size and data at once, so a cut during commit()
leaves the batch whole or absent (absent, its seqs are given again: they never left the node); on any
filesystem the recovery scan stops at the first record that fails its CRC (the tail is dropped,
counted in torn, and the seqs it could have held are skipped: a record read before is never
replaced by another under its seq).
The newest file is never deleted, even fully acknowledged: its name + count is the seq floor at boot.
Acked records are deleted a whole file at a time; the ack point is persisted lazily (every
ack_every records, when files are freed, at sync()), so a cut may send acknowledged records again:
duplicates on the wire only, the collector dedupes by (epoch, seq).

Runs on MicroPython (the node) and CPython (host tools reading a queue dumped from a board). On the
node its code and names take heap: few methods and attributes.
"""

import os
import struct
import sys
from array import array

import micropython
from micropython import const

_MAXLEN = const(255)  # longest packet a record holds (u8 length)
_FILE = const(32704)  # 8 LittleFS blocks of 4096 less the CTZ pointers (44 B) in blocks 1-7
_CAP = const(1373568)  # 42 files: 7 days of 8 h at 50 km/h is ~1.15 MB of records (docs/queue.md)
_BATCH = const(512)
_RBUF = const(512)  # read chunk: at least one whole record (258 B)
_ACK_EVERY = const(256)
_SEQ_MASK = const(0x3FFFFFFF)
_NPOS = const(5)  # read positions remembered (below)

# CRC-16/CCITT-FALSE, by table
_T = array("H", bytes(512))
for i in range(256):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    _T[i] = c
del i, c, _

if sys.implementation.name == "micropython":
    # viper on the node: ~100x faster, and its machine code is not on the heap; reading a backlog
    # is mostly this loop (a test holds it to CPython's below)
    @micropython.viper
    def _crc(src, p: int, n: int, crc: int) -> int:
        s = ptr8(src)
        t = ptr16(_T)
        i = p
        e = p + n
        while i < e:
            crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ s[i]]
            i += 1
        return crc

    @micropython.viper
    def _copy(src, p: int, n: int, crc: int, dst, o: int) -> int:
        s = ptr8(src)
        d = ptr8(dst)
        t = ptr16(_T)
        i = p
        e = p + n
        while i < e:
            b = s[i]
            d[o] = b
            o += 1
            crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
            i += 1
        return crc

else:

    def _crc(src, p, n, crc):
        """CRC-16/CCITT-FALSE of src[p:p+n], continued from crc."""
        t = _T
        for i in range(p, p + n):
            crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ src[i]]
        return crc

    def _copy(src, p, n, crc, dst, o):
        """_crc, copying src[p:p+n] to dst[o:] on the way (the read path checks and copies in one pass)."""
        t = _T
        for i in range(p, p + n):
            b = src[i]
            dst[o] = b
            o += 1
            crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
        return crc


class Queue:
    """The store-and-forward queue on flash: packets in a RAM batch, committed to files in a ring,
    sent, and freed once acknowledged (docs/queue.md); survives power cuts."""
    def __init__(self, root="/q", capacity=_CAP, file_bytes=_FILE, batch_bytes=_BATCH, ack_every=_ACK_EVERY):
        """Opens (or creates) the queue under root and recovers it. capacity: bytes of queue files
        (a whole number of files of file_bytes; at least 2 files); batch_bytes: the RAM batch."""
        if batch_bytes < _MAXLEN + 3 or file_bytes < batch_bytes or capacity // file_bytes < 2:
            raise ValueError("queue: batch >= 258 B, file >= batch, capacity >= 2 files")
        self.root = root
        self.file_bytes = file_bytes
        self.max_files = capacity // file_bytes
        self.ack_every = ack_every
        self._batch = memoryview(bytearray(batch_bytes))
        self._rbuf = bytearray(_RBUF)
        self._bn = 0  # bytes in the batch
        self._bk = 0  # records in the batch
        self._first = []  # each file's first seq, oldest first
        self._count = []  # each file's records
        self._open = False  # the newest file takes appends
        self._size = 0  # its bytes
        self._gen = 0  # commits: a reader of the newest file reopens after one
        self._rf = None  # reader handle, kept open between reads
        self._rfirst = -1
        self._rgen = -1
        # where the next read most likely starts: after the last one (the last slot), or at one of
        # the last starts (a resend from the ack point after a reconnect): file first seq, seq, offset
        self._pos = [-1, 0, 0] * _NPOS
        self._pi = 0
        self._held = 0  # committed records not acknowledged
        self.errors = 0  # filesystem errors met by commit/meta writes (each retried or counted)
        # recovery: the meta, then the files (an open one is scanned: its good records and size)
        try:
            os.mkdir(self.root)
        except OSError:
            pass
        m = self._rbuf
        try:
            with open(self.root + "/meta", "rb") as f:
                n = f.readinto(m)
        except OSError:
            n = 0
        if n == 22 and m[:4] == b"RNQ1" and _crc(m, 0, 20, 0xFFFF) == m[20] | m[21] << 8:
            self.epoch, self._ackn, self.dropped, self.torn = struct.unpack_from("<IIII", m, 4)
            self._sackn = self._ackn
        else:
            self.epoch = int.from_bytes(os.urandom(4), "little") & _SEQ_MASK
            self._ackn = self._sackn = self.dropped = self.torn = 0
            self._save_meta()
        ents = []
        for name in os.listdir(self.root):
            if not name.endswith(".q"):
                continue
            s = name[:-2]
            try:
                if len(s) == 8:
                    ents.append((int(s, 16), -1))
                elif len(s) > 9 and s[8] == "-":
                    ents.append((int(s[:8], 16), int(s[9:], 16)))
            except ValueError:
                pass
        ents.sort()
        for f, c in ents:
            self._first.append(f)
            self._count.append(c)
        nxt = 0
        n = len(ents)
        rb = self._rbuf
        for i in range(n):
            f = self._first[i]
            if self._count[i] >= 0:
                continue
            # an open file: its good records (the scan stops at the first bad one) and its size
            p = self._path(f, -1)
            good = end = 0
            with open(p, "rb") as fh:
                while True:
                    fh.seek(end)
                    have = fh.readinto(rb)
                    pos = 0
                    while pos < have:
                        k = rb[pos]
                        if k == 0 or pos + k + 3 > have:
                            break
                        if _crc(rb, pos, k + 1, 0xFFFF) != rb[pos + k + 1] | rb[pos + k + 2] << 8:
                            have = -1  # damaged: stop here
                            break
                        pos += k + 3
                        good += 1
                    end += pos
                    if pos == 0 or have < 0:
                        break
            size = os.stat(p)[6]
            self._count[i] = good
            if end < size:  # a damaged tail: the torn last record (or bit rot)
                self.torn += 1
                # skip every seq the tail could have held: none of them is ever used again
                nxt = f + good + (size - end) // 3 + 1
                if i == n - 1:
                    self._newfile(nxt)  # first, so the seq floor survives a cut right here
                os.rename(p, self._path(f, good))
                self._save_meta()
            elif i == n - 1:
                self._open = True
                self._size = size
            else:  # an older file left open (a cut while closing it): close it now
                os.rename(p, self._path(f, good))
        if self._first:
            e = self._first[-1] + self._count[-1]
            nxt = e if e > nxt else nxt
        self.next_seq = nxt if nxt > self._ackn else self._ackn  # the seq the next append gets
        self._recount()

    # ---- state --------------------------------------------------------------------------------
    @property
    def base(self):
        """Oldest seq still held: everything below was acknowledged or dropped."""
        if self._first:
            f = self._first[0]
            return f if f > self._ackn else self._ackn
        return self._ackn

    @property
    def depth(self):
        """Records held: committed and not acknowledged, plus the RAM batch."""
        return self._held + self._bk

    @property
    def files(self):
        """Queue files in use."""
        return len(self._first)

    def _recount(self):
        a = self._ackn
        h = 0
        for i in range(len(self._first)):
            f = self._first[i]
            e = f + self._count[i]
            if e > a:
                h += e - (f if f > a else a)
        self._held = h

    def _path(self, i, count=-2):
        """File i's name (count -2: as it is now; -1: the open file's name for first seq i)."""
        if count == -2:
            count = -1 if self._open and i == len(self._first) - 1 else self._count[i]
            i = self._first[i]
        if count < 0:
            return "%s/%08x.q" % (self.root, i)
        return "%s/%08x-%x.q" % (self.root, i, count)

    # ---- meta ---------------------------------------------------------------------------------
    def _save_meta(self):
        """Atomic on LittleFS (rename): the old meta or the new, never a mix."""
        m = bytearray(22)
        m[0:4] = b"RNQ1"
        struct.pack_into("<IIII", m, 4, self.epoch, self._ackn, self.dropped & _SEQ_MASK, self.torn & _SEQ_MASK)
        c = _crc(m, 0, 20, 0xFFFF)
        m[20] = c & 0xFF
        m[21] = c >> 8
        tmp = self.root + "/meta.t"
        try:
            with open(tmp, "wb") as f:
                f.write(m)
            os.rename(tmp, self.root + "/meta")
            self._sackn = self._ackn
        except OSError:
            self.errors += 1  # the old meta stands: more duplicates at worst

    def _newfile(self, first):
        """An empty open file named by the next seq."""
        with open(self._path(first, -1), "ab"):
            pass
        self._first.append(first)
        self._count.append(0)
        self._open = True
        self._size = 0

    # ---- append / commit ----------------------------------------------------------------------
    def append(self, pkt, n):
        """Queue pkt[:n] (1-255 bytes) and return its seq. Copies into the preallocated batch
        (no allocation); commits first when the batch has no room for it."""
        if n < 1 or n > _MAXLEN:
            raise ValueError("queue: packet length")
        b = self._batch
        o = self._bn
        if o + n + 3 > len(b):
            self.commit()
            o = 0
        b[o] = n
        c = _crc(b, o, 1, 0xFFFF)
        c = _copy(pkt, 0, n, c, b, o + 1)
        b[o + n + 1] = c & 0xFF
        b[o + n + 2] = c >> 8
        self._bn = o + n + 3
        self._bk += 1
        s = self.next_seq
        self.next_seq = s + 1
        return s

    def commit(self):
        """Write the RAM batch to the newest file: one write and one sync. Starts a new file when
        it would not fit, dropping the oldest while the queue holds max_files. On a filesystem error
        (ENOSPC) drops the oldest file and retries; when nothing is left to drop, the batch is lost
        and counted in dropped (never silently; its seqs never left the node and are given again).
        True when the batch is on flash."""
        n = self._bn
        if not n:
            return True
        k = self._bk
        ok = False
        while True:
            try:
                if not self._open or self._size + n > self.file_bytes:
                    self._close_newest()
                    while len(self._first) >= self.max_files:
                        self._drop_oldest()
                    self._first.append(self.next_seq - k)
                    self._count.append(0)
                    self._open = True
                    self._size = 0
                f = open(self._path(len(self._first) - 1), "ab")
                try:
                    f.write(self._batch[:n])
                finally:
                    f.close()
                ok = True
                break
            except OSError:
                self.errors += 1
                try:
                    # the write may have left part of the batch (not on LittleFS: its sync is all or
                    # nothing): the file then keeps only its whole records, new data goes to a fresh file
                    if self._open:
                        p = self._path(self._first[-1], -1)
                        try:
                            size = os.stat(p)[6]
                        except OSError:
                            size = 0
                        if size != self._size:
                            if self._count[-1]:
                                self._close_newest()
                            else:  # holds only the failed batch
                                self._forget(self._first[-1])
                                os.remove(p)
                                self._first.pop()
                                self._count.pop()
                                self._open = False
                    if not self._drop_oldest():
                        break
                except OSError:
                    self.errors += 1
                    break
        if ok:
            self._count[-1] += k
            self._size += n
        else:
            self.dropped += k
            self.next_seq -= k
        self._bn = self._bk = 0
        self._gen += 1
        self._recount()
        return ok

    def _close_newest(self):
        if not self._open:
            return
        f = self._first[-1]
        if self._rfirst == f:
            self._rclose()
        os.rename(self._path(f, -1), self._path(f, self._count[-1]))
        self._open = False

    def _forget(self, f):
        """File f is gone: its reader handle and read positions with it (a new file may reuse
        the name after a failed write)."""
        if self._rfirst == f:
            self._rclose()
        p = self._pos
        for j in range(0, 3 * _NPOS, 3):
            if p[j] == f:
                p[j] = -1

    def _drop_oldest(self):
        """Delete the oldest file (never the newest): its unacknowledged records count as dropped."""
        if len(self._first) < 2:
            return False
        f = self._first[0]
        c = self._count[0]
        self._forget(f)
        os.remove(self._path(f, c))
        self._first.pop(0)
        self._count.pop(0)
        a = self._ackn
        lost = f + c - (f if f > a else a)
        if lost > 0:
            self.dropped += lost
            self._save_meta()
        return True

    # ---- ack ----------------------------------------------------------------------------------
    def ack(self, upto):
        """Every seq <= upto was delivered (cumulative). Frees whole files; persists the ack point
        every ack_every records and whenever files are freed."""
        e = self.next_seq - self._bk  # nothing in the RAM batch was ever read
        if upto >= e:
            upto = e - 1
        if upto < self._ackn:
            return
        self._ackn = a = upto + 1
        freed = False
        while len(self._first) > 1 and self._first[0] + self._count[0] <= a:
            f = self._first[0]
            self._forget(f)
            os.remove(self._path(f, self._count[0]))
            self._first.pop(0)
            self._count.pop(0)
            freed = True
        self._recount()
        if freed or a - self._sackn >= self.ack_every:
            self._save_meta()

    def sync(self):
        """Commit the batch and persist the ack point now (end of a drive, before a reset)."""
        self.commit()
        if self._ackn != self._sackn:
            self._save_meta()

    def close(self):
        """Commit and persist (sync), then close the read file."""
        self.sync()
        self._rclose()

    # ---- read ---------------------------------------------------------------------------------
    def _rclose(self):
        if self._rf is not None:
            self._rf.close()
            self._rf = None
            self._rfirst = -1

    def read(self, seq, buf):
        """Committed records from seq (from the oldest held if seq is older), packed into buf as
        count x (u8 len, packet) up to len(buf) bytes: (first seq, count, nbytes). A batch holds
        consecutive seqs from one file, at most 255 records; count 0 when there is nothing."""
        rb = self._rbuf
        ps = self._pos
        for _ in range(4):  # again only after a damaged record cut a file short
            b = self.base
            s = seq if seq > b else b
            fs = self._first
            cs = self._count
            nf = len(fs)
            i = 0
            while i < nf and fs[i] + cs[i] <= s:
                i += 1
            if i == nf:
                return s, 0, 0
            f0 = fs[i]
            if s < f0:
                s = f0  # a gap between files: the next seq held
            # the reader: the handle kept open, unless it is another file's or the newest file took
            # a commit since it was opened
            if self._rf is None or self._rfirst != f0 or self._open and i == nf - 1 and self._rgen != self._gen:
                self._rclose()
                self._rf = open(self._path(i), "rb")
                self._rfirst = f0
                self._rgen = self._gen
            fh = self._rf
            # the nearest known position at or before s in this file, then hop over the records
            # between (trusting their lengths: the copy below checks the CRCs)
            bs = f0
            off = 0
            for j in range(0, 3 * _NPOS, 3):
                if ps[j] == f0 and bs <= ps[j + 1] <= s:
                    bs = ps[j + 1]
                    off = ps[j + 2]
            k = s - bs
            while k > 0:
                fh.seek(off)
                have = fh.readinto(rb)
                if not have:
                    break
                pos = 0
                while k > 0 and pos < have:
                    n = rb[pos]
                    if n == 0:
                        have = 0
                        break
                    pos += n + 3
                    k -= 1
                off += pos
                if not have:
                    break
            j = self._pi
            ps[j] = f0
            ps[j + 1] = s
            ps[j + 2] = off
            self._pi = (j + 3) % (3 * _NPOS - 3)
            limit = f0 + cs[i] - s
            if limit > 255:
                limit = 255
            room = len(buf)
            o = k = pos = have = 0
            bad = False
            while k < limit:
                if pos >= have or pos + rb[pos] + 3 > have:
                    fh.seek(off)
                    have = fh.readinto(rb)
                    pos = 0
                    if not have or rb[0] + 3 > have:
                        bad = True  # the file ends before its count: cut short
                        break
                n = rb[pos]
                if o + n + 1 > room:
                    break
                c = _crc(rb, pos, 1, 0xFFFF)
                c = _copy(rb, pos + 1, n, c, buf, o + 1)
                if n == 0 or c != rb[pos + n + 1] | rb[pos + n + 2] << 8:
                    bad = True
                    break
                buf[o] = n
                o += n + 1
                pos += n + 3
                off += n + 3
                k += 1
            if bad:
                # a record that does not check out (bit rot): the rest of this file is lost, counted
                # in torn; appends to it continue in a fresh file, made first (the seq floor
                # survives a cut)
                good = s + k - f0
                self.torn += cs[i] - good
                old = self._path(i)
                if self._rfirst == f0:
                    self._rclose()
                if self._open and i == nf - 1:
                    self._open = False
                    self._newfile(self.next_seq - self._bk)
                cs[i] = good
                os.rename(old, self._path(f0, good))
                self._recount()
                self._save_meta()
                if not k:
                    continue
            j = 3 * _NPOS - 3  # the last slot: right after this read (where the next read in order starts)
            ps[j] = f0
            ps[j + 1] = s + k
            ps[j + 2] = off
            return s, k, o
        return seq, 0, 0
