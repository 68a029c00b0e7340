"""`time` for the simulated board: ESP32 semantics on the board's clock (simclock)."""

import micropython
import utime as _rt
from micropython import const

import simclock
import simhw

_PERIOD = const(1 << 30)  # MicroPython's ticks period on the ESP32
_HALF = const(1 << 29)
_MASK = const((1 << 30) - 1)
EPOCH_OFFSET = 0  # seconds since 2000-01-01 at power-on; the runner may set it from GPS/scenario


@micropython.native
def _now():
    t = simclock.now_us()
    simhw.on_clock(t)
    return t


# Every entry point the firmware calls brackets the shim's own work (simclock.fw/mark): on the
# ESP32 these are built-in C functions, so only the firmware's execution between them is charged
# to the clock as ESP32 CPU time (even a pure-Python ticks_diff would cost ~15 ESP32 us a call).
@micropython.native
def _read():
    simclock.fw()
    try:
        t = _now()  # may raise the watchdog's reset
        simhw.kbd_check(t)  # and a Ctrl-C its KeyboardInterrupt: between the firmware's calls (simhw)
        return t
    finally:
        simclock.mark()


@micropython.native
def ticks_us():
    """Board clock, us, wrapping."""
    return _read() & _MASK


@micropython.native
def ticks_ms():
    """Board clock, ms, wrapping."""
    return (_read() // 1000) & _MASK


def ticks_cpu():
    """As ticks_us."""
    return ticks_us()


# ticks_add and ticks_diff are arithmetic in machine code here (viper): charged to the firmware
# like its own code, ~0.1 us here (~12 ESP32 us at the pystone ratio, a few more than the ESP32's
# built-ins take), far cheaper for the simulation than a shim's bracket (~3.5 us: it reads the
# scheduler's counters) at 6 calls per main-loop pass
@micropython.viper
def ticks_add(t: int, delta: int) -> int:
    """Tick arithmetic with wrap."""
    return (t + delta) & _MASK


@micropython.viper
def ticks_diff(a: int, b: int) -> int:
    """Signed difference of two ticks, wrap-safe."""
    return ((a - b + _HALF) & _MASK) - _HALF


@micropython.native
def sleep_us(us):
    """The firmware sleeps until now + us: first the CPU time it used since it last yielded goes
    on the clock (a sleep that ends before that ends late: the pass overran), then the rest."""
    simclock.fw()
    try:
        wait_us(us)
        simhw.kbd_check(simclock.now_us())  # (an ESP32's sleep is interruptible)
    finally:
        simclock.mark()


@micropython.native
def wait_us(us):
    """sleep_us() for the shims (inside their own fw()/mark()): settle the firmware's debt, then
    let the time pass."""
    end = simclock.now_us() + us
    simclock.settle()
    _sleep_until(end)


@micropython.native
def _sleep(us):
    """Time the hardware takes (bus transfers): the clock moves, nothing is charged."""
    _sleep_until(simclock.now_us() + us)


@micropython.native
def _sleep_until(end):
    """Advance the clock, stopping at each soft-timer deadline on the way so timers fire at
    their times (on the ESP32 they are scheduled callbacks, run while the main code sleeps)."""
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


@micropython.native
def sleep_ms(ms):
    """Sleep on the board clock (timers and watchdog run meanwhile)."""
    simclock.fw()
    try:
        wait_us(ms * 1000)
        simhw.kbd_check(simclock.now_us())  # (an ESP32's sleep is interruptible)
    finally:
        simclock.mark()


def sleep(s):
    """Sleep s seconds on the board clock."""
    simclock.fw()
    try:
        wait_us(int(s * 1000000))
        simhw.kbd_check(simclock.now_us())  # (an ESP32's sleep is interruptible)
    finally:
        simclock.mark()


def time():
    """Seconds since 2000 on the board clock."""
    return EPOCH_OFFSET + _read() // 1000000


def time_ns():
    """Nanoseconds since 2000 on the board clock."""
    return (EPOCH_OFFSET * 1000000 + _read()) * 1000


def gmtime(secs=None):
    """Broken-down time (now on the board clock by default)."""
    simclock.fw()
    try:
        return _rt.gmtime(time() if secs is None else secs)
    finally:
        simclock.mark()


localtime = gmtime


def mktime(t):
    """Seconds since 2000 from a broken-down time."""
    simclock.fw()
    try:
        return _rt.mktime(t)
    finally:
        simclock.mark()
