"""Plain-Python twins of rnfw.selfcal's viper functions (host only: CPython runs these, and tests
hold the viper code on MicroPython to them bit for bit). Integer arithmetic within 32 bits."""


def proj(b, n, x, T, u):
    """Vertical acceleration of samples 0..n-1 of batch b (x, y, z counts) into window x from T[0]:
    the projection on the unit gravity u (Q12: u[3..5], |g| u[6], counts), averaged over 2^T[3]
    samples (decimation; T[1] counts them, T[2] sums them), from sample T[4] of the batch. A window
    that fills mid-batch stops there and leaves the next sample's index in T[4] (0 when the batch is
    used up), so the next window goes on from it without a gap. Returns the window's fill T[0]."""
    ux = u[3]
    uy = u[4]
    uz = u[5]
    gm = u[6]
    d = 1 << T[3]
    sh = T[3]
    pos = T[0]
    sub = T[1]
    acc = T[2]
    i = T[4]  # where a window that filled mid-batch left the batch (0: from its start)
    while i < n and pos < 512:
        acc += ((b[3 * i] * ux + b[3 * i + 1] * uy + b[3 * i + 2] * uz) >> 12) - gm
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
    T[4] = i if i < n else 0
    return pos


def move(d, do, s, so, n):
    """d[do:do + n] = s[so:so + n], element by element (no slice objects: nothing allocated)."""
    for i in range(n):
        d[do + i] = s[so + i]


def prep(x, h, y):
    """Window x (512) into y (int16; x stays as it is): mean removed, clamped to +-16383,
    Hann-weighted (h: the Q14 cosine table plus 16384). Returns 1 when an impact stands out (peak
    > 7.5 mean absolute deviation, ~6 sigma), else 0."""
    s = 0
    for i in range(512):
        s += x[i]
    m = s >> 9
    d = 0
    pk = 0
    for i in range(512):
        v = x[i] - m
        if v > 16383:
            v = 16383
        elif v < -16383:
            v = -16383
        a = v if v >= 0 else -v
        d += a
        if a > pk:
            pk = a
        y[i] = (v * (32768 - h[i])) >> 15
    return 1 if pk * 1024 > 15 * d else 0


def dft(x, h, k, o, j):
    """DFT bin k of the weighted window x (int16, from prep): real part into o[2j], imaginary
    into o[2j+1] (products >> 8)."""
    re = 0
    im = 0
    p = 0
    for i in range(512):
        v = x[i]
        re += (v * (h[p] - 16384)) >> 8
        im += (v * (h[(p + 384) & 511] - 16384)) >> 8
        p = (p + k) & 511
    o[2 * j] = re
    o[2 * j + 1] = im
