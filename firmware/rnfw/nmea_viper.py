"""The NMEA parser's per-byte work in viper (rnfw.nmea): taking UART bytes into the line buffer,
and a finished line's checksum and field offsets. Equal to rnfw.nmea_twin (plain Python, what the
host runs under CPython), which tests hold it to on MicroPython. In bytecode this was ~1 us per
byte on the unix port, ~9% of an ESP32 at 5 Hz and 38400 baud."""

import micropython
from micropython import const

# st: the parser's stream state (array('i'), rnfw.nmea)
_N = const(0)  # bytes of the current line held in buf
_IN = const(1)  # 1 while inside a sentence ('$' seen, no line end yet)
_LINE = const(2)  # input line (1-based)
_START = const(3)  # the line the current sentence began on
_MAXLEN = const(4)
_EV = const(5)  # what stopped take(): _EV_* below

_EV_SPLICED = const(1)  # a '$' inside a sentence: that one is truncated (the '$' not yet taken)
_EV_END = const(2)  # a line end closed a sentence: check it
_EV_BAD_CHAR = const(3)
_EV_TOO_LONG = const(4)


@micropython.viper
def take(data: ptr8, i: int, n: int, buf: ptr8, st: ptr32) -> int:
    """Bytes data[i:n] into buf until one ends, breaks or overflows a sentence (st[_EV] says
    which; 0: all taken). Returns the index of the next byte to take."""
    st[_EV] = 0
    k = st[_N]
    inside = st[_IN]
    maxlen = st[_MAXLEN]
    while i < n:
        c = data[i]
        if c == 36:  # '$'
            if inside and k > 1:
                st[_IN] = 0
                st[_N] = k
                st[_EV] = _EV_SPLICED
                return i
            inside = 1
            st[_START] = st[_LINE]
            buf[0] = c
            k = 1
        elif c == 10 or c == 13:
            if c == 10:
                st[_LINE] = st[_LINE] + 1
            if inside:
                st[_IN] = 0
                st[_N] = k
                st[_EV] = _EV_END
                return i + 1
        elif inside:
            if c < 32 or c > 126:
                st[_IN] = 0
                st[_N] = k
                st[_EV] = _EV_BAD_CHAR
                return i + 1
            if k >= maxlen:
                st[_IN] = 0
                st[_N] = k
                st[_EV] = _EV_TOO_LONG
                return i + 1
            buf[k] = c
            k += 1
        i += 1
    st[_IN] = inside
    st[_N] = k
    return n


@micropython.viper
def _hex(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


@micropython.viper
def check(buf: ptr8, n: int, f: ptr8, maxf: int) -> int:
    """A line of n bytes: -1 no '*', -2 '*' not 2 before the end or not hex, -3 checksum wrong;
    else the field offsets into f (f[i]: first byte of field i, f[nf]: one past the '*') and
    star | nf << 8."""
    star = -1
    k = n - 1
    while k > 0:
        if buf[k] == 42:
            star = k
            break
        k -= 1
    if star < 0:
        return -1
    if star != n - 3:
        return -2
    h1 = int(_hex(buf[n - 2]))
    h2 = int(_hex(buf[n - 1]))
    if h1 < 0 or h2 < 0:
        return -2
    x = 0
    k = 1
    while k < star:
        x ^= buf[k]
        k += 1
    if x != (h1 << 4) | h2:
        return -3
    nf = 0
    f[0] = 1
    k = 1
    while k < star:
        if buf[k] == 44:
            nf += 1
            if nf <= maxf:
                f[nf] = k + 1
        k += 1
    nf += 1
    if nf > maxf:
        nf = maxf
    f[nf] = star + 1
    return star | (nf << 8)
