# A pystone-like speed figure for the MicroPython unix port it runs on.
# The simulated board charges the firmware's CPU time to its clock scaled by
# (this figure / the ESP32's ~1,730 pystones/s), so the mix of work per loop imitates pystone's:
# small procedure calls, record (object) field copies, integer arithmetic, string compares and
# list indexing, one "stone" per loop. Timed by the clock the board charges the firmware by
# (simclock.timed_ns: wall time less the kernel's wait for a CPU, over >= 0.25 s), so the share of
# the CPU a busy machine leaves does not change it; a neighbour that slows the CPU itself (SMT
# sibling, caches) does, and so the board clock's reference loop is timed with it: the ratio holds
# at that loop's time, and the board rescales it when the loop runs slower or faster (simclock.py).
# Prints stones per second and the loop's ns.
import utime as time  # the built-in (time.py beside this file is the board's)

_N = 12000


class _Rec:
    def __init__(self, nxt=None, kind=0, num=0, text=""):
        self.nxt = nxt
        self.kind = kind
        self.num = num
        self.text = text

    def clone(self):
        """A copy (the benchmark's record assignment)."""
        return _Rec(self.nxt, self.kind, self.num, self.text)


# module globals, read and written with `global` as pystone does (dict lookups, not locals)
g_int = 0
g_flag = 0
g_ch = ""
g_ch2 = ""
g_rec = None
_row = [0] * 51
_grid = [[0] * 51 for _ in range(51)]


def _step_a(r):
    c = r.nxt
    r.num = _add2(10, g_int)
    c.num = r.num
    c.kind = r.kind
    r.nxt = c.clone()
    if c.kind == 0:
        c.num = 6
        c.kind = _choose(r.kind)
        c.nxt = g_rec.nxt
        c.num = _add2(c.num, 10)
    else:
        r.num = c.num
    return r


def _step_b(x):
    y = x + 10
    while True:
        if g_ch == "A":
            y -= 1
            x = y - g_int
            break
    return x


def _choose(k):
    if k == 3:
        return 2
    return 1 if k == 0 else 3


def _add2(a, b):
    return a + b + 2


def _fill(row, grid, a, b):
    i = a + 5
    row[i] = b
    row[i + 1] = row[i]
    row[i + 30] = i
    for j in range(i, i + 2):
        grid[i][j] = i
    grid[i][i - 1] += 1
    grid[i + 20][i] = row[i]
    global g_int
    g_int = 5


def _same(c1, c2):
    return 0 if c1 != c2 else 1


def _cmp_text(s1, s2):
    global g_int
    k = 1
    c = ""
    while k <= 1:
        if _same(s1[k], s2[k + 1]) == 0:
            c = "A"
            k += 1
    if "W" <= c <= "Z":
        k = 7
    if c == "X":
        return True
    if s1 > s2:
        g_int = k + 7
        return True
    return False


def _flags():
    global g_ch, g_flag, g_ch2
    g_ch = "A"
    g_flag = 1
    g_ch2 = "B"
    if g_ch2 == g_ch:
        g_flag = 0
    return g_flag


def _choose_into(k, r):
    r.kind = _choose(k)
    if k == 1:
        r.num = r.num + 1 if g_int > 100 else 0
    return r


def run(n=_N):
    """Run n loops; (stones per second, the string compare's result)."""
    global g_rec
    g_rec = _Rec(_Rec(), 0, 40, "DHRYSTONE-LIKE PROGRAM, SOME STRING")
    s1 = "DHRYSTONE-LIKE PROGRAM, 1'ST STRING"
    s2 = "DHRYSTONE-LIKE PROGRAM, 2'ND STRING"
    t0 = time.clock()
    for _ in range(n):
        _flags()
        a, b = 2, 3
        ok = not _cmp_text(s1, s2)
        while a < b:
            c = 5 * a - b
            c = _add2(a, b)
            a += 1
        _fill(_row, _grid, a, c)
        _step_a(g_rec)
        _choose_into(1, g_rec.nxt)
        ch = "A"
        while ch <= g_ch2:
            if _choose(0) == _same(ch, "C"):
                pass
            ch = chr(ord(ch) + 1)
        b = b * a
        a = b // a
        b = 7 * (b - a) - a
        a = _step_b(a)
    dt = time.clock() - t0
    return n / dt if dt > 0 else 0, ok


def measure(cpu_s=0.25):
    """(stones per second, ns of simclock's reference loop), timed by the clock the board charges
    the firmware by: pystone chunks of ~5 ms (>= cpu_s in all) each followed by a timing of the
    loop. A load weighs on a chunk and its loop alike, so each pair's product (the loop's cost in
    stones) holds on a quiet or a busy machine: the loop's time reported is the median product
    over the pystone figure, so that their product is that median."""
    import simclock

    n = 100
    while simclock.timed_ns(run, n) < 5000000:
        n *= 2
    prods = []
    tot = 0
    stones = 0
    for _ in range(10000):  # (bounded: a clock that reads 0 must not hang the benchmark)
        if tot >= cpu_s * 1e9:
            break
        t = simclock.timed_ns(run, n)
        r = simclock.ref_ns()
        if t > 0 and r > 0:
            tot += t
            stones += n
            prods.append(r * n / t)  # the loop's cost in stones
    prods.sort()
    rate = stones * 1e9 / tot
    return rate, int(prods[len(prods) // 2] * 1e9 / rate)


if __name__ == "__main__":
    # prints "STONES_PER_S REF_NS"
    r, ref = measure()
    print(int(r), ref)
