"""Where packets go. The console uplink writes each packet as a COBS frame between 0x00 bytes on
the USB serial console, where `roadnode monitor` (and any capture) picks them out of the text."""

import sys

from rnfw import cobs

# stats() of an uplink without a queue or a network: nothing held, WiFi and MQTT off, never acked
NO_LINK = (0, 0, 0, 0, 0xFFFF, 0)


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

    def poll(self, now_ms):
        """Once per pass (the MQTT uplink's work happens here; the console has none)."""

    def stats(self):
        """For the heartbeat: (queue_depth, queue_dropped, link byte: WiFi state | MQTT state << 2,
        reconnects, seconds since the last ack or 0xFFFF, queue_torn); docs/packets.md."""
        return NO_LINK

    def flush(self):
        """End of a drive: what is held reaches its store now (the console holds nothing)."""


class NullUplink:
    sent = 0

    def send(self, pkt, n):
        self.sent += 1
        return True

    def poll(self, now_ms):
        pass

    def stats(self):
        return NO_LINK

    def flush(self):
        pass
