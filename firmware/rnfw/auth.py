"""Message authentication on the MQTT uplink (docs/security.md): the node's own 128-bit key and a
message counter that only grows. Each /up batch and each status heartbeat gets the counter (u32 LE)
and the first 8 bytes of HMAC-SHA256(key, message + counter) appended; the collector refuses a bad
tag or a counter it has seen. HMAC is written here on hashlib.sha256 (C on the node): RFC 2104.

The key is the file `key.bin` beside the config (written by `roadnode flash`, never printed). The
counter survives power cuts without a flash write per message: `ctr` holds a ceiling; at boot the
counter starts at that ceiling (above anything sent before); before the counter is used at or past
the ceiling, a new one _STRIDE ahead is written (tmp + rename): one small write per boot that sends
and per 1024 messages."""

import os
import struct
from hashlib import sha256

from micropython import const

_STRIDE = const(1024)
_k = None
_c = 0
_top = 0
_p = None


def mac(k, m):
    """HMAC-SHA256(k, m), 32 bytes (RFC 2104; checked against CPython's hmac on RFC 4231's vectors)."""
    if len(k) > 64:
        k = sha256(k).digest()
    k = bytes(k) + bytes(64 - len(k))
    h = sha256(bytes(x ^ 0x36 for x in k))
    h.update(m)
    o = sha256(bytes(x ^ 0x5C for x in k))
    o.update(h.digest())
    return o.digest()


def load(d):
    """Read the key in folder d; the key (bytes) or None when the node has none (then nothing is sealed)."""
    global _k, _c, _top, _p
    try:
        with open(d + "/key.bin", "rb") as f:
            k = f.read()
    except OSError:
        return None
    if len(k) < 16:
        return None
    _p = d + "/ctr"
    try:
        with open(_p) as f:
            _c = _top = int(f.read())  # the ceiling: above every counter used before (first seal: a new one)
    except (OSError, ValueError):
        pass  # (a cut between the write and the rename leaves the old ceiling, still above them)
    _k = k
    return k


def seal(b, n):
    """Seal the message b[:n] in place: the u32 counter and the 8-byte tag go to b[n:n + 12] (b has
    the room; no copy of the message). Returns n + 12."""
    global _c, _top
    c = _c
    if c >= _top:  # a new ceiling on the flash before the counter passes the old one
        _top = c + _STRIDE
        with open(_p + ".tmp", "w") as f:
            f.write(str(_top))
        os.rename(_p + ".tmp", _p)
    _c = c + 1
    struct.pack_into("<I", b, n, c)
    n += 4
    b[n:n + 8] = mac(_k, memoryview(b)[:n])[:8]
    return n + 8
