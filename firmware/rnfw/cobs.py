"""COBS framing for the serial console: 0x00 never appears inside a frame, so a 0x00 ends one and a
receiver resynchronises at the next 0x00 after noise. Overhead: 1 byte per 254 (+1)."""


def max_encoded(n):
    """The longest COBS encoding of ``n`` bytes (one overhead byte per 254, plus one)."""
    return n + n // 254 + 1


def encode(src, n, dst):
    """Encode src[:n] into dst (len >= max_encoded(n)); returns the encoded length (no delimiter)."""
    code_i = 0
    o = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_i] = code
            code_i = o
            o += 1
            code = 1
        else:
            dst[o] = b
            o += 1
            code += 1
            if code == 0xFF:
                dst[code_i] = code
                code_i = o
                o += 1
                code = 1
    dst[code_i] = code
    return o


def decode(src, n, dst):
    """Decode src[:n] (one frame, no delimiter) into dst; returns the length, or -1 if malformed."""
    i = 0
    o = 0
    while i < n:
        code = src[i]
        if code == 0 or i + code > n:
            return -1
        i += 1
        for _ in range(code - 1):
            if i >= n or src[i] == 0:
                return -1
            if o >= len(dst):
                return -1
            dst[o] = src[i]
            o += 1
            i += 1
        if code != 0xFF and i < n:
            if o >= len(dst):
                return -1
            dst[o] = 0
            o += 1
    return o
