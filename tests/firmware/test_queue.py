"""The node's store-and-forward queue (firmware/rnfw/queue.py): the same module on CPython (host
tools, a model-checked random workout, damaged files) and on the MicroPython unix port over LittleFS
on the simulated NOR flash (sim/mpy/flashdev.py): round trip and reopen, a 7-day fill on a 2 MB
image beside ~200 KB of other files, power cuts at random byte offsets (seed printed, RN_CUT_SEED=S
repeats a run, RN_CUTS=N tries more points), flash wear for one 8 h day, and the queue's heap.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw

Q = fw("queue")
CUTS = int(os.environ.get("RN_CUTS", "60"))


def _seed() -> int:
    s = int(os.environ.get("RN_CUT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"RN_CUT_SEED={s}")
    return s


def content(seq: int, n: int) -> bytes:
    """The packet stored under seq: its seq and length inside, the rest a pattern of both."""
    b = bytearray((seq * 31 + i * 17 + n) & 255 for i in range(n))
    b[0:4] = struct.pack("<I", seq)
    b[4] = n
    return bytes(b)


def read_all(q, size=400):
    """Every held record through read(), in order: [(seq, packet)]; checks each batch's framing."""
    buf = bytearray(size)
    out = []
    s = 0
    while True:
        first, k, n = q.read(s, buf)
        if not k:
            return out
        o = 0
        for j in range(k):
            ln = buf[o]
            out.append((first + j, bytes(buf[o + 1:o + 1 + ln])))
            o += ln + 1
        assert o == n
        assert first >= s
        s = first + k


# ---- CPython ----------------------------------------------------------------------------------

def test_crc_is_the_packets_crc16():
    from rnfw import crc

    rng = random.Random(1)
    for _ in range(50):
        d = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        assert Q._crc(d, 0, len(d), 0xFFFF) == crc.crc16(d)
        dst = bytearray(len(d) + 3)
        assert Q._copy(d, 0, len(d), 0xFFFF, dst, 2) == crc.crc16(d) and dst[2:2 + len(d)] == d


def test_round_trip_reopen_and_layout(tmp_path):
    root = str(tmp_path / "q")
    q = Q.Queue(root, capacity=4 * 1024, file_bytes=1024, batch_bytes=300)
    assert 0 <= q.epoch < 1 << 30 and (q.next_seq, q.base, q.depth) == (0, 0, 0)
    want = {}
    for s in range(60):
        p = content(s, 20 + s % 40)
        assert q.append(p, len(p)) == s
        want[s] = p
        if s % 7 == 6:
            q.commit()
    assert q.depth == 60 and read_all(q)[-1][0] == 55  # the batch (56-59) is not readable yet
    q.commit()
    assert read_all(q) == sorted(want.items())
    names = sorted(os.listdir(root))
    n0 = int(names[1][:8], 16)  # the second file's first seq: the first holds 0..n0-1
    assert "meta" in names and names[0] == "00000000-%x.q" % n0  # closed files: first-count.q
    q.ack(n0 - 2)
    assert q.base == n0 - 1 and q.depth == 61 - n0 and read_all(q)[0][0] == n0 - 1
    assert sorted(os.listdir(root)) == names  # a file goes only when all of it is acked
    q.ack(n0 - 1)
    assert q.base == n0 and q.depth == 60 - n0 and sorted(os.listdir(root)) == names[1:]
    q.close()
    r = Q.Queue(root, capacity=4 * 1024, file_bytes=1024, batch_bytes=300)
    assert (r.epoch, r.next_seq, r.base, r.depth, r.dropped, r.torn) == (q.epoch, 60, n0, 60 - n0, 0, 0)
    assert read_all(r) == [(s, want[s]) for s in range(n0, 60)]
    assert r.append(b"x" * 30, 30) == 60


def test_model_checked_random_workout(tmp_path):
    """Thousands of random appends, commits, acks, reads, clean reopens and crashes (the object
    dropped without close: the RAM batch lost, the lazily persisted ack point may come back) against
    a model: the readable records are exactly the committed ones from base on, with their contents;
    records leave only by an ack or by a drop that is counted; seqs of committed records are never
    given again."""
    seed = _seed()
    rng = random.Random(seed)
    root = str(tmp_path / "q")
    kw = dict(capacity=5 * 700, file_bytes=700, batch_bytes=300, ack_every=rng.choice([1, 10, 50]))
    q = Q.Queue(root, **kw)
    epoch = q.epoch
    committed = {}  # seq -> packet: every record that ever reached flash
    pending = []
    held = []
    counts = dict.fromkeys(["ack", "drop", "crash", "reopen"], 0)

    def land():
        for ps, pp in pending:
            assert ps not in committed
            committed[ps] = pp
        pending.clear()

    for _ in range(3000):
        before, base0, dropped0 = held, q.base, q.dropped
        r = rng.random()
        kind = "append"
        if r < 0.55:
            p = content(q.next_seq, rng.randrange(5, 65))
            if pending and q._bn + len(p) + 3 > len(q._batch):
                land()  # the append commits the batch first
            s = q.append(p, len(p))
            assert s == q.next_seq - 1 and s not in committed
            pending.append((s, p))
        elif r < 0.7:
            kind = "commit"
            q.commit()
            land()
        elif r < 0.75 and committed:
            kind = "ack"
            upto = rng.randrange(base0 - 3, base0 + 12)  # behind the appends: the ring fills and turns
            q.ack(upto)
            assert q.base == max(base0, min(upto, max(committed)) + 1)
        elif r < 0.88:
            kind = "read"
            buf = bytearray(rng.choice([66, 130, 500]))
            seq = rng.randrange(0, q.next_seq + 3)
            first, k, nb = q.read(seq, buf)
            want = [s for s in before if s >= seq]
            if not want:
                assert k == 0
            else:
                assert k > 0 and first == want[0] and want[:k] == list(range(first, first + k))
                o = 0
                for j in range(k):
                    assert bytes(buf[o + 1:o + 1 + buf[o]]) == committed[first + j]
                    o += buf[o] + 1
                assert o == nb
        elif r < 0.94:
            kind = "reopen"
            q.close()  # commits: may drop the oldest
            land()
            b = q.base
            q = Q.Queue(root, **kw)
            assert q.base == b  # a clean stop persists the ack point
        else:
            kind = "crash"
            q._rclose()
            pending.clear()
            q = Q.Queue(root, **kw)
            assert base0 - kw["ack_every"] <= q.base <= base0  # the ack point is persisted lazily, not never
        counts[kind] = counts.get(kind, 0) + 1
        got = read_all(q, rng.choice([70, 200, 1000]))
        held = [s for s, _ in got]
        assert all(committed[s] == p for s, p in got), "content"
        assert held == sorted(s for s in committed if s >= q.base), "a committed record above base is missing"
        gone = set(before) - set(held)
        if kind == "ack":
            assert all(s < q.base for s in gone) and q.dropped == dropped0
        elif kind == "crash":
            assert not gone and q.dropped == dropped0
        else:  # only the oldest leave, and every unacknowledged one is counted
            assert all(s < q.base for s in gone) and q.base >= base0
            assert q.dropped - dropped0 == len([s for s in gone if s >= base0])
            counts["drop"] += q.dropped > dropped0
        assert q.depth == len(held) + len(pending)
        assert q.next_seq == (max(committed) + 1 if committed else 0) + len(pending)
        assert q.epoch == epoch and q.torn == 0 and q.errors == 0
    print(f"workout: {len(committed)} records committed, {q.dropped} dropped, {counts} (seed {seed})")
    assert counts["drop"] > 5 and counts["crash"] > 50 and len(committed) > 1000


def _newest(root):
    return sorted(n for n in os.listdir(root) if n.endswith(".q"))[-1]


@pytest.mark.parametrize("damage", ["garbage", "cut_record", "erased_tail"])
def test_damaged_tail_is_dropped_counted_and_its_seqs_skipped(tmp_path, damage):
    """What a cut leaves on a filesystem that does not commit writes atomically: the recovery scan
    keeps the records that check out, counts the damaged tail in torn, never reuses its seqs."""
    root = str(tmp_path / "q")
    q = Q.Queue(root, capacity=4 * 2048, file_bytes=2048, batch_bytes=300)
    for s in range(30):
        p = content(s, 24)
        q.append(p, 24)
        q.commit()
    q.close()
    path = os.path.join(root, _newest(root))
    with open(path, "rb") as f:
        data = f.read()
    if damage == "garbage":
        data += bytes([24]) + b"\x55" * 26  # a whole record whose CRC fails
        lost_to = 30
    elif damage == "cut_record":
        data = data[:-5]  # the last record half written
        lost_to = 29
    else:
        data += b"\xff" * 300  # erased flash after the end: the length byte says 255
        lost_to = 30
    with open(path, "wb") as f:
        f.write(data)
    r = Q.Queue(root, capacity=4 * 2048, file_bytes=2048, batch_bytes=300)
    assert r.torn == 1 and r.epoch == q.epoch
    assert [s for s, _ in read_all(r)] == list(range(lost_to))
    assert r.next_seq >= 30  # the damaged records' seqs are skipped, never given again
    assert _newest(root) == "%08x.q" % r.next_seq  # a fresh file carries the seq floor
    s = r.append(content(r.next_seq, 24), 24)
    r.commit()
    assert read_all(r)[-1] == (s, content(s, 24))
    r.close()
    again = Q.Queue(root, capacity=4 * 2048, file_bytes=2048, batch_bytes=300)
    assert again.torn == 1 and again.next_seq == s + 1 and read_all(again)[-1][0] == s


def test_bit_rot_in_an_old_file_loses_only_the_rest_of_that_file(tmp_path):
    root = str(tmp_path / "q")
    q = Q.Queue(root, capacity=6 * 1024, file_bytes=1024, batch_bytes=300)
    for s in range(150):
        q.append(content(s, 30), 30)
        if s % 5 == 4:
            q.commit()
    q.close()
    oldest = sorted(n for n in os.listdir(root) if n.endswith(".q"))[0]
    path = os.path.join(root, oldest)
    with open(path, "rb") as f:
        d = bytearray(f.read())
    d[33 * 10 + 7] ^= 0x40  # one bit of record 10
    with open(path, "wb") as f:
        f.write(d)
    r = Q.Queue(root, capacity=6 * 1024, file_bytes=1024, batch_bytes=300)
    n_old = int(oldest[9:-2], 16)
    seqs = [s for s, _ in read_all(r)]
    assert seqs == list(range(10)) + list(range(n_old, 150))  # read goes on with the next file
    assert r.torn == n_old - 10 and r.depth == len(seqs)
    r.close()
    again = Q.Queue(root, capacity=6 * 1024, file_bytes=1024, batch_bytes=300)
    assert again.torn == n_old - 10 and [s for s, _ in read_all(again)] == seqs


def test_seqs_stay_above_the_ack_point_when_the_files_are_gone(tmp_path):
    """The newest file carries the seq floor; should the files be wiped (not the meta), the
    persisted ack point still keeps seqs from going back."""
    root = str(tmp_path / "q")
    q = Q.Queue(root, capacity=4 * 1024, file_bytes=1024, batch_bytes=300)
    for s in range(40):
        q.append(content(s, 30), 30)
    q.commit()
    q.ack(39)
    q.close()
    for n in os.listdir(root):
        if n.endswith(".q"):
            os.remove(os.path.join(root, n))
    r = Q.Queue(root, capacity=4 * 1024, file_bytes=1024, batch_bytes=300)
    assert (r.epoch, r.next_seq, r.base, r.depth) == (q.epoch, 40, 40, 0)
    assert r.append(content(40, 30), 30) == 40


# ---- MicroPython on LittleFS over the simulated flash -----------------------------------------

_PRELUDE = r"""
import vfs, os, gc, random
import simclock
from flashdev import BoardFlash, PowerCut, copy_file
from rnfw import queue
from rnfw.queue import Queue


class Dev(BoardFlash):
    # the board's flash model, counting the 4096-byte sectors LittleFS erases
    def __init__(self, *a, **kw):
        self.erased = 0
        BoardFlash.__init__(self, *a, **kw)

    def ioctl(self, op, arg):
        if op == 6:
            self.erased += 1
        return BoardFlash.ioctl(self, op, arg)


def charged(fn, *a):
    # (ESP32 microseconds the sim's CPU charging puts on fn's run, fn's result); LittleFS's C is
    # charged at the bytecode ratio too, so operations that open or write files read high
    simclock.fw()
    simclock.settle()
    simclock.mark()
    c0 = simclock.charged_us
    r = fn(*a)
    simclock.fw()
    simclock.settle()
    simclock.mark()
    return simclock.charged_us - c0, r


def nothing():
    pass


def mount(img, blocks, fresh=False):
    if fresh:
        try:
            os.remove(img)
        except OSError:
            pass
    dev = Dev(img, 4096, blocks, cut_file="", on_cut=nothing)
    if fresh:
        vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
    return dev


def umount():
    try:
        vfs.umount("/flash")
    except Exception:
        pass


TMPB = bytearray(256)


def content(seq, n, out=TMPB):
    for i in range(n):
        out[i] = (seq * 31 + i * 17 + n) & 255
    out[0] = seq & 255
    out[1] = (seq >> 8) & 255
    out[2] = (seq >> 16) & 255
    out[3] = seq >> 24
    out[4] = n
    return out


def scan(q, size=600):
    # every held record through read(): (count, first, last, breaks, bad, lengths {len: count})
    buf = bytearray(size)
    s = 0
    cnt = breaks = bad = 0
    first = last = -1
    lens = {}
    while True:
        f, k, n = q.read(s, buf)
        if not k:
            break
        o = 0
        for j in range(k):
            ln = buf[o]
            c = content(f + j, ln)
            if buf[o + 1:o + 1 + ln] != c[:ln]:
                bad += 1
            lens[ln] = lens.get(ln, 0) + 1
            o += ln + 1
        if o != n:
            bad += 1
        if last >= 0 and f != last + 1:
            breaks += 1
        if first < 0:
            first = f
        last = f + k - 1
        cnt += k
        s = f + k
    return cnt, first, last, breaks, bad, lens


SEG = 24
EVT = 23
HB = 58


def drive(q, seconds, commit_s, rng, online=False, buf=None):
    # one drive at 50 km/h: a 100 m segment every 7.2 s, ~1,100 events per 8 h, a heartbeat
    # every 60 s; the node commits every commit_s and when the batch fills (append does that)
    # online: the collector acknowledges everything after each commit
    n = 0
    commits = 0
    for t in range(seconds):
        if (t + 1) * 10 // 72 > t * 10 // 72:
            q.append(content(q.next_seq, SEG), SEG)
            n += 1
        if rng.getrandbits(10) < 40:  # p = 40/1024 per second: ~1,125 per 8 h
            q.append(content(q.next_seq, EVT), EVT)
            n += 1
        if t % 60 == 59:
            q.append(content(q.next_seq, HB), HB)
            n += 1
        if t % commit_s == commit_s - 1:
            q.commit()
            commits += 1
            if online:
                s = q.base
                while True:
                    f, k, nb = q.read(s, buf)
                    if not k:
                        break
                    s = f + k
                q.ack(s - 1)
    q.commit()
    return n, commits


def other_files(kb):
    # what the node's flash holds beside the queue: two firmware slots' worth of files and config
    os.mkdir("/flash/fw")
    made = 0
    i = 0
    while made < kb * 1024:
        n = 2000 + (i * 3517) % 9000
        with open("/flash/fw/m%d.mpy" % i, "wb") as f:
            f.write(bytes(n))
        made += n
        i += 1
    return made, i
"""


def _mp(code: str, timeout: float = 900) -> str:
    proc = runtime.run_code(_PRELUDE + code, sim=True, timeout=timeout, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, (out[-1500:], proc.stderr.decode()[-2000:])
    return out


def _kv(out: str) -> dict:
    """Lines `key value...` printed by the board side."""
    d = {}
    for ln in out.splitlines():
        k, _, v = ln.partition(" ")
        d[k] = v
    return d


def test_round_trip_on_littlefs_reopen_and_read_on_the_host(tmp_path):
    """On the node's runtime: seqs, order and contents through commit, read and ack; an unmount
    and remount (a clean stop) keeps everything; append allocates nothing; the viper CRC equals
    the plain one; and the host reads the same files, dumped from the board, with the same module."""
    out = _mp(f"""
IMG = {str(tmp_path / 'img.bin')!r}
DUMP = {str(tmp_path / 'dump')!r}
random.seed(5)
rng = random
for _ in range(200):  # the viper CRC and copy (the host checks them against CPython's)
    n = rng.randrange(1, 80)
    d = bytes(rng.getrandbits(8) for _ in range(n))
    a = bytearray(n + 2)
    c0 = rng.getrandbits(16)
    print("tw %s:%d:%d:%d:%s" % (d.hex(), c0, queue._crc(d, 1, n - 1, c0), queue._copy(d, 0, n, c0, a, 2), a.hex()))
dev = mount(IMG, 128, True)
q = Queue("/flash/q", capacity=16 * 4096, file_bytes=4096)
lens = [SEG, EVT, HB]
for s in range(1200):
    n = lens[s % 3]
    assert q.append(content(s, n), n) == s
    if s % 9 == 8:
        q.commit()
q.commit()
print("first", q.epoch, q.next_seq, q.base, q.depth, q.files)
print("scan1", *scan(q)[:5])
q.ack(399)
print("acked", q.base, q.depth, q.files, *scan(q, 200)[:5])


def appends(q, ps):  # in a function: no module globals created while measuring
    gc.collect()
    gc.disable()
    m0 = gc.mem_free()
    for p in ps:
        q.append(p, SEG)
    m1 = gc.mem_free()
    gc.enable()
    return m0 - m1


print("alloc", appends(q, [bytes(content(1200 + j, SEG)[:SEG]) for j in range(12)]))
q.close()
umount()
dev = mount(IMG, 128)
r = Queue("/flash/q", capacity=16 * 4096, file_bytes=4096)
print("reopen", r.epoch, r.next_seq, r.base, r.depth, r.files, r.dropped, r.torn)
print("scan2", *scan(r)[:5])
os.mkdir(DUMP)
for name in os.listdir("/flash/q"):
    with open("/flash/q/" + name, "rb") as f, open(DUMP + "/" + name, "wb") as g:
        g.write(f.read())
# ESP32 CPU time by the sim's charging: what the uplink's 5 ms poll can afford
buf = bytearray(1100)
t_open, res = charged(r.read, 400, buf)  # opens the file
t_read, res2 = charged(r.read, res[0] + res[1], buf)
t_app = charged(r.append, content(1212, SEG), SEG)[0]
t_commit = charged(r.commit)[0]
print("cpu", t_open, res[1], t_read, res2[1], t_app, t_commit, res[0], res2[0])
r.close()
umount()
""")
    kv = _kv(out)
    twins = [ln[3:] for ln in out.splitlines() if ln.startswith("tw ")]
    for item in twins:  # the node's viper CRC and copy equal CPython's plain ones
        dh, c0, crc, cp, ah = item.split(":")
        d, c0 = bytes.fromhex(dh), int(c0)
        a = bytearray(len(d) + 2)
        assert Q._crc(d, 1, len(d) - 1, c0) == int(crc)
        assert Q._copy(d, 0, len(d), c0, a, 2) == int(cp) and a.hex() == ah
    assert len(twins) == 200
    epoch = int(kv["first"].split()[0])
    assert kv["first"].split()[1:4] == ["1200", "0", "1200"]
    assert kv["scan1"] == "1200 0 1199 0 0"  # count, first, last, breaks, bad
    base, depth, files = map(int, kv["acked"].split()[:3])
    assert (base, depth) == (400, 800) and files < int(kv["first"].split()[4]) and kv["acked"].split()[3:] == ["800", "400", "1199", "0", "0"]
    assert kv["alloc"] == "0", "append allocates"
    assert kv["reopen"].split() == [str(epoch), "1212", "400", "812", str(files), "0", "0"]
    assert kv["scan2"] == "812 400 1211 0 0"
    t_open, k1, t_read, k2, t_app, t_commit, f1, f2 = map(int, kv["cpu"].split())
    assert (f1, f2) == (400, 400 + k1) and k1 >= 1100 // 60 and k2 >= 1100 // 60  # records of 25-59 B
    print(f"ESP32 CPU (sim charging, LittleFS C included at the bytecode ratio): read of {k1} records opening "
          f"the file {t_open} us, next read of {k2} records {t_read} us ({t_read / k2:.0f} us each); "
          f"append {t_app} us; commit {t_commit} us (plus the flash's own erase/program time)")
    # the host: the same files, the same module
    h = Q.Queue(str(tmp_path / "dump"), capacity=16 * 4096, file_bytes=4096)
    got = read_all(h)
    assert h.epoch == epoch and [s for s, _ in got] == list(range(400, 1212))
    lens = [24, 23, 58]
    assert all(p == content(s, lens[s % 3]) for s, p in got if s < 1200)


@pytest.mark.slow
def test_seven_days_fit_beside_the_firmware_then_the_oldest_go(tmp_path):
    """A 7-day fill (8 h/day at 50 km/h: 28,000 segments, ~7,900 events, 3,360 heartbeats; commits
    every 60 s: what fits does not depend on the cadence, and the suite's time does; the wear test
    runs the node's cadence) on a 2 MB LittleFS image that also holds ~200 KB of firmware files: nothing dropped,
    no filesystem error. Then 2 more days: the oldest are dropped and counted, the newest kept.
    Also the queue's RAM on the node's runtime: a full queue opened, read and appended to."""
    out = _mp(f"""
IMG = {str(tmp_path / 'img.bin')!r}
dev = mount(IMG, 512, True)
made, nf = other_files(200)
print("other", made, nf)
q = Queue("/flash/q")
print("limits", q.max_files, q.file_bytes, q.max_files * q.file_bytes)
random.seed(7)
rng = random
total = 0
for day in range(7):
    n, c = drive(q, 8 * 3600, 60, rng)
    total += n
st = os.statvfs("/flash")
used = 0
for name in os.listdir("/flash/q"):
    used += os.stat("/flash/q/" + name)[6]
print("week", total, q.depth, q.dropped, q.errors, q.files, used, st[3], st[2])
cnt, first, last, breaks, bad, lens = scan(q)
print("wscan", cnt, first, last, breaks, bad, lens.get(SEG, 0), lens.get(EVT, 0), lens.get(HB, 0))
q.close()
del q
gc.collect()
m0 = gc.mem_free()
q = Queue("/flash/q")
gc.collect()
m1 = gc.mem_free()
buf = bytearray(600)
q.read(q.base, buf)
q.append(content(q.next_seq, SEG), SEG)
gc.collect()
m2 = gc.mem_free()
print("heap", m0 - m1, m0 - m2, q.files)
for day in range(2):
    n, c = drive(q, 8 * 3600, 60, rng)
    total += n + (1 if day == 0 else 0)
cnt, first, last, breaks, bad, lens = scan(q)
print("over", total, q.next_seq, q.depth, q.dropped, q.base, q.errors, q.files)
print("oscan", cnt, first, last, breaks, bad)
q.close()
umount()
dev = mount(IMG, 512)
q = Queue("/flash/q")
print("again", q.depth, q.dropped, q.base, q.next_seq)
q.close()
umount()
""", timeout=1800)
    kv = _kv(out)
    made, nfiles = map(int, kv["other"].split())
    max_files, file_bytes, cap = map(int, kv["limits"].split())
    total, depth, dropped, errors, files, used, free_blocks, blocks = map(int, kv["week"].split())
    print(f"7 days: {total} packets, {used} bytes in {files} queue files (capacity {cap} = {max_files} x "
          f"{file_bytes}), {made} bytes of other files in {nfiles}; LittleFS {free_blocks} of {blocks} blocks free")
    assert cap <= 1_400_000 and made >= 200 * 1024
    assert total >= 28_000 + 7 * 480 + 7 * 900 and depth == total and dropped == 0 and errors == 0
    assert used < cap * 0.9  # margin: more than 10% of the budget left after 7 days
    cnt, first, last, breaks, bad, segs, evts, hbs = map(int, kv["wscan"].split())
    assert (cnt, first, last, breaks, bad) == (total, 0, total - 1, 0, 0)
    assert segs == 28_000 and hbs == 7 * 480 and segs + evts + hbs == total
    h_open, h_used, hfiles = map(int, kv["heap"].split())
    print(f"queue heap (MicroPython, ESP32 heap): {h_open} B after opening a {hfiles}-file queue, "
          f"{h_used} B with the reader open and a record in the batch")
    assert h_used < 5000  # the 64-bit unix port's objects: the ESP32 (32-bit) needs less
    total, nxt, depth, dropped, base, errors, files = map(int, kv["over"].split())
    print(f"9 days into a 7-day queue: {dropped} oldest dropped, {depth} held, {files} files")
    assert nxt == total and errors == 0 and files == max_files
    assert dropped > 0 and base == dropped and depth == total - dropped  # no acks: all the gone were dropped
    assert kv["oscan"].split() == [str(depth), str(base), str(total - 1), "0", "0"]  # the newest kept
    assert kv["again"].split() == [str(depth), str(dropped), str(base), str(total)]


# The power-cut harness (the approach of tests/node/test_power_cuts.py): a baseline image holding a queue,
# an operation measured once (bytes programmed, and after each step the base, the end of the
# committed records and the dropped count), then for each random cut point: restore, arm, run until
# the power fails, remount, reopen the queue (recovery) and check it; then it must keep working.
_CUT_HARNESS = r"""
BLOCKS = 96
IMG = TMP + "/img.bin"
BASE = TMP + "/base.bin"
KW = dict(capacity=8 * 2048, file_bytes=2048, batch_bytes=800, ack_every=40)  # a fill() never fills a batch
cbuf = bytearray(4096)


def copy(a, b):
    copy_file(a, b, cbuf)


STEP = [0]
REF = []  # after each step: (base, committed end, dropped)
QREF = [None]


def step(q):
    STEP[0] += 1
    if RECORD:
        REF.append((q.base, q.next_seq - q._bk, q.dropped))


def fill(q, k):
    for _ in range(k):
        n = 20 + q.next_seq * 7 % 45
        q.append(content(q.next_seq, n), n)


dev = mount(IMG, BLOCKS, True)
with open("/flash/other.bin", "wb") as f:
    f.write(bytes(30000))
q = Queue("/flash/q", **KW)
EPOCH = q.epoch
setup(q)
SETUP_REF = (q.base, q.next_seq - q._bk, q.dropped)
q.close()
umount()
copy(IMG, BASE)
RECORD = True
dev = mount(IMG, BLOCKS)
p0 = dev.programmed
op()
total = dev.programmed - p0
umount()
RECORD = False
print("programmed", total, "steps", len(REF), "from", *SETUP_REF, "to", *REF[-1])
random.seed(SEED)
tried = survived = whole = absent = 0
for k in range(NCUTS):
    n = random.randint(0, total - 1)
    gc.collect()  # each cut leaves a dead mount's objects: the harness's heap, not the queue's
    copy(BASE, IMG)
    dev = mount(IMG, BLOCKS)
    dev.arm(n)
    STEP[0] = 0
    cut = False
    try:
        op()
    except PowerCut:
        cut = True
    try:
        QREF[0]._rclose()  # a read handle of the dead mount
    except Exception:
        pass
    umount()
    i = STEP[0]  # the step in flight
    why = None if cut else "no cut"
    if why is None:
        try:
            dev = mount(IMG, BLOCKS)
        except OSError as e:
            why = "mount failed: %s" % e
    if why is None:
        try:
            q = Queue("/flash/q", **KW)
            cnt, first, last, breaks, bad, lens = scan(q)
            b1, e0, d0 = REF[i - 1] if i > 0 else SETUP_REF
            b2, e1, d1 = REF[i] if i < len(REF) else REF[-1]
            if q.epoch != EPOCH:
                why = "epoch changed"
            elif bad or breaks:
                why = "corrupt or out of order: %d bad, %d breaks" % (bad, breaks)
            elif q.base > b2:
                why = "base %d beyond %d: unacked records lost" % (q.base, b2)
            elif cnt and (first != q.base or last + 1 not in (e0, e1)):
                why = "held %d..%d, expected %d..%d or ..%d" % (first, last, q.base, e0 - 1, e1 - 1)
            elif not cnt and q.base not in (e0, e1):
                why = "empty but base %d" % q.base
            elif q.depth != cnt:
                why = "depth %d, %d readable" % (q.depth, cnt)
            elif q.next_seq != (last + 1 if cnt else q.base):
                why = "next_seq %d after %d" % (q.next_seq, last)
            elif not d0 <= q.dropped <= d1:
                why = "dropped %d not in %d..%d" % (q.dropped, d0, d1)
            elif q.torn:
                why = "torn %d on LittleFS" % q.torn
            if why is None:
                if e1 > e0:  # a commit was in flight: its batch whole or absent
                    if cnt and last + 1 == e1:
                        whole += 1
                    else:
                        absent += 1
                # it keeps working: new records after every old one, acked to empty, reopened
                s0 = q.next_seq
                fill(q, 30)
                q.commit()
                cnt2, first2, last2, breaks2, bad2, _ = scan(q)
                if bad2 or breaks2 or last2 != s0 + 29 or first2 != q.base or cnt2 != q.depth or s0 < e0:
                    why = "after the cut: %d held, last %d, next was %d" % (cnt2, last2, s0)
                q.ack(last2)
                q.close()
                r = Queue("/flash/q", **KW)
                if r.depth or r.next_seq != s0 + 30 or r.epoch != EPOCH or r.files != 1:
                    why = "reopened: depth %d next %d files %d" % (r.depth, r.next_seq, r.files)
                r.close()
                with open("/flash/after.bin", "wb") as f:
                    f.write(b"x" * 5000)
                os.statvfs("/flash")
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
        umount()
    tried += 1
    survived += why is None
    print("cut", n, "step", i, "ok" if why is None else "FAIL " + why)
print("batches", whole, absent)
print("summary", tried, survived)
"""

# cuts while committing: batches across file boundaries, the ring full (oldest dropped), reopen
_CUT_COMMIT = r"""
def setup(q):
    for r in range(24):
        fill(q, 9)
        q.commit()
    q.ack(40)


def op():
    q = Queue("/flash/q", **KW)
    QREF[0] = q
    step(q)
    for r in range(40):
        fill(q, 3 + r % 9)
        q.commit()
        step(q)
        if r % 10 == 9:
            q.read(q.base, cbuf)
"""

# cuts while acknowledging: acks that free files and persist the ack point, between commits
_CUT_ACK = r"""
def setup(q):
    for r in range(60):
        fill(q, 9)
        q.commit()


def op():
    q = Queue("/flash/q", **KW)
    QREF[0] = q
    step(q)
    for r in range(25):
        q.ack(q.base + 17 + r % 13)
        step(q)
        if r % 6 == 5:
            fill(q, 2)
            q.commit()
            step(q)
    q.sync()
    step(q)
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", ["commit", "ack"])
def test_power_cuts_at_random_bytes_lose_no_committed_record(tmp_path, case):
    seed = _seed()
    body = {"commit": _CUT_COMMIT, "ack": _CUT_ACK}[case]
    code = f"TMP = {str(tmp_path)!r}\nSEED = {seed}\nNCUTS = {CUTS}\nRECORD = False\n" + body + _CUT_HARNESS
    out = _mp(code, timeout=1800)
    lines = out.splitlines()
    tried, survived = map(int, lines[-1].split()[1:])
    whole, absent = map(int, _kv(out)["batches"].split())
    fails = [ln for ln in lines if ln.startswith("cut") and "FAIL" in ln]
    ref = lines[0].split()
    (b0, e0, d0), (b1, e1, d1) = map(int, ref[5:8]), map(int, ref[9:12])
    if case == "commit":
        assert d1 > d0 and e1 - e0 > 200  # the ring full: commits drop the oldest as they go
    else:
        assert b1 - b0 > 300  # acks freed many files
    print(f"{case}: {lines[0]}; {tried} cuts tried, {survived} survived; a commit in flight: {whole} whole, "
          f"{absent} absent, none torn (seed {seed})")
    assert tried == CUTS and survived == tried, (seed, fails[:5])


@pytest.mark.slow
def test_flash_wear_for_one_8h_day(tmp_path):
    """Bytes programmed and 4096-byte sectors erased by the flash for one 8 h day, as the node
    commits (every 10 s, and every 60 s for comparison), with the collector away (the queue grows)
    and present (everything acked after each commit: files written, read and deleted). Appends are batched: far fewer flash writes
    than packets."""
    out = _mp(f"""
IMG = {str(tmp_path / 'img.bin')!r}
buf = bytearray(1000)
for online, cs in ((False, 10), (False, 60), (True, 10)):
    dev = mount(IMG, 512, True)
    other_files(200)
    q = Queue("/flash/q")
    random.seed(3)
    p0 = dev.programmed
    e0 = dev.erased
    n, c = drive(q, 8 * 3600, cs, random, online, buf)
    print("day", 1 if online else 0, cs, n, c, dev.programmed - p0, dev.erased - e0, q.depth, q.errors,
          os.statvfs("/flash")[3])
    q.close()
    umount()
""", timeout=1800)
    rows = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("day ")]
    assert len(rows) == 3
    for online, cs, n, commits, prog, erased, depth, errors, free in (map(int, r) for r in rows):
        kind = "collector present" if online else "collector away"
        # LittleFS allocates round the whole partition but reuses only free blocks
        years = 100_000 / (erased / free) / 365
        print(f"wear, 8 h day, commit every {cs} s, {kind}: {n} packets, {commits} commits, {prog} bytes "
              f"programmed ({prog / commits:.0f} per commit), {erased} sectors erased ({erased / commits:.2f} "
              f"per commit); spread over the {free} free blocks: {erased / free:.1f} erases per block per day, "
              f"100k-cycle NOR flash lasts ~{years:.0f} years of such days")
        assert errors == 0 and (depth == 0 if online else depth == n)
        assert 5000 < n < 6000
        assert commits <= 8 * 3600 // cs + 1
        assert erased < 1.6 * commits + 50  # one sector per commit (LittleFS copies the file's last block)
        assert erased < n / 1.5  # batched: far fewer than one erase per packet
