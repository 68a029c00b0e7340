"""The node's console carries text (REPL, prints) and binary packet frames: COBS-encoded packets
between 0x00 bytes. This splits the stream, decodes frames with the firmware's codec, and counts
frames that fail (noise, a cut cable) instead of misreading them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from roadnode.errors import DeviceError
from roadnode.packets import decode_packet


@dataclass
class ConsoleSplitter:
    """Feed bytes; get ("text", bytes) and ("frame", raw_cobs_bytes) items in order."""

    in_frame: bool = False
    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes):
        out = []
        for part_i, part in enumerate(data.split(b"\x00")):
            if part_i:
                # a 0x00 closes what was open: a frame ends, or a frame starts after text
                if self.in_frame:
                    out.append(("frame", bytes(self.buf)))
                elif self.buf:
                    out.append(("text", bytes(self.buf)))
                self.buf.clear()
                self.in_frame = not self.in_frame
            self.buf += part
        if not self.in_frame and self.buf:
            out.append(("text", bytes(self.buf)))
            self.buf.clear()
        return out


def decode_frame(raw: bytes) -> dict:
    from roadnode.mpy.fwimport import fw

    C = fw("cobs")
    dst = bytearray(len(raw))
    n = C.decode(raw, len(raw), dst)
    if n < 0:
        return {"type": "error", "error": "not a COBS frame", "hex": raw.hex()}
    return decode_packet(bytes(dst[:n]))


def open_port(port: str, baud: int = 115200):
    import serial

    try:
        # no DTR/RTS toggling: on ESP32 dev boards they drive EN/IO0 and would reset the node
        s = serial.Serial()
        s.port = port
        s.baudrate = baud
        s.timeout = 0.05
        s.dtr = False
        s.rts = False
        s.open()
        return s
    except (serial.SerialException, OSError) as e:
        raise DeviceError(f"cannot open {port}: {e}") from None


def monitor(port: str, duration: float | None = None, record=None, baud: int = 115200):
    """Yield decoded packets (dicts) from the port; ``record`` (a binary file) gets every raw
    frame with its 0x00 delimiters, readable by `roadnode decode`."""
    s = open_port(port, baud)
    sp = ConsoleSplitter()
    end = None if duration is None else time.monotonic() + duration
    try:
        while end is None or time.monotonic() < end:
            data = s.read(4096)
            if not data:
                continue
            for kind, item in sp.feed(data):
                if kind == "frame":
                    if record is not None:
                        record.write(b"\x00" + item + b"\x00")
                        record.flush()
                    yield decode_frame(item)
    finally:
        s.close()
