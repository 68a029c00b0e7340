"""The node's measuring pipeline, hardware-free: NMEA bytes and IMU sample batches in, segments
and events out. The main loop (app.py) feeds it from the I2C/UART drivers; offline runs
(`roadnode estimate`, the host golden model, replay) feed it recorded streams through the same
code, so they all compute the same thing."""

from micropython import const

from rnfw import estimator, nmea

_GPS_STALE_MS = const(2500)
_STILL_MMPS = const(300)  # below this the vehicle stands (the estimator's `stopped` flag)
_MS_MASK = const(0x3FFFFFFF)  # the main loop's millisecond clock wraps at 2^30 (12.4 days): small ints only


class Pipeline:
    """GPS parser + estimator + end-of-drive logic, fed by the main loop or a recording."""

    def __init__(self, cfg, odr_hz, period_ms, lsb_per_g, path=None):
        """``path``: the self-calibration's file (rnfw.selfcal), None to keep nothing."""
        self.cfg = cfg
        self.gps = nmea.NmeaParser()
        self.est = estimator.Estimator(cfg, odr_hz, period_ms, lsb_per_g)
        # self-calibration (axle mount, self_cal on): loaded only then, its settings in force at once
        self.sc = None
        if cfg.get("self_cal") == "on" and cfg["mount"] == "axle":
            from rnfw.selfcal import SelfCal

            self.sc = SelfCal(odr_hz, path)
            if self.sc.cur:
                self.est.tune(self.sc.cur)
        elif path:  # off: the identified vehicle is forgotten (a node moved to another starts afresh)
            import os

            try:
                os.remove(path)
            except OSError:
                pass
        self._fix_ms = -1
        self.now_ms = 0
        # end of a drive: standing this long closes the open segment (here, not in the main loop,
        # so offline runs and replays close the same segments as the node)
        self.stop_ms = cfg.get("stop_close_s", 120) * 1000
        self._still_ms = -1  # when the vehicle stopped moving; -1 moving; -2 this stop has ended a drive
        self.drive_ended = False  # a segment was closed for the end of a drive (the loop flushes)

    def reconfigure(self, odr_hz, period_ms, lsb_per_g):
        """The IMU came up with other settings: start a new estimator (segments restart)."""
        e = self.est
        if e.odr != odr_hz or e.lsb != lsb_per_g or e.period_ms != period_ms:
            self.est = estimator.Estimator(self.cfg, odr_hz, period_ms, lsb_per_g)
            sc = self.sc
            if sc:
                if e.odr != odr_hz:  # its frequencies move: learn again (from its file's settings)
                    self.sc = None
                    self.sc = sc = type(sc)(odr_hz, sc.path)
                if sc.cur:
                    self.est.tune(sc.cur)

    def gps_ok(self):
        """A fix younger than _GPS_STALE_MS; ages are taken modulo 2^30 like time.ticks_diff, and
        a stale fix is forgotten so it cannot look fresh again after the clock wraps."""
        if self._fix_ms < 0:
            return False
        if (self.now_ms - self._fix_ms) & _MS_MASK < _GPS_STALE_MS:
            return True
        self._fix_ms = -1
        return False

    def feed_gps(self, data, n, now_ms):
        """n NMEA bytes from data received by now_ms (ms clock, wraps at 2^30)."""
        self.now_ms = now_ms
        g = self.gps
        g.feed(data, n)
        if g.fix_valid and g.fixes:
            self._fix_ms = now_ms

    def feed_imu(self, samples, n, now_ms, lost=0, imu_fault=False):
        """One IMU batch at now_ms, measured at the speed of a fresh fix (0 without); a long stop
        ends the drive."""
        self.now_ms = now_ms
        g = self.gps
        ok = self.gps_ok()
        v = g.speed_mmps if ok else 0
        self.est.add(samples, n, v, ok, g.lat_e7, g.lon_e7, lost, imu_fault)
        sc = self.sc
        if sc:
            sc.add(samples, n, self.est.S, v, ok and not lost and not imu_fault)
            sc.step(self.est)
        if v >= _STILL_MMPS:
            self._still_ms = -1
        elif self._still_ms == -1:
            self._still_ms = now_ms
        elif self._still_ms >= 0 and (now_ms - self._still_ms) & _MS_MASK >= self.stop_ms:
            # once per stop: the creep of the next start (bins below the stop speed) is not a drive
            self._still_ms = -2
            self.end_drive()

    def end_drive(self):
        """Close the open segment (flagged partial); True when there was one to close."""
        if self.est.close_partial():
            self.drive_ended = True
            return True
        return False


def run_batches(pipe, imu, gps, samples, buf, period_ms=50):
    """Drive ``pipe`` from recorded streams, one batch per ``period_ms`` of stream time (the main
    loop's drain), as the main loop would. imu.read_until(t_ms, samples) -> n samples with time
    <= t; gps.read_until(t_ms, buf) -> n NMEA bytes arrived by t (call again while it returns a
    full buffer); a negative n ends the run. A generator: it yields the stream time after each
    batch so the caller can collect the pipeline's output."""
    t = 0
    while True:
        t += period_ms
        while True:
            k = gps.read_until(t, buf)
            if k:
                pipe.feed_gps(buf, k, t)
            if k < len(buf):
                break
        n = imu.read_until(t, samples)
        if n < 0:
            return t
        pipe.feed_imu(samples, n, t)
        yield t
