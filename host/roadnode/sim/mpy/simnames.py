"""Name pools paid for by the simulation.

MicroPython keeps interned names (qstrs: module, function and attribute names) in pools that double in
size: 20, 40, ... 640, 1,280 entries. The ESP32 has the names of its built-in modules (machine, network,
socket, ...) in ROM; here the simulation's modules are .mpy files whose ~450-630 names go into those
pools first. The firmware's names then met a pool boundary where the ESP32's never would: one name more
allocated the seventh pool (1,280 entries, 14 KB on this port) and showed as a 14 KB jump of the
firmware's heap. So before the firmware loads, the simulation interns filler names until the newest pool
has room for ROOM more names, and that heap is the simulation's. The firmware's names still cost their
text (their entries' ~7 B each on the ESP32 are not charged: the port's 8-byte words charge the
firmware's other objects far more than that).
"""

import gc

ROOM = 1024  # names the firmware may add without a pool being allocated (it has ~550 today)


def _fill(start, limit):
    """Intern filler names until a new pool is allocated: (fillers, bytes the pool took)."""
    o = object()
    gc.collect()
    a = gc.mem_alloc()
    for i in range(start, start + limit):
        getattr(o, "\x01%x" % i, None)  # getattr interns its name: one no program uses
        b = gc.mem_alloc()
        if b - a > 2048:  # a pool (its text chunks and the filler strings are < 1 KB)
            return i + 1 - start, b - a
        a = b
    return limit, 0


def pay_for_pools():
    """Pools allocated until the newest holds ROOM free entries; (fillers, pools) for the record."""
    n = pools = 0
    while True:
        k, size = _fill(n, 4096)
        n += k
        if not size:
            return n, pools
        pools += 1
        if size // 12 > ROOM:  # ~11 B per entry on this 64-bit port: entries of the new pool
            return n, pools
