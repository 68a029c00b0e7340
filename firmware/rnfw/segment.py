"""Distance along the trip and per-segment vibration statistics (integer arithmetic).

Distance integrates GPS speed between fixes, per IMU sample. Vertical acceleration is the
projection of the gravity-removed sample onto the slowly tracked gravity direction, so the node
needs no mounting calibration. Segments close every ``segment_length_m`` with RMS and peak of the
vertical acceleration, mean speed and quality flags. (IRI comes from the estimator, rnfw.estimator;
until a segment has one it reports IRI_NA — never a made-up number.)
"""

from micropython import const

from rnfw import packet

_GSHIFT = const(9)  # gravity tracker: time constant 512 samples (2.6 s at 200 Hz)
_BLK = const(64)
_GPS_HOLD_MS = const(3000)  # keep the last speed this long through a GPS gap (flagged)


def isqrt(n):
    if n <= 0:
        return 0
    x = n
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            return x
        x = y


class Segmenter:
    def __init__(self, segment_length_m, odr_hz, lsb_per_g, min_speed_kmh=15):
        self.seg_mm = segment_length_m * 1000
        self.seg_len_m = segment_length_m
        self.odr = odr_hz
        self.lsb = lsb_per_g
        self.min_speed_mmps = min_speed_kmh * 1000 * 10 // 36
        self.dist_mm = 0
        self._rem = 0
        self.index = 0
        self.gx = self.gy = 0
        self.gz = lsb_per_g << 8  # Q8 gravity estimate, starts "z up"
        self._g_init = False
        self.closed = []  # finished segments waiting to be sent: tuples
        self._reset_stats()

    def _reset_stats(self):
        self.n = 0
        self.blk = 0
        self.tot = 0
        self.peak = 0
        self.flags = 0
        self.t_ms = 0
        self.lat_e7 = 0
        self.lon_e7 = 0
        self.has_pos = False

    def add(self, buf, n, speed_mmps, gps_ok, lat_e7, lon_e7, lost, imu_fault=False):
        """Process n samples (x,y,z interleaved counts) driven at ``speed_mmps``; ``lost`` samples'
        worth of time passed without data (FIFO overflow, or the IMU not answering)."""
        if n <= 0 and lost <= 0:
            return
        if imu_fault:
            self.flags |= packet.F_IMU_FAULT
        if not self.has_pos and gps_ok:
            self.lat_e7 = lat_e7
            self.lon_e7 = lon_e7
            self.has_pos = True
        if lost and not imu_fault:
            self.flags |= packet.F_FIFO_OVERFLOW
        if not gps_ok:
            self.flags |= packet.F_GPS_LOST
        if speed_mmps < self.min_speed_mmps:
            self.flags |= packet.F_BELOW_MIN_SPEED
        if speed_mmps < 300:
            self.flags |= packet.F_STOPPED
        if not self._g_init and n > 0:
            self.gx, self.gy, self.gz = buf[0] << 8, buf[1] << 8, buf[2] << 8
            self._g_init = True
        # unit gravity vector in Q12, once per batch (the direction changes slowly)
        gx, gy, gz = self.gx >> 8, self.gy >> 8, self.gz >> 8
        gm = isqrt(gx * gx + gy * gy + gz * gz) or 1
        ux = (gx << 12) // gm
        uy = (gy << 12) // gm
        uz = (gz << 12) // gm
        lsb = self.lsb
        # locals for the loop (4-name tuple assignments would allocate a tuple)
        blk = self.blk
        tot = self.tot
        cnt = self.n
        peak = self.peak
        j = 0
        for _ in range(n):
            x, y, z = buf[j], buf[j + 1], buf[j + 2]
            j += 3
            if x >= 32767 or x <= -32768 or y >= 32767 or y <= -32768 or z >= 32767 or z <= -32768:
                self.flags |= packet.F_CLIPPING
            self.gx += ((x << 8) - self.gx) >> _GSHIFT
            self.gy += ((y << 8) - self.gy) >> _GSHIFT
            self.gz += ((z << 8) - self.gz) >> _GSHIFT
            v = ((x * ux + y * uy + z * uz) >> 12) - gm  # vertical, counts
            cg = v * 100 // lsb  # centi-g
            if cg > 3000:
                cg = 3000
            elif cg < -3000:
                cg = -3000
            a = cg if cg >= 0 else -cg
            if a > peak:
                peak = a
            blk += cg * cg
            cnt += 1
            if cnt % _BLK == 0:
                tot += blk // _BLK
                blk = 0
                if tot > 0x3FFFFFFF:
                    tot = 0x3FFFFFFF
        self.blk = blk
        self.tot = tot
        self.n = cnt
        self.peak = peak
        # distance: speed x samples / ODR, remainder carried (no drift)
        step = speed_mmps * (n + lost) + self._rem
        self.dist_mm += step // self.odr
        self._rem = step % self.odr
        self.t_ms += (n + lost) * 1000 // self.odr
        while self.dist_mm >= (self.index + 1) * self.seg_mm:
            self._close(lat_e7, lon_e7, gps_ok)

    def _close(self, lat_e7, lon_e7, gps_ok):
        ms = (self.tot * _BLK + self.blk) // self.n if self.n else 0
        rms_cg = isqrt(ms)
        speed_kmh = self.seg_len_m * 3600 // self.t_ms if self.t_ms else 0
        self.closed.append((self.index, self.seg_len_m, self.lat_e7, self.lon_e7, packet.IRI_NA,
                            rms_cg, (self.peak + 5) // 10, speed_kmh, self.flags))
        self.index += 1
        self._reset_stats()
        if gps_ok:
            self.lat_e7, self.lon_e7, self.has_pos = lat_e7, lon_e7, True
