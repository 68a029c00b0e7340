"""The estimator's per-sample kernel in viper: the same arithmetic as est_twin.kernel_py, which
tests hold it to bit for bit. Machine-word ints: 32-bit on the ESP32, where every value here is
designed to fit (see estimator.py); ptr32 loads are sign-extended explicitly because the 64-bit
unix port zero-extends them. The kernel takes samples S[_POS]..n-1 and stops early when the bin
buffer could overflow (S[_BLIM]); Estimator.add calls it again from S[_POS] (an offset, not a
slice: no allocation)."""

import micropython
from micropython import const

# state layout: must equal estimator.py's (viper folds only this module's consts; a test checks)
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


@micropython.viper
def kernel(S: ptr32, buf: ptr16, n: int, B: ptr32) -> int:
    """The per-sample path in viper, equal bit for bit to rnfw.est_twin.kernel (see there)."""
    m = 1
    m <<= 31
    gx = (S[_GX] ^ m) - m
    gy = (S[_GY] ^ m) - m
    gz = (S[_GZ] ^ m) - m
    ux = (S[_UX] ^ m) - m
    uy = (S[_UY] ^ m) - m
    uz = (S[_UZ] ^ m) - m
    gm = (S[_GM] ^ m) - m
    ka = (S[_KA] ^ m) - m
    v = (S[_VEL] ^ m) - m
    dz = (S[_DZ] ^ m) - m
    d = (S[_DIST] ^ m) - m
    p = (S[_PMS] ^ m) - m
    leak = (S[_LEAK] ^ m) - m
    step = (S[_STEP] ^ m) - m
    inv = (S[_INV] ^ m) - m
    blk = (S[_BLK] ^ m) - m
    tot = (S[_TOT] ^ m) - m
    cnt = (S[_CNT] ^ m) - m
    peak = (S[_PEAK] ^ m) - m
    clip = (S[_CLIP] ^ m) - m
    nb = (S[_NB] ^ m) - m
    evn = (S[_EVN] ^ m) - m
    evmax = (S[_EVMAX] ^ m) - m
    evmin = (S[_EVMIN] ^ m) - m
    evfirst = (S[_EVFIRST] ^ m) - m
    evth = (S[_EVTH] ^ m) - m
    a = (S[_ACC] ^ m) - m
    rmin = (S[_RMIN] ^ m) - m
    pdrop = (S[_PDROP] ^ m) - m
    qb = (S[_QB] ^ m) - m
    cb = (S[_CB] ^ m) - m
    alpha = (S[_ALPHA] ^ m) - m
    avmax = (S[_AVMAX] ^ m) - m
    abmax = (S[_ABMAX] ^ m) - m
    blim = (S[_BLIM] ^ m) - m
    frz = (S[_GFRZ] ^ m) - m
    grel = (S[_GREL] ^ m) - m
    c3 = (S[_C3] ^ m) - m
    i = (S[_POS] ^ m) - m
    j = 3 * i
    while i < n:
        if nb > blim:  # B is full: stop here, the caller drains B and calls again from S[_POS]
            break
        x = int(buf[j])
        if x & 0x8000:
            x -= 0x10000
        y = int(buf[j + 1])
        if y & 0x8000:
            y -= 0x10000
        z = int(buf[j + 2])
        if z & 0x8000:
            z -= 0x10000
        j += 3
        if x == 32767 or x == -32768 or y == 32767 or y == -32768 or z == 32767 or z == -32768:
            clip = 1
        if a > -29420 and a < 29420:  # impacts (> 3 g) would drag the gravity estimate for seconds
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
        if a > 400000:
            a = 400000
        elif a < -400000:
            a = -400000
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
        aa = cg
        if aa < 0:
            aa = -aa
        if aa > peak:
            peak = aa
        blk += cg * cg
        cnt += 1
        if cnt & 63 == 0:
            tot += blk >> 6
            blk = 0
            if tot > 0x3FFFFFFF:
                tot = 0x3FFFFFFF
        if evn > 0:
            if a > evmax:
                evmax = a
            if a < evmin:
                evmin = a
            evn -= 1
            if evn == 0:
                S[_EVDONE] = 1
        else:
            aabs = a
            if aabs < 0:
                aabs = -aabs
            if aabs > evth and S[_EVDONE] == 0:
                evn = 64
                evmax = a
                evmin = rmin
                if rmin < -pdrop:
                    evfirst = -1
                else:
                    evfirst = 1
                S[_EVDIST] = d
                S[_EVBIN] = S[_BINS]
        vp = v
        v += a * p
        v -= v >> leak
        if v > 0x1000000:
            v = 0x1000000
        elif v < -0x1000000:
            v = -0x1000000
        ds = v * p
        d0 = d
        d += step
        while d >= 250000:
            rem = 250000 - d0
            frac = (rem * inv) >> 20
            part = (ds >> 10) * frac + (((ds & 1023) * frac) >> 10)
            if nb < 32:  # always true given S[_BLIM]; a wrong BLIM must not write past B
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
            S[_BINS] = (((S[_BINS] ^ m) - m) + 1) & 0x3FFFFFFF
            dz = 0
            ds -= part
            d -= 250000
            d0 -= 250000
        dz += ds
        if dz > 0x20000000:
            dz = 0x20000000
        elif dz < -0x20000000:
            dz = -0x20000000
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


@micropython.viper
def bins(S: ptr32, B: ptr32, nb: int, x: ptr32, c: ptr32) -> int:
    """The per-bin work in viper, equal bit for bit to rnfw.est_twin.bins_py (see there): bins
    S[_BI]..nb-1 of B; the Golden Car step (state and scratch in x, Q16 table in c) inline.
    Returns 1 after a bin that needs Python (a hump to report, or the segment full), else 0."""
    m = 1
    m <<= 31
    i = S[_BI]
    while i < nb:
        r = 4 * i
        dz = (B[r] ^ m) - m
        v = (B[r + 1] ^ m) - m
        a = (B[r + 2] ^ m) - m
        qb = (B[r + 3] ^ m) - m
        i += 1
        dv = v - ((S[_VPREV] ^ m) - m)
        if dv > 4194304:  # 1 << 22
            dv = 4194304
        elif dv < -4194304:
            dv = -4194304
        c3 = (S[_C3] ^ m) - m
        if S[_BODY]:
            q = qb - ((S[_QPREV] ^ m) - m)
        else:
            q = 0
            if c3:
                a = qb
        c1 = (S[_C1Q4] ^ m) - m
        t = (dv >> 4) * c1 + (((dv & 15) * c1) >> 4)
        k = (a - ((S[_APREV] ^ m) - m)) * ((S[_C2] ^ m) - m)
        hc = _H_CLAMP
        zu = (hc if dz > hc else (0 - hc if dz < 0 - hc else dz)) + (hc if t > hc else (0 - hc if t < 0 - hc else t))
        h = zu + (hc if k > hc else (0 - hc if k < 0 - hc else k)) + (hc if q > hc else (0 - hc if q < 0 - hc else q))
        if c3:  # (see est_twin.bins_py)
            e = ((a - ((S[_APREV] ^ m) - m)) * (S[_PMS] * S[_PMS])) >> 1
            e = hc if e > hc else (0 - hc if e < 0 - hc else e)
            h -= e
            du = (zu - e + 500) // 1000
            q = (S[_DTQ] ^ m) - m
            kb = (S[_KB2] ^ m) - m
            cq = (S[_CBQ] ^ m) - m
            vs = (S[_VS] ^ m) - m
            y = (S[_YB] ^ m) - m
            p0 = ((vs >> 16) * q + (((vs & 0xFFFF) * q) >> 16)) >> 1
            w = p0 - du
            if w > 0xFFFFF:
                w = 0xFFFFF
            elif w < -0xFFFFF:
                w = -0xFFFFF
            ky = kb * y
            kw = kb * w
            num = vs - ((ky >> 16) * q + (((ky & 0xFFFF) * q) >> 16))
            num -= (((kw >> 16) * q + (((kw & 0xFFFF) * q) >> 16)) >> 1) + ((cq * w) >> 4)
            inv = (S[_BINV] ^ m) - m
            vs = (num >> 12) * inv + (((num & 4095) * inv) >> 12)
            if vs > 0x1000000:  # as v
                vs = 0x1000000
            elif vs < -0x1000000:
                vs = -0x1000000
            p1 = ((vs >> 16) * q + (((vs & 0xFFFF) * q) >> 16)) >> 1
            y += p0 + p1 - du
            if y > 0x7FFFF:
                y = 0x7FFFF
            elif y < -0x7FFFF:
                y = -0x7FFFF
            S[_VS] = vs
            S[_YB] = y
            k = vs - v
            if k > 0x1FFFFF:
                k = 0x1FFFFF
            elif k < -0x1FFFFF:
                k = -0x1FFFFF
            nbd = kb * y + ((cq * k) >> 4)
            if nbd > 0x1FFFFFFF:
                nbd = 0x1FFFFFFF
            elif nbd < -0x1FFFFFFF:
                nbd = -0x1FFFFFFF
            d = ((S[_AB] ^ m) - m) - nbd
            S[_AB] = nbd
            if d > 33554432:  # 1 << 25 (see est_twin)
                d = 33554432
            elif d < -33554432:
                d = -33554432
            k = (d >> 10) * c3 + (((d & 1023) * c3) >> 10)
            h += hc if k > hc else (0 - hc if k < 0 - hc else k)
        S[_QPREV] = qb
        S[_VPREV] = v
        S[_APREV] = a
        # hump detector (see est_twin.bins_py)
        k = h
        if k > 20000000:
            k = 20000000
        elif k < -20000000:
            k = -20000000
        hm = (S[_HM] ^ m) - m
        hm += (k - hm) >> 7
        S[_HM] = hm
        hh = ((S[_HH] ^ m) - m) + k - hm
        hh -= hh >> 5
        if hh > _DZ_CLAMP:
            hh = _DZ_CLAMP
        elif hh < 0 - _DZ_CLAMP:
            hh = 0 - _DZ_CLAMP
        S[_HH] = hh
        hs = (S[_HS] ^ m) - m
        hs += (hh >> 6) - (hs >> 6)
        S[_HS] = hs
        hh -= hs
        if hh > _DZ_CLAMP:
            hh = _DZ_CLAMP
        elif hh < 0 - _DZ_CLAMP:
            hh = 0 - _DZ_CLAMP
        ha = (S[_HHABS] ^ m) - m
        th = ha * 3 if ha < 0x15555555 else 0x3FFFFFFF
        bump = (S[_BUMPNM] ^ m) - m
        if th < bump:
            th = bump
        ah = hh if hh >= 0 else 0 - hh
        if ah > th:
            ah = th
        if S[_VALID] and S[_EVOK]:
            ha += (ah - ha) >> 7
        S[_HHABS] = ha
        cur = ((S[_SEGBASE] ^ m) - m) + ((S[_NBINS] ^ m) - m)
        peak = (S[_HPEAK] ^ m) - m
        spd = (S[_SPEED] ^ m) - m
        if cur < (S[_QUIET] ^ m) - m:
            S[_HH] = 0
            S[_HM] = 0
            S[_HS] = 0
            S[_HPEAK] = 0
        elif S[_VALID] and S[_EVOK] and spd <= 15300 and hh > th:
            if hh > peak:
                S[_HPEAK] = hh
                S[_HBINS] = cur
        elif peak and hh < (bump >> 1):
            hb = (S[_HBINS] ^ m) - m
            if cur - hb <= 12 and S[_EVOK] and spd >= (S[_MINSPD] ^ m) - m:
                S[_HUMP] = peak
                S[_HUMPAT] = hb - 6
            S[_HPEAK] = 0
        sl = (h + 12) // 25
        if sl > 5000000:
            sl = 5000000
        elif sl < -5000000:
            sl = -5000000
        if c3:  # (see est_twin.bins_py)
            if not S[_STARTED]:
                S[_SP0] = sl
                S[_SP1] = sl
            k = (S[_SP1] ^ m) - m
            d = sl - 2 * k + ((S[_SP0] ^ m) - m)
            e = (S[_EMQ] ^ m) - m
            S[_SP0] = k
            S[_SP1] = sl
            sl = k - ((d >> 16) * e + (((d & 0xFFFF) * e) >> 16))
            if sl > 5000000:
                sl = 5000000
            elif sl < -5000000:
                sl = -5000000
        if not S[_STARTED]:
            x[0] = sl
            x[2] = sl
            S[_STARTED] = 1
        # the Golden Car step (as gc_step_py)
        x0 = (x[0] ^ m) - m
        x1 = (x[1] ^ m) - m
        x2 = (x[2] ^ m) - m
        x3 = (x[3] ^ m) - m
        h0 = x0 >> 10
        h1 = x1 >> 10
        h2 = x2 >> 10
        h3 = x3 >> 10
        hs = sl >> 10
        l0 = x0 & 1023
        l1 = x1 & 1023
        l2 = x2 & 1023
        l3 = x3 & 1023
        ls = sl & 1023
        j = 0
        while j < 4:
            r = 4 * j
            k0 = (c[r] ^ m) - m
            k1 = (c[r + 1] ^ m) - m
            k2 = (c[r + 2] ^ m) - m
            k3 = (c[r + 3] ^ m) - m
            ks = (c[16 + j] ^ m) - m
            g = ((k0 * h0 + 32) >> 6) + ((k0 * l0 + 32768) >> 16)
            g += ((k1 * h1 + 32) >> 6) + ((k1 * l1 + 32768) >> 16)
            g += ((k2 * h2 + 32) >> 6) + ((k2 * l2 + 32768) >> 16)
            g += ((k3 * h3 + 32) >> 6) + ((k3 * l3 + 32768) >> 16)
            g += ((ks * hs + 32) >> 6) + ((ks * ls + 32768) >> 16)
            if g > 0x1000000:
                g = 0x1000000
            elif g < -0x1000000:
                g = -0x1000000
            x[4 + j] = g
            j += 1
        x[0] = x[4]
        x[1] = x[5]
        x[2] = x[6]
        x[3] = x[7]
        rs = ((x[0] ^ m) - m) - ((x[2] ^ m) - m)
        if rs < 0:
            rs = 0 - rs
        n = ((S[_NBINS] ^ m) - m) + 1
        S[_NBINS] = n
        if S[_VALID]:
            S[_NVALID] = ((S[_NVALID] ^ m) - m) + 1
            lo = ((S[_RSLO] ^ m) - m) + rs
            if lo >= 65536:
                S[_RSHI] = ((S[_RSHI] ^ m) - m) + (lo >> 16)
                lo &= 0xFFFF
            S[_RSLO] = lo
        if n >= (S[_BPS] ^ m) - m or S[_HUMP]:
            S[_BI] = i
            return 1
    S[_BI] = i
    return 0
