"""`roadnode capture` on the simulated board: the node streams the raw IMU counts and GPS bytes its
pipeline is fed while it keeps measuring; the file is a scenario without truth whose samples equal
the tape the board played (bit for bit) and on which `roadnode estimate` gives the node's segments.
The stream stops by itself when the host goes silent; Ctrl-C keeps what was captured. The node's
side (rnfw.capture) allocates nothing per batch and frames exactly as the packet codec does."""

from __future__ import annotations

import contextlib

import json
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from roadnode.usb import portlock
from roadnode.usb.capture import Recording, _CaptureLink
from roadnode.usb.flash import flash_board
from roadnode.usb.link import NodeLink
from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware
from roadnode.scenario import load_scenario, make_scenario, save_scenario
from roadnode.sim.board import SimBoard
from roadnode.sim.tape import write_tapes

SETTINGS = {"segment_length_m": 50, "heartbeat_s": 10}


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def until(cond, what, timeout=120.0):
    end = time.monotonic() + timeout  # only against a hang; the condition is what is waited for
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def drive():
    return make_scenario(iso_class="C", length_m=300, speed_kmh=72, seed=5)


@contextlib.contextmanager
def _node(tmp_path_factory, drive, realtime=False):
    d = tmp_path_factory.mktemp("capture")
    write_tapes(drive, d / "tape")
    with SimBoard(flash_dir=d / "flash", tape_dir=d / "tape", gps_baud=drive.meta["gps"]["baud"],
                  realtime=realtime) as b:
        assert flash_board(b.port, device_id=9).ok
        with NodeLink(b.port) as link:
            link.config_set({**SETTINGS, "gps_baud": drive.meta["gps"]["baud"]})
        yield b


@pytest.fixture(scope="module")
def board(tmp_path_factory, drive):
    with _node(tmp_path_factory, drive) as b:
        yield b


@pytest.fixture
def rt_board(tmp_path_factory, drive):
    """A board whose clock is the wall clock, as a real one's: the fast board can run ten seconds of
    its clock ahead of a host that a loaded machine holds back for one, and end the capture for the
    silence (its lease is ten seconds of its clock), which a real node never sees."""
    with _node(tmp_path_factory, drive, realtime=True) as b:
        yield b


def _segments(rows):
    return [(s["seg_index"], s["iri_m_per_km"], s["flags"]) for s in rows if s.get("type") == "segment"]


@pytest.mark.slow
def test_a_capture_equals_the_tape_and_estimate_on_it_gives_the_nodes_segments(rt_board, drive, tmp_path):
    board = rt_board  # 20 s of capture: on the fast board a loaded host misses the lease (rt_board)
    out = tmp_path / "drive.npz"
    r = cli("capture", "--port", board.port, "-o", str(out), "--duration", "20", "--json")
    assert r.returncode == 0, r.stderr
    summ = json.loads(r.stdout)
    assert summ["seconds"] == pytest.approx(20.0, abs=0.3) and summ["lost_records"] == 0 and summ["lost_samples"] == 0
    cap = load_scenario(out)
    n = len(cap.imu_counts)
    assert n == summ["samples"] and cap.meta["truth"] is False and cap.meta["capture"]["device_id"] == 9
    # the samples the simulated IMU played, from the first, bit for bit; the GPS bytes as sent
    assert np.array_equal(cap.imu_counts, drive.imu_counts[:n])
    assert drive.gps_bytes.tobytes().startswith(cap.gps_bytes.tobytes()) and len(cap.gps_bytes) > 5000
    assert np.array_equal(cap.imu_t_s, drive.imu_t_s[:n])
    # the node's pipeline on MicroPython over the capture gives the node's own live segments: the
    # same segments and flags, the IRI within 5% (a live pass that starts a sample period late,
    # on the simulated board by the CPU time it is charged, drains a sample or two more into its
    # batch than the offline run does: docs/calibration.md)
    est = cli("estimate", str(out), "--json")
    assert est.returncode == 0, est.stderr
    mine = _segments([json.loads(x) for x in est.stdout.splitlines()])
    # (the node measures on until the stop reaches it: it may have closed more than the file holds)
    node = _segments(summ["node_segments"])[: len(mine)]
    assert len(mine) >= 2 and [(i, f) for i, _, f in node] == [(i, f) for i, _, f in mine], (node, mine)
    for (i, a, _), (_, b, _) in zip(node, mine):
        assert a == pytest.approx(b, rel=0.05), (i, a, b)
    # and the tape through the same command: the same drive, within the same margin (the node's own
    # IRI scatters by ~2% from run to run on the simulated board, for the same reason)
    save_scenario(drive, tmp_path / "tape.npz")
    full = cli("estimate", str(tmp_path / "tape.npz"), "--json", *[f"--set={k}={v}" for k, v in SETTINGS.items()])
    theirs = _segments([json.loads(x) for x in full.stdout.splitlines()])
    for (i, a, _), (_, b, _) in zip(mine, theirs):
        assert a == pytest.approx(b, rel=0.05), (i, a, b)
    print(f"\nnode {node}\nestimate on the capture {mine}\nestimate on the tape {theirs[:len(mine)]}")
    # the other tools take the file too: the simulated board plays it, `scenario show` says what it is
    run = cli("sim", "run", str(out), "--json")
    assert run.returncode == 0, run.stderr
    assert [r for r in map(json.loads, run.stdout.splitlines()) if r["type"] == "summary"][0]["segments"] >= 2
    show = cli("scenario", "show", str(out), "--json")
    assert show.returncode == 0, show.stderr
    s = json.loads(show.stdout)
    assert s["segments"] == [] and s["max_speed_kmh"] is None and s["imu"]["samples"] == n


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_captured_and_frees_the_port(rt_board, tmp_path):
    board = rt_board
    out = tmp_path / "cut.npz"
    p = subprocess.Popen([sys.executable, "-m", "roadnode.cli", "capture", "--port", board.port, "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    threading.Thread(target=lambda: [err.append(x) for x in p.stderr], daemon=True).start()
    try:
        until(lambda: portlock.holder(board.port) is not None, "the port's lock")
        assert portlock.holder(board.port)["cmd"] == "roadnode capture"
        # a second and more of the drive recorded (the progress line's samples)
        until(lambda: any(int(m.group(1)) > 250 for m in map(re.compile(r"recording:.*?(\d+) samples").search, err)
                          if m) or p.poll() is not None, "progress")
        assert p.poll() is None, err
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    assert p.returncode == 0, err
    assert "Traceback" not in "".join(err)
    cap = load_scenario(out)
    assert len(cap.imu_counts) > 200 and "stopped" in p.stdout.read()
    assert portlock.holder(board.port) is None


@pytest.mark.slow
def test_the_stream_stops_by_itself_when_the_host_goes_silent(board):
    rec = Recording()
    beats = []
    with _CaptureLink(board.port, on_packet=lambda d: beats.append(d) if d["type"] == "status" else None) as link:
        link.sink = rec.feed
        link.call(link.P.CAPTURE, b"\x01")
        # from here the host only reads: not a byte is sent
        until(lambda: (link.pump(0.05), rec.ended)[1] is not None, "the node ending the stream")
        assert rec.ended.startswith("the node heard nothing") and rec.samples > 0
        # ten seconds of the node's clock after its boot (the last word it heard), within a pass
        assert 10_000 <= rec.last_t_ms <= 10_500, rec.last_t_ms
        got = rec.records
        t_end = rec.last_t_ms
        until(lambda: (link.pump(0.05), [b for b in beats if b["uptime_s"] * 1000 > t_end + 10_000])[1],
              "a heartbeat ten seconds later")
        assert rec.records == got  # nothing streamed since: the node measures on, quietly
        assert "capture" not in link.ping()


MPY = r"""
import io, micropython
from array import array
from rnfw import capture, cobs
from rnfw.crc import crc16
class E: odr = 200; period_ms = 5; lsb = 2048
class P: est = E()
class N: seq = 0; cfg = {"device_id": 70000}; pipe = P(); ms = 0
class Sink:
    def __init__(self): self.b = bytearray(4096); self.n = 0
    def write(self, b, k):
        for i in range(k): self.b[self.n + i] = b[i]
        self.n += k
        return k
class L: out = Sink()
class C: node = N(); link = L(); cap = None
c = capture.Capture(C())
s = array("h", [(-1) ** i * (i * 4099) % 32768 for i in range(192)])
g = bytearray(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n" * 3)
c.imu(s, 10, 50, 0)
micropython.heap_lock()  # any allocation from here on raises MemoryError
c.imu(s, 64, 100, 70000)
c.gps(g, len(g), 100)
micropython.heap_unlock()
print(bytes(L.out.b[: L.out.n]).hex())
"""


def test_the_nodes_capture_records_allocate_nothing_and_frame_like_the_codec():
    from roadnode.packets import split_frames
    from roadnode.mpy.fwimport import fw

    p = runtime.run(["-c", MPY], path=[compiled_firmware()], sim=True, timeout=60)
    raw = bytes.fromhex(p.stdout.decode().strip())
    PD = fw("packet_decode")
    rec = Recording()
    frames = split_frames(raw)
    for f in frames:
        d = PD.decode(f)  # the host's decoder: CRC, type, length
        assert d["type"] == "reply" and d["status"] == fw("protocol").DATA and d["device_id"] == 70000
        rec.feed(bytes(d["payload"]))
    s = [((-1) ** i * (i * 4099) % 32768) for i in range(192)]
    s = [v - 65536 if v >= 32768 else v for v in s]
    assert (rec.odr_hz, rec.period_ms, rec.lsb_per_g) == (200, 5, 2048)
    # 10 + 64 samples: the 64 in three records (25 + 25 + 14), the lost count in the first
    assert rec.batches == [(50, 10, 0), (100, 64, 0xFFFF)]
    assert np.concatenate(rec.imu).ravel().tolist() == s[:30] + s[:192]
    assert rec.gps == [[100, bytes(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n" * 3)]]
    assert rec.lost_records == 0 and rec.records == len(frames) == 1 + 1 + 3 + 2


@pytest.mark.slow
def test_bad_targets_are_refused_before_the_port_is_touched(tmp_path):
    r = cli("capture", "--port", "/dev/roadnode-no-such-port", "-o", str(tmp_path), timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    r = cli("capture", "--port", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.npz"), timeout=60)
    assert r.returncode == 3 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "x.npz").exists()
