"""On-device roughness estimator, integer arithmetic only (see docs/estimator.md).

Per IMU sample (the kernel: rnfw/est_viper.py on the device, its plain-Python twin rnfw/est_twin.py
on the host and in tests, held equal bit for bit):
  gravity tracked per axis (Q8, time constant 512 samples) -> vertical acceleration = projection
  on the unit gravity vector (Q12) minus |g| -> mm/s^2 -> leaky integration to vertical velocity
  (um/s, time constant ~2 s) -> displacement (nm) accumulated per 0.25 m of travel (distance from
  GPS speed, um); at each 0.25 m boundary the sample is split by the fraction of it that lies
  before the boundary.
Per 0.25 m bin (``Estimator._bins``, plain Python, at most ~150 per second):
  road height change = axle displacement + (2 zeta/w) dv + (1/w^2) da (inverse of the wheel-hop
  resonance, from the config's wheel_hop_hz / wheel_damping) -> slope -> Golden Car in Q16 with
  a balanced state scaling -> |z1 - z3| summed per segment.

Every intermediate stays within +-2^30 (31-bit small ints; viper's int32 holds it too): inputs
are clamped where the physics ends, products are split where needed. tests/firmware/test_estimator.py
proves the bounds on extreme drives.
"""

from array import array

import micropython
from micropython import const

from rnfw.golden_car import isqrt

# a segment's quality flags and "no IRI" (docs/packets.md; rnfw.packet_decode names the flags by bit)
_F_BELOW_MIN_SPEED = const(0x01)
_F_STOPPED = const(0x02)
_F_GPS_LOST = const(0x04)
_F_FIFO_OVERFLOW = const(0x08)
_F_CLIPPING = const(0x10)
_F_PARTIAL = const(0x20)
_F_BODY_MOUNT = const(0x40)
_F_IMU_FAULT = const(0x80)
_IRI_NA = const(0xFFFF)

# state vector layout (array('i'), shared with the viper kernel)
_GX = const(0)
_GY = const(1)
_GZ = const(2)
_UX = const(3)
_UY = const(4)
_UZ = const(5)
_GM = const(6)
_KA = const(7)
_VEL = const(8)
_DZ = const(9)
_DIST = const(10)
_PMS = const(11)
_LEAK = const(12)
_STEP = const(13)
_INV = const(14)
_ACC = const(15)
_BLK = const(16)
_TOT = const(17)
_CNT = const(18)
_PEAK = const(19)
_CLIP = const(20)
_NB = const(21)
_EVN = const(22)  # samples left in the current event window (0 = none)
_EVMAX = const(23)
_EVMIN = const(24)
_EVFIRST = const(25)  # -1 first excursion down, +1 up
_EVTH = const(26)  # trigger threshold, mm/s^2
_EVDIST = const(27)  # um into the current bin when the event began (bins counted separately)
_EVBIN = const(28)
_BINS = const(29)  # bins completed since the start (wraps at 2^30)
_EVDONE = const(30)  # 1 = an event window just closed (Python reads _EVMAX/_EVMIN/_EVFIRST/_EVBIN)
_RMIN = const(31)  # recent minimum of a (decays to 0): the drop before an impact
_PDROP = const(32)  # a drop below -PDROP before the trigger makes a pothole
_QB = const(33)  # body mount: suspension-compensation term (nm)
_CB = const(34)  # nm per mm/s^2 (1e6 / w_body^2); 0 = off (axle mount)
_ALPHA = const(35)  # Q12 low-pass step 1 - exp(-dt w / (2 zeta)), in (0, 4096]: stable for any config
_AVMAX = const(36)  # |av| bound (counts): av * ka stays within int32, a saturates at _A_CLAMP anyway
_ABMAX = const(37)  # body: |a| bound (mm/s^2) so that |a * cb| <= 2^29 nm
_POS = const(38)  # next sample of the batch: the kernel resumes there and advances it
_BLIM = const(39)  # the kernel takes a sample only while nb <= BLIM (room for the bins it can make)
_GFRZ = const(40)  # consecutive samples with the gravity tracker frozen (|a| > 3 g)
_GREL = const(41)  # after this many (~1 s) the freeze is no impact but a wrong tracker: re-acquire
# axle mount, two-mass inverse (mass_ratio > 0; the bins only, never the per-sample kernel):
_YB = const(42)  # body minus axle displacement (um), the body driven by the axle
_VS = const(43)  # the body's velocity (um/s)
_AB = const(44)  # w_b^2 y + (c_s/m_s)(v_s - v_u) = minus the body acceleration (um/s^2)
_DTQ = const(45)  # a bin's duration (s, Q16) at the batch's speed
_KB2 = const(46)  # w_b^2 (s^-2)
_CBQ = const(47)  # 2 zeta_b w_b (s^-1, Q4)
_C3 = const(48)  # rho / w_t^2: nm of road per um/s^2 of body acceleration, Q10; 0 = one-mass inverse
# (with _C3 set the kernel's bin record carries the velocity and acceleration at the boundary itself)
# the per-bin work (est_viper.bins): inverse, hump detector, Golden Car, the segment's sums
_VPREV = const(49)  # the last bin's boundary velocity (um/s), acceleration, body term
_APREV = const(50)
_QPREV = const(51)
_C1Q4 = const(52)  # inverse of the wheel hop: nm per um/s (Q4) and per mm/s^2
_C2 = const(53)
_BODY = const(54)  # 1 = body mount
_HM = const(55)  # hump detector: mean slope, band-passed height, its mean |.|, peak and its bin
_HH = const(56)
_HHABS = const(57)
_HPEAK = const(58)
_HBINS = const(59)
_BUMPNM = const(60)  # bump_height_mm in nm
_SEGBASE = const(61)  # index * bins per segment: the segment's first bin
_QUIET = const(62)  # no hump detection before this bin (after an impact)
_EVOK = const(63)  # events allowed in this batch (1/0)
_SPEED = const(64)  # the previous batch's speed (mm/s), as the hump gate has always read it
_MINSPD = const(65)  # min_speed_kmh in mm/s
_STARTED = const(66)  # the Golden Car state was set from the first slope
_NBINS = const(67)  # bins of the open segment, of them valid, sum of |z1 - z3| (lo: < 2^16)
_NVALID = const(68)
_RSLO = const(69)
_RSHI = const(70)
_BPS = const(71)  # bins per segment
_VALID = const(72)  # the bins being made are valid (1/0)
_BI = const(73)  # next bin of B to take (bins() resumes there)
_HUMP = const(74)  # > 0: a hump of this height (nm) to report at bin _HUMPAT (Python does)
_HUMPAT = const(75)
_HS = const(76)  # hump detector: slow follower of the band-passed height (~16 m)
_BINV = const(77)  # two-mass inverse: 1 / (1 + k q^2/4 + c q/2), the body's trapezoid step (Q12)
_SP0 = const(78)  # two-mass inverse: the last two bins' slopes (the interpolation's loss made good)
_SP1 = const(79)
_EMQ = const(80)  # its coefficient (v dt / 0.25 m)^2 / 12, Q16
_NSTATE = const(81)

_BIN_UM = const(250000)  # 0.25 m
_V_CLAMP = const(1 << 24)  # um/s: 16.8 m/s, far beyond any vertical axle velocity
# (the bins' clamps, _H_CLAMP and _DZ_CLAMP, are in est_viper.py and est_twin.py)
_SMALL = const(0x3FFFFFFF)  # largest 31-bit small int on the ESP32
_MAX_LOST = const(1600)
_IRI_MAX = const(6553500)  # mean |z1 - z3| (1e-7) of IRI 655.35 m/km: the packet's ceiling  # samples of a gap travelled per batch: lost * step stays below 2^30
_A_CLAMP = const(400000)  # mm/s^2 (~40 g)
_MAXB = const(32)  # bins per kernel call (50 ms at 65 m/s is 13); add() calls again for the rest
_BLKN = const(64)


try:  # the viper kernels on MicroPython; CPython (the host's golden model) runs the plain twins
    from rnfw.est_viper import bins as _bins
    from rnfw.est_viper import kernel as _kernel
except (ImportError, NameError, SyntaxError):
    from rnfw.est_twin import bins as _bins
    from rnfw.est_twin import kernel as _kernel


class Queue:
    """Fixed ring of records of ``width`` ints: no allocation when segments or events are pushed."""

    def __init__(self, width, size=8):
        self.w = width
        self.size = size
        self.buf = array("i", bytes(4 * width * size))
        self.head = 0
        self.n = 0
        self.dropped = 0

    def __len__(self):
        return self.n

    def push(self, a, b, c, d, e, f, g=0, h=0, i=0, j=0):
        """Append one record (6 or 10 ints); a full ring counts it in ``dropped`` instead."""
        if self.n >= self.size:
            self.dropped += 1
            return
        o = ((self.head + self.n) % self.size) * self.w
        buf = self.buf
        buf[o] = a
        buf[o + 1] = b
        buf[o + 2] = c
        buf[o + 3] = d
        buf[o + 4] = e
        buf[o + 5] = f
        if self.w > 6:
            buf[o + 6] = g
            buf[o + 7] = h
            buf[o + 8] = i
            buf[o + 9] = j
        self.n += 1

    def first(self):
        """Offset of the oldest record in self.buf (caller reads, then pop())."""
        return self.head * self.w

    def pop(self):
        """Drop the oldest record (after reading it at first())."""
        self.head = (self.head + 1) % self.size
        self.n -= 1



def _mul_q10(m, q):
    """min(m * q >> 10, _IRI_MAX) for 0 <= m <= _IRI_MAX, 0 <= q < 2^17, within 31 bits."""
    r = (m >> 10) * q + (((m & 1023) * q) >> 10)
    return _IRI_MAX if r > _IRI_MAX else r


class Estimator:
    """Segments with IRI from batches of raw samples. ``gc_coeffs`` comes from the host-computed
    table in rnfw/golden_car.py (Q16, balanced state scaling)."""

    def __init__(self, cfg, odr_hz, period_ms, lsb_per_g):
        from rnfw import golden_car

        self.seg_len_m = cfg["segment_length_m"]
        self.bins_per_seg = self.seg_len_m * 4
        self.min_speed_mmps = cfg["min_speed_kmh"] * 10000 // 36
        self.odr = odr_hz
        self.period_ms = period_ms
        self.lsb = lsb_per_g
        S = array("i", bytes(4 * _NSTATE))
        S[_GZ] = lsb_per_g << 8
        ka = (9806650 * 4096 // 1000 + lsb_per_g // 2) // lsb_per_g
        S[_KA] = ka
        S[_AVMAX] = _A_CLAMP * 4096 // ka + 1
        S[_PMS] = period_ms
        S[_GREL] = 1000 // period_ms  # 1 s
        leak = 0
        while (1 << (leak + 1)) * period_ms <= 2000:  # time constant ~1-2 s
            leak += 1
        S[_LEAK] = leak
        S[_EVTH] = 0x3FFFFFFF
        S[_PDROP] = int(cfg["pothole_threshold_g"] * 9807) // 2
        S[_BPS] = self.bins_per_seg
        S[_MINSPD] = self.min_speed_mmps
        # bumps (humps) show in the reconstructed profile, not as acceleration spikes: road height
        # high-passed over ~8 m (nm); an event when it rises past bump_height_mm
        S[_BUMPNM] = cfg["bump_height_mm"] * 1000000
        self.S = S
        self.B = array("i", bytes(4 * 4 * _MAXB))
        self.body = cfg["mount"] == "body"
        self.body_gain = int(cfg["body_gain"] * 1024 + 0.5)
        # body mount: the suspension filters more of the road the faster the car goes; the
        # response falls like speed^-p (p ~ 0.55 for cars and trucks, docs/estimator.md), so the
        # estimate is scaled by (v / 80 km/h)^p from a table per 10 km/h (Q10), interpolated
        p = cfg["body_speed_exp"]
        self.spd_tab = array("i", [int(1024 * (k * 10 / 80) ** p + 0.5) if k else 0 for k in range(17)]) if self.body else None
        self.bump_mm = int(cfg["bump_threshold_g"] * 9807)
        self.pothole_mm = int(cfg["pothole_threshold_g"] * 9807)
        if self.body:
            # the body follows the road through the suspension: z_road = z_s + q with
            # q = (a / w^2) low-passed at w / (2 zeta) (inverse of the body mode above its peak)
            S[_BODY] = 1
            wb2 = golden_car.wheel_w2(cfg["body_hz"])
            cb = (1000000 + wb2 // 2) // wb2
            S[_CB] = cb
            S[_ABMAX] = min(29420, ((1 << 29) - 1) // cb)  # 3 g, less for soft bodies (body_hz < 1.2 Hz)
            zb = int(cfg["body_damping"] * 1000 + 0.5)
            S[_ALPHA] = golden_car.lowpass_q12(period_ms * golden_car.isqrt(wb2 * 1000000) * 4096 // (2 * zb * 1000))
        else:
            self.tune(cfg)
        self.gc = array("i", golden_car.Q16)
        self.x = array("i", bytes(4 * 8))  # Golden Car state (4) + scratch (4)
        self.bins = _bins
        self.kernel = _kernel
        self._speed = 0
        self._lat = 0
        self._lon = 0
        self._g_init = False
        self.rms_prev = 0
        self.index = 0
        self._seg_reset()
        self.events = Queue(6, 4)  # kind, peak 0.1 g, lat, lon, dist m, speed km/h
        self.closed = Queue(10, 4)  # index, length, lat, lon, iri, rms, peak, speed, flags, samples
        self._have_pos = False
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.spd_avg = 0
        self.hump_from = 0  # bin from which the hump detector may look (16 m of steady driving)
        self._ev_valid = False
        self._last_ev_bin = -1000
        self.pend = None  # settings for tune() at the next segment boundary (rnfw.selfcal)

    def tune(self, cfg):
        """Axle mount: set the inverse of the vehicle's response from ``cfg``'s wheel_hop_hz,
        wheel_damping, mass_ratio and body_hz (at start, and when self-calibration (rnfw.selfcal)
        identifies the vehicle: called between segments)."""
        from rnfw import golden_car

        S = self.S
        # inverse of the wheel-hop resonance: z_road = z_u + c1 dv + c2 da
        w2 = golden_car.wheel_w2(cfg["wheel_hop_hz"])
        S[_C1Q4] = golden_car.c1_q4(cfg["wheel_hop_hz"], cfg["wheel_damping"])
        r10 = int(cfg["mass_ratio"] * 10 + 0.5)  # 0.1 steps; below 0.05 the one-mass inverse
        if r10:
            # two-mass inverse (docs/estimator.md): the tyre force balances the axle's and the
            # body's inertia, k_t (z_r - z_u) = m_u a_u + m_s a_s, so z_r = z_u + (a_u + rho a_s)
            # / w_t^2 with w_t^2 = k_t/m_u = w_hop^2 - rho w_b^2; the body follows the axle
            # through the suspension (w_b = body_hz, 2 zeta_b w_b = c_s/m_s = 2 zeta_hop w_hop / rho)
            fb = int(cfg["body_hz"] * 100 + 0.5)  # 0.01 Hz: (2 pi f)^2 within 31 bits for f <= 4 Hz
            wb2 = (39478 * fb // 1000) * fb // 10000
            wt2 = w2 - r10 * wb2 // 10
            if wt2 < w2 // 4:
                wt2 = w2 // 4
            if wt2 < 746:  # c2 <= 1341: |da| * c2 < 2^30 (da up to 2 x 40 g)
                wt2 = 746
            # rectangular double integration puts z_u a sample ahead of a_u: take z_u one
            # sample back, z(n-1) = z(n) - v dt (nm per um/s, Q4)
            S[_C1Q4] = -16 * S[_PMS]
            w2 = wt2
            S[_KB2] = wb2
            # 2 zeta w_hop / rho in Q4, below 2^8 (|cb * y'| < 2^29)
            w16 = golden_car.isqrt(golden_car.wheel_w2(cfg["wheel_hop_hz"]) * 256)  # 16 w_hop
            S[_CBQ] = min(255, (int(cfg["wheel_damping"] * 1000 + 0.5) * 20 * w16 + r10 * 500) // (r10 * 1000))
            S[_C3] = (r10 * 102400 + wt2 // 2) // wt2
            self._set_dtq(3277)
        else:
            S[_C3] = 0
        S[_C2] = (1000000 + w2 // 2) // w2  # nm per (mm/s^2) = 1e6 / w^2

    def _set_dtq(self, q):
        """The bin's duration q (s, Q16) and the body's trapezoid-step factor for it (est_twin.bins_py):
        1 / (1 + w_b^2 q^2/4 + (c_s/m_s) q/2) in Q12 (each product below 2^30)."""
        S = self.S
        S[_DTQ] = q
        den = 65536 + (((S[_KB2] * q) >> 9) * q >> 9) + ((S[_CBQ] * q) >> 5)
        S[_BINV] = (268435456 + (den >> 1)) // den

    def _seg_reset(self):
        S = self.S
        S[_RSLO] = 0
        S[_RSHI] = 0
        S[_NVALID] = 0
        S[_NBINS] = 0
        S[_SEGBASE] = self.index * self.bins_per_seg
        self.flags = 0
        self.t_ms = 0
        self._have_pos = False

    def set_gravity(self):
        """Unit gravity vector (Q12) and |g| from the tracker, once per batch."""
        S = self.S
        gx = S[_GX] >> 8
        gy = S[_GY] >> 8
        gz = S[_GZ] >> 8
        if -18918 < gx < 18918 and -18918 < gy < 18918 and -18918 < gz < 18918:
            gm = isqrt(gx * gx + gy * gy + gz * gz) or 1
        else:  # a tracker dragged to the rails: halve so the squares' sum stays below 2^30
            gm = (isqrt((gx >> 1) * (gx >> 1) + (gy >> 1) * (gy >> 1) + (gz >> 1) * (gz >> 1)) << 1) or 1
        S[_UX] = (gx << 12) // gm
        S[_UY] = (gy << 12) // gm
        S[_UZ] = (gz << 12) // gm
        S[_GM] = gm

    @micropython.native
    def add(self, buf, n, speed_mmps, gps_ok, lat_e7, lon_e7, lost=0, imu_fault=False):
        """One FIFO batch (n samples x, y, z in buf) at the last fix's speed and position: bins,
        segments into ``closed``, events into ``events``; ``lost`` samples of a gap travelled blind."""
        S = self.S
        if n > 0 and not self._g_init:  # first samples ever: start the gravity tracker on them
            S[_GX] = buf[0] << 8
            S[_GY] = buf[1] << 8
            S[_GZ] = buf[2] << 8
            self._g_init = True
        self.set_gravity()
        if speed_mmps > 65000:
            speed_mmps = 65000
        step = speed_mmps * S[_PMS]  # um per sample
        S[_STEP] = step
        S[_INV] = _SMALL // step if step > 0 else 0  # rem * _INV < 2^30 since rem <= step
        if S[_C3]:  # a bin lasts 0.25 m / speed (s, Q16), at most 50 ms (slower bins are not valid)
            e = step >> 6  # (step / 250000 um)^2 / 12 in Q16 = step^2 / 11444091, in small ints
            e = e * e // 2794
            S[_EMQ] = 16383 if e > 16383 else e
            q = 16384000 * S[_PMS] // step if step > 0 else 3277
            if q > 3277:
                q = 3277
            if q != S[_DTQ]:
                self._set_dtq(q)
        th = self.bump_mm
        r = self.rms_cg()
        if r < self.rms_prev:  # early in a segment: the last segment's level
            r = self.rms_prev
        if r * 490 > th:  # events stand out of the running vibration: 5x RMS (1 cg = 98 mm/s^2)
            th = r * 490
        # no events until the vibration level is known, below the minimum speed (GUIDE §1: Pothole
        # Patrol's speed gate), or while the speed changes (longitudinal acceleration leaks into
        # the vertical through the mounting tilt)
        self.spd_avg += (speed_mmps - self.spd_avg) >> 4  # ~0.8 s of batches
        dv = speed_mmps - self.spd_avg
        steady = -700 < dv < 700
        # (impacts wait for rms_prev: a whole segment behind us, so the vibration level is
        # measured while moving; the hump detector keeps its own level and needs none)
        ev_ok = speed_mmps >= self.min_speed_mmps and steady
        # humps: a speed change disturbs the integrated road height for some 10-20 m after the
        # speed settles (tilt x the change of longitudinal acceleration): 16 m more of steady driving
        if not ev_ok:
            self.hump_from = (S[_BINS] + 64) & 0x3FFFFFFF
            S[_EVOK] = 0
        elif not S[_EVOK] and (S[_BINS] - self.hump_from) & 0x3FFFFFFF < 0x20000000:
            S[_EVOK] = 1
        S[_EVTH] = th if ev_ok and self.rms_prev > 0 else 0x3FFFFFFF
        if not self._have_pos and gps_ok:
            self.lat_e7 = lat_e7
            self.lon_e7 = lon_e7
            self._have_pos = True
        f = 0
        if imu_fault:
            f |= _F_IMU_FAULT
        elif lost:
            f |= _F_FIFO_OVERFLOW
        if not gps_ok:
            f |= _F_GPS_LOST
        if speed_mmps < self.min_speed_mmps:
            f |= _F_BELOW_MIN_SPEED
        if speed_mmps < 300:
            f |= _F_STOPPED
        self.flags |= f
        valid = f == 0
        if lost > _MAX_LOST:
            lost = _MAX_LOST
        if self.t_ms < 1 << 29:  # a segment parked on for days stops counting (speed reads 0)
            self.t_ms += (n + lost) * S[_PMS]
        B = self.B
        if lost:  # time passed without samples: travel it with no vertical data (bins invalid)
            S[_VALID] = 0
            d = S[_DIST] + lost * step
            while d >= _BIN_UM:
                d -= _BIN_UM
                S[_BINS] = (S[_BINS] + 1) & 0x3FFFFFFF
                B[0] = S[_DZ]
                B[1] = S[_VEL]
                B[2] = S[_ACC]
                B[3] = S[_QB]
                self._bins(1)
                S[_DZ] = 0
            S[_DIST] = d
        S[_VALID] = 1 if valid else 0
        # a batch can make more bins than B holds (64 samples at 100 Hz and 65 m/s: 166): the
        # kernel stops while a sample's bins (at most step // 0.25 m + 1; <= 3 at 65 m/s, 100 Hz)
        # still fit, and is called again from S[_POS] until the batch is consumed: nothing dropped
        S[_BLIM] = _MAXB - 1 - step // _BIN_UM
        S[_POS] = 0
        while True:
            S[_NB] = 0
            nb = self.kernel(S, buf, n, B)
            if S[_CLIP]:  # before the bins: a segment they close keeps its flag
                if not self.flags & _F_CLIPPING:
                    self._quiet()
                self.flags |= _F_CLIPPING
            if nb:
                self._bins(nb)
            if S[_EVDONE]:
                self._event(speed_mmps, lat_e7, lon_e7)
            if S[_POS] >= n:
                break
        self._speed = speed_mmps
        S[_SPEED] = speed_mmps
        self._lat = lat_e7
        self._lon = lon_e7

    def _bins(self, nb):
        """The ``nb`` bins in B (0.25 m steps: slope -> Golden Car -> rectified slope into the
        segment; the hump detector), in est_viper.bins; it stops after a bin that needs Python:
        a hump to report, or the segment full."""
        S = self.S
        S[_BI] = 0
        while self.bins(S, self.B, nb, self.x, self.gc):
            if S[_HUMP]:
                self._push_event(0, S[_HUMP], S[_HUMPAT])
                S[_HUMP] = 0
            if S[_NBINS] >= self.bins_per_seg:
                self._close()

    def rms_cg(self):
        """RMS vertical acceleration of the segment so far, centi-g (0 before a 64-sample block)."""
        S = self.S
        n = S[_CNT]
        if n < _BLKN:
            return 0
        return isqrt(S[_TOT] // (n >> 6))

    def iri_cmkm(self):
        """Mean |z1 - z3| (1e-7) -> IRI in 0.01 m/km = mean / 100; n/a below 80% valid coverage."""
        S = self.S
        n = S[_NVALID]
        if n * 5 < self.bins_per_seg * 4 or n == 0:
            return _IRI_NA
        hi = S[_RSHI]
        # (hi % n) << 16 < 2^28 for n <= 4000 bins (1000 m segments): no big int on the node
        mean = ((hi // n) << 16) + (((hi % n) << 16) + S[_RSLO]) // n
        if mean > _IRI_MAX:  # the packet saturates far below this (655 m/km)
            mean = _IRI_MAX
        if self.body:
            mean = _mul_q10(mean, self.body_gain)
            mean = _mul_q10(mean, self._speed_factor())
        return (mean + 50) // 100

    def _speed_factor(self):
        """(v / 80 km/h)^p in Q10 at the segment's mean speed."""
        v10 = self.seg_len_m * 36000 // self.t_ms if self.t_ms else 0  # km/h * 10
        i = v10 // 100
        if i >= 16:
            return self.spd_tab[16]
        if i < 1:
            return self.spd_tab[1]
        f = v10 - 100 * i
        return self.spd_tab[i] + ((self.spd_tab[i + 1] - self.spd_tab[i]) * f) // 100

    def _close(self):
        S = self.S
        speed_kmh = self.seg_len_m * 3600 // self.t_ms if self.t_ms else 0
        self.closed.push(self.index, self.seg_len_m, self.lat_e7, self.lon_e7, self.iri_cmkm(),
                         self.rms_cg(), (S[_PEAK] + 5) // 10, speed_kmh,
                         self.flags | (_F_BODY_MOUNT if self.body else 0), S[_CNT])
        self.index += 1
        self.rms_prev = self.rms_cg()
        S[_BLK] = 0
        S[_TOT] = 0
        S[_CNT] = 0
        S[_PEAK] = 0
        S[_CLIP] = 0
        self._seg_reset()
        if self.pend:  # new settings start with a segment, not inside one
            self.tune(self.pend)
            self.pend = None

    def close_partial(self):
        """End of a drive: report the open segment now, flagged partial (its IRI over the bins it
        has, n/a below 80% of a full segment's). Nothing open: nothing sent. The next drive
        starts a new segment (the next index)."""
        if self.S[_NBINS] == 0:
            return False
        self.flags |= _F_PARTIAL
        self._close()
        return True

    def _event(self, speed_mmps, lat_e7, lon_e7):
        S = self.S
        S[_EVDONE] = 0
        mx = S[_EVMAX]
        mn = -S[_EVMIN]
        peak = mx if mx > mn else mn
        # pothole: the wheel drops (a dip below -PDROP in the moments before the trigger), then the
        # far edge slams it up. Otherwise a sharp bump (step, joint, kerb); long humps are found in
        # the profile (see _bin).
        kind = 1 if S[_EVFIRST] < 0 and peak >= self.pothole_mm else 0
        if kind == 0 and peak < self.bump_mm:
            return
        bins_back = (S[_BINS] - S[_EVBIN]) & 0x3FFFFFFF
        self._quiet()
        self._push_event(kind, peak, S[_SEGBASE] + S[_NBINS] - bins_back)

    def _quiet(self):
        """After an impact the integrated velocity is disturbed for a few tens of metres: no hump
        detection from it."""
        S = self.S
        S[_QUIET] = S[_SEGBASE] + S[_NBINS] + 160

    def _push_event(self, kind, severity, at_bin):
        """severity: acceleration peak (mm/s^2) for spikes, height (nm) for humps -> 0.1 g units
        for the packet (humps: 0.1 g per 10 mm of height). One event per 3 m."""
        if at_bin - self._last_ev_bin < 12:
            return
        self._last_ev_bin = at_bin
        sev = (severity * 10 + 4903) // 9807 if kind or severity < 1000000 else severity // 10000000
        self.events.push(kind, sev, self._lat, self._lon, at_bin // 4, self._speed * 36 // 10000)
