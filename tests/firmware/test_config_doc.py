"""docs/config.md's table and the firmware's schema (rnfw/config.py) say the same thing: every key,
type, default, range or choices and unit, so they cannot drift apart again."""

from __future__ import annotations

import re

import pytest

from roadnode.mpy.fwimport import fw
from roadnode.paths import FIRMWARE_DIR

C = fw("config")
DOC = FIRMWARE_DIR.parent / "docs" / "config.md"


def doc_table():
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| (\w+) \| ([^|]*) \| ([^|]*) \| ([^|]*) \|", line)
        if m:
            rows[m[1]] = tuple(c.strip() for c in m.groups()[1:])
    return rows


def _num(t):
    return float(t) if "." in t else int(t)


def test_every_schema_key_is_documented_with_its_type_default_range_and_unit():
    doc, sch = doc_table(), C.schema()
    assert set(doc) == set(sch)
    for key, (typ, default, lo, hi, unit) in sch.items():
        dtyp, ddef, drange, dunit = doc[key]
        assert dtyp == typ, key
        assert dunit == unit, key
        if typ == "choice":
            assert ddef == repr(default) if isinstance(default, str) else _num(ddef) == default, key
            assert [c.strip() for c in drange.split(",")] == [str(c) for c in hi], key
        elif typ == "str":
            assert ddef == repr(default), key
            assert drange == f"up to {hi} bytes", key
        else:
            assert _num(ddef) == default and type(_num(ddef)) is type(default), key
            a, b = drange.replace("−", "-").split("–")
            assert (_num(a), _num(b)) == (lo, hi) and type(_num(a)) is type(lo), key


def test_uplinks_that_do_not_send_yet_are_refused():
    with pytest.raises(C.ConfigError, match=r"uplink: 'lora' is not one of console, mqtt, none"):
        C.validate({"uplink": "lora"})
    assert C.validate({"uplink": "none"})["uplink"] == "none"


def test_mqtt_uplink_needs_somewhere_to_send():
    with pytest.raises(C.ConfigError, match="wifi_ssid: needed for uplink mqtt"):
        C.validate({"uplink": "mqtt", "mqtt_host": "10.0.0.2"})
    with pytest.raises(C.ConfigError, match="mqtt_host: needed for uplink mqtt"):
        C.validate({"uplink": "mqtt", "wifi_ssid": "depot"})
    c = C.validate({"uplink": "mqtt", "wifi_ssid": "depot", "mqtt_host": "10.0.0.2"})
    assert c["mqtt_port"] == 1883 and c["mqtt_keepalive_s"] == 60 and c["wifi_password"] == ""


def test_self_calibration_is_accepted_beside_the_mqtt_uplink():
    """Refused while the fit lived with the windows (~26 KB beside the MQTT client); its module now
    comes and goes with each fit and starts only with the heap to spare
    (tests/node/test_uplink_heap.py measures the MQTT node with it on)."""
    mqtt = {"uplink": "mqtt", "wifi_ssid": "depot", "mqtt_host": "10.0.0.2"}
    assert C.validate({**mqtt, "self_cal": "on"})["self_cal"] == "on"
    assert C.validate({"self_cal": "on"})["self_cal"] == "on"


def test_config_set_refuses_an_unimplemented_uplink(cli):
    r = cli("config", "set", "uplink=lora", "--port", "/dev/null-no-such-port")
    assert r.returncode == 2 and "uplink: 'lora' is not one of console, mqtt, none" in r.stderr


def test_non_finite_numbers_and_control_characters_are_refused_on_both_runtimes():
    """NaN passes every range test (all comparisons are false): refused by name, as are infinities
    and a newline or other control character in a text value, on the node and on the host alike."""
    from roadnode.mpy import runtime
    from roadnode.mpy.fwimport import fw

    cases = [("body_gain", "float('nan')"), ("odr_hz", "float('inf')"), ("body_hz", "-float('inf')"),
             ("mqtt_host", "'broker\\nevil'"), ("mqtt_host", "'a\\x00b'"), ("mqtt_host", "'broker.example'")]
    code = "from rnfw import config as C\n" + "".join(
        f"try:\n    C.check({k!r}, {v})\n    print('ok')\nexcept C.ConfigError as e:\n    print('refused', e)\n"
        for k, v in cases)
    node = runtime.run_code(code).stdout.decode().splitlines()
    C = fw("config")
    host = []
    for k, v in cases:
        try:
            C.check(k, eval(v))
            host.append("ok")
        except C.ConfigError as e:
            host.append(f"refused {e}")
    assert node == host
    assert [x.split()[0] for x in node] == ["refused"] * 5 + ["ok"]
    assert "not a finite number" in node[0] and "control character" in node[3]
