"""Self-calibration, float prototype: identify a vehicle's quarter car from its own axle
acceleration, with no reference road (docs/estimator.md, "Self-calibration").

Why it works: an ISO 8608 road has a displacement PSD ~ n^-2, i.e. a white slope; driven at a
steady speed its height *velocity* under the tyre is white in time. The axle's acceleration PSD
is then C * w^2 |H_u(jw)|^2 (times the IMU's anti-alias filter), where H_u is the quarter car's
road-to-axle transfer function and C the road's roughness times the speed. The shape of the
spectrum (not its level) depends on four numbers only - w_t^2 = k_t/m_u, rho = m_s/m_u,
w_b = sqrt(k_s/m_s), zeta_b - which are exactly what the node's two-mass inverse needs. They are
fitted (least squares on the log spectrum) to the mean of per-window spectra, each window
normalised, taken only where the speed is steady and above the minimum, the GPS has a fix and no
impact (pothole, bump) stands out.

The node's settings follow: wheel_hop_hz = sqrt(w_t^2 + rho w_b^2) / 2 pi, wheel_damping =
rho 2 zeta_b w_b / (2 w_hop), body_hz = w_b / 2 pi (the suspension's own frequency), mass_ratio
= rho. Assumption to know: a road whose spectrum is far from n^-2 biases the fit.

The node runs the same method (firmware/rnfw/selfcal.py: the same bins, residuals and priors, its
spectra per 512-sample window, a Levenberg-Marquardt search in steps); tests/node/test_selfcal_node.py
holds the two within tolerance of each other and of the true vehicle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, signal

from roadnode.errors import InputError
from roadnode.scenario.fileformat import Scenario

G = 9.80665
NPER = 1024  # window, samples (5.1 s at 200 Hz: 0.2 Hz resolution for the body mode)
BAND_HZ = (0.7, 16.0)  # fitted band: below, tilt leakage and drift; above, tyre enveloping and the IMU filter
PRIOR_RHO, PRIOR_FB, PRIOR_W = 7.5, 1.45, 1.0
BOUNDS = {"wt2": ((2 * np.pi * 5) ** 2, (2 * np.pi * 18) ** 2), "rho": (3.0, 16.0),
          "wb": (2 * np.pi * 0.7, 2 * np.pi * 2.6), "zb": (0.08, 0.7), "lc": (0.02, 0.45)}


@dataclass
class Identified:
    """Fitted quarter car (per unit unsprung mass) and how much data it rests on."""

    wt2: float
    rho: float
    wb: float
    zb: float
    windows: int
    cost: float
    contact_m: float = 0.0  # the tyre's apparent contact length (fitted, not used by the node)

    def settings(self) -> dict:
        """The node's config keys for the two-mass inverse (rounded as the node reads them)."""
        ww = float(np.sqrt(self.wt2 + self.rho * self.wb**2))
        return {"wheel_hop_hz": round(ww / (2 * np.pi), 1),
                "wheel_damping": round(self.rho * 2 * self.zb * self.wb / (2 * ww), 3),
                "body_hz": round(self.wb / (2 * np.pi), 2), "mass_ratio": round(self.rho, 1)}


def axle_tf(w, wt2, rho, wb, zb):
    """H_u(jw): road height to axle height of the quarter car in these four parameters."""
    s = 1j * np.asarray(w, float)
    b = 2 * zb * wb * s + wb * wb
    return wt2 * (s * s + b) / ((s * s + b) * (s * s + rho * b + wt2) - rho * b * b)


def vertical_acc(sc: Scenario) -> np.ndarray:
    """Vertical acceleration (m/s^2, gravity removed) from the raw counts, projected on the mean
    gravity direction of the drive (the mounting is unknown)."""
    c = sc.imu_counts.astype(float)
    g = c.mean(0)
    gm = float(np.linalg.norm(g))
    return (c @ (g / gm) - gm) / float(sc.meta["imu"]["lsb_per_g"]) * G


SPEED_CLASSES_KMH = (50.0, 80.0)  # windows are averaged per speed class (the tyre's filter differs)


def steady_spectra(a, speed_mps, fs, min_speed_mps=20 / 3.6, nper=NPER):
    """(f, [(mean speed m/s, mean normalised PSD, windows)] per speed class): windows whose
    fastest sample is at most twice their slowest (as the node: rnfw.selfcal; a road's spectrum
    has the same shape at any speed, only its level moves) above ``min_speed_mps`` (speed
    NaN where there is no fix), without an impact (|a| > 6 sigma), each normalised by its 2-15 Hz
    mean; averaged as logs (the geometric mean, as the node: rnfw.selfcal), since the normalised
    powers' own average is biased where they move with the normaliser (the wheel-hop peak)."""
    hop = nper // 2
    f = np.fft.rfftfreq(nper // 2, 1 / fs)
    groups = [[] for _ in range(len(SPEED_CLASSES_KMH) + 1)]
    for i in range(0, len(a) - nper + 1, hop):
        v = speed_mps[i : i + nper]
        if not np.all(np.isfinite(v)) or v.min() < min_speed_mps or v.max() > 2 * v.min():
            continue
        seg = a[i : i + nper]
        r = seg.std()
        if r <= 0 or np.abs(seg - seg.mean()).max() > 6 * r:
            continue
        f, p = signal.welch(seg, fs, nperseg=nper // 2, window="hann", detrend="linear")
        ref = p[(f > 2) & (f < 15)].mean()
        if ref > 0:
            groups[int(np.searchsorted(SPEED_CLASSES_KMH, v.mean() * 3.6))].append((float(v.mean()), p / ref))
    out = [(float(np.mean([g[0] for g in grp])), np.exp(np.mean([np.log(g[1] + 1e-30) for g in grp], 0)), len(grp))
           for grp in groups if grp]
    return f, out


def _aaf(f, odr):
    b, a = signal.butter(2, odr / 4, fs=odr)
    _, h = signal.freqz(b, a, worN=f, fs=odr)
    return np.abs(h) ** 2


def fit_spectra(f, spectra, odr, band=BAND_HZ) -> tuple[np.ndarray, float]:
    """Least squares on the log PSDs (a free level per speed class) of
    w^2 |H_u|^2 sinc^2(f L / V) |AAF|^2: the quarter car plus the tyre's contact patch of length L
    (an average over L/V seconds at speed V). Returns (wt2, rho, wb, zb, L), cost."""
    sel = (f >= band[0]) & (f <= min(band[1], odr / 5))
    w = 2 * np.pi * f[sel]
    aaf = _aaf(f[sel], odr)
    ys = [(v, np.log(p[sel]), n) for v, p, n in spectra]
    keys = ("wt2", "rho", "wb", "zb", "lc")

    def res(q):
        x = np.exp(q)
        base = w * w * np.abs(axle_tf(w, *x[:4])) ** 2 * aaf
        out = []
        for v, y, n in ys:
            d = np.log(base * np.sinc(f[sel] * x[4] / v) ** 2 + 1e-30) - y
            out.append((d - d.mean()) * np.sqrt(n / (n + 4.0)))
        # weak priors on the two parameters the axle sees least (mass ratio, body frequency):
        # typical road vehicles, one standard deviation ~35% (docs/estimator.md)
        out.append(PRIOR_W * np.array([(q[1] - np.log(PRIOR_RHO)) / 0.35, (q[2] - np.log(2 * np.pi * PRIOR_FB)) / 0.35]))
        return np.concatenate(out)

    lo = np.log([BOUNDS[k][0] for k in keys])
    hi = np.log([BOUNDS[k][1] for k in keys])
    best = None
    for q0 in ([(2 * np.pi * 11) ** 2, 8.0, 2 * np.pi * 1.3, 0.3, 0.15], [(2 * np.pi * 14) ** 2, 6.0, 2 * np.pi * 1.8, 0.25, 0.15]):
        r = optimize.least_squares(res, np.log(q0), bounds=(lo, hi))
        if best is None or r.cost < best.cost:
            best = r
    return np.exp(best.x), float(best.cost)


def identify(sc: Scenario, speed_mps=None, min_windows: int = 8) -> Identified:
    """Identify the vehicle of an axle-mounted drive from its own data. ``speed_mps`` per IMU
    sample (NaN without a fix); by default the scenario's GPS truth speed interpolated."""
    if sc.meta["mount"] != "axle":
        raise InputError("self-calibration needs an axle-mounted drive")
    odr = float(sc.meta["imu"]["odr_hz"])
    if speed_mps is None:
        speed_mps = np.interp(sc.arrays["imu_t_s"], sc.arrays["truth_t_s"], sc.arrays["truth_speed_mps"])
    f, spectra = steady_spectra(vertical_acc(sc), np.asarray(speed_mps, float), odr)
    n = sum(g[2] for g in spectra)
    if n < min_windows:
        raise InputError(f"only {n} steady windows of driving; self-calibration needs {min_windows}")
    q, cost = fit_spectra(f, spectra, odr)
    return Identified(*map(float, q[:4]), windows=n, cost=cost, contact_m=float(q[4]))


def node_pipeline(sc: Scenario):
    """The node's own self-calibration over a drive: the firmware's pipeline (under CPython, the plain
    twins: the node's integers bit for bit) with ``self_cal`` on, run to the drive's end; returns the
    pipeline (its SelfCal is ``.sc``). The prototype above is what it is held against."""
    from array import array

    from roadnode.accuracy.golden import config_for, readers
    from roadnode.mpy.fwimport import fw

    P = fw("pipeline")
    imu, gps = readers(sc)
    pipe = P.Pipeline(config_for(sc, {"self_cal": "on"}), imu.odr_hz, imu.period_ms, imu.lsb_per_g)
    for _ in P.run_batches(pipe, imu, gps, array("h", bytes(768)), bytearray(256)):
        pipe.est.closed.n = pipe.est.events.n = 0  # segments and events are not kept here
    return pipe


def node_learnt(sc: Scenario):
    """What a node with ``self_cal`` on has learnt by the end of a drive: its settings in force
    (None: not yet identified) and the windows they rest on. A fit still running at the drive's end
    is finished (the node would finish it within ~75 s of driving); none is forced."""
    pipe = node_pipeline(sc)
    s = pipe.sc
    while s.fit is not None:
        s.step(pipe.est)
    return (dict(s.cur) if s.cur else None), s.wins


def true_settings(v) -> dict:
    """The two-mass inverse's settings from a vehicle's own parameters (roadnode.models.vehicle):
    what a perfect identification would give, rounded as the config takes them."""
    return {"wheel_hop_hz": round(v.wheel_hop_hz(), 1), "wheel_damping": round(v.wheel_damping(), 3),
            "body_hz": round(float(np.sqrt(v.ks / v.ms) / (2 * np.pi)), 2), "mass_ratio": round(v.ms / v.mu, 1)}
