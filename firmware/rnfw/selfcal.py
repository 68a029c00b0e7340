"""Self-calibration on the node: the vehicle's quarter car identified from its own axle acceleration
(docs/estimator.md, "Self-calibration"; the float prototype is roadnode.accuracy.selfcal).

Loaded only when the config's ``self_cal`` is on (axle mount). Per batch, the vertical acceleration
goes into a 512-sample window (viper, fixed buffers: nothing allocated per sample); windows overlap by
half (Welch's method). A window above 20 km/h whose fastest sample is at most twice its slowest, with
a GPS fix, no lost samples and no impact is reduced to its power at ~40 frequencies between 0.7 and
16 Hz (a DFT bank over the Hann-windowed window, viper, once per 1.3 s), whose logs (relative to its
2-15 Hz mean) are averaged per speed class. The fit (rnfw.sc_fit:
floats, a Levenberg-Marquardt search of the prototype's least squares, one evaluation per few
main-loop passes; its module is imported for the fit and dropped after it) gives the
two-mass inverse's settings, which the estimator takes at its next segment boundary; they are kept
in a small JSON file (written atomically, rnfw.save) and used from the next boot on.
"""

import gc
import math
from array import array

import micropython
from micropython import const

_N = const(512)  # window, samples (after decimation to <= 250 Hz)
_V0 = const(5556)  # mm/s: 20 km/h, the slowest speed a window is taken at
_H = const(256)  # windows overlap by half (Welch): a window every 1.3 s at 200 Hz
_MINW = const(64)  # windows before the first fit (~80 s of driving above 20 km/h); refits at 128, 256, ...
try:
    from gc import mem_free as _mem_free
except ImportError:  # CPython (the host's golden model) has no heap to watch
    _mem_free = None
_FIT_FREE = const(20480)  # free heap a fit starts with: its code, buffers and floats (~13 KB on an
# ESP32, ~20 KB on the 64-bit unix port), and room left for the uplink's packets beside
_PI2 = 6.283185307179586

try:
    @micropython.viper
    def proj(b: ptr16, n: int, x: ptr32, T: ptr32, u: ptr32) -> int:
        """rnfw.sc_twin.proj (the same arithmetic)."""
        m = 1
        m <<= 31
        ux = (u[3] ^ m) - m
        uy = (u[4] ^ m) - m
        uz = (u[5] ^ m) - m
        gm = (u[6] ^ m) - m
        sh = T[3]
        d = 1 << sh
        pos = T[0]
        sub = T[1]
        acc = (T[2] ^ m) - m
        i = T[4]
        while i < n:
            if pos >= 512:
                break
            j = 3 * i
            a = int(b[j])
            if a & 0x8000:
                a -= 0x10000
            c = int(b[j + 1])
            if c & 0x8000:
                c -= 0x10000
            e = int(b[j + 2])
            if e & 0x8000:
                e -= 0x10000
            acc += ((a * ux + c * uy + e * uz) >> 12) - gm
            sub += 1
            if sub >= d:
                x[pos] = acc >> sh
                pos += 1
                sub = 0
                acc = 0
            i += 1
        T[0] = pos
        T[1] = sub
        T[2] = acc
        if i >= n:
            i = 0
        T[4] = i
        return pos

    @micropython.viper
    def prep(x: ptr32, h: ptr16, y: ptr16) -> int:
        """rnfw.sc_twin.prep."""
        m = 1
        m <<= 31
        s = 0
        i = 0
        while i < 512:
            s += (x[i] ^ m) - m
            i += 1
        mean = s >> 9
        d = 0
        pk = 0
        i = 0
        while i < 512:
            v = ((x[i] ^ m) - m) - mean
            if v > 16383:
                v = 16383
            elif v < -16383:
                v = -16383
            a = v
            if a < 0:
                a = -a
            d += a
            if a > pk:
                pk = a
            y[i] = (v * (32768 - int(h[i]))) >> 15
            i += 1
        if pk * 1024 > 15 * d:
            return 1
        return 0

    @micropython.viper
    def dft(x: ptr16, h: ptr16, k: int, o: ptr32, j: int):
        """rnfw.sc_twin.dft."""
        re = 0
        im = 0
        p = 0
        i = 0
        while i < 512:
            v = int(x[i])
            if v & 0x8000:
                v -= 0x10000
            re += (v * (int(h[p]) - 16384)) >> 8
            im += (v * (int(h[(p + 384) & 511]) - 16384)) >> 8
            p = (p + k) & 511
            i += 1
        o[2 * j] = re
        o[2 * j + 1] = im

    @micropython.viper
    def move(d: ptr32, do: int, s: ptr32, so: int, n: int):
        """rnfw.sc_twin.move."""
        i = 0
        while i < n:
            d[do + i] = s[so + i]
            i += 1
except (ImportError, NameError, SyntaxError, AttributeError):
    from rnfw.sc_twin import dft, move, prep, proj


class SelfCal:
    """Spectral features per window, the fit in steps, the identified settings and their file."""

    def __init__(self, odr, path=None):
        sh = 0
        while (odr >> sh) > 250:
            sh += 1
        fs = odr / (1 << sh)
        self.T = array("i", [0, 0, 0, sh, 0])  # window fill, decimation count, sum, shift, batch index
        self.x = array("i", bytes(4 * _N))  # the window filling
        self.w = array("h", bytes(2 * _N))  # a full window, Hann-weighted, waiting for its spectrum (step)
        self.imp = 0  # it holds an impact
        self.h = array("H", [int(16384 * math.cos(_PI2 * i / _N) + 16384.5) for i in range(_N)])
        k0 = int(0.7 * _N / fs + 0.999)
        k1 = int(min(16.0, fs / 5) * _N / fs)
        st = 1 + (k1 - k0) // 40
        K = self.K = array("h", range(k0, k1 + 1, st))
        nk = len(K)
        self.o = array("i", bytes(8 * nk))
        self.acc = array("f", bytes(12 * nk))  # summed log power per speed class (<50, 50-80, >80 km/h)
        self.cnt = array("i", bytes(12))
        self.vs = array("f", bytes(12))  # sum of the windows' speeds (m/s) per class
        # the model's fixed part per bin: log(w^2 |AAF|^2) (the IMU's 2nd-order filter at odr/4)
        self.f = array("f", [K[j] * fs / _N for j in range(nk)])
        self.base = array("f", [math.log((_PI2 * f) ** 2 / (1 + math.tan(math.pi * f / odr) ** 4)) for f in self.f])
        # speed (mm/s) in the window's first half (least, most, summed over its samples) and in its
        # second (lb, hb, sb): a slide makes the second the first
        self.lo = self.hi = self.sa = self.lb = self.hb = self.sb = 0
        self.wv = 0  # the full window's mean speed (mm/s)
        self.full = False  # a full window waits in w
        self.nw = 0  # windows taken
        self.due = _MINW
        self.fit = None
        self.tick = 0
        self.cur = None  # the settings in force (identified or stored), or None
        self.state = 1  # 1 learning, 2 stored (from the file), 3 identified on this boot
        self.wins = 0  # windows the settings in force rest on
        self.path = path
        if path:
            try:
                import json

                with open(path) as fh:
                    d = json.load(fh)
                self.cur = {
                    "wheel_hop_hz": min(25.0, max(5.0, float(d["wheel_hop_hz"]))),
                    "wheel_damping": min(1.0, max(0.05, float(d["wheel_damping"]))),
                    "body_hz": min(4.0, max(0.5, float(d["body_hz"]))),
                    "mass_ratio": min(20.0, max(0.0, float(d["mass_ratio"])))}
                self.wins = int(d.get("windows", 0))
                self.state = 2
            except (OSError, ValueError, KeyError, TypeError):
                pass  # none yet, or unreadable: learn from scratch

    def values(self):
        """The heartbeat's self-calibration fields: state, windows, wheel_hop_hz x10,
        wheel_damping x200, body_hz x50, mass_ratio x10 (0 without settings)."""
        c = self.cur
        if not c:
            return (1, self.nw, 0, 0, 0, 0)
        return (self.state, self.nw if self.state == 3 else self.wins, int(c["wheel_hop_hz"] * 10 + 0.5),
                int(c["wheel_damping"] * 200 + 0.5), int(c["body_hz"] * 50 + 0.5), int(c["mass_ratio"] * 10 + 0.5))

    def add(self, b, n, u, v, good):
        """One batch (n samples in b) at v mm/s; u: the estimator's state (gravity); ``good``: a
        fresh fix and no lost samples. A window restarts on anything that disqualifies it; a full
        one is weighted into w for ``step`` and its second half begins the next (50% overlap, as
        Welch's method: twice the windows from the same drive, each half used twice)."""
        if n <= 0:
            return
        T = self.T
        if not good or v < _V0:
            T[0] = T[1] = T[2] = T[4] = 0
            return
        if T[0] or T[1]:  # a window under way: this batch's speed joins its second half
            if v < self.lb:
                self.lb = v
            elif v > self.hb:
                self.hb = v
            if max(self.hi, self.hb) > 2 * min(self.lo, self.lb):  # its fastest > twice its slowest
                T[0] = T[1] = T[2] = T[4] = 0
        if not (T[0] or T[1]):  # a window begins with this batch
            self.lo = self.hi = self.lb = self.hb = v
            self.sa = self.sb = 0
        while True:
            p0 = T[0]
            p1 = proj(b, n, self.x, T, u)
            if p1 <= _H:  # speed x samples, per half of the window
                self.sa += v * (p1 - p0)
            elif p0 >= _H:
                self.sb += v * (p1 - p0)
            else:
                self.sa += v * (_H - p0)
                self.sb += v * (p1 - _H)
            if p1 < _N:
                return
            if not self.full:  # (step takes each window before the next fills: else it is skipped)
                self.imp = prep(self.x, self.h, self.w)
                self.wv = (self.sa + self.sb) >> 9
                self.full = True
            move(self.x, 0, self.x, _H, _H)
            T[0] = _H
            self.sa = self.sb
            self.sb = 0
            self.lo = self.lb
            self.hi = self.hb
            self.lb = self.hb = v
            if T[4] == 0:  # the batch is used up
                return

    def step(self, est):
        """One unit of work per main-loop pass: a full window's spectrum, or one evaluation of
        the fit. A finished fit hands its settings to ``est`` (from its next segment) and saves them."""
        if self.full:
            self._window()
            return
        if self.fit is None:
            if self.nw < self.due:
                return
            # the fit's code and buffers (rnfw.sc_fit) take heap only while it runs: it starts when
            # the heap has room for them and the uplink's own needs beside, and comes again later if not
            if _mem_free and _mem_free() < _FIT_FREE:
                return
            self.due = self.nw * 2  # refits ever rarer: the spectra only get steadier
            try:
                from rnfw import sc_fit

                self.fit = sc_fit.Fit(self).run()
            except MemoryError:
                self._drop()
                return
        # one evaluation every 4th pass: each costs ~25 ms of an ESP32 (floats), ~12% of its
        # CPU while a fit runs (a minute or so), and the fits come ever more rarely
        self.tick = (self.tick + 1) & 3
        if self.tick:
            return
        try:
            next(self.fit)
        except StopIteration as e:
            self._done(e.value)
            est.pend = self.cur
        except MemoryError:  # the heap is short now: measuring goes on, the fit comes again later
            self._drop()

    def _drop(self):
        """Forget the fit and its module (its code and buffers go back to the heap)."""
        self.fit = None
        import sys

        import rnfw

        sys.modules.pop("rnfw.sc_fit", None)
        try:
            delattr(rnfw, "sc_fit")
        except AttributeError:
            pass
        gc.collect()

    def _done(self, cur):
        self._drop()
        self.cur = cur
        self.state = 3
        self.wins = self.nw
        if self.path:
            import rnfw

            rnfw.save(self.path, '{"wheel_hop_hz": %s, "wheel_damping": %s, "body_hz": %s, "mass_ratio": %s, '
                      '"windows": %d}' % (cur["wheel_hop_hz"], cur["wheel_damping"], cur["body_hz"], cur["mass_ratio"],
                                          self.nw))

    def _window(self):
        x = self.w
        if not self.imp:
            K = self.K
            o = self.o
            nk = len(K)
            for j in range(nk):
                dft(x, self.h, K[j], o, j)
            acc = self.acc
            f = self.f
            ref = 0.0
            m = 0
            for j in range(nk):
                if 2.0 < f[j] < 15.0:
                    ref += float(o[2 * j]) ** 2 + float(o[2 * j + 1]) ** 2
                    m += 1
            if ref > 0:
                v = self.wv  # mm/s
                c = 0 if v < 13889 else (1 if v < 22222 else 2)
                ref /= m
                # the log of each bin's power, averaged over windows (not the power relative to the
                # window's own 2-15 Hz mean, averaged: that mean rises and falls with the wheel-hop
                # bins, so their average came out flattened, ~10% at the peak, and the bins below
                # 1.5 Hz raised: read as too much damping and a wrong body). A window's level (its
                # road's roughness) adds a constant to its logs, which the fit's mean removal takes
                # out; so does the log's own offset (-0.577 for every bin)
                for j in range(nk):
                    acc[c * nk + j] += math.log((float(o[2 * j]) ** 2 + float(o[2 * j + 1]) ** 2) / ref + 1e-30)
                self.cnt[c] += 1
                self.vs[c] += v / 1000
                self.nw += 1
        self.full = False

