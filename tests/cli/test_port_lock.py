"""One command per port (usb.portlock): a second roadnode command on a port in use is refused
with the holder's name (exit 3) before it sends a byte, and the first one is not disturbed; a dead
holder's lock is taken over; `roadnode flash` keeps the port across its several opens."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from roadnode.errors import DeviceError
from roadnode.usb import flash as F
from roadnode.usb import portlock
from roadnode.usb.link import NodeLink
from roadnode.sim.board import SimBoard


def cli(*args):
    return subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True, timeout=300)


def popen(*args):
    return subprocess.Popen([sys.executable, "-m", "roadnode.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def until(cond, what, timeout=120.0):
    end = time.monotonic() + timeout  # only against a hang; the condition is what is waited for
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def held_by(port, cmd):
    h = portlock.holder(port)
    return h is not None and h.get("cmd") == cmd


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with SimBoard(flash_dir=tmp_path_factory.mktemp("lockflash"), realtime=True) as b:
        r = F.flash_board(b.port, device_id=77)
        assert r.ok, r.error
        yield b


def _busy_refusal(b, *args, holder_cmd, holder_pid, holder_sends=False):
    """A command refused because of the holder, without a byte sent to the board (checked where the
    holder itself sends nothing meanwhile; a replay streams, and its result is checked instead)."""
    rx = b.rx_bytes
    r = cli(*args, "--port", b.port)
    assert r.returncode == 3, (r.returncode, r.stderr)
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"{b.port} is busy: {holder_cmd} (pid {holder_pid}, since " in line and "wait for it or stop it" in line
    assert holder_sends or b.rx_bytes == rx  # the port's data untouched
    return line


@pytest.mark.slow
def test_status_and_config_set_during_a_replay_are_refused_the_replay_is_bit_exact(node, tmp_path):
    from roadnode.accuracy.golden import run_golden
    from roadnode.accuracy.report import segment_record
    from roadnode.scenario.build import make_scenario
    from roadnode.scenario.fileformat import save_scenario

    sc = make_scenario(iso_class="C", length_m=800, speed_kmh=60, seed=5)
    f = tmp_path / "drive.npz"
    save_scenario(sc, f)
    p = popen("replay", "--port", node.port, str(f), "--json")
    try:
        until(lambda: held_by(node.port, "roadnode replay") or p.poll() is not None, "the replay to start")
        assert p.poll() is None, p.stderr.read()
        _busy_refusal(node, "status", holder_cmd="roadnode replay", holder_pid=p.pid, holder_sends=True)
        _busy_refusal(node, "config", "set", "heartbeat_s=15", holder_cmd="roadnode replay", holder_pid=p.pid,
                      holder_sends=True)
        still = p.poll() is None  # both refusals came while the replay ran
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert still and p.returncode == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert rows[-1]["type"] == "summary" and rows[-1]["bad_frames"] == 0
    keys = ("seg_index", "iri_m_per_km", "rms_g", "peak_g", "speed_kmh", "flags")
    segs = [{k: s[k] for k in keys} for s in rows if s["type"] == "segment"]
    assert segs and segs == [{k: segment_record(t)[k] for k in keys} for t in run_golden(sc)["segments"]]
    assert portlock.holder(node.port) is None  # released when the replay ended
    r = cli("config", "get", "heartbeat_s", "--port", node.port, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"heartbeat_s": 60}  # the refused set never applied


@pytest.mark.slow
def test_config_set_during_monitor_is_refused_and_the_monitor_goes_on(tmp_path):
    from roadnode.scenario import make_scenario
    from roadnode.sim.tape import write_tapes

    sc = make_scenario(iso_class="B", length_m=600, speed_kmh=60, seed=2)
    write_tapes(sc, tmp_path / "tape")
    with SimBoard(flash_dir=tmp_path / "flash", tape_dir=tmp_path / "tape", gps_baud=sc.meta["gps"]["baud"]) as b:
        assert F.flash_board(b.port, device_id=5).ok
        with NodeLink(b.port) as link:
            link.config_set({"heartbeat_s": 10, "gps_baud": sc.meta["gps"]["baud"]})
        p = popen("monitor", "--port", b.port, "--json")
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()
        try:
            first = json.loads(lines.get(timeout=120))  # the monitor decodes packets
            _busy_refusal(b, "config", "set", "heartbeat_s=30", holder_cmd="roadnode monitor", holder_pid=p.pid)
            after = json.loads(lines.get(timeout=120))  # and goes on after the refusal
            assert p.poll() is None
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=60)
        assert first["type"] != "error" and after["type"] != "error"
        assert p.returncode == 0 and "Traceback" not in p.stderr.read()
        r = cli("config", "get", "heartbeat_s", "--port", b.port, "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == {"heartbeat_s": 10}  # not applied


HOLD = """
import sys, time
from roadnode.usb import portlock
portlock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_holder_is_named_a_dead_ones_lock_is_taken_over(node):
    port = node.port
    h = subprocess.Popen([sys.executable, "-c", HOLD, port], stdout=subprocess.PIPE, text=True)
    try:
        assert h.stdout.readline().strip() == "held"
        _busy_refusal(node, "status", holder_cmd=f"-c {port}", holder_pid=h.pid)
    finally:
        h.kill()  # SIGKILL: no clean-up, its lock file still names it
        h.wait()
    assert json.loads(open(portlock.lock_path(port)).read())["pid"] == h.pid
    r = cli("status", "--port", port, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["device_id"] == 77, r.stderr
    # a lock file naming a process that is gone, left without any lock held: taken over as well
    with open(portlock.lock_path(port), "w") as f:
        json.dump({"pid": h.pid, "cmd": "roadnode monitor", "since": time.time() - 5}, f)
    r = cli("status", "--port", port, "--json")
    assert r.returncode == 0, r.stderr
    assert portlock.holder(port) is None


def test_flash_keeps_the_port_through_its_opens_and_a_second_command_is_refused(tmp_path):
    with SimBoard(flash_dir=tmp_path, realtime=True) as b:
        seen, refused = set(), []

        def step(what, frac):
            h = portlock.holder(b.port)
            seen.add((what, h and h.get("pid")))
            if what == "staging" and not refused:
                refused.append(cli("status", "--port", b.port))

        r = F.flash_board(b.port, device_id=8, progress=step)
        assert r.ok and r.changed, r.error
        assert {w for w, _ in seen} >= {"asking the node", "connecting", "staging", "restarting", "done"}
        assert {pid for _, pid in seen} == {os.getpid()}  # held by this flash at every step, never free
        assert refused[0].returncode == 3 and "is busy" in refused[0].stderr and f"pid {os.getpid()}" in refused[0].stderr
        assert portlock.holder(b.port) is None
        # the no-change path (a link, closed) and the full path run again under the same lock
        assert F.flash_board(b.port).ok
        with NodeLink(b.port) as link:
            assert link.status()["device_id"] == 8


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("as_json", [True, False])
def test_a_monitor_stopped_by_a_signal_exits_cleanly_and_frees_the_port(tmp_path, sig, as_json):
    """Ctrl-C or a service manager's SIGTERM: the watch ends at its next read (not an exception
    thrown into the port lock or the live table), the recording keeps every frame shown, the summary
    is printed, exit 0, and the port is free for the next command at once."""
    m, s = os.openpty()
    port = os.ttyname(s)
    os.close(s)
    stop = threading.Event()

    def feed():  # frames without end (bad CRCs: counted, recorded, never misread)
        while not stop.is_set():
            try:
                os.write(m, b"\x00" + bytes(range(1, 21)) + b"\x00")
            except OSError:
                pass
            time.sleep(0.005)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    rec = tmp_path / "rec.bin"
    p = popen("monitor", "--port", port, "--record", str(rec), *(["--json"] if as_json else []))
    try:
        until(lambda: held_by(port, "roadnode monitor") and rec.exists() and rec.stat().st_size > 200, "frames")
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        stop.set()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "Traceback" not in err, err
    frames = rec.read_bytes().count(b"\x00" + bytes(range(1, 21)) + b"\x00")
    assert frames > 0 and rec.stat().st_size == frames * 22  # whole frames only
    if as_json:
        assert len(out.splitlines()) == frames  # every recorded frame was shown, and only those
    else:
        assert f"{frames} packets, {frames} bad frames" in err
    assert portlock.holder(port) is None  # free: the next command may open it
    os.close(m)


def test_a_lock_changing_hands_is_waited_for_not_reported_busy(tmp_path, monkeypatch):
    """A command releases its port while another thread of the process forks (the simulated board
    starting its next interpreter, say): the forked child holds the flock until its exec or exit,
    over an empty lock file. The next open asks again for a moment instead of calling the port busy
    with a holder it cannot name; a named holder is still reported at once."""
    monkeypatch.setenv("ROADNODE_LOCK_DIR", str(tmp_path))
    port = "/dev/ttyFAKE0"
    lk = portlock.acquire(port)
    pid = os.fork()
    if pid == 0:  # the child: the inherited lock, for 0.2 s, then gone with it
        time.sleep(0.2)
        os._exit(0)
    try:
        lk.release()  # the file is emptied; the child still holds the flock
        t0 = time.monotonic()
        again = portlock.acquire(port)  # waits for the child, then takes it
        waited = time.monotonic() - t0
        again.release()
    finally:
        os.waitpid(pid, 0)
    assert 0.05 < waited < portlock.CHANGING_S + 0.3
    # a holder with a name: busy at once, naming it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        portlock.acquire(port)
        os.write(w, b"x")
        time.sleep(5)
        os._exit(0)
    try:
        os.read(r, 1)
        t0 = time.monotonic()
        with pytest.raises(portlock.PortBusy, match=rf"pid {pid}"):
            portlock.acquire(port)
        assert time.monotonic() - t0 < 0.1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_device_flock_held_by_a_forked_child_is_waited_for_and_the_holder_named(tmp_path, monkeypatch):
    """The device's own flock (pyserial's exclusive open) goes to a child this process forks with
    the port open, until the child's exec or exit: a reopen meanwhile waits for it instead of
    failing (CI once saw `flash` refused this way). A holder that keeps it is named, and a port
    this command itself has open is said to be so."""
    from roadnode.usb.stream import open_port

    monkeypatch.setenv("ROADNODE_LOCK_DIR", str(tmp_path))
    m, s = os.openpty()
    port = os.ttyname(s)
    os.close(s)
    try:
        ser = open_port(port)
        pid = os.fork()
        if pid == 0:  # the child: the inherited descriptor (and its flock) for 0.2 s
            time.sleep(0.2)
            os._exit(0)
        try:
            ser.close()
            t0 = time.monotonic()
            again = open_port(port)  # waits for the child, then opens
            waited = time.monotonic() - t0
            # this command holds it now: a second open says so
            with pytest.raises(DeviceError, match=rf"busy: already open in this command \(pid {os.getpid()}\)"):
                open_port(port)
            again.close()
        finally:
            os.waitpid(pid, 0)
        assert 0.05 < waited < portlock.CHANGING_S + 0.3
        # a holder that keeps the device: reported after the moment's wait, by name
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            import fcntl

            fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(w, b"x")
            time.sleep(5)
            os._exit(0)
        try:
            os.read(r, 1)
            with pytest.raises(DeviceError, match=rf"busy: .*\(pid {pid}\)"):
                open_port(port)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    finally:
        os.close(m)


def test_holder_waits_a_moment_for_a_lock_changing_hands(tmp_path, monkeypatch):
    """A lock is taken before its holder writes its name: holder() asks again for a moment then,
    as acquire does (a test that read the lock in that moment got {} and failed, CI)."""
    import fcntl

    monkeypatch.setenv("ROADNODE_LOCK_DIR", str(tmp_path))
    port = "/dev/ttyRN-holder-test"
    fd = os.open(portlock.lock_path(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t0 = time.monotonic()
        assert portlock.holder(port) == {}  # nameless for good: after the moment, "held, by whom unknown"
        assert time.monotonic() - t0 >= portlock.CHANGING_S
        threading.Timer(0.1, lambda: os.pwrite(fd, json.dumps({"pid": 1, "cmd": "roadnode capture"}).encode(), 0)).start()
        assert portlock.holder(port)["cmd"] == "roadnode capture"
    finally:
        os.close(fd)
    assert portlock.holder(port) is None
