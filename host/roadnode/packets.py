"""Host side of the packet format: decode hex or captured frames with the firmware's own codec."""

from __future__ import annotations

import os
import re
from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy.fwimport import fw
from roadnode.userfiles import read_input

_HEX = re.compile(r"^[0-9A-Fa-f\s:,-]+$")
# bytes console text is made of: printable ASCII, tab, CR, LF, ESC (ANSI colours of IDF log lines)
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n\x1b"


def is_text(chunk: bytes) -> bool:
    """Console text (prints, the REPL, ESP-IDF log lines) rather than a packet frame: every frame
    holds bytes outside printable ASCII (its header byte is version<<4 | type = 0x11..0x15, and
    COBS leaves non-zero bytes as they are), so a chunk of text bytes only is never a frame."""
    return not bytes(chunk).translate(None, _TEXT_BYTES)


def decode_packet(data: bytes) -> dict:
    """Decoded dict (JSON-ready), or {"type": "error", "error": ...}."""
    P = fw("packet_decode")
    try:
        d = P.decode(data)
    except P.PacketError as e:
        return {"type": "error", "error": str(e), "hex": data.hex()}
    for k, v in d.items():  # payloads and request arguments: JSON has no bytes
        if isinstance(v, (bytes, bytearray, memoryview)):
            d[k] = bytes(v).hex()
    return d


def split_frames(raw: bytes) -> list[bytes]:
    """COBS frames between 0x00 delimiters, decoded; an undecodable frame comes back as b"".
    Console text between frames is skipped."""
    C = fw("cobs")
    out = []
    for chunk in raw.split(b"\x00"):
        if not chunk or is_text(chunk):  # text between frames (prints, IDF log lines)
            continue
        dst = bytearray(len(chunk))
        n = C.decode(chunk, len(chunk), dst)
        out.append(bytes(dst[:n]) if n >= 0 else b"")
    return out


def read_packets(arg: str) -> list[bytes]:
    """HEX string, a file of hex lines, or a binary file of COBS frames."""
    compact = re.sub(r"[\s:,-]", "", arg)
    if not os.path.exists(arg):  # False also for names the OS refuses (too long, NUL): then it is text
        if compact and _HEX.match(arg):
            if len(compact) % 2:
                raise InputError(f"hex string has an odd number of digits ({len(compact)})")
            return [bytes.fromhex(compact)]
        shown = arg if len(arg) <= 60 else arg[:57] + "..."
        raise InputError(f"{shown!r}: neither a file nor a hex string")
    p = Path(arg)
    raw = read_input(p, "capture file")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
                 if ln.strip() and not ln.strip().startswith("#")]
        if lines and all(_HEX.match(ln) for _, ln in lines):
            out = []
            for n, ln in lines:
                digits = re.sub(r"[\s:,-]", "", ln)
                if len(digits) % 2:
                    raise InputError(f"{p}:{n}: hex line has an odd number of digits ({len(digits)})")
                out.append(bytes.fromhex(digits))
            return out
    frames = split_frames(raw)
    if not frames:
        raise InputError(f"{p}: no packets found (expected hex lines or 0x00-delimited COBS frames)")
    return frames
