"""Node configuration: the schema (one table shared by node and host), validation, atomic storage.

JSON on flash at /config.json. A write goes to /config.json.tmp, is flushed and synced, then
renamed over the old file; the previous good file is kept as /config.bak. On load, a missing,
unreadable, half-written or invalid file falls back to the last good copy, then to the defaults,
with the reason recorded (the vitals report it) — it never stops the node.
"""

import json
import os

PATH = "/config.json"

# key: (type, default, min, max or choices, unit). Meanings: docs/config.md (kept off the
# device: every string here costs heap on the node)
# type: "int" | "float" | "str" | "choice" | "bool"
SCHEMA = {
    "device_id": ("int", 0, 0, 16777215, ""),
    "odr_hz": ("int", 200, 100, 1000, "Hz"),
    "accel_range_g": ("choice", 16, None, (2, 4, 8, 16), "g"),
    "aaf_hz": ("int", 0, 0, 500, "Hz"),
    "segment_length_m": ("int", 100, 10, 1000, "m"),
    "mount": ("choice", "axle", None, ("axle", "body"), ""),
    "body_gain": ("float", 1.0, 0.05, 20.0, ""),
    "wheel_hop_hz": ("float", 11.0, 5.0, 25.0, "Hz"),
    "wheel_damping": ("float", 0.3, 0.05, 1.0, ""),
    "min_speed_kmh": ("int", 15, 0, 100, "km/h"),
    "bump_threshold_g": ("float", 3.0, 0.2, 16.0, "g"),
    "pothole_threshold_g": ("float", 4.0, 0.2, 16.0, "g"),
    "bump_height_mm": ("int", 40, 10, 300, "mm"),
    "heartbeat_s": ("int", 60, 10, 3600, "s"),
    "uplink": ("choice", "console", None, ("console", "lora", "mqtt", "none"), ""),
    "lora_dr": ("int", 2, 0, 5, ""),
    "mqtt_host": ("str", "", 0, 64, ""),
    "gps_baud": ("int", 0, 0, 921600, "baud"),
    "wdt_timeout_ms": ("int", 8000, 2000, 60000, "ms"),
}


class ConfigError(ValueError):
    pass


def defaults():
    return {k: s[1] for k, s in SCHEMA.items()}


def check(key, value):
    """Return the validated value; ConfigError names the key and the reason."""
    s = SCHEMA.get(key)
    if s is None:
        raise ConfigError("%s: unknown key (known: %s)" % (key, ", ".join(sorted(SCHEMA))))
    typ, _, lo, hi, unit = s
    u = (" " + unit) if unit else ""
    if typ == "choice":
        if value not in hi or isinstance(value, bool):
            raise ConfigError("%s: %r is not one of %s" % (key, value, ", ".join(str(c) for c in hi)))
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise ConfigError("%s: expected text, got %r" % (key, value))
        if len(value) > hi:
            raise ConfigError("%s: longer than %d characters" % (key, hi))
        return value
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
    return out


def parse_value(key, text):
    """A CLI "KEY=VALUE" value as the schema's type (then checked)."""
    s = SCHEMA.get(key)
    if s is None:
        raise ConfigError("%s: unknown key (known: %s)" % (key, ", ".join(sorted(SCHEMA))))
    typ, _, _, hi, _ = s
    try:
        if typ == "int" or (typ == "choice" and isinstance(hi[0], int)):
            v = int(text)
        elif typ == "float":
            v = float(text)
        else:
            v = text
    except ValueError:
        raise ConfigError("%s: %r is not a %s" % (key, text, "whole number" if typ != "float" else "number"))
    return check(key, v)


def _read(path):
    try:
        with open(path) as f:
            return validate(json.load(f)), None
    except OSError:
        return None, "missing"
    except ConfigError as e:
        return None, "invalid: %s" % e
    except (ValueError, TypeError):
        return None, "unreadable (half-written or corrupt JSON)"


def load(path=PATH):
    """(config, status). status: "ok", or "fallback: <reason>" when the last good copy or the
    defaults were used. Never raises."""
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
        return bak, "fallback: %s missing, using last good copy" % path
    bak, _ = _read(path[:-5] + ".bak" if path.endswith(".json") else path + ".bak")
    if bak is not None:
        return bak, "fallback: %s %s; using last good copy" % (path, why)
    return defaults(), "fallback: %s %s; using defaults" % (path, why)


def _sync():
    s = getattr(os, "sync", None)
    if s:
        s()


def save(cfg, path=PATH):
    """Validate, then write atomically (tmp + rename), keeping the previous good file as .bak."""
    cfg = validate(cfg)
    tmp = path + ".tmp"
    bak = path[:-5] + ".bak" if path.endswith(".json") else path + ".bak"
    data = json.dumps(cfg)
    with open(tmp, "w") as f:
        f.write(data)
    _sync()
    # keep the last good copy: if the current file is valid, it becomes the backup
    cur, _ = _read(path)
    if cur is not None:
        try:
            os.remove(bak)
        except OSError:
            pass
        os.rename(path, bak)
    os.rename(tmp, path)
    _sync()
    return cfg
