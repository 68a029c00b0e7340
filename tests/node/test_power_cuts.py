"""Power cuts that tear flash writes (sim/mpy/flashdev.py: NOR flash, 256-byte pages, 4096-byte
erase sectors, the cut after N programmed bytes, mid-page). Many random cut points per case, on the
real MicroPython LittleFS binding; the seed is printed (RN_CUT_SEED=S reproduces a run, RN_CUTS=N
tries more points). Then fewer end-to-end cuts on the simulated board during `roadnode flash`.
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from roadnode.mpy import runtime

CUTS = int(os.environ.get("RN_CUTS", "60"))


def _seed() -> int:
    s = int(os.environ.get("RN_CUT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"RN_CUT_SEED={s}")
    return s


# Runs on MicroPython: makes a LittleFS image, keeps it as the baseline, measures how many bytes
# the operation programs, then for each cut point restores the baseline, arms the cut, runs the
# operation until the power fails, mounts the image again (a new device and filesystem object,
# as after a reboot) and checks it. One line per cut: "cut N ok" or "cut N FAIL why".
_HARNESS = r"""
import vfs, os, random
from flashdev import FileBlockDev, PowerCut, copy_file

BLOCKS = 64
IMG = TMP + "/img.bin"
BASE = TMP + "/base.bin"
buf = bytearray(4096)


def copy(a, b):
    copy_file(a, b, buf)


def nothing():
    pass


def mount():
    dev = FileBlockDev(IMG, 4096, BLOCKS, cut_file="", on_cut=nothing)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
    return dev


def read(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None


try:
    os.remove(IMG)
except OSError:
    pass
dev = FileBlockDev(IMG, 4096, BLOCKS, cut_file="", on_cut=nothing)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/flash")
setup()
vfs.umount("/flash")
copy(IMG, BASE)
dev = mount()
p0 = dev.programmed
op()
total = dev.programmed - p0
vfs.umount("/flash")
print("programmed", total)
random.seed(SEED)
tried = survived = 0
for k in range(NCUTS):
    n = random.randint(0, total - 1)
    copy(BASE, IMG)
    dev = mount()
    dev.arm(n)
    cut = False
    try:
        op()
    except PowerCut:
        cut = True
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    why = None if cut else "no cut"
    if why is None:
        try:
            mount()
        except OSError as e:
            why = "mount failed: %s" % e
    if why is None:
        try:
            why = check()
            if why is None:  # still a working filesystem: write, read back, count free blocks
                with open("/flash/after.bin", "wb") as f:
                    f.write(b"x" * 5000)
                if read("/flash/after.bin") != b"x" * 5000:
                    why = "cannot write after the cut"
                os.statvfs("/flash")
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
        vfs.umount("/flash")
    tried += 1
    survived += why is None
    print("cut", n, "ok" if why is None else "FAIL " + why)
print("summary", tried, survived)
"""


def _run(tmp_path, case: str, seed: int) -> tuple[int, int, list[str]]:
    code = f"TMP = {str(tmp_path)!r}\nSEED = {seed}\nNCUTS = {CUTS}\n" + case + _HARNESS
    out = runtime.run_code(code, sim=True, timeout=600).stdout.decode()
    lines = out.splitlines()
    tried, survived = map(int, lines[-1].split()[1:])
    fails = [ln for ln in lines if ln.startswith("cut") and "FAIL" in ln]
    return tried, survived, fails


# The files a technician's node holds, and an operation that touches LittleFS in every way the
# firmware does: append to a log, write a new file in pieces, rename it over an old one, remove.
_LITTLEFS = r"""
KEEP = {"/flash/keep1.bin": bytes(range(256)) * 3, "/flash/keep2.bin": b"k" * 9000, "/flash/d/keep3.txt": b"nested"}
LOG0 = b"log line\n" * 40
NEW = bytes((i * 7) & 255 for i in range(6000))


def setup():
    os.mkdir("/flash/d")
    for p, d in KEEP.items():
        with open(p, "wb") as f:
            f.write(d)
    with open("/flash/log.txt", "wb") as f:
        f.write(LOG0)
    with open("/flash/data.bin", "wb") as f:
        f.write(b"old data")
    with open("/flash/gone.txt", "wb") as f:
        f.write(b"to be removed")


def op():
    with open("/flash/log.txt", "ab") as f:
        f.write(b"appended line\n" * 20)
    with open("/flash/new.tmp", "wb") as f:
        for i in range(0, len(NEW), 2000):
            f.write(NEW[i:i + 2000])
    os.rename("/flash/new.tmp", "/flash/data.bin")
    os.remove("/flash/gone.txt")


def check():
    for p, d in KEEP.items():
        if read(p) != d:
            return "%s changed" % p
    if read("/flash/log.txt") not in (LOG0, LOG0 + b"appended line\n" * 20):
        return "log.txt neither old nor whole"
    if read("/flash/data.bin") not in (b"old data", NEW):
        return "data.bin neither old nor new"
    if read("/flash/new.tmp") not in (None, b"", NEW):
        return "new.tmp torn"
    if read("/flash/gone.txt") not in (None, b"to be removed"):
        return "gone.txt torn"
    return None
"""

# The firmware's own config store (rnfw/config.py) writing a new config over an old one.
_CONFIG = r"""
from rnfw import config

OLD = config.validate({"device_id": 7, "segment_length_m": 50, "heartbeat_s": 30})
NEW = config.validate({"device_id": 7, "segment_length_m": 250, "heartbeat_s": 120, "mount": "body"})
P = "/flash/config.json"


def setup():
    config.save(OLD, P)
    config.save(OLD, P)  # a .bak too, as on a node that has been configured before


def op():
    config.save(NEW, P)


def check():
    cfg, st = config.load(P)
    if cfg not in (OLD, NEW):
        return "config neither old nor new: %r" % (cfg,)
    if st != "ok":
        return "config status %r" % st
    config.save(NEW, P)  # the store keeps working
    if config.load(P) != (NEW, "ok"):
        return "cannot save after the cut"
    return None
"""


@pytest.mark.parametrize("case", ["littlefs", "config"])
def test_random_power_cuts_tear_writes_and_the_data_survives(tmp_path, case):
    seed = _seed()
    tried, survived, fails = _run(tmp_path, {"littlefs": _LITTLEFS, "config": _CONFIG}[case], seed)
    print(f"{case}: {tried} cuts tried, {survived} survived (seed {seed})")
    assert tried == CUTS and survived == tried, (seed, fails[:5])


def test_the_flash_model_tears_pages_and_programs_like_nor(tmp_path):
    """The model itself: programming ANDs into erased flash, erase sets 0xFF per 4096-byte sector,
    a cut keeps the bytes before it and leaves the rest of the page and later pages untouched."""
    code = f"""
from flashdev import FileBlockDev, PowerCut
dev = FileBlockDev({str(tmp_path / 'n.img')!r}, 4096, 4, cut_file="", on_cut=lambda: None)
b = bytearray(600)
dev.writeblocks(1, b"\\x0f\\xf0", 10)
dev.writeblocks(1, b"\\xf3\\x3f", 10)
dev.readblocks(1, b, 0)
print(b[10], b[11], b[9])
dev.ioctl(6, 1)
dev.readblocks(1, b, 0)
print(b[10], b[11])
dev.arm(300)
try:
    dev.writeblocks(2, bytes(600), 0)
except PowerCut:
    print("cut")
try:
    dev.readblocks(2, b, 0)
except PowerCut:
    print("dead")
dev = FileBlockDev({str(tmp_path / 'n.img')!r}, 4096, 4, cut_file="", on_cut=lambda: None)
dev.readblocks(2, b, 0)
print(b[299], b[300], b[511], b[512])
"""
    out = runtime.run_code(code, sim=True).stdout.decode().split()
    assert out == ["3", "48", "255", "255", "255", "cut", "dead", "0", "255", "255", "255"]


# ---- end to end: `roadnode flash` switching firmware slots while the power fails ----------------

def _wait(cond, what, timeout=120.0):
    """Wait for a condition (the timeout is only a safety net against a hang)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_power_cuts_during_a_firmware_update_leave_a_whole_firmware(tmp_path):
    import roadnode.usb.flash as F
    from roadnode.usb.link import NodeLink
    from roadnode.sim.board import SimBoard

    seed = _seed()
    rng = random.Random(seed)
    orig = F.build_image

    def release(k):
        def build(*a, **kw):
            img = orig(*a, **kw)
            img.slot["rnfw/extra.py"] = b"# release %d\n" % k + bytes(2000 + 97 * k)
            return img
        return build

    def installed(b):
        with NodeLink(b.port) as link:
            m = json.loads(link.call(link.P.MANIFEST, b"\0\0"))
            link.status()  # the node runs it
        return m

    b = SimBoard(flash_dir=tmp_path).start()
    tried = survived = finished = 0
    try:
        assert F.flash_board(b.port, wait_heartbeat=0).ok
        for k in (1, 2):  # both slots hold a release: from now on an update rewrites what differs
            F.build_image = release(k)
            b.arm_flash_cut(1 << 40)  # measure what an update programs
            assert F.flash_board(b.port, wait_heartbeat=0).ok
            total = (1 << 40) - b.flash_budget()
        b.arm_flash_cut(-1)
        m = installed(b)
        for k in range(3, 3 + max(3, CUTS // 15)):
            F.build_image = release(k)
            old = m["d"]
            new = release(k)({"mpy": m["mpy"], "machine": m["m"]}, m["board"], {}).digest()
            n = rng.randrange(total * 9 // 10)
            cuts = b.cuts
            b.arm_flash_cut(n)
            r = F.flash_board(b.port, wait_heartbeat=0)  # fails when the power goes, or finishes first
            if r.ok and b.cuts == cuts:
                # it finished first: an update programs what LittleFS needs then (its metadata, what the
                # running node wrote), which varied from ~2,900 to ~4,000 bytes here; disarmed, a cut
                # may still have come meanwhile, on the node restarted into the new firmware
                b.arm_flash_cut(-1)
            first = r.ok and b.cuts == cuts
            finished += first
            if not first:
                _wait(lambda: b.cuts > cuts, f"the armed cut at {n} bytes (flash: ok={r.ok} {r.error})")
            m = installed(b)
            tried += 1
            ok = m["d"] in (old, new)
            survived += ok
            print(f"cut after {n} of ~{total} bytes: {'new' if m['d'] == new else 'old' if ok else 'MIXED'}"
                  + (" (the update finished first)" if first else ""))
        print(f"firmware update: {tried} cuts tried, {survived} survived, {finished} finished first (seed {seed})")
        assert survived == tried and finished < tried
    finally:
        F.build_image = orig
        b.stop()
