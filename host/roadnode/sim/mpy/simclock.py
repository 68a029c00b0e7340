"""The simulated board's clock, in integer microseconds since power-on.

Fast mode (default): virtual time; sleeping advances the clock instantly, so a drive runs as
fast as the interpreter can. Realtime mode: the clock follows the host's monotonic clock and
sleeping really sleeps. Device models read ``now_us()`` to know how much data to produce.

CPU time (fast mode, when RNSIM_CPU_RATIO is set): the firmware's own execution is charged to the
clock, scaled by the ESP32/unix speed ratio (unix pystones / 1,730), so a pass that would take too
long on the ESP32 overruns here too. The shims bracket their own work (``fw()`` on entry, ``mark()``
on exit): the device models' time is not the firmware's. The interpreter has no fine process-CPU
clock call (no ffi; time.clock() ticks in ms), so an interval is its wall-clock length, and when
that is long, the process's own CPU time over it (/proc/self/schedstat's first field, read as each
shim returns): a busy machine does not slow the board, and time blocked outside any shim (the REPL
waiting for a line) is not the firmware's work. The debt is paid when the firmware next
sleeps or waits (the clock does not move mid-pass, so the samples a pass reads are those of its
start, as on offline runs), or at once when it exceeds _SETTLE_US (a firmware that never yields).
"""

import utime as _rt  # the built-in time module (time.py on MICROPYPATH shadows `time`)
import uos as _os

_now = 0  # virtual microseconds since power-on
_realtime = False
_t0 = 0
# Each call of the clock costs the interpreter some time on a real board; a tiny virtual
# increment keeps busy-wait loops (while ticks_diff(..) < x: pass) from spinning forever.
_TICK_COST_US = 1

_ratio_m = 0  # ESP32 microseconds per 1000 unix microseconds of firmware execution; 0 = off
_debt = 0  # unix nanoseconds of firmware execution not yet on the clock
_resid_ns = 0  # what entering and leaving a shim costs outside fw()/mark()'s clock reads (calibrated)
_mark = _rt.ticks_us()  # wall clock when the firmware last got control back from a shim
_t_in = 0  # wall clock when the current shim call started
_depth = 0  # shims entered and not yet left (fw()/mark() nesting)
_LONG_US = 300  # an interval this long (wall) may hold a preemption: ask the kernel
_SETTLE_US = 100000  # ESP32 microseconds of debt paid at once, without waiting for a sleep
charged_us = 0  # ESP32 microseconds charged so far (benches and tests read it)
_sched = None  # /proc/self/schedstat, opened now (the flash is mounted at '/' later)
_sbuf = bytearray(64)
_cpu_mark = 0  # the process's CPU time (ns) when the firmware last got control back


def set_cpu_ratio(r):
    """Charge the firmware's execution times ``r`` (ESP32 us per unix us); 0 turns it off."""
    global _ratio_m, _sched, _cpu_mark, _debt, _resid_ns
    _ratio_m = int(r * 1000)
    _debt = 0
    if _ratio_m and _sched is None:
        try:
            _sched = open("/proc/self/schedstat", "rb")
            _cpu_mark = _cpu_ns()
        except OSError:
            _sched = None
    mark()
    if _ratio_m and not _resid_ns:
        _resid_ns = _calibrate()
        _debt = 0


def _probe(a, b):
    fw()
    mark()


def _calibrate():
    """The part of a shim call fw()/mark() cannot see (the Python call into the shim, the calls of
    fw and mark up to their clock reads, the returns) would be charged as firmware time, ~300 ns a
    call here (~50 ESP32 us, where the built-in costs a C call). Measured once: the debt a bracketed
    call leaves minus the time of a built-in call, best of 5 rounds (noise only adds)."""
    global _resid_ns
    _resid_ns = 0
    best = 1 << 30
    n = 1000
    td = _rt.ticks_diff
    for _ in range(5):
        fw()
        mark()
        d0 = _debt
        for i in range(n):
            _probe(i, 1)
        fw()
        mark()
        shim = _debt - d0
        t0 = _rt.ticks_us()
        for i in range(n):
            td(i, 1)
        built = _rt.ticks_diff(_rt.ticks_us(), t0) * 1000
        r = (shim - built) // n
        if r < best:
            best = r
    return best if best > 0 else 0


def _cpu_ns():
    """Nanoseconds this process has run on a CPU (schedstat's first field), without allocating."""
    f = _sched
    if f is None:
        return 0
    f.seek(0)
    n = f.readinto(_sbuf)
    b = _sbuf
    i = 0
    v = 0
    while i < n and 48 <= b[i] <= 57:
        v = v * 10 + b[i] - 48
        i += 1
    return v


def fw():
    """A shim was entered: the firmware ran since mark(); add that to the debt. Shims nest (a
    shim calling another, a soft timer's callback during a sleep): only the outermost entry
    charges, and every fw() is matched by a mark() (try/finally where the shim may raise)."""
    global _debt, _t_in, _depth
    _depth += 1
    if _depth > 1 or not _ratio_m:
        return
    t = _rt.ticks_us()
    d = _rt.ticks_diff(t, _mark)
    if d > _LONG_US and _sched is not None:
        # long: preempted, or blocked outside a shim (the REPL reading a line): only CPU time counts
        c = (_cpu_ns() - _cpu_mark) // 1000
        if c < d:
            d = c
    _debt += d * 1000 - _resid_ns  # may dip below 0 between two close calls: unbiased on average
    _t_in = t
    if _debt * _ratio_m > _SETTLE_US * 1000000 and not _realtime:
        settle()


def mark():
    """A shim returns to the firmware: its own time since the outermost fw() is the simulation's."""
    global _mark, _depth, _cpu_mark
    _depth -= 1
    if _depth > 0:
        return
    _depth = 0
    if not _ratio_m:
        return
    _cpu_mark = _cpu_ns()
    _mark = _rt.ticks_us()


def settle():
    """Put the firmware's execution so far on the clock (fast mode)."""
    global _debt, _now, charged_us
    if _debt > 0 and not _realtime:
        c = _debt * _ratio_m // 1000000
        _now += c
        charged_us += c
        if _stats is not None:
            _stats[c // 5000 if c < 100000 else 20] += 1
    _debt = 0


# RNSIM_CPU_STATS=1: a histogram of the charges paid at once (a pass's cost is paid at its sleep),
# in 5 ms buckets of ESP32 time (the last: >= 100 ms), printed on stderr when the interpreter ends
_stats = None


def stats_line():
    return "cpu charged_us=%d board_us=%d settles=%s" % (charged_us, _now, ",".join(str(x) for x in _stats or ()))


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
    global _now, _t0, _debt
    _now = start_us
    _t0 = _rt.ticks_us() - _now
    _debt = 0


_r = _os.getenv("RNSIM_CPU_RATIO")
if _r:
    set_cpu_ratio(float(_r))
del _r
if _os.getenv("RNSIM_CPU_STATS"):
    import sys as _sys
    from array import array as _array

    _stats = _array("I", bytes(4 * 21))
    _sys.atexit(lambda: _sys.stderr.write(stats_line() + "\n"))
