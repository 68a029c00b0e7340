"""Self-calibration on the node: the vehicle's quarter car identified from its own axle acceleration
(docs/estimator.md, "Self-calibration"; the float prototype is roadnode.accuracy.selfcal).

Loaded only when the config's ``self_cal`` is on (axle mount). Per batch, the vertical acceleration
goes into a 512-sample window (viper, fixed buffers: nothing allocated per sample). A window taken
at a steady speed above 20 km/h, with a GPS fix, no lost samples and no impact is reduced to its
power at ~40 frequencies between 0.7 and 16 Hz (a DFT bank over the Hann-windowed window, viper,
once per 2.6 s), normalised by its 2-15 Hz mean and summed per speed class. The fit (floats, a
Levenberg-Marquardt search of the prototype's least squares, one evaluation per main-loop pass) gives the
two-mass inverse's settings, which the estimator takes at its next segment boundary; they are kept
in a small JSON file (written atomically, rnfw.save) and used from the next boot on.
"""

import math
from array import array

import micropython
from micropython import const

_N = const(512)  # window, samples (after decimation to <= 250 Hz)
_V0 = const(5556)  # mm/s: 20 km/h, the slowest speed a window is taken at
_MINW = const(48)  # windows before the first fit (~2 min of steady driving); refits at 96, 192, ...
_ITER = const(25)  # iterations per start of the search
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
        i = 0
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
        return pos

    @micropython.viper
    def prep(x: ptr32, h: ptr16) -> int:
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
            x[i] = (v * (32768 - int(h[i]))) >> 15
            i += 1
        if pk * 1024 > 15 * d:
            return 1
        return 0

    @micropython.viper
    def dft(x: ptr32, h: ptr16, k: int, o: ptr32, j: int):
        """rnfw.sc_twin.dft."""
        m = 1
        m <<= 31
        re = 0
        im = 0
        p = 0
        i = 0
        while i < 512:
            v = (x[i] ^ m) - m
            re += (v * (int(h[p]) - 16384)) >> 8
            im += (v * (int(h[(p + 384) & 511]) - 16384)) >> 8
            p = (p + k) & 511
            i += 1
        o[2 * j] = re
        o[2 * j + 1] = im
except (ImportError, NameError, SyntaxError, AttributeError):
    from rnfw.sc_twin import dft, prep, proj


def settings(q):
    """The estimator's settings from the fitted (w_t^2, rho, w_b, zeta_b) (per unit unsprung mass),
    rounded as the node reads them and kept within the config's ranges."""
    wt2, rho, wb, zb = q[0], q[1], q[2], q[3]
    ww = math.sqrt(wt2 + rho * wb * wb)
    return {"wheel_hop_hz": min(25.0, max(5.0, round(ww / _PI2, 1))),
            "wheel_damping": min(1.0, max(0.05, round(rho * zb * wb / ww, 3))),
            "body_hz": min(4.0, max(0.5, round(wb / _PI2, 2))), "mass_ratio": min(20.0, round(rho, 1))}


class SelfCal:
    """Spectral features per window, the fit in steps, the identified settings and their file."""

    def __init__(self, odr, path=None):
        sh = 0
        while (odr >> sh) > 250:
            sh += 1
        fs = odr / (1 << sh)
        self.T = array("i", [0, 0, 0, sh])  # window fill, decimation count, sum, shift
        self.x = array("i", bytes(4 * _N))
        self.h = array("H", [int(16384 * math.cos(_PI2 * i / _N) + 16384.5) for i in range(_N)])
        k0 = int(0.7 * _N / fs + 0.999)
        k1 = int(min(16.0, fs / 5) * _N / fs)
        st = 1 + (k1 - k0) // 40
        K = self.K = array("h", range(k0, k1 + 1, st))
        nk = len(K)
        self.o = array("i", bytes(8 * nk))
        self.acc = array("f", bytes(12 * nk))  # normalised power per speed class (<50, 50-80, >80 km/h)
        self.cnt = array("i", bytes(12))
        self.vs = array("f", bytes(12))  # sum of the windows' speeds (m/s) per class
        # the model's fixed part per bin: log(w^2 |AAF|^2) (the IMU's 2nd-order filter at odr/4)
        self.f = array("f", [K[j] * fs / _N for j in range(nk)])
        self.base = array("f", [math.log((_PI2 * f) ** 2 / (1 + math.tan(math.pi * f / odr) ** 4)) for f in self.f])
        self.y = array("f", bytes(12 * nk))  # the spectra being fitted (a snapshot), log
        self.hq = array("f", bytes(4 * nk))  # scratch: log |H_u|^2 per bin
        self.sl = array("f", bytes(12 * nk))  # the contact-patch term less the spectrum, per class
        self.lcq = 0.0  # the log contact length sl is for (0: none: a length is below 1 m)
        self.fw = array("f", bytes(24))  # per class: weight, speed (m/s)
        m = 3 * nk + 2  # the fit's residuals (and its Jacobian), made now while the heap is whole
        self.r = array("f", bytes(4 * m))
        self.t = array("f", bytes(4 * m))
        self.J = array("f", bytes(20 * m))
        self.vmin = self.vmax = self.vsum = 0
        self.full = False
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
        fresh fix and no lost samples. A window restarts on anything that disqualifies it."""
        if self.full or n <= 0:
            return
        T = self.T
        if not good or v < _V0:
            T[0] = T[1] = T[2] = 0
            return
        if T[0] == 0 and T[1] == 0:
            self.vmin = self.vmax = v
            self.vsum = 0
        if v < self.vmin:
            self.vmin = v
        if v > self.vmax:
            self.vmax = v
        if (self.vmax - self.vmin) * 40 > self.vmax + self.vmin:  # not steady (5%): start again here
            T[0] = T[1] = T[2] = 0
            self.vmin = self.vmax = v
            self.vsum = 0
        p0 = T[0]
        if proj(b, n, self.x, T, u) >= _N:
            self.full = True
        self.vsum += v * (T[0] - p0)

    def step(self, est):
        """One unit of work per main-loop pass: a full window's spectrum, or one evaluation of
        the fit. A finished fit hands its settings to ``est`` (from its next segment) and saves them."""
        if self.full:
            self._window()
            return
        if self.fit is None and self.nw >= self.due:
            self.due = self.nw * 2  # refits ever rarer: the spectra only get steadier
            self.fit = self._fit()
        if self.fit is not None:
            # one evaluation every 4th pass: each costs ~25 ms of an ESP32 (floats), ~12% of its
            # CPU while a fit runs (a minute or so), and the fits come ever more rarely
            self.tick = (self.tick + 1) & 3
            if self.tick:
                return
            try:
                next(self.fit)
            except StopIteration:
                self.fit = None
                est.pend = self.cur
            except MemoryError:  # the heap is short now: measuring goes on, the fit comes again later
                self.fit = None

    def _window(self):
        x = self.x
        T = self.T
        if not prep(x, self.h):
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
                v = self.vsum / _N  # mm/s
                c = 0 if v < 13889 else (1 if v < 22222 else 2)
                ref /= m
                for j in range(nk):
                    acc[c * nk + j] += (float(o[2 * j]) ** 2 + float(o[2 * j + 1]) ** 2) / ref
                self.cnt[c] += 1
                self.vs[c] += v / 1000
                self.nw += 1
        T[0] = T[1] = T[2] = 0
        self.full = False

    def _res(self, q, r):
        """The prototype's residuals (roadnode.accuracy.selfcal.fit_spectra) at log-parameters q
        into r (per speed class and bin, then the two priors); returns their sum of squares."""
        wt2 = math.exp(q[0])
        rho = math.exp(q[1])
        wb = math.exp(q[2])
        zb = math.exp(q[3])
        lc = math.exp(q[4])
        f = self.f
        hq = self.hq
        nk = len(f)
        br = wb * wb
        for j in range(nk):
            w = _PI2 * f[j]
            bi = 2 * zb * wb * w
            ar = br - w * w  # A = s^2 + b
            cr = rho * br + wt2 - w * w  # C = s^2 + rho b + wt2
            ci = rho * bi
            dr = ar * cr - bi * ci - rho * (br * br - bi * bi)  # A C - rho b^2
            di = ar * ci + bi * cr - rho * 2 * br * bi
            hq[j] = math.log(wt2 * wt2 * (ar * ar + bi * bi) / (dr * dr + di * di) + 1e-30) + self.base[j]
        y = self.y
        fw = self.fw
        tot = 0.0
        new = q[4] != self.lcq
        self.lcq = q[4]
        for c in range(3):
            wgt = fw[2 * c]
            o = c * nk
            if wgt <= 0:
                for j in range(nk):
                    r[o + j] = 0.0
                continue
            sl = self.sl
            if new:  # the contact patch's log sinc^2(f L / V), kept while L stays (most Jacobian columns)
                lv = lc / fw[2 * c + 1]
                for j in range(nk):
                    a = math.pi * f[j] * lv
                    sn = math.sin(a) / a
                    sl[o + j] = math.log(sn * sn + 1e-30) - y[o + j]
            s1 = 0.0
            for j in range(nk):
                d = hq[j] + sl[o + j]
                r[o + j] = d
                s1 += d
            s1 /= nk
            wgt = math.sqrt(wgt)
            for j in range(nk):
                d = (r[o + j] - s1) * wgt
                r[o + j] = d
                tot += d * d
        # the prototype's weak priors on mass ratio (7.5) and body frequency (1.45 Hz), sd ~35%
        a = (q[1] - 2.0149) / 0.35  # log 7.5
        b = (q[2] - 2.2094) / 0.35  # log(2 pi 1.45)
        r[3 * nk] = a
        r[3 * nk + 1] = b
        return tot + a * a + b * b

    def _fit(self):
        """Generator: the search, one cost evaluation per next(); at the end, self.cur."""
        nk = len(self.K)
        self.lcq = 0.0  # new spectra: the cached contact-patch term is void
        for c in range(3):
            n = self.cnt[c]
            self.fw[2 * c] = n / (n + 4.0) if n else 0.0
            self.fw[2 * c + 1] = self.vs[c] / n if n else 1.0
            for j in range(nk):
                self.y[c * nk + j] = math.log(self.acc[c * nk + j] / n + 1e-30) if n else 0.0
        L = math.log
        w = _PI2
        # the prototype's bounds and two starts: w_t^2, rho, w_b, zeta_b, contact length (m)
        lo = (L((w * 5) ** 2), L(3.0), L(w * 0.7), L(0.08), L(0.02))
        hi = (L((w * 22) ** 2), L(16.0), L(w * 2.6), L(0.7), L(0.45))
        # starts: the two best of a coarse look along the tyre frequency (the spectrum's main
        # feature; a local search from far away can settle on the contact-length bound)
        t = self.t
        st = []
        for ft in (7.0, 9.0, 11.0, 13.5, 16.0, 19.0):
            q0 = [L((w * ft) ** 2), L(7.5), L(w * 1.45), L(0.3), L(0.15)]
            st.append((self._res(q0, t), q0))
            yield
        st.sort(key=lambda e: e[0])
        best = None
        bf = 0.0
        for e in st[:2]:
            q, c = yield from self._lm(e[1], lo, hi)
            if best is None or c < bf:
                best = q
                bf = c
        self.cur = settings([math.exp(v) for v in best])
        self.state = 3
        self.wins = self.nw
        if self.path:
            import rnfw

            c = self.cur
            rnfw.save(self.path, '{"wheel_hop_hz": %s, "wheel_damping": %s, "body_hz": %s, "mass_ratio": %s, '
                      '"windows": %d}' % (c["wheel_hop_hz"], c["wheel_damping"], c["body_hz"], c["mass_ratio"], self.nw))

    def _lm(self, q, lo, hi):
        """Generator: Levenberg-Marquardt from q within [lo, hi] (forward-difference Jacobian),
        one residual evaluation per next(); returns (best point, its sum of squares)."""
        r = self.r
        t = self.t
        J = self.J
        m = len(r)
        c = self._res(q, r)
        yield
        lam = 1e-3
        for _ in range(_ITER):
            for d in range(5):  # the Jacobian, a column per evaluation
                p = list(q)
                p[d] += 1e-3
                self._res(p, t)
                for i in range(m):
                    J[d * m + i] = (t[i] - r[i]) * 1000.0
                yield
            A = [[sum(J[a * m + i] * J[b * m + i] for i in range(m)) for b in range(5)] for a in range(5)]
            g = [sum(J[a * m + i] * r[i] for i in range(m)) for a in range(5)]
            while True:
                M = [[A[a][b] + (lam * A[a][a] if a == b else 0.0) for b in range(5)] + [-g[a]] for a in range(5)]
                for a in range(5):  # Gaussian elimination, partial pivoting
                    k = max(range(a, 5), key=lambda i: abs(M[i][a]))
                    M[a], M[k] = M[k], M[a]
                    for i in range(a + 1, 5):
                        e = M[i][a] / M[a][a] if M[a][a] else 0.0
                        for b in range(a, 6):
                            M[i][b] -= e * M[a][b]
                x = [0.0] * 5
                for a in range(4, -1, -1):
                    x[a] = (M[a][5] - sum(M[a][b] * x[b] for b in range(a + 1, 5))) / M[a][a] if M[a][a] else 0.0
                p = [min(hi[d], max(lo[d], q[d] + x[d])) for d in range(5)]
                cn = self._res(p, t)
                yield
                if cn < c:
                    break
                lam *= 4.0
                if lam > 1e6:
                    return q, c
            done = c - cn < 1e-4 * (1 + c)
            q = p
            c = cn
            for i in range(m):
                r[i] = t[i]
            lam = max(lam / 3.0, 1e-7)
            if done:
                break
        return q, c
