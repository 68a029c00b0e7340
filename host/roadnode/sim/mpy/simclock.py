"""The simulated board's clock, in integer microseconds since power-on.

Fast mode (default): virtual time; sleeping advances the clock instantly, so a drive runs as
fast as the interpreter can. Realtime mode: the clock follows the host's monotonic clock and
sleeping really sleeps. Device models read ``now_us()`` to know how much data to produce.
"""

import utime as _rt  # the built-in time module (time.py on MICROPYPATH shadows `time`)

_now = 0  # virtual microseconds since power-on
_realtime = False
_t0 = 0
# Each call of the clock costs the interpreter some time on a real board; a tiny virtual
# increment keeps busy-wait loops (while ticks_diff(..) < x: pass) from spinning forever.
_TICK_COST_US = 1


def set_realtime(on):
    global _realtime, _t0
    _realtime = bool(on)
    _t0 = _rt.ticks_us() - _now


def realtime():
    return _realtime


def now_us():
    global _now
    if _realtime:
        _now = _rt.ticks_diff(_rt.ticks_us(), _t0)
    else:
        _now += _TICK_COST_US
    return _now


def sleep_us(us):
    global _now
    if us <= 0:
        return
    if _realtime:
        _rt.sleep_us(us)
        now_us()
    else:
        _now += us


def reset(start_us=0):
    """Power-on: the clock starts again (used between simulated runs in one process)."""
    global _now, _t0
    _now = start_us
    _t0 = _rt.ticks_us() - _now
