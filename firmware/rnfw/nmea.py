"""Streaming NMEA 0183 parser for the GPS UART: RMC, GGA, VTG and GNS from GP/GN/GL/GA/GB/BD.

Fed raw UART bytes in any chunking. Every sentence must carry a valid checksum. The line buffer
is fixed (``maxlen``); a line that never ends is dropped when it overflows, so memory cannot grow.
No allocation per byte: bytes are copied into a preallocated bytearray (in viper: rnfw.nmea_viper)
and numbers are parsed with integer digit loops over field offsets (no split(), float() or str()).

Units (integers): lat/lon in 1e-7 degree, speed in mm/s, course in 0.01 degree, time of day in ms,
HDOP in 0.01. On the ESP32 small ints are 31-bit: a longitude beyond +-107.37 degrees in 1e-7 units
is a heap big int, allocated once per fix (never per byte).
"""

from array import array

import micropython
from micropython import const

try:  # the per-byte work in viper on MicroPython; CPython (the host) runs the plain twin
    from rnfw.nmea_viper import check as _check
    from rnfw.nmea_viper import take as _take
except (ImportError, NameError, SyntaxError):
    from rnfw.nmea_twin import check as _check
    from rnfw.nmea_twin import take as _take

_OK = const(0)
_E_CHECKSUM = const(1)
_E_NO_CHECKSUM = const(2)
_E_TRUNCATED = const(3)
_E_TOO_LONG = const(4)
_E_BAD_CHAR = const(5)
_E_BAD_FIELD = const(6)
_E_UNSUPPORTED = const(7)
ERRORS = ("", "checksum", "no_checksum", "truncated", "too_long", "bad_char", "bad_field", "unsupported")

_T_OTHER = const(0)
_T_RMC = const(1)
_T_GGA = const(2)
_T_VTG = const(3)
_T_GNS = const(4)
TYPES = ("other", "RMC", "GGA", "VTG", "GNS")

# the stream state shared with rnfw.nmea_viper / nmea_twin (the same names there; a test checks)
_N = const(0)
_IN = const(1)
_LINE = const(2)
_START = const(3)
_MAXLEN = const(4)
_EV = const(5)
_EV_SPLICED = const(1)
_EV_END = const(2)
_EV_BAD_CHAR = const(3)

_MAXF = const(24)  # fields kept per sentence (GSV etc. have more; we only parse the first ones)
_NONE = const(-1)  # "field empty" marker for integers (all our values are >= 0 or signed separately)


def _talker_ok(a, b):
    # GP GN GL GA GB BD
    if a == 71:  # 'G'
        return b == 80 or b == 78 or b == 76 or b == 65 or b == 66
    return a == 66 and b == 68


class NmeaParser:
    """NMEA 0183 sentences from a byte stream, checksums checked, into fix, time, speed and position."""
    def __init__(self, maxlen=120, callback=None):
        if not 8 <= maxlen <= 255:
            raise ValueError("maxlen: 8..255 (field offsets are bytes)")
        self.maxlen = maxlen
        self._buf = bytearray(maxlen)
        self._f = bytearray(_MAXF + 1)  # field start offsets (maxlen < 256)
        # stream state shared with rnfw.nmea_viper.take: bytes held, inside a sentence, input
        # line (1-based), the line the sentence began on, maxlen, what stopped take()
        self._st = array("i", (0, 0, 1, 1, maxlen, 0))  # _N, _IN, _LINE, _START, _MAXLEN, _EV
        self._nf = 0
        self._star = 0
        self._s = 0
        self._e = 0
        self.callback = callback  # callback(parser, type, err) once per sentence seen
        # merged navigation state
        self.fix_valid = False
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.speed_mmps = 0
        self.course_cdeg = 0
        self.tod_ms = _NONE
        self.date = 0  # ddmmyy
        self.quality = 0
        self.sats = 0
        self.hdop_c = 9999
        self.fixes = 0  # count of sentences that carried a valid position
        # values carried by the last sentence itself (_NONE when absent)
        self.s_type = _T_OTHER
        self.s_lat_e7 = _NONE
        self.s_lon_e7 = _NONE
        self.s_has_pos = False
        self.s_speed_mmps = _NONE
        self.s_tod_ms = _NONE
        # counters
        self.sentences_ok = 0
        self.checksum_errors = 0
        self.malformed = 0
        self.overflows = 0
        self.ignored = 0

    # ---- byte stream -------------------------------------------------------------------------
    @property
    def line(self):
        """The current input line (1-based), for tools."""
        return self._st[_LINE]

    @property
    def start_line(self):
        """The line the current (or last) sentence began on."""
        return self._st[_START]

    def feed(self, data, n=-1):
        """Feed ``n`` bytes of ``data`` (all when n < 0). Returns sentences completed."""
        if n < 0:
            n = len(data)
        st = self._st
        buf = self._buf
        done = 0
        i = 0
        while i < n:
            i = _take(data, i, n, buf, st)
            e = st[_EV]
            if e:
                done += 1
                if e == _EV_END:
                    self._finish()
                elif e == _EV_SPLICED:  # a new sentence began inside this one
                    self._error(_E_TRUNCATED)
                elif e == _EV_BAD_CHAR:
                    self._error(_E_BAD_CHAR)
                else:
                    self.overflows += 1
                    self._error(_E_TOO_LONG)
        return done

    def feed_byte(self, c):
        """Feed one byte (feed() takes many); returns the sentences completed."""
        b = self._one
        b[0] = c
        return self.feed(b, 1)

    _one = bytearray(1)

    def sentence(self):
        """The current sentence's bytes (allocates: for tools, not the device loop)."""
        return bytes(self._buf[: self._st[_N]])

    # ---- one sentence --------------------------------------------------------------------------
    def _error(self, err):
        if err == _E_CHECKSUM:
            self.checksum_errors += 1
        elif err != _E_UNSUPPORTED:
            self.malformed += 1
        self._emit(err)

    def _emit(self, err):
        cb = self.callback
        if cb is not None:
            cb(self, self.s_type, err)

    @micropython.native
    def _finish(self):
        buf = self._buf
        self.s_type = _T_OTHER
        self.s_lat_e7 = _NONE
        self.s_lon_e7 = _NONE
        self.s_has_pos = False
        self.s_speed_mmps = _NONE
        self.s_tod_ms = _NONE
        # checksum ("*hh" must end the line) and the offsets of the fields: field 0 is the address
        r = _check(buf, self._st[_N], self._f, _MAXF)
        if r < 0:
            self._error(_E_NO_CHECKSUM if r == -1 else _E_CHECKSUM if r == -3 else _E_TRUNCATED)
            return
        star = r & 255
        nf = r >> 8
        f = self._f
        self._nf = nf
        self._star = star
        if nf < 2 or f[1] != 7 or not _talker_ok(buf[1], buf[2]):
            self.ignored += 1
            self._error(_E_UNSUPPORTED)
            return
        a, b, c = buf[3], buf[4], buf[5]
        if a == 82 and b == 77 and c == 67:
            t = _T_RMC
        elif a == 71 and b == 71 and c == 65:
            t = _T_GGA
        elif a == 86 and b == 84 and c == 71:
            t = _T_VTG
        elif a == 71 and b == 78 and c == 83:
            t = _T_GNS
        else:
            self.ignored += 1
            self._error(_E_UNSUPPORTED)
            return
        self.s_type = t
        if t == _T_RMC:
            ok = self._rmc()
        elif t == _T_GGA:
            ok = self._gga(False)
        elif t == _T_GNS:
            ok = self._gga(True)
        else:
            ok = self._vtg()
        if not ok:
            self._error(_E_BAD_FIELD)
            return
        self.sentences_ok += 1
        self._emit(_OK)

    # ---- field access (offsets into the buffer) ------------------------------------------------
    @micropython.native
    def _span(self, i):
        """Set self._s/self._e to field i's bounds (0, 0 when absent); returns its length.
        Attributes, not a tuple: a tuple would be a heap allocation per field."""
        if i >= self._nf:
            self._s = self._e = 0
            return 0
        self._s = self._f[i]
        self._e = self._f[i + 1] - 1 if i + 1 < self._nf else self._star
        return self._e - self._s

    def _empty(self, i):
        return self._span(i) <= 0

    def _char(self, i):
        self._span(i)
        s = self._s
        e = self._e
        return self._buf[s] if e > s else 0

    @micropython.native
    def _fixed(self, i, decimals):
        """Field i as an integer scaled by 10**decimals (extra digits truncated); _NONE if empty,
        -2 if malformed. Accepts one leading '-'."""
        self._span(i)
        s = self._s
        e = self._e
        if e <= s:
            return _NONE
        buf = self._buf
        neg = False
        if buf[s] == 45:
            neg = True
            s += 1
        v = 0
        seen = False
        frac = -1
        for k in range(s, e):
            c = buf[k]
            if c == 46:
                if frac >= 0:
                    return -2
                frac = 0
            elif 48 <= c <= 57:
                seen = True
                if frac < 0:
                    v = v * 10 + c - 48
                elif frac < decimals:
                    v = v * 10 + c - 48
                    frac += 1
            else:
                return -2
        if not seen or v > 100000000:
            return -2
        if frac < 0:
            frac = 0
        while frac < decimals:
            v *= 10
            frac += 1
        return -v if neg else v

    @micropython.native
    def _angle(self, i, degw):
        """ddmm.mmmm / dddmm.mmmm field -> 1e-7 degree (unsigned); _NONE empty, -2 bad."""
        self._span(i)
        s = self._s
        e = self._e
        if e <= s:
            return _NONE
        if e - s < degw + 2:
            return -2
        buf = self._buf
        d = 0
        for k in range(s, s + degw):
            c = buf[k] - 48
            if c < 0 or c > 9:
                return -2
            d = d * 10 + c
        # minutes with 7 decimals: mm.mmmmmmm * 1e7 < 6e8 fits a small int
        m = 0
        frac = -1
        for k in range(s + degw, e):
            c = buf[k]
            if c == 46:
                if frac >= 0:
                    return -2
                frac = 0
            elif 48 <= c <= 57:
                if frac < 0:
                    m = m * 10 + c - 48
                elif frac < 7:
                    m = m * 10 + c - 48
                    frac += 1
            else:
                return -2
        if frac < 0:
            frac = 0
        while frac < 7:
            m *= 10
            frac += 1
        if m >= 600000000 or d > 180:
            return -2
        return d * 10000000 + (m + 30) // 60

    def _hemi(self, i, pos, neg):
        c = self._char(i)
        if c == pos:
            return 1
        if c == neg:
            return -1
        return 0

    @micropython.native
    def _time(self, i):
        self._span(i)
        s = self._s
        e = self._e
        if e <= s:
            return _NONE
        if e - s < 6:
            return -2
        buf = self._buf
        for k in range(s, s + 6):
            if not 48 <= buf[k] <= 57:
                return -2
        hh = (buf[s] - 48) * 10 + buf[s + 1] - 48
        mm = (buf[s + 2] - 48) * 10 + buf[s + 3] - 48
        ss = (buf[s + 4] - 48) * 10 + buf[s + 5] - 48
        if hh > 23 or mm > 59 or ss > 60:
            return -2
        ms = 0
        if e > s + 6:
            if buf[s + 6] != 46:
                return -2
            scale = 100
            for k in range(s + 7, e):
                c = buf[k] - 48
                if c < 0 or c > 9:
                    return -2
                ms += c * scale
                scale //= 10
        return ((hh * 60 + mm) * 60 + ss) * 1000 + ms

    def _position(self, ilat, ilon):
        """Parse lat/lon fields into s_lat_e7/s_lon_e7; False if malformed. Empty -> no position."""
        la = self._angle(ilat, 2)
        lo = self._angle(ilon, 3)
        if la == -2 or lo == -2:
            return False
        if la == _NONE or lo == _NONE:
            return la == lo  # both empty is fine, one alone is not
        hs = self._hemi(ilat + 1, 78, 83)  # N S
        he = self._hemi(ilon + 1, 69, 87)  # E W
        if hs == 0 or he == 0 or la > 900000000:
            return False
        self.s_lat_e7 = la if hs > 0 else -la
        self.s_lon_e7 = lo if he > 0 else -lo
        self.s_has_pos = True
        return True

    # ---- sentence types --------------------------------------------------------------------------
    def _rmc(self):
        # $xxRMC,time,status,lat,N,lon,E,sog_kn,cog,date,magvar,E[,mode[,navstatus]]
        t = self._time(1)
        if t == -2:
            return False
        st = self._char(2)
        if st != 65 and st != 86 and st != 0:  # A / V / empty
            return False
        if not self._position(3, 5):
            return False
        kn = self._fixed(7, 3)
        cog = self._fixed(8, 2)
        dt = self._fixed(9, 0)
        if kn == -2 or cog == -2 or kn < _NONE:
            return False
        # a broken date (seen: "2208-1") does not spoil the fix: the node needs time of day only
        mode = self._char(12)
        valid = st == 65 and mode != 78 and self.s_has_pos  # mode 'N' = data not valid
        self.s_tod_ms = t
        if kn >= 0:
            self.s_speed_mmps = (kn * 463 + 450) // 900  # knots*1000 -> mm/s (1852/3600 = 463/900)
        if t >= 0:
            self.tod_ms = t
        if dt >= 0 and dt <= 311299:
            self.date = dt
        self.fix_valid = valid
        if valid:
            self.lat_e7 = self.s_lat_e7
            self.lon_e7 = self.s_lon_e7
            self.fixes += 1
            if kn >= 0:
                self.speed_mmps = self.s_speed_mmps
            if cog >= 0:
                self.course_cdeg = cog
        return True

    def _gga(self, gns):
        # GGA: time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
        # GNS: time,lat,N,lon,E,mode chars,sats,hdop,alt,sep,age,station,navstatus
        t = self._time(1)
        if t == -2:
            return False
        if not self._position(2, 4):
            return False
        if gns:
            self._span(6)
            s = self._s
            e = self._e
            q = 0
            for k in range(s, e):
                c = self._buf[k]
                if c != 78:  # anything but 'N' (no fix) in a constellation slot means a fix
                    q = 1
        else:
            q = self._fixed(6, 0)
            if q == -2:
                return False
        sats = self._fixed(7, 0)
        hd = self._fixed(8, 2)
        if sats == -2 or hd == -2 or hd < _NONE:
            return False
        self.s_tod_ms = t
        if t >= 0:
            self.tod_ms = t
        self.quality = q if q > 0 else 0
        if sats >= 0:
            self.sats = sats
        if hd >= 0:
            self.hdop_c = hd
        if self.quality > 0 and self.s_has_pos:
            self.lat_e7 = self.s_lat_e7
            self.lon_e7 = self.s_lon_e7
            self.fixes += 1
        return True

    def _vtg(self):
        # $xxVTG,cog,T,cog_m,M,sog_kn,N,sog_kmh,K[,mode]  (old form: cog,cog_m,sog_kn,sog_kmh)
        if self._char(2) == 84 or self._empty(2) and self._nf >= 9:
            ikn, ikmh = 5, 7
        else:
            ikn, ikmh = 3, 4
        cog = self._fixed(1, 2)
        kn = self._fixed(ikn, 3)
        kmh = self._fixed(ikmh, 3)
        if cog == -2 or kn == -2 or kmh == -2 or kn < _NONE or kmh < _NONE:
            return False
        if kmh >= 0:
            self.s_speed_mmps = (kmh * 5 + 9) // 18  # km/h*1000 -> mm/s
        elif kn >= 0:
            self.s_speed_mmps = (kn * 463 + 450) // 900
        mode = self._char(9)
        if self.s_speed_mmps >= 0 and mode != 78:
            self.speed_mmps = self.s_speed_mmps
            if cog >= 0:
                self.course_cdeg = cog
        return True
