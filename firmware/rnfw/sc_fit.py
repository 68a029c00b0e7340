"""The self-calibration's fit (rnfw.selfcal): the prototype's least squares (roadnode.accuracy.selfcal,
fit_spectra) over the node's averaged spectra, searched by Levenberg-Marquardt one residual
evaluation at a time (a generator the main loop steps). Imported only when a fit is due and dropped
when it ends (SelfCal._drop): its code and buffers take the heap only while it runs.
"""

import math
from array import array

from micropython import const

_ITER = const(25)  # iterations per start of the search
_PI2 = 6.283185307179586


def settings(q):
    """The estimator's settings from the fitted (w_t^2, rho, w_b, zeta_b) (per unit unsprung mass),
    rounded as the node reads them and kept within the config's ranges."""
    wt2, rho, wb, zb = q[0], q[1], q[2], q[3]
    ww = math.sqrt(wt2 + rho * wb * wb)
    return {"wheel_hop_hz": min(25.0, max(5.0, round(ww / _PI2, 1))),
            "wheel_damping": min(1.0, max(0.05, round(rho * zb * wb / ww, 3))),
            "body_hz": min(4.0, max(0.5, round(wb / _PI2, 2))), "mass_ratio": min(20.0, round(rho, 1))}


class Fit:
    """One search over a snapshot of ``sc``'s spectra (a rnfw.selfcal.SelfCal)."""

    def __init__(self, sc):
        self.f = f = sc.f
        self.base = sc.base
        self.nk = nk = len(f)
        self.y = array("f", bytes(12 * nk))  # the spectra being fitted (a snapshot), log
        self.hq = array("f", bytes(4 * nk))  # scratch: log |H_u|^2 per bin
        self.sl = array("f", bytes(12 * nk))  # the contact-patch term less the spectrum, per class
        self.lcq = 0.0  # the log contact length sl is for (0: none: a length is below 1 m)
        self.fw = array("f", bytes(24))  # per class: weight, speed (m/s)
        m = 3 * nk + 2  # the residuals (and their Jacobian)
        self.r = array("f", bytes(4 * m))
        self.t = array("f", bytes(4 * m))
        self.J = array("f", bytes(20 * m))
        self.A = array("f", bytes(100))  # the normal equations J'J, J'r, and the augmented system
        self.g = array("f", bytes(20))
        self.M = array("f", bytes(120))
        self.x = array("f", bytes(20))  # the step
        for c in range(3):
            n = sc.cnt[c]
            self.fw[2 * c] = n / (n + 4.0) if n else 0.0
            self.fw[2 * c + 1] = sc.vs[c] / n if n else 1.0
            for j in range(nk):
                self.y[c * nk + j] = sc.acc[c * nk + j] / n if n else 0.0  # the mean log power

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
        nk = self.nk
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

    def run(self):
        """Generator: the search, one cost evaluation per next(); returns the settings."""
        L = math.log
        w = _PI2
        # the prototype's bounds and two starts: w_t^2, rho, w_b, zeta_b, contact length (m)
        lo = (L((w * 5) ** 2), L(3.0), L(w * 0.7), L(0.08), L(0.02))
        hi = (L((w * 18) ** 2), L(16.0), L(w * 2.6), L(0.7), L(0.45))
        # starts: the two best of a coarse look along the tyre frequency (the spectrum's main
        # feature; a local search from far away can settle on the contact-length bound)
        t = self.t
        c1 = c2 = -1.0  # the best two costs and their tyre frequencies
        f1 = f2 = 0.0
        for ft in (7.0, 9.0, 11.0, 13.5, 15.0, 17.5):
            c = self._res(self._start(ft), t)
            yield
            if c1 < 0 or c < c1:
                c2, f2 = c1, f1
                c1, f1 = c, ft
            elif c2 < 0 or c < c2:
                c2, f2 = c, ft
        best = None
        bf = 0.0
        for ft in (f1, f2):
            q, c = yield from self._lm(self._start(ft), lo, hi)
            if best is None or c < bf:
                best = q
                bf = c
        return settings([math.exp(v) for v in best])

    def _start(self, ft):
        L = math.log
        return [L((_PI2 * ft) ** 2), L(7.5), L(_PI2 * 1.45), L(0.3), L(0.15)]

    def _lm(self, q, lo, hi):
        """Generator: Levenberg-Marquardt from q within [lo, hi] (forward-difference Jacobian),
        one residual evaluation per next(); returns (best point, its sum of squares). The normal
        equations live in the fixed arrays A (5 x 5), g and M (5 x 6, the augmented system); the
        step in x."""
        r = self.r
        t = self.t
        J = self.J
        A = self.A
        g = self.g
        M = self.M
        x = self.x
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
            for a in range(5):
                for b in range(a, 5):
                    v = 0.0
                    for i in range(m):
                        v += J[a * m + i] * J[b * m + i]
                    A[5 * a + b] = A[5 * b + a] = v
                v = 0.0
                for i in range(m):
                    v += J[a * m + i] * r[i]
                g[a] = v
            while True:
                for a in range(5):
                    for b in range(5):
                        M[6 * a + b] = A[5 * a + b] * (1.0 + lam if a == b else 1.0)
                    M[6 * a + 5] = -g[a]
                for a in range(5):  # Gaussian elimination, partial pivoting
                    k = a
                    for i in range(a + 1, 5):
                        if abs(M[6 * i + a]) > abs(M[6 * k + a]):
                            k = i
                    if k != a:
                        for b in range(6):
                            M[6 * a + b], M[6 * k + b] = M[6 * k + b], M[6 * a + b]
                    d = M[6 * a + a]
                    for i in range(a + 1, 5):
                        e = M[6 * i + a] / d if d else 0.0
                        for b in range(a, 6):
                            M[6 * i + b] -= e * M[6 * a + b]
                p = list(q)
                for a in range(4, -1, -1):
                    v = M[6 * a + 5]
                    for b in range(a + 1, 5):
                        v -= M[6 * a + b] * x[b]
                    d = M[6 * a + a]
                    x[a] = v / d if d else 0.0
                for d in range(5):
                    p[d] = min(hi[d], max(lo[d], q[d] + x[d]))
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
