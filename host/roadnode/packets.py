"""Host side of the packet format: decode hex or captured frames with the firmware's own codec."""

from __future__ import annotations

import re
from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy.fwimport import fw

_HEX = re.compile(r"^[0-9A-Fa-f\s:,-]+$")


def decode_packet(data: bytes) -> dict:
    """Decoded dict (JSON-ready), or {"type": "error", "error": ...}."""
    P = fw("packet_decode")
    try:
        d = P.decode(data)
    except P.PacketError as e:
        return {"type": "error", "error": str(e), "hex": data.hex()}
    if isinstance(d.get("payload"), (bytes, bytearray)):
        d["payload"] = bytes(d["payload"]).hex()
    return d


def split_frames(raw: bytes) -> list[bytes]:
    """COBS frames between 0x00 delimiters, decoded; an undecodable frame comes back as b""."""
    C = fw("cobs")
    out = []
    for chunk in raw.split(b"\x00"):
        if not chunk:
            continue
        dst = bytearray(len(chunk))
        n = C.decode(chunk, len(chunk), dst)
        out.append(bytes(dst[:n]) if n >= 0 else b"")
    return out


def read_packets(arg: str) -> list[bytes]:
    """HEX string, a file of hex lines, or a binary file of COBS frames."""
    p = Path(arg)
    if not p.exists():
        if _HEX.match(arg) and len(re.sub(r"[\s:,-]", "", arg)) % 2 == 0:
            return [bytes.fromhex(re.sub(r"[\s:,-]", "", arg))]
        raise InputError(f"{arg}: neither a file nor a hex string")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("ascii")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if lines and all(_HEX.match(ln) for ln in lines):
            return [bytes.fromhex(re.sub(r"[\s:,-]", "", ln)) for ln in lines]
    except (UnicodeDecodeError, ValueError):
        pass
    frames = split_frames(raw)
    if not frames:
        raise InputError(f"{p}: no packets found (expected hex lines or 0x00-delimited COBS frames)")
    return frames
