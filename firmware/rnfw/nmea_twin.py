"""Plain-Python twin of rnfw.nmea_viper (see there): what the host runs under CPython; tests hold
the viper functions to it on MicroPython. Not deployed (firmware/deploy.toml)."""

from micropython import const

_N = const(0)
_IN = const(1)
_LINE = const(2)
_START = const(3)
_MAXLEN = const(4)
_EV = const(5)
_EV_SPLICED = const(1)
_EV_END = const(2)
_EV_BAD_CHAR = const(3)
_EV_TOO_LONG = const(4)


def take(data, i, n, buf, st):
    """As nmea_viper.take."""
    st[_EV] = 0
    k = st[_N]
    inside = st[_IN]
    maxlen = st[_MAXLEN]
    while i < n:
        c = data[i]
        if c == 36:
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
                st[_LINE] += 1
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


def _hex(c):
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


def check(buf, n, f, maxf):
    """As nmea_viper.check."""
    star = -1
    for k in range(n - 1, 0, -1):
        if buf[k] == 42:
            star = k
            break
    if star < 0:
        return -1
    if star != n - 3:
        return -2
    h1 = _hex(buf[n - 2])
    h2 = _hex(buf[n - 1])
    if h1 < 0 or h2 < 0:
        return -2
    x = 0
    for k in range(1, star):
        x ^= buf[k]
    if x != (h1 << 4) | h2:
        return -3
    nf = 0
    f[0] = 1
    for k in range(1, star):
        if buf[k] == 44:
            nf += 1
            if nf <= maxf:
                f[nf] = k + 1
    nf += 1
    if nf > maxf:
        nf = maxf
    f[nf] = star + 1
    return star | (nf << 8)
