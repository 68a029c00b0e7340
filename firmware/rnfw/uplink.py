"""Where packets go. The console uplink writes each packet as a COBS frame between 0x00 bytes on
the USB serial console, where `roadnode monitor` (and any capture) picks them out of the text."""

import sys

from rnfw import cobs


class ConsoleUplink:
    def __init__(self, stream=None, max_len=64):
        self.out = stream or getattr(sys.stdout, "buffer", sys.stdout)
        self._enc = bytearray(cobs.max_encoded(max_len) + 2)  # measured packets <= 64 bytes; replies more
        self.sent = 0

    def send(self, pkt, n):
        enc = self._enc
        enc[0] = 0
        m = cobs.encode(pkt, n, memoryview(enc)[1:])
        enc[m + 1] = 0
        self.out.write(memoryview(enc)[: m + 2])
        self.sent += 1
        return True


class NullUplink:
    sent = 0

    def send(self, pkt, n):
        self.sent += 1
        return True
