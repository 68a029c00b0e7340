"""Node configuration: the schema (one table shared by node and host), validation, atomic storage.

JSON on flash at /config.json. A write goes to /config.json.tmp, is flushed and synced, then
renamed over the old file; the previous good file is kept as /config.bak. On load, a missing,
unreadable, half-written or invalid file falls back to the last good copy, then to the defaults,
with the reason recorded (the vitals report it) — it never stops the node. The device id lives
apart in /identity.json (identity()), so a fallback to the defaults keeps the node's identity.
"""

import json
import os

PATH = "/config.json"
_INF = float("inf")

# One line per key: name type default min max unit; for "choice" the choices replace min/max
# (separated by |). A string, not a dict of tuples: on the node a dict costs ~4 KB of heap, this
# text a quarter of that; it is parsed when needed (config operations are rare).
# Meanings: docs/config.md (a test holds its table to this one). Ranges are the ones the estimator's
# fixed-point arithmetic is proven for (tests/test_int32_safety.py); `uplink` offers only what is
# implemented (lora comes back when it sends packets).
_SPEC = """device_id int 0 0 16777215 -
odr_hz int 200 100 1000 Hz
accel_range_g choice 16 2|4|8|16 g
aaf_hz int 0 0 500 Hz
segment_length_m int 100 10 1000 m
mount choice axle axle|body -
body_gain float 1.0 0.05 20.0 -
body_hz float 1.2 0.5 4.0 Hz
body_damping float 0.3 0.05 1.0 -
body_speed_exp float -0.2 -2.0 2.0 -
wheel_hop_hz float 11.0 5.0 25.0 Hz
wheel_damping float 0.3 0.05 1.0 -
mass_ratio float 0.0 0.0 20.0 -
self_cal choice off off|on -
min_speed_kmh int 15 0 100 km/h
bump_threshold_g float 3.0 0.2 16.0 g
pothole_threshold_g float 4.0 0.2 16.0 g
bump_height_mm int 40 10 300 mm
heartbeat_s int 60 10 3600 s
uplink choice console console|mqtt|none -
lora_dr int 2 0 5 -
wifi_ssid str - 0 32 -
wifi_password str - 0 64 -
mqtt_host str - 0 64 -
mqtt_port int 1883 1 65535 -
mqtt_user str - 0 64 -
mqtt_password str - 0 64 -
mqtt_keepalive_s int 60 10 600 s
mqtt_tls choice off off|on -
stop_close_s int 120 10 3600 s
ignition_off_mv int 0 0 30000 mV
gps_baud int 0 0 921600 baud
wdt_timeout_ms int 8000 2000 60000 ms"""


def _num(t, typ):
    return float(t) if typ == "float" else int(t)


def _entry(line):
    f = line.split()
    name, typ = f[0], f[1]
    unit = "" if f[-1] == "-" else f[-1]
    if typ == "choice":
        ch = f[3].split("|")
        if ch[0].isdigit():
            ch = tuple(int(c) for c in ch)
            d = int(f[2])
        else:
            ch = tuple(ch)
            d = f[2]
        return name, (typ, d, None, ch, unit)
    if typ == "str":
        return name, (typ, "" if f[2] == "-" else f[2], int(f[3]), int(f[4]), unit)
    return name, (typ, _num(f[2], typ), _num(f[3], typ), _num(f[4], typ), unit)


def schema():
    """{key: (type, default, min, max or choices, unit)}, built from _SPEC on each call."""
    d = {}
    for line in _SPEC.split("\n"):
        k, e = _entry(line)
        d[k] = e
    return d


def _spec(key):
    for line in _SPEC.split("\n"):
        if line.startswith(key + " "):
            return _entry(line)[1]
    return None


def keys():
    """The config's keys in the schema's order."""
    return [line.split(" ", 1)[0] for line in _SPEC.split("\n")]


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or outside its range."""


def defaults():
    """Every key's default value (the config a node starts from)."""
    return {k: e[1] for k, e in schema().items()}


def check(key, value):
    """Return the validated value; ConfigError names the key and the reason."""
    s = _spec(key)
    if s is None:
        raise ConfigError("%s: unknown key (known: %s)" % (key, ", ".join(sorted(keys()))))
    typ, _, lo, hi, unit = s
    u = (" " + unit) if unit else ""
    if typ == "choice":
        if value not in hi or isinstance(value, bool):
            raise ConfigError("%s: %r is not one of %s" % (key, value, ", ".join(str(c) for c in hi)))
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise ConfigError("%s: expected text, got %r" % (key, value))
        if len(value.encode()) > hi:  # bytes, as the node stores them (an SSID is 32 bytes at most)
            raise ConfigError("%s: longer than %d bytes (UTF-8)" % (key, hi))
        for c in value:  # a newline or control character would end up inside protocol lines and logs
            if ord(c) < 32 or ord(c) == 127:
                raise ConfigError("%s: control character %r not allowed" % (key, c))
        return value
    if isinstance(value, float) and (value != value or value in (_INF, -_INF)):
        raise ConfigError("%s: %r is not a finite number" % (key, value))
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value == int(value):
                value = int(value)
            else:
                raise ConfigError("%s: expected a whole number, got %r" % (key, value))
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s: expected a number, got %r" % (key, value))
        value = float(value)
    if value < lo:
        raise ConfigError("%s: %s is below the minimum %s%s" % (key, value, lo, u))
    if value > hi:
        raise ConfigError("%s: %s is above the maximum %s%s" % (key, value, hi, u))
    return value


def validate(d):
    """Full config (defaults for missing keys); ConfigError on any bad or unknown key."""
    if not isinstance(d, dict):
        raise ConfigError("config must be a JSON object")
    out = defaults()
    for k in d:
        out[k] = check(k, d[k])
    if out["pothole_threshold_g"] < out["bump_threshold_g"]:
        raise ConfigError("pothole_threshold_g: must not be below bump_threshold_g")
    if out["uplink"] == "mqtt":  # a node told to use MQTT with nowhere to send would hold data for ever
        for k in ("wifi_ssid", "mqtt_host"):
            if not out[k]:
                raise ConfigError("%s: needed for uplink mqtt" % k)
    return out


def _read(path):
    try:
        with open(path) as f:
            return validate(json.load(f)), None
    except OSError:
        return None, "missing"
    except ConfigError as e:
        return None, "invalid: %s" % e
    except (ValueError, TypeError):
        return None, "not valid JSON"  # half-written or corrupt


def _id_path(path):
    # beside the config: /identity.json for /config.json
    i = path.rfind("/")
    return path[: i + 1] + "identity.json"


def identity(path=PATH):
    """The device id in the identity file beside the config, or None (missing, unreadable,
    invalid). Written once when the node is provisioned (roadnode flash --device-id) and when the
    id itself is changed, never by a config save, so a corrupt config cannot take the id along."""
    try:
        with open(_id_path(path)) as f:
            return check("device_id", json.load(f)["device_id"])
    except Exception:
        return None


def save_identity(device_id, path=PATH):
    """Write the identity file atomically (tmp + rename); rare: provisioning, an id change."""
    import rnfw

    rnfw.save(_id_path(path), '{"device_id": %d}' % check("device_id", device_id))


def load(path=PATH):
    """(config, status). status: "ok", or "fallback: <reason>" when the last good copy or the
    defaults were used. Never raises. The device id comes from the identity file when there is
    one (a fallback keeps the node's identity), else from the config."""
    cfg, st = _load(path)
    i = identity(path)
    if i is not None:
        cfg["device_id"] = i
    return cfg, st


def _load(path):
    cfg, why = _read(path)
    if cfg is not None:
        return cfg, "ok"
    if why == "missing":
        # a power cut between save()'s two renames leaves the complete new file as .tmp
        new, _ = _read(path + ".tmp")
        if new is not None:
            return new, "ok"
        bak, _ = _read(path[:-5] + ".bak" if path.endswith(".json") else path + ".bak")
        if bak is None:
            return defaults(), "ok"  # a new node: defaults are its config
        return bak, "fallback: %s missing; last good copy" % path
    bak, _ = _read(path[:-5] + ".bak" if path.endswith(".json") else path + ".bak")
    if bak is not None:
        return bak, "fallback: %s %s; last good copy" % (path, why)
    return defaults(), "fallback: %s %s; defaults" % (path, why)


def apply_pending(path=PATH):
    """At boot: the config a tool sent (written by rnfw.console as <path>.pending, atomically, not
    parsed while the node measured: this module stays off its heap), validated and saved (None),
    or refused (the reason; the current config untouched). Either way the pending file goes."""
    p = path + ".pending"
    try:
        f = open(p)
    except OSError:
        return None
    why = None
    try:
        with f:
            cfg = save(json.load(f), path)
        i = identity(path)
        # the id changed on purpose (config set device_id=...), or a node provisioned before
        # identity files existed: the identity follows; otherwise it is left alone
        if i != cfg["device_id"] and (i is not None or cfg["device_id"]):
            try:
                save_identity(cfg["device_id"], path)
            except OSError:
                pass  # the config holds the id too
    except ConfigError as e:
        why = str(e)
    except (ValueError, TypeError):
        why = "unreadable config sent"
    try:
        os.remove(p)
    except OSError:
        pass
    return why


def save(cfg, path=PATH):
    """Validate, then write atomically (tmp + rename), keeping the previous good file as .bak."""
    import rnfw

    cfg = validate(cfg)
    # keep the last good copy: if the current file is valid, it becomes the backup
    cur, _ = _read(path)
    bak = path[:-5] + ".bak" if path.endswith(".json") else path + ".bak"
    rnfw.save(path, json.dumps(cfg), bak if cur is not None else None)
    return cfg
