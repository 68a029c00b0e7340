"""roadnode.sim.serve, the library behind `roadnode sim serve`: the access point and broker
settings, and a served board that says where it is and stops cleanly."""

from __future__ import annotations

import os

import pytest

from roadnode.errors import InputError
from roadnode.sim.serve import ServedBoard, mqtt_settings, wifi_aps


def test_wifi_and_broker_settings():
    assert wifi_aps(None) is None
    assert wifi_aps("yard:s3cret") == [{"ssid": "yard", "key": "s3cret"}]
    assert wifi_aps("open") == [{"ssid": "open", "key": ""}]
    assert mqtt_settings("127.0.0.1:1884", None) == {"uplink": "mqtt", "mqtt_host": "127.0.0.1", "mqtt_port": 1884,
                                                     "wifi_ssid": "depot", "wifi_password": "roadnode"}
    assert mqtt_settings("broker.lan:1883", wifi_aps("yard:k"))["wifi_ssid"] == "yard"
    with pytest.raises(InputError):
        mqtt_settings("host:notaport", None)


def test_served_board_reports_its_port_and_stops(tmp_path):
    with ServedBoard("esp32s3-icm42688-neom8n", flash_dir=str(tmp_path / "fl")) as sb:
        info = sb.info()
        assert info["board"] == "esp32s3-icm42688-neom8n" and info["usb"] == "native"
        assert os.path.exists(info["port"]) and info["flash"] == str(tmp_path / "fl") and info["baud"] is None
        assert sb.prepare(False, {}) is None  # nothing asked: nothing done
        asked = iter([False, False, True])
        sb.run(lambda: next(asked))  # runs until told to stop
    assert not os.path.exists(info["port"])
