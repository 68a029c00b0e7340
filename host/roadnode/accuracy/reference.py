"""Float64 reference of the on-device estimator: the same algorithm as firmware/rnfw/estimator.py
in plain floating point (no scaling, no clamps, no integer rounding), with the exact Golden Car
matrices of roadnode.science.iri. The fixed-point firmware is held to it (within 0.5% per
segment on the same input)."""

from __future__ import annotations

import math

import numpy as np

from roadnode.science.iri import golden_car_matrices

G = 9.80665
VSH = 0.5


class FloatEstimator:
    """The firmware Estimator's method in float64 (same add() interface; segments in ``closed``)."""

    def __init__(self, cfg, odr_hz, period_ms, lsb_per_g):
        self.seg_len_m = cfg["segment_length_m"]
        self.bins_per_seg = self.seg_len_m * 4
        self.min_speed = cfg["min_speed_kmh"] / 3.6
        self.dt = period_ms / 1000.0
        self.lsb = lsb_per_g
        leak = 0
        while (1 << (leak + 1)) * period_ms <= 2000:
            leak += 1
        self.leak = 2.0**-leak
        w = 2 * math.pi * cfg["wheel_hop_hz"]
        self.c1 = 2 * cfg["wheel_damping"] / w
        self.c2 = 1 / w**2
        # two-mass inverse (mass_ratio > 0): z_r = z_u + (a_u + rho a_s) / w_t^2, the body driven by
        # the axle through the suspension (as rnfw.estimator, in float, no clamps)
        self.rho = round(float(cfg.get("mass_ratio", 0.0)) * 10) / 10 if cfg["mount"] == "axle" else 0.0
        if self.rho > 0:  # at the firmware's resolution (hop 0.1 Hz, body 0.01 Hz, ratio 0.1)
            w = 2 * math.pi * round(cfg["wheel_hop_hz"] * 10) / 10
            wb = 2 * math.pi * round(cfg["body_hz"] * 100) / 100
            wt2 = max(w**2 - self.rho * wb**2, w**2 / 4, 746.0)
            # rectangular double integration puts z_u one sample ahead of a_u: pair them by
            # taking z_u one sample back (z(n-1) = z(n) - v dt, i.e. -dt on the velocity term)
            self.c1 = -self.dt
            self.c2 = 1 / wt2
            self.c3 = self.rho / wt2
            self.kb2 = wb**2
            self.cb = 2 * cfg["wheel_damping"] * w / self.rho
        self.yb = self.vs = self.ab = 0.0  # body: z_s - z_u, v_s, and -a_s at the last boundary
        self.dt_bin = 0.05
        self.st, self.pr = golden_car_matrices(0.25)
        self.body_gain = cfg["body_gain"] if cfg["mount"] == "body" else 1.0
        self.body_exp = cfg["body_speed_exp"] if cfg["mount"] == "body" else 0.0
        self.t = 0.0
        self.g = None
        self.frz = 0  # samples the gravity estimate has been frozen in a row
        self.grel = 1000 // period_ms  # ~1 s of it: re-acquire, as the firmware
        self.v = 0.0
        self.dz = 0.0
        self.d = 0.0
        self.a = 0.0
        self.v_prev = 0.0
        self.a_prev = 0.0
        self.x = None
        self.index = 0
        self.closed = []
        self.events = []
        self.odr = None
        self._reset()

    def _reset(self):
        self.rs = 0.0
        self.nvalid = 0
        self.nbins = 0

    def add(self, buf, n, speed_mmps, gps_ok, lat_e7=0, lon_e7=0, lost=0, imu_fault=False):
        """The firmware Estimator.add's batch, in float64 (segments appended to ``closed``)."""
        c = np.asarray(buf[: 3 * n], dtype=float).reshape(n, 3) if n else np.zeros((0, 3))
        if n and self.g is None:
            self.g = c[0].copy()
        if self.g is None:
            return
        gm = np.linalg.norm(self.g)
        u = self.g / gm
        v_s = min(speed_mmps, 65000) / 1000.0
        valid = gps_ok and not lost and not imu_fault and v_s >= self.min_speed and v_s >= 0.3
        self.t += n * self.dt + lost * self.dt
        self.dt_bin = min(0.25 / v_s, 0.05) if v_s > 0 else 0.05
        self.v_bin = v_s
        for k in range(n):
            s = c[k]
            if abs(self.a) < 3 * G:  # as the firmware: impacts do not move the gravity estimate
                self.frz = 0
                self.g += (s - self.g) / 512.0
            elif self.frz < self.grel:
                self.frz += 1
            else:  # ~1 s of "impact": the estimate is wrong (started on a rail), re-acquire fast
                self.g += (s - self.g) / 32.0
            a = (s @ u - gm) / self.lsb * G
            ap = self.a
            self.a = a
            vp = self.v
            self.v += a * self.dt
            self.v -= self.v * self.leak
            ds = self.v * self.dt
            d0 = self.d
            self.d += v_s * self.dt
            while self.d >= 0.25:
                frac = (0.25 - d0) / (self.d - d0)
                ai = ap + frac * (a - ap)
                self._bin(self.dz + ds * frac, self.v, a, valid, ai, vp + frac * (self.v - vp) - VSH * self.dt * ai)
                self.dz = 0.0
                ds -= ds * frac
                self.d -= 0.25
                d0 -= 0.25
            self.dz += ds

    def _bin(self, dz, v, a, valid, ai=0.0, vi=0.0):
        if self.rho > 0:  # the acceleration at the boundary itself (interpolated), as the firmware
            a = ai
            v = vi
        if self.rho > 0:
            # the axle's rise over the bin: z_u one sample back, z(n-1) = z(n) - v(n) dt with the
            # rectangle rule's own v(n), half a sample ahead of the boundary velocity v
            dzu = dz + self.c1 * (v - self.v_prev) - self.dt**2 / 2 * (a - self.a_prev)
            h = dzu + self.c2 * (a - self.a_prev)
            # the body, driven by the axle through the suspension: one trapezoid step per bin (a bin
            # lasts up to 50 ms) with the damper's share integrated exactly, c_s/m_s (v_u - v_s) over
            # the bin being c_s/m_s (dz_u - dz_s) with dz_u known (a step on the velocities lagged
            # the wheel-hop part of the damper force by half a bin: +-6% by vehicle)
            q, k, c = self.dt_bin, self.kb2, self.cb
            vs0, y0 = self.vs, self.yb
            self.vs = (vs0 - k * q * y0 - (k * q / 2 + c) * (q * vs0 / 2 - dzu)) / (1 + k * q * q / 4 + c * q / 2)
            self.yb = y0 + q * (vs0 + self.vs) / 2 - dzu
            nb = k * self.yb + c * (self.vs - v)
            h += self.c3 * (self.ab - nb)
            self.ab = nb
        else:
            h = dz + self.c1 * (v - self.v_prev) + self.c2 * (a - self.a_prev)
        self.v_prev, self.a_prev = v, a
        s = h / 0.25
        if self.rho > 0:  # the interpolation's average loss made good, one bin late (as the firmware)
            if self.x is None:
                self.sp = (s, s)
            s0, s1 = self.sp
            self.sp = (s1, s)
            s = s1 - min(0.25, (self.v_bin * self.dt / 0.25) ** 2 / 12) * (s - 2 * s1 + s0)
        if self.x is None:
            self.x = np.array([s, 0.0, s, 0.0])
        self.x = self.st @ self.x + self.pr * s
        self.nbins += 1
        if valid:
            self.nvalid += 1
            self.rs += abs(self.x[0] - self.x[2])
        if self.nbins >= self.bins_per_seg:
            ok = self.nvalid * 5 >= self.bins_per_seg * 4 and self.nvalid
            v_kmh = self.seg_len_m / self.t * 3.6 if self.t else 0
            comp = (max(10.0, min(160.0, v_kmh)) / 80.0) ** self.body_exp
            iri = self.rs / self.nvalid * 1000 * self.body_gain * comp if ok else None
            self.closed.append((self.index, iri))
            self.index += 1
            self.t = 0.0
            self._reset()
