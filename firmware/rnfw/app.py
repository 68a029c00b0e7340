"""The node's main loop: drain the IMU FIFO, feed NMEA, send segments/events and heartbeats.

Timing: every pass drains the FIFO (the IMU times the samples; no timers), so a pass runs every
_DRAIN_MS (<= 80 ms keeps a 1 kHz MPU-6050 FIFO far from overflow). The watchdog is fed only while
the node is healthy: the loop runs and the IMU answers (or is being re-detected, for up to
_IMU_GIVEUP_MS; after a watchdog reset for a dead IMU the node runs on without it, reporting it).
The measuring itself is rnfw.pipeline, shared with offline runs.
"""

import gc
import json
import time
from array import array

import machine
from micropython import const

import rnfw
from rnfw import imu, packet
from rnfw.pipeline import Pipeline
from rnfw.console import Console
from rnfw.uplink import ConsoleUplink, NullUplink
from rnfw.vitals import Vitals

_DRAIN_MS = const(50)
_MS_MASK = const(0x3FFFFFFF)  # the millisecond clock wraps at 2^30 (rnfw.pipeline's)
_CAP = const(64)  # samples per drain: more than 50 ms holds at 1 kHz; any rest waits in the FIFO
_IMU_RETRY_MS = const(2000)
_IMU_GIVEUP_MS = const(20000)
_HALF = const(0x20000000)
_BOOT_WDT_MS = const(30000)  # while the node starts (seconds on an ESP32): generous, but never for ever
_SAFE_RETRY_MS = const(600000)  # safe mode tries a normal boot again after 10 min (a passing fault)
# ESP32 ADC1 at 11 dB: readings outside ~150-2450 mV are not trustworthy (GUIDE.md section 7)
_ADC_LO_UV = const(150000)
_ADC_HI_UV = const(2450000)


class Node:
    """One roadnode: the board's buses and sensors, the measuring pipeline, the queue and uplink and
    the console protocol, stepped by main.py's loop; in safe mode only the console and the watchdog."""
    def __init__(self, board_path="/board.json", config_path="/config.json", uplink=None, vitals_path=None,
                 boot_error=None, vitals=None):
        """``boot_error`` (a packet.BOOT_ERRORS index) starts the node in safe mode: the normal
        start failed, so no board file, buses or IMU are touched; it keeps the watchdog fed and
        answers the console protocol, so `roadnode flash` / `config` can repair it. ``vitals``: the
        record of this boot when a first start failed (a reset is classified once per boot)."""
        self.vitals = v = vitals or (Vitals(vitals_path) if vitals_path else Vitals())
        self.safe = boot_error is not None
        self.boot_text = None  # safe mode: what failed (shown by `ping`)
        if self.safe:
            v.boot_error = boot_error
            v.safe_mode = True
        from rnfw import board, config

        # a config sent by a tool is applied here, while the heap holds no pipeline yet
        self.config_path = config_path
        # safe mode too: a config sent to repair the node is applied; a replay is not started
        self.config_error = config.apply_pending(config_path)
        self.cfg, st = config.load(config_path)
        replay = None if self.safe else self._replay_request(config)
        del config
        rnfw.unload("config")  # ~6 KB of code the node needs again only at the next boot
        c = self.cfg
        v.config_status = st
        v.config_fallback = st != "ok"
        v.heartbeat_s = c["heartbeat_s"]
        if c["uplink"] == "console":
            board.quiet_idf_log()
        self.i2c = self.uart = self.adc = None
        self.imu_addr = 0
        self.board_name = ""
        if not self.safe:
            bd = board.load(board_path)  # not kept: the parsed JSON would hold ~2 KB of heap
            self.i2c = board.make_i2c(bd)
            self.uart = board.make_uart(bd, c["gps_baud"])
            self.adc = board.supply_adc(bd)
            self.imu_addr = bd["imu"]["addr"]
            self.board_name = bd.get("name", "")
            del bd
        del board
        rnfw.unload("board")  # boot-only code
        self.uart_buf = bytearray(256)
        self.samples = array("h", bytearray(2 * 3 * _CAP))
        self.pkt = bytearray(64)
        self.seq = 0
        self.bus = imu.BusDevice(self.i2c, self.imu_addr)
        self.imu = None
        # distance keeps counting while the IMU is missing, so the pipeline exists from the start
        self.pipe = Pipeline(c, c["odr_hz"], max(1, 1000 // c["odr_hz"]), 32768 // c["accel_range_g"],
                             config_path[: config_path.rfind("/")] + "/selfcal.json")
        self._imu_try_ms = 0
        self._imu_bad_ms = -1
        self._empty = 0
        self._may_reset = v.reset_reason != "watchdog" and not self.safe
        # time base: milliseconds since the IMU's first sample (ticks wrap every ~18 min; this does
        # not). Passes run on a fixed 50 ms grid of that base, so the batches the pipeline sees are
        # the same whatever the loop's own jitter: offline runs (rnfw.pipeline.run_batches) cut the
        # same batches from a recording and compute the same bits.
        # self.ms wraps at 2^30 (12.4 days; beyond it an ESP32 int is a heap big int): every
        # difference of it is taken modulo 2^30 (_since); uptime counts on in its own seconds
        self.ms = 0
        self.up_s = 0
        self._up_ms = 0
        self._us = 0  # sub-millisecond remainder
        self._last = time.ticks_us()
        self._start_imu()
        if self.imu:
            d = self.imu
            self._last = time.ticks_add(d.t_fifo_us, d.period_ms * 1000)  # sample 0 is t = 0
        self._hb_ms = 0
        self._gc_ms = 0
        self._ign_off = False
        self.wdt = None
        self.console = Console(self)
        if replay:  # measure from the console: a pipeline with the replay's settings instead
            self.pipe = None
            gc.collect()
            self.pipe = Pipeline(replay[0], replay[1], replay[2], replay[3])
            self.console.replay = True
        # last: the measuring's buffers are placed first; the uplink's (the MQTT client, the queue's
        # recovery) take what is left after a collection
        if uplink is None:
            if c["uplink"] == "mqtt" and not self.safe and not replay:
                gc.collect()
                from rnfw.mqtt_uplink import MqttUplink

                # the queue beside the config (/q on the node's flash)
                uplink = MqttUplink(c, config_path[: config_path.rfind("/")] + "/q")
            else:  # (safe mode with mqtt configured: heartbeats on the console, where a technician looks)
                uplink = NullUplink() if c["uplink"] == "none" else ConsoleUplink()
        self.uplink = uplink

    def _replay_request(self, config):
        """A replay asked for before the restart (rnfw.console): (cfg, odr, period, lsb), validated
        here at boot while the heap holds no pipeline; refused -> reason in config_error."""
        p = self.config_path + ".replay"
        try:
            with open(p) as f:
                a = json.load(f)
        except OSError:
            return None
        except ValueError:
            a = None
        import os

        os.remove(p)  # once only: a later reset measures live again
        try:
            cfg = config.validate(a["settings"])
            cfg["device_id"] = self.cfg["device_id"]
            return cfg, int(a["odr_hz"]), int(a["period_ms"]), int(a["lsb_per_g"])
        except (ValueError, TypeError, KeyError) as e:  # ConfigError is a ValueError
            self.config_error = "replay: %s" % e
            return None

    def _start_imu(self):
        c = self.cfg
        if self.safe:
            self.vitals.imu_fault = True
            self.imu_error = "safe mode"
            return False
        try:
            d = imu.detect(self.i2c, self.imu_addr, self.bus)
            d.configure(c["odr_hz"], c["accel_range_g"], c["aaf_hz"])
        except (imu.ImuError, OSError) as e:
            self.imu = None
            self.vitals.imu_fault = True
            self.imu_error = str(e)
            self._imu_try_ms = self.ms
            return False
        old = self.imu
        if old is not None:  # a re-start keeps the counts: the vitals are since boot
            d.overflows += old.overflows
            d.samples_lost += old.samples_lost
        self.imu = d
        self.vitals.imu_fault = False
        self.pipe.reconfigure(d.odr_hz, d.period_ms, d.lsb_per_g)
        return True

    # ---- packets --------------------------------------------------------------------------------
    def _send(self, n):
        self.seq = (self.seq + 1) & 0xFFFF
        if self.uplink.send(self.pkt, n):
            self.vitals.packets_sent += 1
        else:
            self.vitals.packets_queued += 1

    def send_output(self):
        """Encode the segments and events the estimator closed since the last pass and send them, in order."""
        did = self.cfg["device_id"]
        est = self.pipe.est
        q = est.closed
        b = q.buf
        while q.n:
            o = q.first()
            n = packet.encode_segment(self.pkt, self.seq, did, b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4],
                                      b[o + 5], b[o + 6], b[o + 7], b[o + 8])
            q.pop()
            self._send(n)
        q = est.events
        b = q.buf
        tod = self.pipe.gps.tod_ms
        while q.n:
            o = q.first()
            n = packet.encode_event(self.pkt, self.seq, did, b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4],
                                    b[o + 5], tod // 1000 if tod >= 0 else 0)
            q.pop()
            self._send(n)

    def status_packet(self):
        """The vitals now, encoded in self.pkt; returns the length."""
        v = self.vitals
        g = self.pipe.gps
        # supply: the ADC pin voltage times the divider. A reading outside what the ESP32's ADC1
        # measures at 11 dB (saturated near full scale, ~0 with a broken divider) says nothing
        # about the supply: 0 (unknown) and the supply_at_rail flag
        a = self.adc  # (ADC, divider) from board.supply_adc, or None
        uv = a[0].read_uv() if a else -1
        v.supply_rail = a is not None and (uv < _ADC_LO_UV or uv > _ADC_HI_UV)
        v.supply_mv = 0 if uv < 0 or v.supply_rail else (int(uv * a[1]) + 500) // 1000
        if self.imu:
            v.fifo_overflows = self.imu.overflows
            v.samples_lost = self.imu.samples_lost
        v.i2c_errors = self.bus.i2c_errors
        v.nmea_checksum_errors = g.checksum_errors + g.malformed  # NMEA errors: checksum or malformed
        v.gps_fix = g.quality if self.pipe.gps_ok() else 0
        v.gps_sats = g.sats
        v.gps_hdop_c = g.hdop_c
        v.wdt_armed = self.wdt is not None
        sc = self.pipe.sc  # self-calibration's fields (rnfw.selfcal; all 0: off)
        return packet.encode_status(self.pkt, self.seq, self.cfg["device_id"], v.status_values(
            self.up_s, self.uplink.stats()) + (sc.values() if sc else (0, 0, 0, 0, 0, 0)))

    def heartbeat(self):
        """Send the status packet (the vitals now) through the uplink."""
        self._send(self.status_packet())

    # ---- loop ------------------------------------------------------------------------------------
    def _clock(self):
        t = time.ticks_us()
        e = time.ticks_diff(t, self._last) + self._us
        self._last = t
        e_ms = e // 1000
        self.ms = _add(self.ms, e_ms)
        self._us = e % 1000
        u = self._up_ms + e_ms
        if u >= 1000:
            self.up_s += u // 1000
            u %= 1000
        self._up_ms = u
        return self.ms

    def step(self):
        """One pass; returns True while the node is healthy."""
        prev = self.ms
        now = self._clock()
        el = (now - prev) & _MS_MASK
        p = self.pipe
        if self.console.replay:  # the console is the sensor source; the rest of the pass as usual
            self._tick(now)
            return True
        if self.safe:  # nothing to measure: answer the console, send heartbeats, retry later
            self._tick(now)
            if now >= _SAFE_RETRY_MS:
                from rnfw import vitals

                vitals.mark_deliberate()
                machine.reset()
            return True
        cap = self.console.cap  # a capture (rnfw.capture) gets what the pipeline gets
        u = self.uart
        while u.any():
            k = u.readinto(self.uart_buf)
            if not k:
                break
            p.feed_gps(self.uart_buf, k, now)
            if cap is not None:
                cap.gps(self.uart_buf, k, now)
        odr = p.est.odr
        if self.imu is None:
            imu_ok = False
            p.feed_imu(self.samples, 0, now, el * odr // 1000, True)  # travel on, no data
            if (now - self._imu_try_ms) & _MS_MASK >= _IMU_RETRY_MS:
                imu_ok = self._start_imu()
        else:
            d = self.imu
            n = d.read(self.samples)
            lost = d.take_overflow()
            if n == 0 and not d.healthy:  # bus down: time passes without samples
                lost += el * odr // 1000
            imu_ok = d.healthy and self.bus.consecutive_errors == 0
            self._empty = self._empty + 1 if n == 0 and imu_ok else 0
            if self._empty >= 10:  # 500 ms without a sample from a part that answers: FIFO stalled
                imu_ok = False
                lost += self._empty * _DRAIN_MS * odr // 1000
                self._empty = 0
                d.overflows += 1  # counted with the overflows: both cost samples and a FIFO reset
                d.samples_lost += lost
                self._start_imu()
            p.feed_imu(self.samples, n, now, lost, not imu_ok)
            if cap is not None:
                cap.imu(self.samples, n, now, lost)
        self.vitals.imu_fault = not imu_ok
        if p.est.closed.n or p.est.events.n:
            self.send_output()
        if p.drive_ended:  # the end of a drive reaches the flash (and the collector) now
            p.drive_ended = False
            self.uplink.flush()
        if imu_ok:
            self._imu_bad_ms = -1
        elif self._imu_bad_ms < 0:
            self._imu_bad_ms = now
        healthy = not (self._may_reset and self._imu_bad_ms >= 0 and (now - self._imu_bad_ms) & _MS_MASK > _IMU_GIVEUP_MS)
        self._tick(now)
        return healthy

    def _tick(self, now):
        """Heartbeat and housekeeping, due in every pass whatever the sensor source."""
        if (now - self._hb_ms) & _MS_MASK >= self.cfg["heartbeat_s"] * 1000:
            self._hb_ms = _add(self._hb_ms, self.cfg["heartbeat_s"] * 1000)
            self.heartbeat()
        if (now - self._gc_ms) & _MS_MASK >= 1000:
            # collect once a second: short, predictable pauses (~2 ms on an ESP32), and the free
            # heap measured right after is the true headroom (live data only)
            self._gc_ms = now
            gc.collect()
            self.vitals.update_heap()
            # a supply below ignition_off_mv (the alternator stopped: the engine is off) ends the
            # drive at once, without waiting for stop_close_s
            mv = self.cfg["ignition_off_mv"]
            a = self.adc
            if mv and a is not None and self.pipe is not None and not self.console.replay:
                uv = a[0].read_uv()
                off = _ADC_LO_UV <= uv <= _ADC_HI_UV and uv * a[1] < mv * 1000
                was, self._ign_off = self._ign_off, off
                if off and not was and self.pipe.end_drive():  # on the change only: once per stop
                    self.send_output()
                    self.pipe.drive_ended = False
                    self.uplink.flush()
        if self.pipe is not None:  # (a TLS uplink connects while the vehicle stands: rnfw.mqtt_uplink)
            self.uplink.moving = self.pipe._still_ms == -1
        self.uplink.poll(now)

    def run(self, duration_s=0, until=None):
        """Run forever (or for duration_s of board time, or until ``until()`` is true: offline runs)."""
        self.wdt = machine.WDT(timeout=self.cfg["wdt_timeout_ms"])
        self.vitals.wdt_armed = True
        self.heartbeat()  # boot heartbeat: fleet tools see the reset reason at once
        gc.collect()
        # the start of the 50 ms grid slot after now (the wrap shortens the last slot)
        nxt = self._clock()
        nxt = 0 if nxt > _MS_MASK - _DRAIN_MS else nxt - nxt % _DRAIN_MS + _DRAIN_MS
        while not duration_s or self.up_s < duration_s:
            if until is not None and until():
                break
            wait = _ahead(nxt, self._clock()) * 1000 - self._us
            if wait > 0:
                self.console.wait(wait)  # answers requests while it waits
            nxt = _add(nxt, _DRAIN_MS)
            if self.step():
                self.wdt.feed()
            while _ahead(nxt, self.ms) <= 0:  # a pass overran: skip to the next slot of the grid
                nxt = _add(nxt, _DRAIN_MS)


# Arithmetic on the 2^30 ms clock that never leaves the ESP32's 31-bit small ints (no big int,
# no allocation, even at the wrap).
def _add(a, d):
    """a + d modulo 2^30 (0 <= a <= _MS_MASK, 0 <= d < 2^29)."""
    if a > _MS_MASK - d:
        return a - (_MS_MASK - d) - 1
    return a + d


def _ahead(a, b):
    """a - b in ms on the 2^30 clock, signed (|a - b| < 2^29)."""
    d = a - b
    if d >= _HALF:
        return d - _MS_MASK - 1
    if d < -_HALF:
        return d + _MS_MASK + 1
    return d


def main():
    """Start the node; if that fails (missing or broken /board.json, a bus that cannot be built,
    MemoryError, ...) run it in safe mode instead of stopping at the REPL (rnfw.rescue)."""
    # armed before anything touches a bus: a part that hangs the I2C bus while the node starts would
    # otherwise hold it for good (run() sets the configured timeout once the loop starts)
    machine.WDT(timeout=_BOOT_WDT_MS)
    v = Vitals()
    try:
        node = Node(vitals=v)
    except Exception as e:
        from rnfw import rescue

        node = rescue.safe_node(Node, v, e)
    node.run()


def at_repl():
    """After Ctrl-C: the ESP32's watchdog cannot be stopped once armed, so keep feeding it from a
    soft timer while a technician or a tool (mpremote, roadnode flash) uses the REPL."""
    try:
        w = machine.WDT(timeout=60000)
        machine.Timer(0).init(period=5000, callback=lambda t: w.feed())
    except Exception:
        pass
    print("roadnode: stopped; at the REPL (Ctrl-D restarts the node)")
