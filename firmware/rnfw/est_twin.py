"""Plain-Python twins of the estimator's viper functions (rnfw/est_viper.py: the per-sample kernel
and the per-bin work): the host's golden model runs them under CPython, and tests hold the viper
functions to them bit for bit. Not imported on
the device (it would cost heap)."""

from micropython import const

# state layout: must equal estimator.py and est_viper.py (a test checks)
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
_EVN = const(22)
_EVMAX = const(23)
_EVMIN = const(24)
_EVFIRST = const(25)
_EVTH = const(26)
_EVDIST = const(27)
_EVBIN = const(28)
_BINS = const(29)
_EVDONE = const(30)
_RMIN = const(31)
_PDROP = const(32)
_QB = const(33)
_CB = const(34)
_ALPHA = const(35)
_AVMAX = const(36)
_ABMAX = const(37)
_POS = const(38)
_BLIM = const(39)
_GFRZ = const(40)
_GREL = const(41)
_YB = const(42)
_VS = const(43)
_AB = const(44)
_DTQ = const(45)
_KB2 = const(46)
_CBQ = const(47)
_C3 = const(48)  # two-mass inverse on (axle mount): bins carry the boundary velocity
_VPREV = const(49)
_APREV = const(50)
_QPREV = const(51)
_C1Q4 = const(52)
_C2 = const(53)
_BODY = const(54)
_HM = const(55)
_HH = const(56)
_HHABS = const(57)
_HPEAK = const(58)
_HBINS = const(59)
_BUMPNM = const(60)
_SEGBASE = const(61)
_QUIET = const(62)
_EVOK = const(63)
_SPEED = const(64)
_MINSPD = const(65)
_STARTED = const(66)
_NBINS = const(67)
_NVALID = const(68)
_RSLO = const(69)
_RSHI = const(70)
_BPS = const(71)
_VALID = const(72)
_BI = const(73)
_HUMP = const(74)
_HUMPAT = const(75)
_HS = const(76)
_BINV = const(77)
_SP0 = const(78)
_SP1 = const(79)
_EMQ = const(80)
_H_CLAMP = const(1 << 27)  # nm per bin, per term of the road height
_DZ_CLAMP = const(1 << 29)
_BIN_UM = const(250000)
_V_CLAMP = const(1 << 24)
_A_CLAMP = const(400000)
_MAXB = const(32)
_BLKN = 64


def kernel_py(S, buf, n, B):
    """Plain-Python twin of est_viper.kernel: process samples S[_POS]..n-1 of buf, append bins to B
    (4 ints each: dz nm, velocity um/s, acceleration mm/s^2, body term nm at the boundary); stops
    before a sample whose bins might not fit (nb > S[_BLIM]) and leaves in S[_POS] where to resume.
    Returns bins written."""
    gx = S[_GX]
    gy = S[_GY]
    gz = S[_GZ]
    ux = S[_UX]
    uy = S[_UY]
    uz = S[_UZ]
    gm = S[_GM]
    ka = S[_KA]
    v = S[_VEL]
    dz = S[_DZ]
    d = S[_DIST]
    p = S[_PMS]
    leak = S[_LEAK]
    step = S[_STEP]
    inv = S[_INV]
    blk = S[_BLK]
    tot = S[_TOT]
    cnt = S[_CNT]
    peak = S[_PEAK]
    clip = S[_CLIP]
    nb = S[_NB]
    evn = S[_EVN]
    evmax = S[_EVMAX]
    evmin = S[_EVMIN]
    evfirst = S[_EVFIRST]
    evth = S[_EVTH]
    a = S[_ACC]
    rmin = S[_RMIN]
    pdrop = S[_PDROP]
    qb = S[_QB]
    cb = S[_CB]
    alpha = S[_ALPHA]
    avmax = S[_AVMAX]
    abmax = S[_ABMAX]
    blim = S[_BLIM]
    frz = S[_GFRZ]
    grel = S[_GREL]
    c3 = S[_C3]
    i = S[_POS]
    j = 3 * i
    while i < n:
        if nb > blim:  # B is full: stop here, the caller drains B and calls again from S[_POS]
            break
        x = buf[j]
        y = buf[j + 1]
        z = buf[j + 2]
        j += 3
        if x == 32767 or x == -32768 or y == 32767 or y == -32768 or z == 32767 or z == -32768:
            clip = 1
        if -29420 < a < 29420:  # impacts (> 3 g) would drag the gravity estimate for seconds
            frz = 0
            gx += ((x << 8) - gx) >> 9
            gy += ((y << 8) - gy) >> 9
            gz += ((z << 8) - gz) >> 9
        elif frz < grel:
            frz += 1
        else:  # ~1 s of "impact" is a wrong tracker (e.g. started on a rail): re-acquire, ~32-sample mean
            gx += ((x << 8) - gx) >> 5
            gy += ((y << 8) - gy) >> 5
            gz += ((z << 8) - gz) >> 5
        ap = a  # the previous sample's acceleration (axle mount: interpolated at a boundary)
        av = ((x * ux + y * uy + z * uz) >> 12) - gm  # counts
        if av > avmax:  # keeps av * ka within int32 (a is clamped below anyway)
            av = avmax
        elif av < -avmax:
            av = -avmax
        a = (av * ka) >> 12  # mm/s^2
        if a > _A_CLAMP:
            a = _A_CLAMP
        elif a < -_A_CLAMP:
            a = -_A_CLAMP
        # statistics in centi-g: 1 cg = 98.0665 mm/s^2 ~ (a * 167) >> 14
        if a < rmin:
            rmin = a
        else:
            rmin -= rmin >> 4
        if cb:  # body mount: q follows a / w^2 through the suspension's low-pass
            ab = a
            if ab > abmax:  # |ab * cb| <= 2^29 nm (0.54 m of suspension travel)
                ab = abmax
            elif ab < -abmax:
                ab = -abmax
            dq = ab * cb - qb
            qb += (dq >> 12) * alpha + (((dq & 4095) * alpha) >> 12)
        cg = (a * 167) >> 14
        aa = cg if cg >= 0 else -cg
        if aa > peak:
            peak = aa
        blk += cg * cg
        cnt += 1
        if cnt & (_BLKN - 1) == 0:
            tot += blk >> 6
            blk = 0
            if tot > 0x3FFFFFFF:
                tot = 0x3FFFFFFF
        # events: a window opens when |a| crosses the threshold and runs 64 samples
        if evn > 0:
            if a > evmax:
                evmax = a
            if a < evmin:
                evmin = a
            evn -= 1
            if evn == 0:
                S[_EVDONE] = 1
        elif (a if a >= 0 else -a) > evth and S[_EVDONE] == 0:
            evn = 64
            evmax = a
            evmin = rmin
            evfirst = -1 if rmin < -pdrop else 1
            S[_EVDIST] = d
            S[_EVBIN] = S[_BINS]
        # velocity (um/s) and displacement (nm); dt = p ms
        vp = v
        v += a * p
        v -= v >> leak
        if v > _V_CLAMP:
            v = _V_CLAMP
        elif v < -_V_CLAMP:
            v = -_V_CLAMP
        ds = v * p
        d0 = d
        d += step
        while d >= _BIN_UM:
            rem = _BIN_UM - d0  # um of this sample before the boundary
            frac = (rem * inv) >> 20  # Q10 share of the sample
            part = (ds >> 10) * frac + (((ds & 1023) * frac) >> 10)
            if nb < _MAXB:  # always true given S[_BLIM]; a wrong BLIM must not write past B
                B[4 * nb] = dz + part
                B[4 * nb + 1] = v
                B[4 * nb + 2] = a
                if cb:
                    B[4 * nb + 3] = qb
                else:  # axle mount: the acceleration at the boundary itself, |a - ap| * frac < 2^30
                    ai = ap + (((a - ap) * frac) >> 10)
                    B[4 * nb + 3] = ai
                    if c3:  # and the velocity there, half a sample back (rectangular integration leads)
                        dv = v - vp
                        B[4 * nb + 1] = vp + (dv >> 10) * frac + (((dv & 1023) * frac) >> 10) - ((ai * p) >> 1)
                nb += 1
            S[_BINS] = (S[_BINS] + 1) & 0x3FFFFFFF
            dz = 0
            ds -= part
            d -= _BIN_UM
            d0 -= _BIN_UM
        dz += ds
        if dz > _DZ_CLAMP:
            dz = _DZ_CLAMP
        elif dz < -_DZ_CLAMP:
            dz = -_DZ_CLAMP
        i += 1
    S[_POS] = i
    S[_GFRZ] = frz
    S[_GX] = gx
    S[_GY] = gy
    S[_GZ] = gz
    S[_VEL] = v
    S[_DZ] = dz
    S[_DIST] = d
    S[_BLK] = blk
    S[_TOT] = tot
    S[_CNT] = cnt
    S[_PEAK] = peak
    S[_CLIP] = clip
    S[_NB] = nb
    S[_EVN] = evn
    S[_EVMAX] = evmax
    S[_EVMIN] = evmin
    S[_EVFIRST] = evfirst
    S[_ACC] = a
    S[_RMIN] = rmin
    S[_QB] = qb
    return nb


def gc_step_py(x, c, s):
    """One Golden Car step in Q16 (est_viper.bins has it inline): x holds 8 ints (state, then
    scratch); returns |z1 - z3|."""
    for i in range(4):
        r = 4 * i
        v = 0
        for k in range(4):
            xv = x[k]
            v += ((c[r + k] * (xv >> 10) + 32) >> 6) + ((c[r + k] * (xv & 1023) + 32768) >> 16)
        v += ((c[16 + i] * (s >> 10) + 32) >> 6) + ((c[16 + i] * (s & 1023) + 32768) >> 16)
        if v > 0x1000000:
            v = 0x1000000
        elif v < -0x1000000:
            v = -0x1000000
        x[4 + i] = v
    x[0] = x[4]
    x[1] = x[5]
    x[2] = x[6]
    x[3] = x[7]
    rs = x[0] - x[2]
    return rs if rs >= 0 else -rs


def _sat(x, m):
    return m if x > m else (-m if x < -m else x)


def bins_py(S, B, nb, x, c):
    """Plain twin of est_viper.bins: bins S[_BI]..nb-1 of B (dz, v, a, qb each), 0.25 m apiece:
    the inverse of the vehicle's response gives the road's rise over the bin (nm), the hump
    detector follows its band-passed height, the slope drives the Golden Car (gc_step_py) and the
    rectified slope goes into the segment's sums. Returns 0 when all are done; 1 after a bin that
    needs Python (a hump to report, S[_HUMP] > 0; or the segment full), S[_BI] the next bin."""
    i = S[_BI]
    while i < nb:
        r = 4 * i
        dz = B[r]
        v = B[r + 1]
        a = B[r + 2]
        qb = B[r + 3]
        i += 1
        dv = _sat(v - S[_VPREV], 1 << 22)
        # nm of road over 0.25 m: axle mount adds the inverse wheel-hop terms, body mount the
        # suspension term q (one of the two is zero); each term saturated at _H_CLAMP (beyond it
        # the slope saturates anyway): the sum stays a small int for every accepted config
        c3 = S[_C3]
        if S[_BODY]:
            q = qb - S[_QPREV]
        else:  # axle mount: qb is the acceleration interpolated at the boundary (the kernel)
            q = 0
            if c3:
                a = qb
        c1 = S[_C1Q4]
        t = (dv >> 4) * c1 + (((dv & 15) * c1) >> 4)
        zu = _sat(dz, _H_CLAMP) + _sat(t, _H_CLAMP)  # the axle's rise over the bin, nm
        h = zu + _sat((a - S[_APREV]) * S[_C2], _H_CLAMP) + _sat(q, _H_CLAMP)
        if c3:  # two-mass inverse: the body, driven by the axle, adds rho / w_t^2 of its acceleration
            # the axle's rise over the bin: z_u one sample back by the rectangle rule's own velocity,
            # half a sample ahead of the boundary velocity v: -p^2/2 of the change of a (nm)
            e = _sat(((a - S[_APREV]) * (S[_PMS] * S[_PMS])) >> 1, _H_CLAMP)
            h -= e
            du = (zu - e + 500) // 1000  # um
            # the body by the trapezoid rule per bin (a bin lasts up to 50 ms), the damper's share
            # integrated exactly: c_s/m_s (v_u - v_s) over the bin is c_s/m_s (dz_u - dz_s), with
            # dz_u known. y = z_s - z_u (um), vs = v_s (um/s), AB = -a_s (um/s^2); q = the bin (Q16 s),
            # k = w_b^2, cq = c_s/m_s (Q4), BINV = 1 / (1 + k q^2/4 + c_s/m_s q/2) (Q12).
            # (x * q >> 16 split so nothing leaves 31 bits: |x| < 2^30, 0 <= q < 2^12)
            q = S[_DTQ]
            k = S[_KB2]
            cq = S[_CBQ]
            vs = S[_VS]
            y = S[_YB]
            p0 = ((vs >> 16) * q + (((vs & 0xFFFF) * q) >> 16)) >> 1  # um: half a bin at vs
            w = _sat(p0 - du, 0xFFFFF)
            ky = k * y
            kw = k * w
            num = (vs - ((ky >> 16) * q + (((ky & 0xFFFF) * q) >> 16))
                   - (((kw >> 16) * q + (((kw & 0xFFFF) * q) >> 16)) >> 1) - ((cq * w) >> 4))
            inv = S[_BINV]
            vs = _sat((num >> 12) * inv + (((num & 4095) * inv) >> 12), _V_CLAMP)
            p1 = ((vs >> 16) * q + (((vs & 0xFFFF) * q) >> 16)) >> 1
            y = _sat(y + p0 + p1 - du, 0x7FFFF)  # um (0.52 m)
            S[_VS] = vs
            S[_YB] = y
            nbd = _sat(k * y + ((cq * _sat(vs - v, 0x1FFFFF)) >> 4), 0x1FFFFFFF)  # each term < 2^29
            # change of the body acceleration over the bin, um/s^2: the damper's share follows the
            # axle's velocity, so on rough roads it moves by tens of m/s^2 per bin (a 4 m/s^2 clamp
            # read class D 3-6% low); 2^25 keeps (d >> 10) * c3 < 2^30 for c3 <= 27453 (ratio 20, w_t^2 746)
            d = _sat(S[_AB] - nbd, 1 << 25)
            S[_AB] = nbd
            h += _sat((d >> 10) * c3 + (((d & 1023) * c3) >> 10), _H_CLAMP)
        S[_QPREV] = qb
        S[_VPREV] = v
        S[_APREV] = a
        # road height band-passed for hump detection: the mean slope over ~32 m removed (drift,
        # grades), then integrated with an ~8 m memory
        hc = _sat(h, 20000000)
        hm = S[_HM] + ((hc - S[_HM]) >> 7)
        S[_HM] = hm
        hh = S[_HH] + hc - hm
        hh = _sat(hh - (hh >> 5), _DZ_CLAMP)
        S[_HH] = hh
        # the slow swings of the integration (a speed change leaks through the mounting tilt and
        # the inverse for tens of metres) removed: a ~16 m follower of hh taken off; a 3.7 m hump
        # keeps most of its height
        hs = S[_HS]
        hs += (hh >> 6) - (hs >> 6)
        S[_HS] = hs
        hh = _sat(hh - hs, _DZ_CLAMP)
        # how much the band-passed road moves on its own (mean |hh| over ~32 m of measurable,
        # steady driving): the threshold is 3x it (at least bump_height_mm); what goes into the
        # mean is capped at that threshold, so a pothole's or hump's own excursion does not raise it
        ha = S[_HHABS]
        th = ha * 3 if ha < 0x15555555 else 0x3FFFFFFF
        bump = S[_BUMPNM]
        if th < bump:
            th = bump
        ah = hh if hh >= 0 else -hh
        if ah > th:
            ah = th
        if S[_VALID] and S[_EVOK]:
            ha += (ah - ha) >> 7
        S[_HHABS] = ha
        cur = S[_SEGBASE] + S[_NBINS]
        if cur < S[_QUIET]:  # forget the disturbed stretch entirely
            S[_HH] = 0
            S[_HM] = 0
            S[_HS] = 0
            S[_HPEAK] = 0
        elif S[_VALID] and S[_EVOK] and S[_SPEED] <= 15300 and hh > th:
            # humps are built where traffic is slow: looked for up to 55 km/h
            if hh > S[_HPEAK]:
                S[_HPEAK] = hh
                S[_HBINS] = cur
        elif S[_HPEAK] and hh < bump >> 1:
            # up and down again within 10 m: a hump, not a grade; confirmed only while the speed
            # gate still holds (a car that crawls over the hump's far side must not report it)
            if cur - S[_HBINS] <= 12 and S[_EVOK] and S[_SPEED] >= S[_MINSPD]:
                S[_HUMP] = S[_HPEAK]
                S[_HUMPAT] = S[_HBINS] - 6  # it began ~1.5 m before its top
            S[_HPEAK] = 0
        s = _sat((h + 12) // 25, 5000000)  # slope in 1e-7 (nm per 0.25 m / 25), rounded
        if S[_C3]:
            # two-mass inverse: what the boundary's linear interpolation loses at short wavelengths
            # on average, 1 - (k v dt)^2/12, made good one bin late: s - e (s+ - 2 s + s-), e =
            # (v dt / 0.25 m)^2 / 12 (Q16, at most 1/4: docs/estimator.md)
            if not S[_STARTED]:
                S[_SP0] = s
                S[_SP1] = s
            s1 = S[_SP1]
            d = s - 2 * s1 + S[_SP0]  # |d| <= 2 * 10^7
            e = S[_EMQ]
            S[_SP0] = s1
            S[_SP1] = s
            s = _sat(s1 - ((d >> 16) * e + (((d & 0xFFFF) * e) >> 16)), 5000000)
        if not S[_STARTED]:
            x[0] = s
            x[2] = s
            S[_STARTED] = 1
        rs = gc_step_py(x, c, s)
        n = S[_NBINS] + 1
        S[_NBINS] = n
        if S[_VALID]:
            S[_NVALID] += 1
            lo = S[_RSLO] + rs
            if lo >= 1 << 16:  # fold: _RSHI counts units of 2^16
                S[_RSHI] += lo >> 16
                lo &= 0xFFFF
            S[_RSLO] = lo
        if n >= S[_BPS] or S[_HUMP]:
            S[_BI] = i
            return 1
    S[_BI] = i
    return 0


# the names of rnfw.est_viper's, so rnfw.estimator imports either module the same way
kernel = kernel_py
bins = bins_py
