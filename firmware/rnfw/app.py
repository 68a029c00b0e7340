"""The node's main loop: drain the IMU FIFO, feed NMEA, close segments, send heartbeats.

Timing: every pass drains the FIFO (the IMU times the samples; no timers), so a pass runs every
DRAIN_MS (<= 80 ms keeps a 1 kHz MPU-6050 FIFO far from overflow). The watchdog is fed only while
the node is healthy: the loop runs and the IMU answers (or is being re-detected).
"""

import gc
import time
from array import array

import machine
from micropython import const

from rnfw import board, config, estimator, imu, nmea, packet
from rnfw.uplink import ConsoleUplink, NullUplink
from rnfw.vitals import Vitals

DRAIN_MS = const(50)
_CAP = const(256)  # samples per drain (ICM-42688 FIFO holds 256 packets)
_GPS_STALE_MS = const(2500)
_IMU_RETRY_MS = const(2000)
_IMU_GIVEUP_MS = const(20000)  # IMU dead this long: stop feeding the watchdog (a reset re-inits I2C)


class Node:
    def __init__(self, board_path=board.PATH, config_path=config.PATH, uplink=None):
        self.vitals = v = Vitals()
        self.cfg, st = config.load(config_path)
        v.config_status = st
        v.config_fallback = st != "ok"
        v.heartbeat_s = self.cfg["heartbeat_s"]
        self.bd = board.load(board_path)
        self.i2c = board.make_i2c(self.bd)
        self.uart = board.make_uart(self.bd, self.cfg["gps_baud"])
        self.adc = board.supply_adc(self.bd)
        self.gps = nmea.NmeaParser()
        self.uart_buf = bytearray(256)
        self.samples = array("h", bytearray(2 * 3 * _CAP))
        self.pkt = bytearray(64)
        self.seq = 0
        self.uplink = uplink or (ConsoleUplink() if self.cfg["uplink"] == "console" else NullUplink())
        self.imu = None
        self.seg = None
        self.bus = imu.BusDevice(self.i2c, self.bd["imu"]["addr"])
        self._imu_try_ms = 0
        self._imu_bad_ms = None
        # after a watchdog reset for a dead IMU, do not loop: run on without it, reporting the fault
        self._may_reset = v.reset_reason != "watchdog"
        # distance keeps counting while the IMU is missing: later segments stay on the route
        c = self.cfg
        self.seg = estimator.Estimator(c, c["odr_hz"], max(1, 1000 // c["odr_hz"]), 32768 // c["accel_range_g"])
        self._start_imu()
        self.t0 = time.ticks_ms()
        self._last_ms = self.t0
        self._hb_ms = self.t0
        self._gc_ms = self.t0
        self._fix_ms = None
        self.wdt = None

    # ---- sensors ------------------------------------------------------------------------------
    def _start_imu(self):
        c = self.cfg
        try:
            d = imu.detect(self.i2c, self.bd["imu"]["addr"], self.bus)
            d.configure(c["odr_hz"], c["accel_range_g"], c["aaf_hz"])
        except (imu.ImuError, OSError) as e:
            self.imu = None
            self.vitals.imu_fault = True
            self.imu_error = str(e)
            self._imu_try_ms = time.ticks_ms()
            return False
        self.imu = d
        self.vitals.imu_fault = False
        if self.seg is None or self.seg.odr != d.odr_hz or self.seg.lsb != d.lsb_per_g:
            self.seg = estimator.Estimator(c, d.odr_hz, d.period_ms, d.lsb_per_g)
        return True

    def _read_gps(self):
        u = self.uart
        g = self.gps
        while u.any():
            n = u.readinto(self.uart_buf)
            if not n:
                break
            g.feed(self.uart_buf, n)
        if g.fix_valid and g.fixes:
            self._fix_ms = time.ticks_ms()
        v = self.vitals
        v.nmea_checksum_errors = g.checksum_errors
        v.gps_fix = g.quality if self.gps_ok() else 0
        v.gps_sats = g.sats
        v.gps_hdop_c = g.hdop_c

    def gps_ok(self):
        return self._fix_ms is not None and time.ticks_diff(time.ticks_ms(), self._fix_ms) < _GPS_STALE_MS

    # ---- packets --------------------------------------------------------------------------------
    def _send(self, n):
        self.seq = (self.seq + 1) & 0xFFFF
        if self.uplink.send(self.pkt, n):
            self.vitals.packets_sent += 1
        else:
            self.vitals.packets_queued += 1

    def send_segments(self):
        did = self.cfg["device_id"]
        cl = self.seg.closed
        while cl:
            s = cl.pop(0)
            n = packet.encode_segment(self.pkt, self.seq, did, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8])
            self._send(n)

    def send_events(self):
        did = self.cfg["device_id"]
        ev = self.seg.events
        tod_s = self.gps.tod_ms // 1000 if self.gps.tod_ms >= 0 else 0
        while ev:
            e = ev.pop(0)
            n = packet.encode_event(self.pkt, self.seq, did, e[0], e[1], e[2], e[3], e[4], e[5], tod_s)
            self._send(n)

    def heartbeat(self):
        v = self.vitals
        v.supply_mv = board.supply_mv(self.adc)
        if self.imu:
            v.fifo_overflows = self.imu.overflows
            v.samples_lost = self.imu.samples_lost
        v.i2c_errors = self.bus.i2c_errors
        v.wdt_armed = self.wdt is not None
        up = time.ticks_diff(time.ticks_ms(), self.t0) // 1000
        n = packet.encode_status(self.pkt, self.seq, self.cfg["device_id"], v.status_values(up))
        self._send(n)

    # ---- loop ------------------------------------------------------------------------------------
    def step(self):
        """One pass; returns True while the node is healthy."""
        now = time.ticks_ms()
        self._read_gps()
        imu_ok = True
        g = self.gps
        ok = self.gps_ok()
        if self.imu is None:
            imu_ok = False
            missed = time.ticks_diff(now, self._last_ms) * self.seg.odr // 1000
            self.seg.add(self.samples, 0, g.speed_mmps if ok else 0, ok, g.lat_e7, g.lon_e7, missed, True)
            if self.seg.closed:
                self.send_segments()
            if time.ticks_diff(now, self._imu_try_ms) >= _IMU_RETRY_MS:
                imu_ok = self._start_imu()
        else:
            n = self.imu.read(self.samples)
            lost = self.imu.take_overflow()
            if n == 0 and not self.imu.healthy:  # bus down: time passes without samples
                lost += time.ticks_diff(now, self._last_ms) * self.seg.odr // 1000
            self.seg.add(self.samples, n, g.speed_mmps if ok else 0, ok, g.lat_e7, g.lon_e7, lost,
                         not self.imu.healthy)
            if self.seg.closed:
                self.send_segments()
            if self.seg.events:
                self.send_events()
            imu_ok = self.imu.healthy and self.bus.consecutive_errors == 0
            self.vitals.imu_fault = not imu_ok
        if imu_ok:
            self._imu_bad_ms = None
        elif self._imu_bad_ms is None:
            self._imu_bad_ms = now
        healthy = not (self._may_reset and self._imu_bad_ms is not None
                       and time.ticks_diff(now, self._imu_bad_ms) > _IMU_GIVEUP_MS)
        self._last_ms = now
        if time.ticks_diff(now, self._hb_ms) >= self.cfg["heartbeat_s"] * 1000:
            self._hb_ms = time.ticks_add(self._hb_ms, self.cfg["heartbeat_s"] * 1000)
            self.heartbeat()
        if time.ticks_diff(now, self._gc_ms) >= 1000:
            # collect once a second: short, predictable pauses (~2 ms on an ESP32), and the free
            # heap measured right after is the true headroom (live data only)
            self._gc_ms = now
            gc.collect()
            self.vitals.update_heap()
        return healthy

    def run(self, duration_s=0):
        """Run forever (or for duration_s of board time, for offline runs)."""
        self.wdt = machine.WDT(timeout=self.cfg["wdt_timeout_ms"])
        self.vitals.wdt_armed = True
        self.heartbeat()  # boot heartbeat: fleet tools see the reset reason at once
        gc.collect()
        end = time.ticks_add(self.t0, duration_s * 1000)
        while True:
            t = time.ticks_ms()
            if duration_s and time.ticks_diff(t, end) >= 0:
                break
            if self.step():
                self.wdt.feed()
            spent = time.ticks_diff(time.ticks_ms(), t)
            if spent < DRAIN_MS:
                time.sleep_ms(DRAIN_MS - spent)


def main():
    Node().run()
