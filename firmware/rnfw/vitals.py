"""Device vitals: counters for the status heartbeat, and the node's own reset record.

machine.reset_cause() on the ESP32 reports a brownout as PWRON_RESET and a panic as HARD_RESET,
so the node keeps its own record in RTC memory (survives resets, not a real power loss):

| reset_cause()  | RTC record        | reason       | unexpected |
| PWRON_RESET    | absent            | power_on     | no  (ignition on) |
| PWRON_RESET    | present           | brownout     | yes (cranking dip: RTC memory survived) |
| HARD_RESET     | deliberate marker | deliberate   | no  (commanded reset) |
| HARD_RESET     | no marker         | crash        | yes (panic) |
| WDT_RESET      | any               | watchdog     | yes |
| SOFT_RESET     | any               | soft         | no  (tool soft reset) |
| DEEPSLEEP_RESET| any               | deepsleep    | no  |

The unexpected-reboot count lives in flash (/vitals.json), written only when one happens.
"""

import gc
import json

import machine

from rnfw import packet
from rnfw.version import VERSION

_MAGIC = b"RN1"


def _rtc_mem():
    try:
        return machine.RTC().memory()
    except Exception:
        return b""


def _rtc_write(deliberate):
    try:
        machine.RTC().memory(_MAGIC + (b"\x01" if deliberate else b"\x00"))
    except Exception:
        pass


def classify(cause, rec):
    """(reason, unexpected) from reset_cause() and the RTC record bytes."""
    have = rec[:3] == _MAGIC
    deliberate = have and len(rec) > 3 and rec[3] == 1
    if cause == machine.WDT_RESET:
        return "watchdog", True
    if cause == machine.SOFT_RESET:
        return "soft", False
    if cause == machine.DEEPSLEEP_RESET:
        return "deepsleep", False
    if cause == machine.HARD_RESET:
        return ("deliberate", False) if deliberate else ("crash", True)
    # PWRON_RESET (and anything unknown): a live record means power never really went away
    if have:
        return ("deliberate", False) if deliberate else ("brownout", True)
    return "power_on", False


def mark_deliberate():
    """Call right before a commanded machine.reset() so the next boot is not counted as a crash."""
    _rtc_write(True)


class Vitals:
    """The counters the status heartbeat reports, and this boot's reset reason; the count of
    unexpected reboots persists in count_path (written only when one happens)."""

    def __init__(self, count_path="/vitals.json"):
        self.count_path = count_path
        rec = _rtc_mem()
        self.reset_reason, unexpected = classify(machine.reset_cause(), rec)
        # why the previous boot could not run, if it said so (note_boot_error); reported once
        self.boot_error = rec[4] if rec[:3] == _MAGIC and len(rec) > 4 else 0
        _rtc_write(False)
        self.unexpected_reboots = self._load_count()
        if unexpected:
            self.unexpected_reboots += 1
            self._save_count()
        self.config_fallback = False
        self.config_status = "ok"
        self.fifo_overflows = 0
        self.samples_lost = 0
        self.i2c_errors = 0
        self.imu_fault = False
        self.nmea_checksum_errors = 0
        self.gps_fix = 0
        self.gps_sats = 0
        self.gps_hdop_c = 9999
        self.packets_sent = 0
        self.packets_queued = 0
        self.supply_mv = 0
        self.heartbeat_s = 60
        self.wdt_armed = False
        self.console_bad_frames = 0  # request frames dropped (CRC, cut short, not base64)
        self.supply_rail = False  # supply ADC at a rail: supply_mv unknown (0)
        self.safe_mode = False  # started in safe mode after a boot failure (boot_error says why)
        gc.collect()
        self.free_heap = gc.mem_free()
        self.min_free_heap = self.free_heap

    def _load_count(self):
        try:
            with open(self.count_path) as f:
                return int(json.load(f).get("unexpected_reboots", 0))
        except Exception:
            return 0

    def _save_count(self):
        try:
            import rnfw

            rnfw.save(self.count_path, '{"unexpected_reboots": %d}' % self.unexpected_reboots)
        except Exception:
            pass

    def update_heap(self):
        """Cheap enough for every loop pass (no collection)."""
        f = gc.mem_free()
        self.free_heap = f
        if f < self.min_free_heap:
            self.min_free_heap = f

    def status_values(self, uptime_s, link):
        """``link``: the uplink's (queue_depth, queue_dropped, link byte, reconnects, last_ack_s,
        queue_torn), from its stats()."""
        flags = (1 if self.config_fallback else 0) | (2 if self.imu_fault else 0) | (4 if self.gps_fix else 0) | (
            8 if self.wdt_armed else 0) | (16 if self.supply_rail else 0) | (32 if self.safe_mode else 0)
        return (uptime_s, VERSION[0], VERSION[1], VERSION[2], packet.RESET_REASONS.index(self.reset_reason),
                self.unexpected_reboots, self.free_heap, self.min_free_heap, self.fifo_overflows, self.i2c_errors,
                self.gps_fix, self.gps_sats, self.gps_hdop_c, self.nmea_checksum_errors, self.packets_sent,
                self.packets_queued, self.supply_mv, flags, self.samples_lost, self.heartbeat_s,
                self.console_bad_frames, self.boot_error) + link
