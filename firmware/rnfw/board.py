"""The board definition deployed with the firmware (/board.json, from the repo's boards/), and the
buses built from it. No pin numbers live in firmware code."""

import json

import machine

PATH = "/board.json"
_REQUIRED = ("name", "mcu", "i2c", "imu", "uart", "gps")


class BoardError(ValueError):
    """The board definition is missing, not JSON, or lacks what the node needs."""


def load(path=PATH):
    """The board definition at ``path`` (boards/*.json as flashed), checked; BoardError if unusable."""
    try:
        with open(path) as f:
            bd = json.load(f)
    except OSError:
        raise BoardError("no board definition at %s: deploy one with `roadnode flash`" % path)
    except ValueError:
        raise BoardError("%s is not valid JSON" % path)
    if not isinstance(bd, dict):
        raise BoardError("%s must hold a JSON object" % path)
    for k in _REQUIRED:
        if k not in bd:
            raise BoardError("%s: missing key %r" % (path, k))
    for sect, keys in (("i2c", ("id", "scl", "sda")), ("uart", ("id", "tx", "rx")), ("imu", ("part", "addr")),
                       ("gps", ("baud",))):
        for k in keys:
            if k not in bd[sect]:
                raise BoardError("%s: missing %s.%s" % (path, sect, k))
    return bd


def make_i2c(bd):
    """The IMU's I2C bus on the board's pins (400 kHz unless the board says otherwise)."""
    c = bd["i2c"]
    return machine.I2C(c["id"], scl=machine.Pin(c["scl"]), sda=machine.Pin(c["sda"]), freq=c.get("freq", 400000))


def make_uart(bd, baud=0):
    """The GPS UART on the board's pins at ``baud`` (else the board's GPS baud), never blocking."""
    c = bd["uart"]
    return machine.UART(c["id"], baudrate=baud or bd["gps"]["baud"], tx=c["tx"], rx=c["rx"],
                        rxbuf=c.get("rxbuf", 1024), timeout=0)


def supply_adc(bd):
    """(ADC, divider) or None when the board cannot measure its supply. The supply is optional:
    a pin the ADC refuses leaves it unmeasured (heartbeat supply_mv unknown), not a dead node."""
    s = bd.get("supply")
    if not s:
        return None
    try:
        adc = machine.ADC(machine.Pin(s["adc_pin"]))
        a = s.get("atten_db", 11)
        adc.atten(machine.ADC.ATTN_11DB if a == 11 else (machine.ADC.ATTN_6DB if a == 6 else (
            machine.ADC.ATTN_2_5DB if a == 2.5 else machine.ADC.ATTN_0DB)))
    except (ValueError, OSError):
        return None
    return adc, s.get("divider", 1.0)


def quiet_idf_log():
    """The console is the uplink: ESP-IDF must not write its log lines there (the I2C driver logs
    an error line for every NACK). esp.osdebug(None) only sets the level back to errors (the
    ESP32 port's modesp.c), so the level is set to none explicitly."""
    try:
        import esp

        esp.osdebug(0, esp.LOG_NONE)
    except (ImportError, AttributeError):
        pass


def led(bd):
    """The status LED's pin as an output, or None on a board without one."""
    c = bd.get("led")
    if not c:
        return None
    return machine.Pin(c["pin"], machine.Pin.OUT)
