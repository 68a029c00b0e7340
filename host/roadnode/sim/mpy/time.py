"""`time` for the simulated board: ESP32 semantics on the board's clock (simclock)."""

import utime as _rt

import simclock
import simhw

_PERIOD = 1 << 30  # MicroPython's ticks period on the ESP32
_HALF = _PERIOD >> 1
_MASK = _PERIOD - 1
EPOCH_OFFSET = 0  # seconds since 2000-01-01 at power-on; the runner may set it from GPS/scenario


def _now():
    t = simclock.now_us()
    simhw.on_clock(t)
    return t


def ticks_us():
    return _now() & _MASK


def ticks_ms():
    return (_now() // 1000) & _MASK


def ticks_cpu():
    return ticks_us()


def ticks_add(t, delta):
    return (t + delta) & _MASK


def ticks_diff(a, b):
    return ((a - b + _HALF) & _MASK) - _HALF


def sleep_us(us):
    """Advance the clock, stopping at each soft-timer deadline on the way so timers fire at
    their times (on the ESP32 they are scheduled callbacks, run while the main code sleeps)."""
    end = simclock.now_us() + us
    while True:
        nxt = end
        for t in simhw.timers:
            if 0 <= t[0] < nxt:
                nxt = t[0]
        now = simclock.now_us()
        if nxt > now:
            simclock.sleep_us(nxt - now)
        _now()
        if nxt >= end:
            break


def sleep_ms(ms):
    sleep_us(ms * 1000)


def sleep(s):
    sleep_us(int(s * 1000000))


def time():
    return EPOCH_OFFSET + _now() // 1000000


def time_ns():
    return (EPOCH_OFFSET * 1000000 + _now()) * 1000


def gmtime(secs=None):
    return _rt.gmtime(time() if secs is None else secs)


localtime = gmtime


def mktime(t):
    return _rt.mktime(t)
