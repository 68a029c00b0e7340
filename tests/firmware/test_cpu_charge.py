"""The simulated board charges the firmware's own work to its clock, not its neighbours': the same
work costs the same board time on a quiet machine and with every core kept busy (sim/mpy/simclock.py:
the wait for a CPU is taken off each interval, and a reference loop follows the CPU's speed)."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

import pytest

from roadnode.mpy import runtime

# A fixed amount of firmware-like work (small-int arithmetic, array indexing, calls) cut by shim
# calls into intervals from a few us to a few hundred, as a pass's code is between the firmware's
# calls of time/machine; each round ends with a sleep, where the debt is paid. work() returns the
# ESP32 us charged and the unix us they were charged for.
WORK = """
import time, utime, simclock
from array import array
buf = array('h', bytes(600))
def burn(n):
    s = 0
    for i in range(n):
        k = i % 300
        v = buf[k] + i
        buf[k] = v & 0x3FFF
        s += v >> 3
    return s
def cpu_us(rounds):
    # the same work without the shim calls, by the process's CPU time (ms ticks; ~70 ms of it)
    c0 = utime.clock()
    for r in range(rounds):
        for n in (3, 30, 300, 2000):
            burn(n)
    return int((utime.clock() - c0) * 1e6)
def work(rounds):
    simclock.settle()
    c0, u0 = simclock.charged_us, simclock.unix_us
    for r in range(rounds):
        for n in (3, 30, 300, 2000):
            burn(n)
            time.ticks_us()
        time.sleep_us(100)
    return simclock.charged_us - c0, simclock.unix_us - u0
"""
ROUNDS = 250  # ~0.07 s of work here


def _charge(rounds: int = ROUNDS) -> tuple[int, int]:
    code = WORK + "print(*work(%d))" % rounds
    c, u = map(int, runtime.run_code(code, sim=True).stdout.split())
    return c, u


def _charge_and_cpu(rounds: int = ROUNDS) -> tuple[int, int, int]:
    """(ESP32 us charged, unix us charged for, the CPU time the same work takes without shims)."""
    code = WORK + "print(*work(%d), cpu_us(%d))" % (rounds, rounds)
    c, u, t = map(int, runtime.run_code(code, sim=True).stdout.split())
    return c, u, t


def _spin(started):
    with started.get_lock():
        started.value += 1
    while True:
        pass


class _Busy:
    """Two spinning processes per core (at least two cores' worth), stopped on exit: every core
    has more runnable work than it can run, so the board's process is switched out mid-pass."""

    def __enter__(self):
        ctx = mp.get_context("fork")
        started = ctx.Value("i", 0)
        self.procs = [ctx.Process(target=_spin, args=(started,), daemon=True)
                      for _ in range(2 * max(2, os.cpu_count() or 1))]
        for p in self.procs:
            p.start()
        # every spinner running before anything is measured (each is a fork of this large process:
        # measuring while they are still being made would be neither state)
        end = time.monotonic() + 60
        while started.value < len(self.procs) and time.monotonic() < end:
            time.sleep(0.01)
        assert started.value == len(self.procs), "the busy processes did not start"
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(10)


def _measure_speed(monkeypatch):
    """The unix port's speed figures, measured now (as a test process does once, at any load)."""
    monkeypatch.delenv("RNSIM_UNIX_PYSTONES", raising=False)
    return runtime.unix_speed()


@pytest.mark.slow
def test_the_same_work_costs_the_same_board_time_with_every_core_busy(monkeypatch):
    """Charged at the default ratio, each half with the speed figures measured in its own state:
    the old clock (each short interval's wall time) charged ~1.7-1.9x here with the cores busy.
    And what is charged for is the work's CPU time (time.clock() over the same work without the
    shim calls), whatever the load already on the machine when the test starts."""
    monkeypatch.delenv("RNSIM_CPU_RATIO", raising=False)
    monkeypatch.delenv("RNSIM_CPU_REF_NS", raising=False)
    # Quiet and busy alternate, a pair at a time: in a full parallel run the machine's own load comes
    # and goes over seconds (one CI run's "quiet" half took 1.5x the CPU time of its busy one for the
    # same work), and each pair sees about the same of it.
    quiet, busy, pairs = [], [], []
    for _ in range(5):  # the CPU's own speed here wanders 1.6x over seconds: the pairs' median
        _measure_speed(monkeypatch)
        quiet.append(_charge_and_cpu())
        with _Busy():
            _measure_speed(monkeypatch)
            busy.append(_charge_and_cpu())
        pairs.append(busy[-1][0] / quiet[-1][0])
    q = statistics.median(c for c, _, _ in quiet)
    print("charged ESP32 ms quiet", [c // 1000 for c, _, _ in quiet], "busy", [c // 1000 for c, _, _ in busy])
    print("ratio", [round(c / u) for c, u, _ in quiet], [round(c / u) for c, u, _ in busy], "cpu", [t for _, _, t in quiet], [t for _, _, t in busy])
    assert q > 1_000_000  # ~0.07 s of work here, at a ratio of ~150
    # (the old clock: 1.67-1.81x; 1.27x seen once with the machine at a load of 8 on 2 cores before the
    # test's own busy loops, where the "quiet" half is not quiet either)
    assert 0.8 < statistics.median(pairs) < 1.35, (quiet, busy)
    for runs in (quiet, busy):
        assert 0.8 < statistics.median(u / t for _, u, t in runs) < 1.35, runs


def test_the_ratio_holds_where_the_reference_loop_takes_the_time_given(monkeypatch):
    """RNSIM_CPU_RATIO alone is a fixed ratio; with a reference loop time it holds where the loop
    takes that time, and once the board has timed its loop (every 100 ms, here at once) it follows
    that: twice the given time, twice the charge. One interpreter, its loop time measured there;
    the CPU's speed wanders by tens of % over tenths of a second on a shared machine, so each is the
    median of 5 alternated runs."""
    monkeypatch.setenv("RNSIM_CPU_RATIO", "100")
    monkeypatch.delenv("RNSIM_CPU_REF_NS", raising=False)
    code = WORK + """
c, u = work(100)
print(c * 1000 // u)
ref = sorted(simclock.ref_ns() for _ in range(7))[3]
for i in range(10):
    simclock.set_cpu_ratio(100, (1 + i % 2) * ref)
    for _ in range(simclock._REF_KEEP):
        simclock._ref_update()
    c, u = work(50)
    print(c * 1000 // u)
"""
    out = [int(x) for x in runtime.run_code(code, sim=True).stdout.split()]
    fixed, same, twice = out[0], statistics.median(out[1::2]), statistics.median(out[2::2])
    assert abs(fixed - 100_000) <= 1_000, fixed
    # (1.75x seen with 4 test workers and 2 busy loops on 2 cores: the reference loop's timing drifts
    # with the load; the mechanism itself is the ratio below)
    assert 50_000 < same < 220_000, out
    assert 1.5 < twice / same < 2.7, out
    # the environment reaches the board (the runtime sets both for a board it starts)
    monkeypatch.setenv("RNSIM_CPU_REF_NS", "480000")
    out = runtime.run_code("import simclock; print(simclock._base_m, simclock._ref0)", sim=True).stdout.split()
    assert out == [b"100000", b"480000"]


def test_time_blocked_outside_the_shims_is_not_charged(monkeypatch):
    """The interpreter blocking outside any shim (here the built-in utime.sleep_ms; on a board, the
    REPL waiting for a line) is not the firmware's work: 200 ms of it would be 20 s at ratio 100.
    What is charged is the CPU time the interpreter used meanwhile (its sleep wakes up every ms or
    so), plus at most a scheduler tick (4-10 ms) by which the kernel's count lags."""
    monkeypatch.setenv("RNSIM_CPU_RATIO", "100")
    code = """
import time, utime, simclock
time.ticks_us()
c0 = utime.clock()
utime.sleep_ms(200)
c1 = utime.clock()
time.sleep_us(10)
print(simclock.charged_us, int((c1 - c0) * 1e6))
"""
    charged, cpu_us = map(int, runtime.run_code(code, sim=True).stdout.split())
    assert charged < 100 * (cpu_us + 12_000), (charged, cpu_us)
    assert charged < 100 * 50_000, (charged, cpu_us)
