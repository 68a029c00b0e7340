"""The ESP32's flash partition as a block device backed by an image file, for VfsLfs2.

LittleFS v2 is what MicroPython's ESP32 port mounts at '/', so file sizes in ilistdir, statvfs,
ENOSPC when full and power-loss behaviour are the real ones. Every write goes straight to the
image (no host-side cache): a killed interpreter leaves exactly what was written before. The unix
port's files write straight to the kernel (no buffer in the interpreter), so the kernel's page
cache holds every write the moment it returns and a SIGKILL loses none; flush() would add an
fsync to the disk per write (it made the queue's flash tests 2-3x slower) for a host crash,
which is not the fault modelled here.

It behaves like the ESP32's SPI NOR flash as esp32_partition.c drives it: LittleFS programs with
writeblocks(n, buf, off) (no erase) and erases 4096-byte sectors with ioctl(6, n); writeblocks
without an offset erases the sectors first. Erase sets every bit to 1, programming can only clear
bits (the image gets old AND new), so a write to a sector that was not erased shows up as garbage,
as on the chip. Programming goes page by page (256 bytes).

Power cuts tear writes: with a budget armed (``arm(n)``, or the board's state file ``flashcut``
holding n in ASCII, written by the supervisor), the power fails after n more bytes have been
programmed: the bytes before the cut are in flash, the rest of the torn page and every later page
keep their old contents. The board's device then kills the interpreter (the supervisor sees the
budget at 0 and powers the board up again, as after power_cut()); ``on_cut`` replaces that for
tests that cut and remount in one interpreter. The budget file outlives resets, so a cut armed
before a restart lands in whatever the next boot writes.
"""

import micropython
import uos
from micropython import const

import simclock

_PAGE = const(256)
_ERASED = b"\xff" * 256  # an erased page


@micropython.viper
def _program(page: ptr8, src: ptr8, so: int, n: int):
    """page[0:n] &= src[so:so + n]: NOR programming clears bits only (machine code: the image's
    every programmed byte passes here)."""
    i = 0
    while i < n:
        page[i] = page[i] & src[so + i]
        i += 1


class PowerCut(Exception):
    """The cut came (raised once on_cut returns: a test's on_cut does) and by every access after
    it: the flash has no power."""


def _kill_interpreter():
    # the unix port runs inside the Python process the supervisor started: $PPID of the shell
    uos.system("kill -9 $PPID")
    while True:
        pass


class FileBlockDev:
    """Flash in a file, with NOR semantics: erase to ones, program clears bits; power cuts can be injected."""

    def __init__(self, path, block_size=4096, blocks=512, cut_file=None, on_cut=None):
        self.bs = block_size
        self.n = blocks
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
        self.f.seek(0, 2)
        if self.f.tell() < block_size * blocks:  # new flash is erased: all ones
            blank = b"\xff" * block_size
            self.f.seek(0)
            for _ in range(blocks):
                self.f.write(blank)
        self.page = bytearray(_PAGE)  # one page of old contents, to AND the new data into
        self.budget = -1  # bytes that may still be programmed before the power fails (-1: no cut)
        self.programmed = 0  # bytes programmed by this device since it was made (tests read it)
        self.dead = False
        self.on_cut = on_cut or _kill_interpreter
        self.cf = None
        if cut_file is None:
            st = uos.getenv("RNSIM_STATE")
            cut_file = st + "/flashcut" if st else None
        if cut_file:
            try:  # opened now: once the image is mounted at '/' the host's folders are out of reach
                self.cf = open(cut_file, "r+b")
            except OSError:
                self.cf = None

    def arm(self, n):
        """The power fails after n more bytes are programmed (n < 0: never)."""
        self.budget = n

    def _alive(self):
        if self.dead:
            raise PowerCut("flash: no power")

    def _read_budget(self):
        f = self.cf
        f.seek(0)
        t = f.read(24).strip()
        self.budget = int(t) if t else -1

    def _write_budget(self):
        f = self.cf
        f.seek(0)
        f.write(b"%12d\n" % self.budget)

    @micropython.native
    def readblocks(self, n, buf, off=0):
        """Block protocol read."""
        self._alive()
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def _erase(self, first, count):
        self.f.seek(first * self.bs)
        for _ in range(count * self.bs // _PAGE):
            self.f.write(_ERASED)  # no 4 KB buffer on the (shared) heap per erase

    @micropython.native
    def writeblocks(self, n, buf, off=None):
        """Block protocol write; a power cut may stop it part way."""
        self._alive()
        if off is None:  # the plain block protocol: erase, then program whole blocks
            self._erase(n, (len(buf) + self.bs - 1) // self.bs)
            off = 0
        if self.cf:
            self._read_budget()
        addr = n * self.bs + off
        total = len(buf)
        todo = total if self.budget < 0 else min(total, self.budget)
        page = self.page
        done = 0
        while done < todo:
            a = addr + done
            k = min(_PAGE - a % _PAGE, todo - done)  # up to the page's end (or the cut)
            self.f.seek(a)
            self.f.readinto(page)
            _program(page, buf, done, k)
            self.f.seek(a)
            self.f.write(page if k == _PAGE else memoryview(page)[:k])
            done += k
        self.programmed += todo
        if self.budget >= 0:
            self.budget -= todo
            if self.cf:
                self._write_budget()
            if todo < total or self.budget == 0 and total:
                self.dead = True  # the power is gone: the rest of this write never reaches the chip
                self.on_cut()
                raise PowerCut("flash: power cut")

    def ioctl(self, op, arg):
        """Block count, block size, sector erase."""
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase one 4096-byte sector: all ones
            self._alive()
            self._erase(arg, 1)
            return 0
        return None


def copy_file(a, b, buf):
    """Copy file a to b through buf (an image to its baseline and back, files onto a mounted flash)."""
    mv = memoryview(buf)
    with open(a, "rb") as s, open(b, "wb") as d:
        while True:
            n = s.readinto(buf)
            if not n:
                break
            d.write(mv[:n])


class BoardFlash(FileBlockDev):
    """The flash as LittleFS (C) calls it on the board: the ESP32's partition driver is built in,
    so the block device's Python is the simulation's time, not the firmware's (simclock.fw/mark)."""

    @micropython.native
    def readblocks(self, n, buf, off=0):
        """As FileBlockDev, off the firmware's clock."""
        simclock.fw()
        try:
            return FileBlockDev.readblocks(self, n, buf, off)
        finally:
            simclock.mark()

    @micropython.native
    def writeblocks(self, n, buf, off=None):
        """As FileBlockDev, off the firmware's clock."""
        simclock.fw()
        try:
            return FileBlockDev.writeblocks(self, n, buf, off)
        finally:
            simclock.mark()

    @micropython.native
    def ioctl(self, op, arg):
        """As FileBlockDev, off the firmware's clock."""
        simclock.fw()
        try:
            return FileBlockDev.ioctl(self, op, arg)
        finally:
            simclock.mark()
