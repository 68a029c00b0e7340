"""Plain-Python twin of the estimator's per-sample kernel (rnfw/est_viper.py): the host's golden
model runs it under CPython, and tests hold the viper kernel to it bit for bit. Not imported on
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
_C3 = const(48)  # two-mass inverse on (axle mount): bins carry the boundary velocity
_BIN_UM = const(250000)
_V_CLAMP = const(1 << 24)
_DZ_CLAMP = const(1 << 29)
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
    """Plain twin of est_viper.gc_step: x holds 8 ints (state, then scratch)."""
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


# the names of rnfw.est_viper's, so rnfw.estimator imports either module the same way
kernel = kernel_py
gc_step = gc_step_py
