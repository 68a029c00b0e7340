"""Where packets go. The console uplink writes each packet as a COBS frame between 0x00 bytes on
the USB serial console, where `roadnode monitor` (and any capture) picks them out of the text."""

import sys

from rnfw import cobs


class ConsoleUplink:
    """Packets over the USB console as COBS frames between 0x00 bytes (docs/protocol.md)."""
    def __init__(self, stream=None, n=64):
        """n: the longest packet (measured packets <= 64 bytes; the console's replies more)."""
        self.out = stream or getattr(sys.stdout, "buffer", sys.stdout)
        self.buf = bytearray(cobs.max_encoded(n) + 2)  # a COBS frame between two 0x00
        self.sent = 0

    def send(self, pkt, n):
        """Write packet ``pkt[:n]`` as one frame; always True (the console never holds packets back)."""
        enc = self.buf
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
        reconnects, seconds since the last ack or 0xFFFF, queue_torn); docs/packets.md. Here: nothing
        held, WiFi and MQTT off, never acknowledged."""
        return (0, 0, 0, 0, 0xFFFF, 0)

    def flush(self):
        """End of a drive: what is held reaches its store now (the console holds nothing)."""


class NullUplink:
    """An uplink that sends nowhere (config ``uplink=none``): packets are counted and dropped."""
    sent = 0

    def send(self, pkt, n):
        """Count the packet; True."""
        self.sent += 1
        return True

    def poll(self, now_ms):
        """Nothing to service."""

    def stats(self):
        """The uplink's vitals: none (zeros, last ack unknown)."""
        return (0, 0, 0, 0, 0xFFFF, 0)

    def flush(self):
        """Nothing held."""
