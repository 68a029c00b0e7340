"""`network` for the simulated board: the ESP32 port's WLAN station (ports/esp32/network_wlan.c) on a
simulated access point, and the network's outages, which socket.py applies to the node's real sockets.

WLAN: WLAN(STA_IF) is one object; active(True) starts the radio; connect() returns at once and the
station associates in the background on the board's clock (scan, 802.11 association, WPA2 handshake,
DHCP: _ASSOC_US); a wrong key ends each attempt with STAT_WRONG_PASSWORD, a missing SSID with
STAT_NO_AP_FOUND. As MicroPython's event handler does, a lost or failed association is retried at once
and for ever (config reconnects=-1) until disconnect(); status() is computed as the port computes it.
The access points come from the host: RNSIM_WIFI = [{"ssid": .., "key": .., "channel": .., "rssi": ..}]
(default one AP, "depot" / "roadnode").

Outages, on the board's clock: simhw.faults["net"] = [[from_us, until_us, kind], ...] (since power-on;
a `sim run` boot after a power cut adds RNSIM_DRIVE_US, its power-on on the drive's clock), and a live
one the host writes to RNSIM_STATE/netfault (SimBoard.net_outage/net_restore). Kinds:
  assoc        the AP is gone: nothing passes; after _BEACON_LOSS_US the station notices (beacon
               timeout): isconnected() False, open sockets reset, new connects fail (no route),
               rescans (STAT_NO_AP_FOUND) until the AP is back, then reassociates. An outage shorter
               than the beacon timeout is only a silence.
  reset        every TCP connection open in the window is reset (ECONNRESET), connects too
  unreachable  connections and connects fail with EHOSTUNREACH (an ICMP from a router)
  refused      the broker's host is up, its server is not: connects get ECONNREFUSED, open
               connections are reset
  blackhole    nothing passes either way and nothing says so: connects hang, data waits (TCP
               retransmits); after socket.py's give-up times the connection ends with ETIMEDOUT
"""

import uos as _os
import utime as _rt
from micropython import const

import simclock
import simhw
import time as _time  # the board's time (shim): blocking calls let board time pass

STA_IF = const(0)
AP_IF = const(1)
# status() values of the ESP32 port (esp_wifi_types.h reasons pass through)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_BEACON_TIMEOUT = const(200)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)
STAT_ASSOC_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)
_ASSOC_LEAVE = const(8)  # the reason after disconnect(): status() says STAT_IDLE
AUTH_OPEN = const(0)
AUTH_WEP = const(1)
AUTH_WPA_PSK = const(2)
AUTH_WPA2_PSK = const(3)
AUTH_WPA_WPA2_PSK = const(4)
PM_NONE = const(0)
PM_PERFORMANCE = const(1)
PM_POWERSAVE = const(2)
MODE_11B = const(1)
MODE_11G = const(2)
MODE_11N = const(4)

# Times of the radio on the board's clock (approximations of an ESP32 with ESP-IDF 5 defaults)
_START_US = const(40000)  # active(True) waits for the driver's STA_START
_SCAN_US = const(1500000)  # an active scan of channels 1-13 (scan() blocks this long)
_ASSOC_US = const(2000000)  # connect() to GOT_IP: scan, association, 4-way handshake, DHCP
_AUTH_FAIL_US = const(1500000)  # an attempt with a wrong key ends (handshake fails)
_BEACON_LOSS_US = const(6000000)  # the station notices a vanished AP (beacon timeout)

# what the network does to TCP right now (link())
OK = const(0)
DOWN = const(1)  # no WLAN: no route
HOLE = const(2)  # blackhole (or an AP gone that the station has not noticed yet)
RESET = const(3)
UNREACH = const(4)
REFUSED = const(5)
_CODE = {"reset": RESET, "unreachable": UNREACH, "refused": REFUSED, "blackhole": HOLE, "assoc": HOLE}
KINDS = ("assoc", "reset", "unreachable", "refused", "blackhole")
_FAR = const(1 << 60)

# the boot's power-on on the run's clock (a `sim run` after power cuts): outage times are on that clock
_OFF = int(_os.getenv("RNSIM_DRIVE_US") or 0)

# counters for the host (stats_line): what the network saw and did
stats = {"connects": 0, "refused": 0, "dropped": 0, "timeouts": 0, "bytes_out": 0, "bytes_in": 0,
         "assoc": 0, "links_lost": 0, "pace_waits": 0, "pace_us": 0}


def _now():
    return simclock.now_us() + _OFF


def _aps():
    import json

    t = _os.getenv("RNSIM_WIFI")
    aps = json.loads(t) if t else [{"ssid": "depot", "key": "roadnode"}]
    for i, a in enumerate(aps):
        a.setdefault("key", "")
        a.setdefault("channel", 6)
        a.setdefault("rssi", -61)
        a.setdefault("bssid", bytes((0x02, 0x52, 0x4E, 0, 0, i + 1)))  # locally administered
    return aps


_APS = _aps()


# The simulated AP is the network's router and DNS forwarder (as a depot's or a phone's hotspot is):
# DHCP gives the station this address as its DNS server, and socket.py answers the DNS queries sent to
# it with the host's resolver (names in /etc/hosts, such as localhost, included).
GATEWAY = "192.168.1.1"

# ---- outages ---------------------------------------------------------------------------------------
# The live outage: the host writes a kind (or nothing) into a state file; read at most every 20 ms of
# real time (the file is opened now: once the flash is mounted at '/', the host's folders are gone).
_live_f = None
if simhw.state_dir:
    try:
        _live_f = open(simhw.state_dir + "/netfault", "rb")
    except OSError:
        _live_f = None
_live = None  # [from, until (_FAR while on), kind] of the live outage now
_past = []  # live outages that ended: they stay on the record (the station's state is computed lazily)
_live_rt = None  # real ms of the last look at the file


def _poll_live():
    global _live, _live_rt
    f = _live_f
    if f is None:
        return
    t = _rt.ticks_ms()
    if _live_rt is not None and _rt.ticks_diff(t, _live_rt) < 20:
        return
    _live_rt = t
    f.seek(0)
    k = f.read(16).strip().decode()
    if _live is not None and k != _live[2]:
        _live[1] = _now()
        _past.append(_live)
        _live = None
    if k and _live is None:
        if k not in KINDS:
            raise ValueError("netfault: unknown kind %r" % k)
        _live = [_now(), _FAR, k]


def _windows():
    _poll_live()
    w = simhw.faults.get("net") or ()
    if _live is not None or _past:
        w = list(w) + _past + ([_live] if _live is not None else [])
    return w


def outage(t):
    """The outage [from, until, kind] in force at t (board clock, with _OFF), or None."""
    ws = _windows()
    if _live is not None and _live[0] <= t:
        return _live  # (a live outage first: it may be newer than a scheduled one)
    for w in ws:
        if w[0] <= t < w[1]:
            return w
    return None


def _ap_at(ssid, t):
    """The access point with this SSID, if it is on the air at t."""
    for w in _windows():
        if w[2] == "assoc" and w[0] <= t < w[1]:
            return None
    for a in _APS:
        if a["ssid"] == ssid:
            return a
    return None


def _noticed_loss(since, t):
    """When the station, associated since ``since``, noticed a vanished AP (at or before t), or None:
    the first assoc outage that outlasted the beacon timeout."""
    best = None
    for w in _windows():
        if w[2] != "assoc":
            continue
        d = w[0] + _BEACON_LOSS_US
        if since < d <= t and w[1] > d and (best is None or d < best):
            best = d
    return best


gen = 0  # link generation: +1 whenever the station loses its association (sockets die with it)


def link():
    """What the network does to TCP now: OK, DOWN, HOLE, RESET, UNREACH or REFUSED."""
    s = _sta
    s._update()
    if not s._up:
        return DOWN
    w = outage(_now())
    return OK if w is None else _CODE[w[2]]


def hostname(name=None):
    """The station's host name (as network.hostname on the port)."""
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


_hostname = "mpy-esp32"


def stats_line():
    """The network's counters as one 'net k=v ...' line (the harness prints it)."""
    return "net " + " ".join("%s=%d" % (k, stats[k]) for k in sorted(stats))


class WLAN:
    """One object per interface, as the port's WLAN(STA_IF) / WLAN(AP_IF)."""

    IF_STA = STA_IF
    IF_AP = AP_IF
    SEC_OPEN = AUTH_OPEN
    SEC_WPA2 = AUTH_WPA2_PSK

    def __new__(cls, if_id=STA_IF):
        if if_id == STA_IF:
            return _sta
        if if_id == AP_IF:
            return _ap
        raise ValueError("invalid WLAN interface identifier")

    def __init__(self, if_id=STA_IF):
        pass

    def _init(self, if_id):
        self._if = if_id
        self._on = False
        self._req = False  # connect requested (the driver reassociates on its own)
        self._ssid = ""
        self._key = ""
        self._up = False  # associated, with an IP address
        self._reason = 0  # last disconnect reason (0: none)
        self._t = 0  # attempting: when the attempt ends; up: since when
        self._ok = 0  # the attempt's outcome: 0 = associated, else a reason
        self._att = 0  # failed attempts in a row
        self._conf = 0  # config reconnects as the port keeps it: 0 = for ever, else n + 1
        self._gave_up = False
        self._ap = None
        self._static = None  # ifconfig((...)): a static address instead of DHCP
        self._pm = PM_PERFORMANCE
        self._tx = 20.0
        return self

    # ---- the station's state, computed lazily from the board's clock --------------------------
    def _attempt(self, t0):
        """An association attempt starts at t0; its outcome and end are fixed now."""
        ap = _ap_at(self._ssid, t0)
        if ap is None:
            self._ok, self._t = STAT_NO_AP_FOUND, t0 + _SCAN_US
        elif ap["key"] != self._key:
            self._ok, self._t = STAT_WRONG_PASSWORD, t0 + _AUTH_FAIL_US
        else:
            self._ok, self._t = 0, t0 + _ASSOC_US
        self._ap = ap

    def _lose(self, t, reason):
        global gen
        if self._up:
            gen += 1
            stats["links_lost"] += 1
        self._up = False
        self._reason = reason
        if self._req:
            self._attempt(t)

    def _update(self):
        if self._if != STA_IF or not self._req:
            return
        t = _now()
        while True:
            if self._up:
                d = _noticed_loss(self._t, t)
                if d is None:
                    return
                self._lose(d, STAT_BEACON_TIMEOUT)
            if self._gave_up or self._t > t:
                return
            ok = self._ok
            if ok == 0 and _ap_at(self._ssid, self._t) is None:
                ok = STAT_NO_AP_FOUND  # the AP went away during the attempt
            if ok == 0:
                self._up = True
                self._reason = 0
                self._att = 0
                stats["assoc"] += 1
                continue  # self._t: up since then
            self._reason = ok
            self._att += 1
            if self._conf and self._att >= self._conf:
                self._gave_up = True
                return
            self._attempt(self._t)

    # ---- the port's API --------------------------------------------------------------------------
    def active(self, on=None):
        """Turn the interface on or off; without an argument, whether it is on."""
        simclock.fw()
        try:
            if on is not None:
                on = bool(on)
                if on != self._on:
                    if not on and self._if == STA_IF:
                        self._update()
                        self._req = False
                        self._lose(_now(), _ASSOC_LEAVE)
                    self._on = on
                    _time.wait_us(_START_US)  # the driver starts/stops before the call returns
            return self._on
        finally:
            simclock.mark()

    def connect(self, ssid=None, key=None, *, bssid=None):
        """Start associating with ssid (returns at once; isconnected() tells when)."""
        simclock.fw()
        try:
            if self._if != STA_IF:
                raise OSError("STA required")
            if not self._on:
                raise OSError("Wifi Not Started")
            if ssid is not None:
                self._ssid = ssid
                self._key = "" if key is None else key
            self._update()
            if self._up:  # a new connect drops the current association first
                self._lose(_now(), _ASSOC_LEAVE)
            self._req = True
            self._att = 0
            self._gave_up = False
            self._attempt(_now())
        finally:
            simclock.mark()

    def disconnect(self):
        """Leave the access point."""
        simclock.fw()
        try:
            self._update()
            self._req = False
            self._lose(_now(), _ASSOC_LEAVE)
        finally:
            simclock.mark()

    def isconnected(self):
        """Associated and with an address."""
        simclock.fw()
        try:
            self._update()
            return self._up
        finally:
            simclock.mark()

    def status(self, param=None):
        """The port's STAT_* code; with param 'rssi' or 'stations', that value."""
        simclock.fw()
        try:
            self._update()
            if param is None:
                if self._if != STA_IF:
                    return None
                r = self._reason
                if self._up:
                    return STAT_GOT_IP
                if r in (STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD):
                    return r
                if r == _ASSOC_LEAVE:
                    return STAT_IDLE
                if self._req and not self._gave_up:
                    return STAT_CONNECTING
                return STAT_IDLE if r == 0 else r
            if param == "rssi":
                if self._if != STA_IF:
                    raise OSError("STA required")
                if not self._up:
                    raise OSError("Wifi Not Connected")
                return self._ap["rssi"]
            if param == "stations":
                if self._if != AP_IF:
                    raise OSError("AP required")
                return []
            raise ValueError("unknown status param")
        finally:
            simclock.mark()

    def scan(self):
        """The access points in range, as the port lists them."""
        simclock.fw()
        try:
            if not self._on:
                raise OSError("STA must be active")
            _time.wait_us(_SCAN_US)  # blocking, as on the ESP32: the main loop stands still
            t = _now()
            out = []
            for a in _APS:
                if _ap_at(a["ssid"], t) is not None:
                    out.append((a["ssid"].encode(), a["bssid"], a["channel"], a["rssi"],
                                AUTH_WPA2_PSK if a["key"] else AUTH_OPEN, False))
            return out
        finally:
            simclock.mark()

    def ifconfig(self, conf=None):
        """(ip, netmask, gateway, dns) from the simulated DHCP."""
        simclock.fw()
        try:
            if conf is None:
                if self._if == AP_IF:
                    return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
                self._update()
                if self._static:
                    return self._static
                if not self._up:
                    return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
                # the simulated AP's DHCP: it is the gateway and the DNS server (socket.py answers there)
                return ("192.168.1.%d" % (100 + simhw.unique_id[5]), "255.255.255.0", GATEWAY, GATEWAY)
            if conf == "dhcp":
                self._static = None
            elif isinstance(conf, (tuple, list)) and len(conf) == 4:
                self._static = tuple(conf)
            else:
                raise ValueError("invalid arguments")
        finally:
            simclock.mark()

    def config(self, *args, **kw):
        """Interface settings ('mac', 'hostname'...), as the port's WLAN.config."""
        simclock.fw()
        try:
            if args and kw:
                raise TypeError("either pos or kw args are allowed")
            for k, v in kw.items():
                if k == "reconnects":
                    if self._if != STA_IF:
                        raise OSError("STA required")
                    self._conf = 0 if v == -1 else v + 1
                elif k == "pm":
                    self._pm = v
                elif k == "txpower":
                    self._tx = float(v)
                elif k in ("hostname", "dhcp_hostname"):
                    hostname(v)
                elif k in ("ssid", "essid", "key", "password", "hidden", "security", "authmode", "channel",
                           "max_clients"):
                    if self._if != AP_IF and k != "channel":
                        raise OSError("AP required")
                else:
                    raise ValueError("unknown config param")
            if kw:
                return None
            if len(args) != 1:
                raise TypeError("can query only one param")
            k = args[0]
            if k == "mac":  # the chip's base MAC for the station, +1 for the AP (ESP-IDF's derivation)
                m = bytearray(simhw.unique_id)
                m[5] = (m[5] + self._if) & 255
                return bytes(m)
            if k in ("ssid", "essid"):
                return self._ssid if self._if == STA_IF else "ESP_%02X%02X%02X" % tuple(simhw.unique_id[3:])
            if k == "channel":
                return self._ap["channel"] if self._up else 1
            if k == "reconnects":
                return self._conf - 1
            if k in ("hostname", "dhcp_hostname"):
                return _hostname
            if k == "pm":
                return self._pm
            if k == "txpower":
                return self._tx
            if k == "protocol":
                return MODE_11B | MODE_11G | MODE_11N
            raise ValueError("unknown config param")
        finally:
            simclock.mark()


WLAN.PM_NONE = PM_NONE  # (a const's name cannot be assigned in a class body)
WLAN.PM_PERFORMANCE = PM_PERFORMANCE
WLAN.PM_POWERSAVE = PM_POWERSAVE
_sta = object.__new__(WLAN)._init(STA_IF)
_ap = object.__new__(WLAN)._init(AP_IF)
