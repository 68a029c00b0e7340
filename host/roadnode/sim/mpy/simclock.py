"""The simulated board's clock, in integer microseconds since power-on.

Fast mode (default): virtual time; sleeping advances the clock instantly, so a drive runs as
fast as the interpreter can. Realtime mode: the clock follows the host's monotonic clock and
sleeping really sleeps. Device models read ``now_us()`` to know how much data to produce.

CPU time (fast mode, when RNSIM_CPU_RATIO is set): the firmware's own execution is charged to the
clock, scaled by the ESP32/unix speed ratio, so a pass that would take too long on the ESP32
overruns here too. The shims bracket their own work (``fw()`` on entry, ``mark()`` on exit): the
device models' time is not the firmware's. The interpreter has no fine process-CPU clock call (no
ffi; time.clock() ticks in ms), so an interval is its wall-clock length minus the time the kernel
kept the process waiting for a CPU (/proc/self/schedstat's run_delay, exact once the process runs
again), read only when the kernel switched the process out in between (schedstat's switch count);
when what is left is long, the process's CPU time over it bounds it (time blocked outside any shim,
the REPL waiting for a line, is not the firmware's work). So neighbours that take the CPU away do
not bill the board. Reading schedstat costs ~1.8 us, so it is read only where a switch could hide:
after an interval or a shim call longer than _SWITCH_US, and at least every _SNAP_US of wall time.
Between the last reading and the interval's start lie only short stretches, each too short to hold
a switch: wall time on the CPU, which is taken off the CPU time read since.

Neighbours also slow the CPU itself (a busy SMT sibling, shared caches, a lower boost clock): the
same bytecode takes longer. The ratio therefore holds at one speed, the one at which a fixed
reference loop of interpreter work (``_ref_loop``) took RNSIM_CPU_REF_NS ns (sim/mpy/simbench.py
times it in pairs with the pystone figure the ratio comes from, in one interpreter, so a load at
that moment weighs on both alike). Every _REF_EVERY_US of wall time the board times the loop again
by the same clock and scales the ratio by RNSIM_CPU_REF_NS / (the median of its last _REF_KEEP
times, which start at RNSIM_CPU_REF_NS: only a change that lasts moves the ratio). So the charge
follows the firmware's work, not the neighbours'. Without RNSIM_CPU_REF_NS the ratio is fixed.
(The loop is small: a neighbour that mainly evicts caches slows the firmware, with its larger
working set, a little more than the loop; ~5% with two busy loops per core here.)

The debt is paid when the firmware next sleeps or waits (the clock does not move mid-pass, so the
samples a pass reads are those of its start, as on offline runs), or at once when it exceeds
_SETTLE_US (a firmware that never yields).
"""

import micropython
import utime as _rt  # the built-in time module (time.py on MICROPYPATH shadows `time`)
import uos as _os
from array import array as _array

_now = 0  # virtual microseconds since power-on
_realtime = False
_t0 = 0
# Each call of the clock costs the interpreter some time on a real board; a tiny virtual
# increment keeps busy-wait loops (while ticks_diff(..) < x: pass) from spinning forever.
_TICK_COST_US = 1

_ratio_m = 0  # ESP32 microseconds per 1000 unix microseconds of firmware execution now; 0 = off
_base_m = 0  # the same at the reference speed (RNSIM_CPU_RATIO x 1000)
_debt = 0  # unix nanoseconds of firmware execution not yet on the clock
_resid_ns = 0  # what entering and leaving a shim costs outside fw()/mark()'s clock reads, now
_resid_cal = 0  # the same as calibrated, when the reference loop took _ref_cal ns
_mark = _rt.ticks_us()  # wall clock when the firmware last got control back from a shim
_t_in = 0  # wall clock when the current shim call started
_depth = 0  # shims entered and not yet left (fw()/mark() nesting)
_SWITCH_US = 20  # an interval this long (wall) may hold a switch to another process: ask the kernel
_LONG_US = 300  # ... and one this long after the wait for a CPU is taken off, a block
_SNAP_US = 1000  # schedstat is read again at a mark at least this long after its last reading (wall)
_SETTLE_US = 100000  # ESP32 microseconds of debt paid at once, without waiting for a sleep
charged_us = 0  # ESP32 microseconds charged so far (benches and tests read it)
unix_us = 0  # the unix microseconds they were charged for
_sched = None  # /proc/self/schedstat: "run_ns wait_ns switches" (opened before the flash is at '/')
_stat = None  # /proc/self/stat: reading it brings schedstat's CPU time up to date
_sbuf = bytearray(64)  # schedstat as read now
_mbuf = bytearray(64)  # schedstat as last read, at _snap_at (at or before the last mark)
_tbuf = bytearray(512)  # /proc/self/stat (read only to bring schedstat up to date)
_mlen = 0
_snap_at = 0  # wall clock of _mbuf's reading
_snap_ok = False  # _mbuf holds a reading
_f_run = 0  # the fields _fields() parsed: ns on a CPU, ns runnable but waiting for one
_f_wait = 0

# the reference loop (see the docstring)
_REF_N = 750  # turns of _ref_loop a timing: ~0.5 ms here, so timing it every 100 ms costs ~0.5%
_REF_EVERY_US = 100000
_REF_KEEP = 7  # the median of this many timings (~0.7 s) is the speed now
_ref0 = 0  # ns of the loop at the ratio's speed (RNSIM_CPU_REF_NS); 0 = the ratio is fixed
_ref_cal = 0  # ns of the loop when the shim cost was calibrated (taken as the one given then)
_ref_ns = _array("i", bytes(4 * _REF_KEEP))  # the last timings, ns (a ring)
_ref_i = 0
_ref_at = 0  # wall clock of the last timing


def set_cpu_ratio(r, ref_ns=0):
    """Charge the firmware's execution times ``r`` (ESP32 us per unix us); 0 turns it off. With
    ``ref_ns``, ``r`` holds where _ref_loop(_REF_N) takes ``ref_ns`` ns, and the board follows
    the interpreter's speed from there (the module docstring)."""
    global _ratio_m, _base_m, _debt, _resid_ns, _resid_cal, _ref0, _ref_cal, _ref_at
    _ratio_m = _base_m = int(r * 1000)
    _ref0 = int(ref_ns) if _ratio_m else 0
    _debt = 0
    if _ratio_m:
        _open_sched()
    if _ref0:
        # the speed starts as the one given; the board's own timings replace it one by one, so
        # only a change that lasts (more than half the ring) moves the ratio, not a start-up blip
        for i in range(_REF_KEEP):
            _ref_ns[i] = _ref0 if _ref0 < 0x3FFFFFFF else 0x3FFFFFFF
        _ref_at = _rt.ticks_us()
    mark()
    if _ratio_m and not _resid_cal:
        _resid_ns = 0
        _resid_cal = _calibrate()
        _ref_cal = _ref0
        _resid_ns = _resid_cal
        _debt = 0


def _probe(a, b):
    fw()
    mark()


def _calibrate():
    """The part of a shim call fw()/mark() cannot see (the Python call into the shim, the calls of
    fw and mark up to their clock reads, the returns) would be charged as firmware time, ~300 ns a
    call here (~50 ESP32 us, where the built-in costs a C call). Measured once: the debt a bracketed
    call leaves minus the time of a built-in call, best of 5 rounds (noise only adds)."""
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


def _open_sched():
    global _sched, _stat
    if _sched is None:
        try:
            _stat = open("/proc/self/stat", "rb")
            _sched = open("/proc/self/schedstat", "rb")
        except OSError:
            _sched = None


@micropython.native
def _read(buf):
    _sched.seek(0)
    return _sched.readinto(buf)


def _switches(b, n):
    """schedstat's last field (times switched in), read from the end: no parse of the rest."""
    i = n - 1
    while i >= 0 and not 48 <= b[i] <= 57:
        i -= 1
    v = 0
    m = 1
    while i >= 0 and 48 <= b[i] <= 57:
        v += (b[i] - 48) * m
        m *= 10
        i -= 1
    return v


def _fields(b, n):
    """schedstat's first two fields into _f_run, _f_wait, without allocating."""
    global _f_run, _f_wait
    i = 0
    v = 0
    while i < n and b[i] != 32:
        v = v * 10 + b[i] - 48
        i += 1
    _f_run = v
    i += 1
    v = 0
    while i < n and b[i] != 32:
        v = v * 10 + b[i] - 48
        i += 1
    _f_wait = v


@micropython.native
def _cpu_us(d, gap):
    """The wall interval ``d`` (us) less the time the kernel kept the process off the CPU: when it
    was switched out in between, its wait for a CPU (run_delay, exact), and what is left, if long,
    bounded by its CPU time (it may have blocked). Only an interval long enough to hold a switch
    reads schedstat; its reading then replaces the last one, taken ``gap`` us (wall, all of it on
    the CPU: see the module docstring) before the interval began."""
    global _sbuf, _mbuf, _mlen, _snap_at
    if d > _SWITCH_US and _sched is not None:
        n = _read(_sbuf)
        if _switches(_sbuf, n) != _switches(_mbuf, _mlen):
            _fields(_mbuf, _mlen)
            run0 = _f_run
            wait0 = _f_wait
            _fields(_sbuf, n)
            d -= (_f_wait - wait0) // 1000
            if d > _LONG_US:
                # schedstat's CPU time lags up to a scheduler tick behind; reading /proc/self/stat
                # brings it up to date (the kernel's thread_group_cputime), so this bound is never
                # below the CPU time actually used (the last reading's own may lag: it only adds)
                _stat.seek(0)
                _stat.readinto(_tbuf)
                n = _read(_sbuf)
                _fields(_sbuf, n)
                c = (_f_run - run0) // 1000 - gap
                if c < d:
                    d = c
            if d < 0:
                d = 0
        # this reading is the newest: the next interval's reference
        b = _mbuf
        _mbuf = _sbuf
        _sbuf = b
        _mlen = n
        _snap_at = _rt.ticks_us()
    return d


def _ref_loop(n):
    """A fixed amount of interpreter work in pystone's mix (calls, attribute and global access,
    small-int arithmetic, compares, list and bytearray indexing) that allocates nothing, so timing
    it leaves the firmware's heap and its collections as they are."""
    global _ref_g
    o = _ref_obj
    row = _ref_row
    lst = _ref_lst
    x = 0
    for i in range(n):
        j = i & 15
        o.a = _ref_f(o.b, j)
        lst[j] = o.a
        k = 0
        while k < 3:
            x = x + lst[(j + k) & 15] - k
            k += 1
        row[j] = x & 255
        if _ref_g == x or row[j] > 200:
            x = 0
        _ref_g = row[(j + 1) & 15]
        o.b = _ref_cmp("ESP32", "ESP3") + o.a % 7
    return x


class _RefObj:
    def __init__(self):
        self.a = 0
        self.b = 1


def _ref_f(a, b):
    return a * 3 + b - (a >> 1)


def _ref_cmp(s, t):
    return 1 if s > t else 2


_ref_obj = _RefObj()
_ref_row = bytearray(16)
_ref_lst = [0] * 16
_ref_g = 0


def timed_ns(f, a):
    """Run f(a) and return how long it ran by the clock the firmware is charged by (ns)."""
    global _mlen, _snap_at, _snap_ok
    _open_sched()
    if _sched is not None:
        _mlen = _read(_mbuf)
        _snap_ok = True
    t = _rt.ticks_us()
    _snap_at = t
    f(a)
    d = _rt.ticks_diff(_rt.ticks_us(), t)
    return _cpu_us(d, 0) * 1000


def ref_ns():
    """Time the reference loop once (ns)."""
    return timed_ns(_ref_loop, _REF_N)


def _ref_median():
    a = _ref_ns
    for i in range(_REF_KEEP):
        lo = hi = 0
        v = a[i]
        for j in range(_REF_KEEP):
            if a[j] < v:
                lo += 1
            elif a[j] > v:
                hi += 1
        if lo <= _REF_KEEP // 2 and hi <= _REF_KEEP // 2:
            return v
    return a[0]


def _ref_update():
    """Time the reference loop and rescale the ratio (and the calibrated shim cost) by it."""
    global _ref_i, _ref_at, _ratio_m, _resid_ns
    v = ref_ns()
    if v > 0:
        _ref_ns[_ref_i] = v if v < 0x3FFFFFFF else 0x3FFFFFFF
        _ref_i = (_ref_i + 1) % _REF_KEEP
    m = _ref_median()
    if m > 0:
        _ratio_m = _base_m * _ref0 // m
        if _ref_cal:
            _resid_ns = _resid_cal * m // _ref_cal
    _ref_at = _rt.ticks_us()


@micropython.native
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
    if d > _SWITCH_US:  # (most intervals are shorter: no call)
        d = _cpu_us(d, _rt.ticks_diff(_mark, _snap_at))
    _debt += d * 1000 - _resid_ns  # may dip below 0 between two close calls: unbiased on average
    _t_in = t
    if _debt * _ratio_m > _SETTLE_US * 1000000 and not _realtime:
        settle()
    if _ref0 and _rt.ticks_diff(t, _ref_at) > _REF_EVERY_US:
        _ref_update()  # the shim's time, not the firmware's: mark() starts the next interval


@micropython.native
def mark():
    """A shim returns to the firmware: its own time since the outermost fw() is the simulation's."""
    global _mark, _depth, _mlen, _snap_at, _snap_ok
    _depth -= 1
    if _depth > 0:
        return
    _depth = 0
    if not _ratio_m:
        return
    t = _rt.ticks_us()
    if _sched is not None and (not _snap_ok or _rt.ticks_diff(t, _t_in) > _SWITCH_US
                               or _rt.ticks_diff(t, _snap_at) > _SNAP_US):
        _mlen = _read(_mbuf)
        _snap_ok = True
        t = _snap_at = _rt.ticks_us()
    _mark = t


@micropython.native
def settle():
    """Put the firmware's execution so far on the clock (fast mode)."""
    global _debt, _now, charged_us, unix_us
    if _debt > 0 and not _realtime:
        c = _debt * _ratio_m // 1000000
        _now += c
        charged_us += c
        unix_us += _debt // 1000
        if _stats is not None:
            _stats[c // 5000 if c < 100000 else 20] += 1
    _debt = 0


# RNSIM_CPU_STATS=1: a histogram of the charges paid at once (a pass's cost is paid at its sleep),
# in 5 ms buckets of ESP32 time (the last: >= 100 ms), printed on stderr when the interpreter ends
_stats = None


def stats_line():
    """The clock's charge counters as one line."""
    return "cpu charged_us=%d board_us=%d unix_us=%d ratio_m=%d settles=%s" % (
        charged_us, _now, unix_us, _ratio_m, ",".join(str(x) for x in _stats or ()))


def set_realtime(on):
    """Run the board clock on the wall clock (on) or on charged CPU time, continuing from now."""
    global _realtime, _t0
    _realtime = bool(on)
    _t0 = _rt.ticks_us() - _now


def realtime():
    """Whether the board clock is the wall clock."""
    return _realtime


@micropython.native
def now_us():
    """The board clock in microseconds (each read costs a tick in fast mode)."""
    global _now
    if _realtime:
        _now = _rt.ticks_diff(_rt.ticks_us(), _t0)
    else:
        _now += _TICK_COST_US
    return _now


@micropython.native
def sleep_us(us):
    """Let us pass on the board clock (really waits only in realtime)."""
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
    set_cpu_ratio(float(_r), int(_os.getenv("RNSIM_CPU_REF_NS") or 0))
del _r
if _os.getenv("RNSIM_CPU_STATS"):
    import sys as _sys

    _stats = _array("I", bytes(4 * 21))
    _sys.atexit(lambda: _sys.stderr.write(stats_line() + "\n"))
