"""The ESP32's flash partition as a block device backed by an image file, for VfsLfs2.

LittleFS v2 is what MicroPython's ESP32 port mounts at '/', so file sizes in ilistdir, statvfs,
ENOSPC when full and power-loss behaviour are the real ones. Every write goes straight to the
image (no host-side cache): a killed interpreter leaves exactly what was written before.
"""


class FileBlockDev:
    def __init__(self, path, block_size=4096, blocks=512):
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
            self.f.flush()

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        self.f.seek(n * self.bs + (off or 0))
        self.f.write(buf)
        self.f.flush()

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase: littlefs handles it
            return 0
        return None
