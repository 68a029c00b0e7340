"""Every device command (status, config show/get/set/reset, monitor, replay, flash) against ports
that are no roadnode node and against bad arguments: the exit code README "Exit codes" gives (3: the
device or port, 2: bad input), one line on stderr without a traceback, stdout holding only the
command's own output (with --json: JSON lines or nothing), no file in the work folder changed, and
a command that gives up instead of hanging (each run is bounded; a hang fails the case).

The commands run as a user runs them: the console script in a subprocess. Ports that make a command
wait out its timeouts (silent, junk, echo) get one pty per command, and blank simulated boards one
board per command; the commands of one kind run at once, so the module takes about as long as its
slowest command per kind. /dev/null's commands share its one lock and run one after the other.
The port locks live in a folder of this module's own (ROADNODE_LOCK_DIR), so tests running beside
it cannot make a port look busy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from roadnode.paths import FIRMWARE_DIR
from roadnode.usb import portlock
from roadnode.scenario import make_scenario, save_scenario
from roadnode.sim.board import SimBoard, wait_repl

# a command that has not given up after this long hangs (the longest documented wait: a replay's
# 3 tries x 5 s, a flash's raw-REPL tries; a missing port is awaited 3 s first)
HANG_S = 90


# ---- fake far ends of a serial port --------------------------------------------------------------

class FakePort:
    """A pty whose far end is this test: ``silent`` (opened, never a byte, nothing read), ``junk``
    (binary garbage and text lines for ever, as a wrong baud rate or a stray device gives), ``echo``
    (everything sent comes back: a loopback or a bare terminal, no node)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.received = bytearray()  # what the command sent (junk and echo ports read it)
        self.m, s = os.openpty()
        self.port = os.ttyname(s)
        os.close(s)
        self._stop = threading.Event()
        self._t = None
        if kind != "silent":
            os.set_blocking(self.m, False)
            self._t = threading.Thread(target=getattr(self, "_" + kind), daemon=True)
            self._t.start()

    def _read(self) -> bytes:
        try:
            d = os.read(self.m, 4096)
        except OSError:  # EAGAIN, or EIO while no one has the port open
            return b""
        self.received += d
        return d

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.m, data)
        except OSError:  # the port's buffer is full (nobody reads it) or it is closed: dropped
            pass

    def _junk(self):
        rng = random.Random(11)
        lines = [b"I (5231) wifi:new:<6,0>, old:<1,0>, ap:<255,255>, sta:<6,0>\r\n",
                 b"Guru Meditation Error: Core  1 panic'ed (LoadProhibited)\r\n",
                 "Straße ½ ∞ \u202e\r\n".encode(), b"\x1b[2J\x1b[31mred\x1b[0m\r\n", b"$GPRMC,,V,,,,,,,,,,N*53\r\n"]
        while not self._stop.is_set():
            self._read()
            self._write(rng.randbytes(180) + rng.choice(lines))
            self._stop.wait(0.01)

    def _echo(self):
        while not self._stop.is_set():
            if select.select([self.m], [], [], 0.05)[0]:
                self._write(self._read())

    def close(self):
        self._stop.set()
        if self._t:
            self._t.join()
            while self._read():  # what the command sent that the thread had not read yet
                pass
        os.close(self.m)


HOLD = """
import sys, time
from roadnode.cli import entry
sys.argv = ["roadnode", "monitor", "--port", sys.argv[1]]
entry()
"""


# ---- the work folder, the board, the runs --------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The module's own lock folder, for this process (portlock.holder) and the commands."""
    d = tmp_path_factory.mktemp("locks")
    mp = pytest.MonkeyPatch()
    mp.setenv("ROADNODE_LOCK_DIR", str(d))
    yield dict(os.environ)
    mp.undo()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Inputs the commands read (a scenario and damaged ones) and the fake ports made as files."""
    d = tmp_path_factory.mktemp("devbad")
    sc = make_scenario(iso_class="C", length_m=60, speed_kmh=50, seed=3)
    save_scenario(sc, d / "good.npz")
    raw = (d / "good.npz").read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x10
    (d / "flipped.npz").write_bytes(bytes(flipped))
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 3])
    (d / "empty.npz").write_bytes(b"")
    (d / "adir").mkdir()
    os.symlink("/dev/full", d / "full.bin")
    (d / "ports").mkdir()
    shutil.copytree(FIRMWARE_DIR, d / "badfw", ignore=shutil.ignore_patterns("__pycache__"))
    with open(d / "badfw" / "rnfw" / "uplink.py", "a") as f:
        f.write("\ndef broken(:\n")
    return d


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A simulated ESP32 at the MicroPython REPL with nothing on its flash: no roadnode firmware."""
    with SimBoard(flash_dir=tmp_path_factory.mktemp("blank")) as b:
        wait_repl(b.port)
        yield b


def _snapshot(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("*")):
        st = os.lstat(p)
        key = str(p.relative_to(d))
        if stat.S_ISREG(st.st_mode):
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = stat.S_IFMT(st.st_mode)  # FIFOs, links, folders stay what they were
    return out


@dataclass
class Run:
    argv: list
    code: int
    out: str
    err: str


def _roadnode(argv: list, env: dict) -> Run:
    p = subprocess.Popen([sys.executable, "-c", "from roadnode.cli import entry; entry()", *argv],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return Run(argv, -999, "", f"still running after {HANG_S} s: it hangs instead of giving up")
    return Run(argv, p.returncode, out, err)


def _problems(r: Run, code: int, msg: str | None, port: str) -> list[str]:
    """What is wrong with a run that should end with ``code`` (and ``msg`` in its error line)."""
    bad = []
    if r.code != code:
        bad.append(f"exit {r.code}, expected {code}")
    if "Traceback" in r.err + r.out:
        bad.append("a traceback")
    lines = r.err.splitlines()
    if code:
        if len(lines) != 1 or not lines[0].startswith("error: "):
            bad.append(f"{len(lines)} lines on stderr, expected one 'error: ...' line")
        elif msg and msg not in lines[0]:
            bad.append(f"the message lacks {msg!r}")
        elif port not in lines[0]:
            bad.append("the message does not name the port")
    elif len(lines) > 1:
        bad.append(f"{len(lines)} lines on stderr")
    rows = []
    if "--json" in r.argv:
        for x in r.out.splitlines():
            try:
                rows.append(json.loads(x))
            except ValueError:
                bad.append(f"stdout is not JSON lines: {x[:80]!r}")
                break
    if code and r.argv[0] == "flash" and "--json" in r.argv:  # its one object per board says why
        if len(rows) != 1 or rows[0].get("ok") is not False or msg not in (rows[0].get("error") or ""):
            bad.append("not one JSON object with the board's failure on stdout")
    elif code and r.argv[0] != "flash" and r.out:
        bad.append("output on stdout from a command that failed")  # flash: its table of boards
    if re.search(r"(^|[\s\[(:,])b'", r.out):
        bad.append("raw bytes (a Python b'...' repr) on stdout")
    return bad


def _report(runs: list[tuple[Run, list[str]]]) -> str:
    return "\n".join(f"roadnode {' '.join(r.argv)[:110]}\n    -> {'; '.join(p)}\n    stderr: {r.err[-400:]!r}"
                     f"\n    stdout: {r.out[-200:]!r}" for r, p in runs if p)


# ---- every device command on every kind of bad port ----------------------------------------------

# name -> argv; {port} the port, {d} the work folder, {out} a folder of the run's own
COMMANDS = {
    "status": "status --port {port}",
    "status --json": "status --port {port} --json",
    "config show": "config show --port {port}",
    "config show --json": "config show --port {port} --json",
    "config get": "config get heartbeat_s --port {port} --json",
    "config set": "config set heartbeat_s=15 --port {port}",
    "config reset": "config reset --port {port} --json",
    "monitor": "monitor --port {port} --duration 1",
    "monitor --json --record": "monitor --port {port} --duration 1 --json --record {out}/rec.bin",
    "replay": "replay {d}/good.npz --port {port}",
    "replay --json": "replay {d}/good.npz --port {port} --json",
    "capture": "capture --port {port} -o {out}/drive.npz --duration 1",
    "flash": "flash --port {port}",
    "flash --json": "flash --port {port} --json",
}

# kind -> (exit code, text of the error line); a watch has nothing to refuse on a port that opens
NOT_A_PORT = {
    "missing": (3, "no such port"),
    "directory": (3, "it is a directory, not a serial port"),
    "regular file": (3, "it is a regular file, not a serial port"),
    "/dev/null": (3, "not a serial port"),
    "fifo": (3, "it is a FIFO, not a serial port"),
    "busy": (3, "is busy: roadnode monitor (pid "),
}
NO_NODE = {
    "silent pty": (3, "no answer (is the roadnode firmware running?"),
    "junk pty": (3, "not the roadnode protocol"),
    "echo pty": (3, "the port sends back what it is sent"),
    "REPL board": (3, "the board is at the REPL, not running the firmware"),
}
RAW_REPL = (3, "could not enter the raw REPL")  # flash on a port where no MicroPython answers


def _expect(kind: str, name: str) -> tuple[int, str | None]:
    if kind in NOT_A_PORT:
        return NOT_A_PORT[kind]
    if name.startswith("monitor"):
        return 0, None  # it opens, and the watch shows what comes: nothing, or bad frames counted
    if name.startswith("flash"):
        return (2, "has an ESP32-S3, this one an ESP32") if kind == "REPL board" else RAW_REPL
    return NO_NODE[kind]


PORT_FILE = "not a serial port\n"


@contextlib.contextmanager
def _port(kind: str, i: int, work: Path, boards: dict):
    """A port of ``kind`` for one command (the ptys live as long as the command runs; a blank
    board's port is ``boards[i]``'s)."""
    if kind == "REPL board":
        yield boards[i].port
        return
    if kind in ("silent pty", "junk pty", "echo pty"):
        f = FakePort(kind.split()[0])
        try:
            yield f.port
        finally:
            f.close()
        return
    p = work / "ports" / f"{kind.split()[0]}{i}"
    if kind == "directory":
        p.mkdir()
    elif kind == "regular file":
        p.write_text(PORT_FILE)
    elif kind == "fifo":
        os.mkfifo(p)
    yield "/dev/null" if kind == "/dev/null" else str(p)


def _argv(kind: str, name: str, port: str, work: Path, out: Path) -> list[str]:
    spec = COMMANDS[name]
    if kind == "REPL board" and name.startswith("flash"):
        spec += " --board esp32s3-icm42688-neom8n"  # a flash is what a blank board wants: a wrong board instead
    return shlex.split(spec.format(port=shlex.quote(port), d=shlex.quote(str(work)), out=shlex.quote(str(out))))


KINDS = list(NOT_A_PORT) + list(NO_NODE)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_device_command_on_a_bad_port(kind, work, env, tmp_path):
    names = list(COMMANDS)
    boards = {}  # a blank board (at the REPL, no roadnode firmware) for each command
    try:
        if kind == "REPL board":
            for i in range(len(names)):
                boards[i] = SimBoard(flash_dir=tmp_path / f"blank{i}").start()
            for b in boards.values():
                wait_repl(b.port)
        _every_command(kind, names, boards, work, env, tmp_path)
    finally:
        for b in boards.values():
            b.stop()


def _every_command(kind, names, boards, work, env, tmp_path):
    holder = None
    if kind == "busy":  # another roadnode command has the port: a monitor on a silent pty
        busy_port = FakePort("silent")
        holder = subprocess.Popen([sys.executable, "-c", HOLD, busy_port.port], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=env)
        end = time.monotonic() + HANG_S
        while (portlock.holder(busy_port.port) or {}).get("pid") != holder.pid:
            assert holder.poll() is None and time.monotonic() < end, "the holding monitor did not start"
            time.sleep(0.05)
    outs = {n: tmp_path / f"out{i}" for i, n in enumerate(names)}
    for o in outs.values():
        o.mkdir()
    before = _snapshot(work)
    flash_before = {i: b.flash_dir.joinpath("flash.img").read_bytes() for i, b in boards.items()}

    def one(i_name):
        i, name = i_name
        with contextlib.ExitStack() as st:
            port = busy_port.port if kind == "busy" else st.enter_context(_port(kind, i, work, boards))
            return name, port, _roadnode(_argv(kind, name, port, work, outs[name]), env)

    # one port per command, all at once; /dev/null (one lock for all) one at a time
    try:
        with ThreadPoolExecutor(max_workers=1 if kind == "/dev/null" else len(names)) as ex:
            results = list(ex.map(one, enumerate(names)))
    finally:
        if holder is not None:
            holder.send_signal(signal.SIGINT)
            _, herr = holder.communicate(timeout=HANG_S)
            busy_port.close()
    found = []
    for name, port, r in results:
        code, msg = _expect(kind, name)
        p = _problems(r, code, msg, port)
        if kind == "busy" and f"(pid {holder.pid}, since " not in r.err:
            p.append("the holder's pid is not named")
        rec = outs[name] / "rec.bin"
        if rec.exists() and kind != "junk pty":
            p.append("a recording was made of a port that sent no frame")
        if kind == "junk pty" and name == "monitor --json --record":  # frames came: recorded, and shown
            if not (rec.exists() and rec.read_bytes().startswith(b"\x00") and '"type": "error"' in r.out):
                p.append("the junk's frames were not recorded and shown as bad frames")
        if kind in ("silent pty", "echo pty", "REPL board") and name.startswith("monitor"):
            if r.err.strip() not in ("", "0 packets, 0 bad frames") or ("--json" in r.argv and r.out):
                p.append("packets reported from a port that sent none")
        found.append((r, p))
    after = _snapshot(work)
    # the work folder as it was, plus the ports made here, each still what it was made as (a file
    # with its text, an empty folder, a FIFO): nothing written into, onto or beside them
    made = {}
    if kind in ("directory", "regular file", "fifo"):
        made = {f"ports/{kind.split()[0]}{i}": {"directory": stat.S_IFDIR, "fifo": stat.S_IFIFO}.get(kind)
                or hashlib.sha256(PORT_FILE.encode()).hexdigest() for i in range(len(names))}
    assert not _report(found), f"{kind}:\n" + _report(found)
    assert after == {**before, **made}, "files in the work folder changed: " + str(
        sorted(k for k in set(before) | set(after) | set(made) if {**before, **made}.get(k) != after.get(k)))
    for i, b in boards.items():
        flash = b.flash_dir.joinpath("flash.img").read_bytes()
        assert flash == flash_before[i], f"{names[i]}: the board's flash changed"
        wait_repl(b.port, timeout=HANG_S)  # and it was left at its REPL (not stuck in the raw REPL)
    if holder is not None:  # the holder was not disturbed by the refused commands
        assert holder.returncode == 0 and "Traceback" not in herr, herr


@pytest.mark.slow
@pytest.mark.parametrize("cmd", ["status", "flash"])
def test_a_port_that_never_sent_a_byte_is_asked_once(cmd, env):
    """A running node answers a request (or a Ctrl-C) within milliseconds, and a booting one shows
    itself; a port that has not sent one byte is given up after the first try, not asked three
    times (a user waited 9 s for `status` and 13 s for `flash` to say "no answer"). Counted on the
    line: one request, one Ctrl-A."""
    f = FakePort("silent")
    try:
        r = _roadnode([cmd, "--port", f.port], env)
        os.set_blocking(f.m, False)
        sent = b""
        while True:
            try:
                d = os.read(f.m, 65536)
            except OSError:  # EAGAIN: all read
                break
            if not d:
                break
            sent += d
    finally:
        f.close()
    assert r.code == 3 and ("no answer" in r.err or "raw REPL" in r.err), r.err
    if cmd == "status":  # a request is a line "#<base64>" (docs/protocol.md)
        assert sent.count(b"#") == 1, sent
    else:  # each try of the raw REPL's entry sends one Ctrl-A
        assert sent.count(b"\x01") == 1, sent


# ---- bad arguments: refused before a byte reaches the board --------------------------------------

LONG = "x" * 100_000
ARG_CASES = [
    # config set: every value checked with the firmware's schema before the port is opened
    ("config set warp=9", "warp: unknown key"),
    ("config set größe=1", "größe: unknown key"),
    ("config set =5", "unknown key"),
    ("config set heartbeat_s", "expected KEY=VALUE"),
    ("config set heartbeat_s=abc", "not a whole number"),
    ("config set heartbeat_s=0", "below the minimum"),
    ("config set heartbeat_s=" + "9" * 400, "above the maximum"),
    ("config set heartbeat_s=1e400", "not a whole number"),
    ("config set body_gain=nan", "not a finite number"),
    ("config set body_gain=-inf", "not a finite number"),
    ("config set body_gain=½", "not a number"),
    ("config set uplink=lora", "not one of"),
    ("config set mount=Axle", "not one of"),
    ("config set 'mqtt_host=a\nb'", "control character"),
    ("config set 'wifi_ssid=\x1b[2J'", "control character"),
    (f"config set wifi_ssid={LONG}", "longer than 32 bytes"),
    ("config set wifi_ssid=" + "ß" * 17, "longer than 32 bytes"),  # 34 bytes in 17 characters
    # too many bytes of settings for one (atomic) request: known before the node is asked
    ("config set wifi_ssid=" + "s" * 32 + " wifi_password=" + "p" * 64 + " mqtt_host=" + "h" * 64
     + " mqtt_user=" + "u" * 64, "too many settings in one go"),
    # replay: the scenario and the settings are read before the port is opened
    ("replay {d}/flipped.npz", "not a readable scenario"),
    ("replay {d}/truncated.npz", "not a readable scenario"),
    ("replay {d}/empty.npz", "not a readable scenario"),
    ("replay {d}/good.npz --set body_gain=nan", "not a finite number"),
    ("replay {d}/good.npz --set warp=1", "unknown key"),
    ("replay {d}/good.npz --baud 0", "--baud"),
    ("replay {d}/good.npz --baud -115200", "--baud"),
    ("replay {d}/good.npz --baud 99999999999999", "--baud"),
    # monitor: an output that cannot be written, an impossible duration
    ("monitor --record /proc/roadnode-rec.bin", "--record"),
    ("monitor --record {d}/full.bin", "not a regular file"),
    ("monitor --record {d}/adir", "directory"),
    ("monitor --record {d}/nofolder/rec.bin", "does not exist"),
    ("monitor --duration 0", "--duration"),
    ("monitor --duration nan", "--duration"),
    # flash: board, firmware folder and baud checked before the board is touched
    ("flash --board bogus", "unknown board 'bogus'"),
    ("flash --firmware {d}/adir", "not a firmware folder"),
    ("flash --firmware {d}/badfw", "mpy-cross failed on uplink.py"),
    ("flash --baud 0", "--baud"),
    ("flash --device-id 1 --port /dev/null", "one --port"),
    # usage
    ("status --json --verbose", "No such option"),
    ("config frobnicate", "No such command"),
]


@pytest.mark.parametrize("spec,msg", ARG_CASES, ids=[c[0][:50] for c in ARG_CASES])
def test_bad_arguments_are_refused_before_the_board_is_touched(spec, msg, board, work, env):
    words = shlex.split(spec.replace("{d}", shlex.quote(str(work))))
    argv = words + ["--port", board.port]
    before, rx = _snapshot(work), board.rx_bytes
    r = _roadnode(argv, env)
    p = _problems(r, 2, msg, board.port)
    p = [x for x in p if x != "the message does not name the port"]  # bad input, not the port
    assert not p, _report([(r, p)])
    assert r.out == "", r.out
    assert board.rx_bytes == rx, "bytes were sent to the board"
    assert _snapshot(work) == before, "files in the work folder changed"


def test_a_port_that_sends_only_junk_is_asked_once(env):
    """Frames that all fail their check, not one passing: a wrong baud rate or another device. The
    first request's wait already shows it; asking twice more only waited out 2 more timeouts."""
    p = FakePort("junk")
    try:
        r = _roadnode(["status", "--port", p.port], env)
    finally:
        p.close()  # (it reads what is still in flight)
    assert r.code == 3 and "not the roadnode protocol" in r.err, r.err
    # one request line (what the port's reader got holds the pty's echo of its own junk too)
    assert len(re.findall(rb"#[A-Za-z0-9+/]{8,}=*\n", bytes(p.received))) == 1
