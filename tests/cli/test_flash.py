"""`roadnode flash` on simulated boards: detection, only-what-changed, verification, atomic switch under
power cuts, several boards in parallel, and the MicroPython base image via esptool (mocked at its API)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from roadnode.usb import flash as F
from roadnode.usb.link import NodeLink
from roadnode.errors import InputError
from roadnode.sim.board import SimBoard, wait_repl


@contextlib.contextmanager
def _board(tmp_path, name="esp32-devkitc-mpu6050-neo6m", **kw):
    with SimBoard(board=name, flash_dir=tmp_path / name, realtime=True, **kw) as b:
        wait_repl(b.port)  # its REPL answers: a tool's Ctrl-C no longer meets its start-up
        yield b


def _mp(port, *args):
    """mpremote on the port. Code to exec first re-arms the node's watchdog for a minute, as
    roadnode's own REPL does (usb/repl.py WDT_FEED): stopped at the REPL, the node's 8 s watchdog runs
    on, as on the ESP32, and a loaded machine once took longer than that to exec (the board reset
    under mpremote, which then waited for ever)."""
    from roadnode.usb.repl import WDT_FEED

    if args and args[0] == "exec":
        args = ("exec", WDT_FEED + args[1], *args[2:])
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args], capture_output=True,
                          text=True, timeout=60)


def _manifest(port):
    with NodeLink(port, timeout=2) as link:
        return json.loads(link.call(link.P.MANIFEST, b"\0\0"))


def test_flash_detects_installs_verifies_and_redeploys_nothing(tmp_path, cli):
    with _board(tmp_path, "esp32s3-icm42688-neom8n") as b:
        r = cli("flash", "--port", b.port, "--device-id", "4242", "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["ok"] and d["detected"] and d["board"] == "esp32s3-icm42688-neom8n"
        assert d["form"] == "mpy-x64" and d["sent"] > 15 and d["slot"] == "a"
        assert d["heartbeat"]["fw_version"] == d["version"] and d["heartbeat"]["device_id"] == 4242
        # the new key was saved in the user's data folder: the tests' temporary one (conftest), not the home
        assert (Path(os.environ["XDG_DATA_HOME"]) / "roadnode" / "keys" / "key-4242.bin").stat().st_mode & 0o777 == 0o600
        m = _manifest(b.port)  # what the running node reports it holds
        assert m["slot"] == "a" and m["board"] == "esp32s3-icm42688-neom8n" and m["id"] == 4242
        assert m["d"] == d["digest"]  # the node computes, over its own files, the digest flash reported
        assert d["manifest"]["version"] == d["version"] and len(d["manifest"]["slot"]) == m["n"]
        r2 = cli("flash", "--port", b.port, "--json")
        d2 = json.loads(r2.stdout)
        assert r2.returncode == 0 and d2["ok"] and not d2["changed"] and d2["sent"] == 0 and d2["bytes_sent"] == 0
        # the node never stopped: its uptime went on
        assert d2["heartbeat"]["uptime_s"] >= d["heartbeat"]["uptime_s"]


@pytest.mark.slow
def test_only_the_changed_file_travels_and_the_slot_switches(tmp_path):
    with _board(tmp_path) as b:
        assert F.flash_board(b.port).ok
        # one file of the installed firmware goes bad on the board
        assert _mp(b.port, "exec", "f = open('/fw/a/rnfw/cobs.mpy', 'wb'); f.write(b'junk'); f.close()").returncode == 0
        r = F.flash_board(b.port)
        assert r.ok and r.changed and r.slot == "b"
        # the bad file travels; every other file of the new slot is copied on the board from slot a
        assert r.sent == 1 and r.kept == 0 and r.copied == len(r.manifest["slot"]) - 1 and r.deleted == 0
        assert _manifest(b.port)["slot"] == "b"


def test_board_detection_refuses_unknown_and_ambiguous():
    boards = F.list_boards()
    info = {"machine": "Generic ESP32 module with ESP32", "imu": ["esp32-devkitc-mpu6050-neo6m"]}
    assert F.detect_board(info, boards) == "esp32-devkitc-mpu6050-neo6m"
    with pytest.raises(InputError, match="unknown board.*ESP32-C3.*known: esp32"):
        F.detect_board({"machine": "ESP32C3 module with ESP32C3", "imu": []}, boards)
    with pytest.raises(InputError, match="no IMU answered.*candidates: esp32-devkitc"):
        F.detect_board({"machine": "Generic ESP32 module with ESP32", "imu": []}, boards)
    twin = dict(boards)
    twin["esp32-devkitc-other"] = boards["esp32-devkitc-mpu6050-neo6m"]
    with pytest.raises(InputError, match="ambiguous board: .*pass --board"):
        F.detect_board({"machine": "Generic ESP32 module with ESP32",
                        "imu": ["esp32-devkitc-mpu6050-neo6m", "esp32-devkitc-other"]}, twin)


@pytest.mark.slow
def test_wrong_board_is_refused_before_anything_is_written(tmp_path, cli):
    with _board(tmp_path) as b:
        r = cli("flash", "--port", b.port, "--board", "esp32s3-icm42688-neom8n")
        # a definition that does not fit the chip is bad input (2), found before anything is written
        assert r.returncode == 2 and "ESP32-S3" in r.stderr and "failed" in r.stderr
        assert "fw" not in _mp(b.port, "exec", "import os; print(os.listdir('/'))").stdout
        # on a board that runs a firmware, the refusal leaves it running (restarted), unchanged
        assert F.flash_board(b.port).ok
        before = _manifest(b.port)["d"]
        r = cli("flash", "--port", b.port, "--board", "esp32s3-icm42688-neom8n")
        assert r.returncode == 2
        m = _manifest(b.port)
        assert m["d"] == before


@pytest.mark.slow
def test_power_cut_at_any_moment_boots_old_or_new_never_a_mix(tmp_path, monkeypatch):
    """The new firmware differs from the old (an extra module); the power goes when the board has
    received a random number of the flash's bytes (anywhere from the first to the last). Afterwards
    the node boots and runs exactly the old or exactly the new files: both happen, nothing else."""
    orig = F.build_image
    release = [0]

    def newer(*a, **kw):
        img = orig(*a, **kw)
        # a new release every trial (so it really travels: a slot that holds it already is only switched)
        img.slot["rnfw/extra.py"] = b"# new in release %d\n" % release[0] + random.Random(release[0]).randbytes(2000)
        return img

    rng = random.Random(5)
    with _board(tmp_path, baud=115200) as b:
        assert F.flash_board(b.port).ok
        old = _manifest(b.port)["d"]
        # how many bytes a whole update takes on the line (the cut points are drawn over that)
        monkeypatch.setattr(F, "build_image", newer)
        n0 = b.rx_bytes
        assert F.flash_board(b.port, wait_heartbeat=0).ok
        total = b.rx_bytes - n0
        monkeypatch.setattr(F, "build_image", orig)
        assert F.flash_board(b.port).ok and _manifest(b.port)["d"] == old
        seen = []
        # cut points spread over the transfer, the last ones near its end (after the switch)
        points = sorted(rng.uniform(0.02, 0.9) for _ in range(3)) + [0.995, 1.0]
        for trial, frac in enumerate(points):
            release[0] = trial + 1
            monkeypatch.setattr(F, "build_image", newer)
            at = b.rx_bytes + int(total * frac)
            got = {}
            t = threading.Thread(target=lambda: got.update(r=F.flash_board(b.port, wait_heartbeat=0)))
            t.start()
            while t.is_alive() and b.rx_bytes < at:  # the condition: this many bytes received
                time.sleep(0.002)
            b.power_cut()
            t.join(60)
            assert not t.is_alive()
            # the flash says what happened: done, or the board restarted under it (seen in the ROM's
            # boot lines at once, not after the node's packets ran the exchange into its timeouts)
            assert got["r"].ok or "the board restarted while it ran the command" in got["r"].error, got["r"].error
            monkeypatch.setattr(F, "build_image", orig)
            with NodeLink(b.port) as link:
                hb = link.wait_boot(30, fresh=False)  # power back: the node boots and answers
            m = _manifest(b.port)
            new = newer({"mpy": m["mpy"], "machine": m["m"]}, m["board"], {}).digest()
            assert m["d"] in (old, new), (trial, frac, m)
            assert hb["fw_version"] == m["fw"]
            seen.append("new" if m["d"] == new else "old")
            if seen[-1] == "new":  # back to the old firmware for the next trial
                assert F.flash_board(b.port).ok
                assert _manifest(b.port)["d"] == old
        # an early cut keeps the old firmware; a cut after the switch boots the new one
        assert seen[0] == "old" and seen[-1] == "new", seen


@pytest.mark.slow
def test_parallel_boards_one_failure_does_not_stop_the_others(tmp_path, cli):
    with _board(tmp_path / "1") as b1, _board(tmp_path / "2", "esp32s3-icm42688-neom8n") as b2:
        r = cli("flash", "--port", b1.port, "--port", "/dev/does-not-exist", "--port", b2.port, "--json")
        res = [json.loads(x) for x in r.stdout.splitlines()]
        assert r.returncode == 3 and "1 of 3 board(s) failed" in r.stderr  # a port that is not there: device
        by = {x["port"]: x for x in res}
        assert {b1.port, b2.port, "/dev/does-not-exist"} == set(by), (r.stdout, r.stderr)
        assert by[b1.port]["ok"] and by[b2.port]["ok"] and not by["/dev/does-not-exist"]["ok"]
        assert "cannot open /dev/does-not-exist" in by["/dev/does-not-exist"]["error"]
        # the human form: a summary table with every board
        r = cli("flash", "--port", b1.port, "--port", b2.port)
        assert r.returncode == 0 and "roadnode flash" in r.stdout and r.stdout.count(" ok ") >= 2


@pytest.mark.slow
def test_micropython_image_is_written_with_esptool_then_the_firmware(tmp_path, monkeypatch):
    """--micropython: esptool's API is faked (the simulated board has no ROM bootloader); the
    firmware deploy that follows is real."""
    from esptool import cmds

    calls = []

    class Esp:
        CHIP_NAME = "ESP32"

        def __enter__(self):
            return self

        def __exit__(self, *a):
            calls.append("close")

        def change_baud(self, baud):
            calls.append(("baud", baud))

    monkeypatch.setattr(cmds, "detect_chip", lambda port, **kw: calls.append(("detect", port)) or Esp())
    monkeypatch.setattr(cmds, "run_stub", lambda esp, **kw: esp)
    monkeypatch.setattr(cmds, "attach_flash", lambda esp, **kw: None)
    monkeypatch.setattr(cmds, "erase_flash", lambda esp, **kw: calls.append("erase"))
    monkeypatch.setattr(cmds, "write_flash", lambda esp, addr_data, **kw: calls.append(("write", addr_data[0][0])))
    monkeypatch.setattr(cmds, "reset_chip", lambda esp, mode: calls.append("reset"))
    img = tmp_path / "mp.bin"
    head = bytearray(24)
    head[0] = 0xE9
    img.write_bytes(bytes(head) + bytes(1000))
    with _board(tmp_path) as b:
        r = F.flash_board(b.port, micropython=img)
        assert r.ok, r.error
        assert calls[0] == ("detect", b.port) and "erase" in calls and ("write", 0x1000) in calls
        assert calls.index("erase") < calls.index(("write", 0x1000)) < calls.index("reset")
        assert r.heartbeat["fw_version"] == r.version


def test_flash_without_a_port_is_a_usage_error(cli):
    r = cli("flash")
    assert r.returncode == 2 and "--port" in r.stderr
    r = cli("flash", "--port", "/dev/x", "--port", "/dev/y", "--device-id", "3")
    assert r.returncode == 2 and "one --port" in r.stderr


def test_image_for_the_board_arch_or_py_sources_with_a_warning():
    esp32 = F.build_image({"mpy": 6 | (3 << 8) | (10 << 10), "machine": "x"}, "esp32-devkitc-mpu6050-neo6m", {})
    assert esp32.form == "mpy-xtensawin" and not esp32.warnings
    assert all(p.endswith(".mpy") for p in esp32.slot if p.startswith("rnfw/")) and "rnfw/est_twin.mpy" not in esp32.slot
    man = json.loads(esp32.slot["manifest.json"])
    assert man["version"] == esp32.version and man["form"] == "mpy-xtensawin"
    assert esp32.manifest()["slot"]["rnfw/app.mpy"] == F.sha(esp32.slot["rnfw/app.mpy"])
    assert esp32.slot["rnfw/app.mpy"][:2] == b"M\x06"  # .mpy v6 header
    old = F.build_image({"mpy": 5 | (10 << 10), "machine": "x"}, "esp32-devkitc-mpu6050-neo6m", {})
    assert old.form == "py" and "sending .py sources" in old.warnings[0]
    assert "rnfw/app.py" in old.slot and old.digest() != esp32.digest()


@pytest.mark.slow
def test_flash_takes_over_a_board_copied_by_hand_with_mpremote(tmp_path):
    """Firmware copied at the root with mpremote (the old way) runs; `roadnode flash` installs its
    slots, switches, and removes the unused root copy; config kept."""
    with _board(tmp_path) as b:
        b.deploy({"heartbeat_s": 30, "device_id": 77})
        time.sleep(1.5)
        r = F.flash_board(b.port)
        assert r.ok, r.error
        m = _manifest(b.port)
        assert m["slot"] == "a" and m["id"] == 77
        ls = _mp(b.port, "exec", "import os; print(sorted(os.listdir('/')))").stdout
        assert "'rnfw'" not in ls and "'fw'" in ls


def test_all_finds_esp32_usb_serial_bridges(monkeypatch, cli):
    from types import SimpleNamespace

    from serial.tools import list_ports

    from roadnode.usb.ports import esp_ports

    fake = [SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60),  # CP2102
            SimpleNamespace(device="/dev/ttyACM0", vid=0x303A, pid=0x1001),  # ESP32-S3 native USB
            SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None),  # a UART, not a board
            SimpleNamespace(device="/dev/ttyACM1", vid=0x2341, pid=0x0043)]  # an Arduino
    monkeypatch.setattr(list_ports, "comports", lambda: fake)
    assert esp_ports() == ["/dev/ttyACM0", "/dev/ttyUSB0"]
    r = cli("flash", "--all")  # this machine has no such port
    assert r.returncode == 2 and "no ESP32 USB-serial port" in r.stderr


@pytest.mark.slow
def test_flash_of_a_node_whose_uplink_is_not_the_console(tmp_path):
    """No heartbeats on the USB port (uplink none): flash still confirms the node came back, by
    asking for its status."""
    with _board(tmp_path) as b:
        assert F.flash_board(b.port).ok
        with NodeLink(b.port) as link:
            link.config_set({"uplink": "none"})
        assert _mp(b.port, "exec", "f = open('/fw/a/rnfw/cobs.mpy', 'wb'); f.write(b'x'); f.close()").returncode == 0
        r = F.flash_board(b.port)
        assert r.ok, r.error
        assert r.changed and r.heartbeat["fw_version"] == r.version and r.heartbeat["uptime_s"] <= 2


# ---- updating a running node; nothing left behind; corrupt root files; link faults (issue 10) -----

_WALK = """import os
def w(d):
    for e in os.ilistdir(d):
        p = d.rstrip('/') + '/' + e[0]
        if e[1] == 0x4000:
            w(p)
        else:
            print(p)
w('/')"""


def _files(port) -> set[str]:
    """Every file on the board's flash (the node is stopped for the listing, then restarted)."""
    from roadnode.usb.repl import RawRepl

    r = RawRepl(port)
    try:
        r.enter()
        out = r.exec(_WALK).decode().split()
        r.restart()
    finally:
        r.close()
    with NodeLink(port) as link:
        link.wait_boot()
    return set(out)


NODE_FILES = {"/vitals.json", "/config.bak"}  # the node's own records (rnfw.vitals, rnfw.config)


def _expected(slots: dict[str, F.Image]) -> set[str]:
    return ({"/boot.py", "/main.py", "/board.json", "/config.json", "/fw/active"}
            | {f"/fw/{s}/{p}" for s, im in slots.items() for p in im.slot})


def _only(files: set[str], slots: dict[str, F.Image]):
    """The flash holds what the flash put there (and the node's own records), nothing else."""
    exp = _expected(slots)
    assert exp <= files and files - exp <= NODE_FILES, (sorted(files - exp), sorted(exp - files))


def _with_blob(blob: bytes):
    """build_image plus one more (incompressible) file in the slot: a firmware that differs."""
    orig = F.build_image

    def newer(info, board, config):
        img = orig(info, board, config)
        img.slot["rnfw/blob.bin"] = blob
        return img

    return newer


@pytest.mark.slow
def test_update_of_a_running_node_fits_its_heap_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """The issue's failure: a second flash of a running node ran out of heap (the interrupted node
    held it) and left /rn.pack behind. Now: a clean interpreter, the update switches, and the flash
    holds exactly the two slots and the root files."""
    with _board(tmp_path) as b:
        r0 = F.flash_board(b.port)
        assert r0.ok, r0.error
        info = {"mpy": _manifest(b.port)["mpy"], "machine": "x"}
        base = F.build_image(info, r0.board, {})
        monkeypatch.setattr(F, "build_image", _with_blob(random.Random(1).randbytes(20000)))
        r = F.flash_board(b.port)
        assert r.ok, r.error
        assert r.changed and r.slot == "b" and r.heartbeat["fw_version"] == r.version
        new = F.build_image(info, r0.board, {})
        m = _manifest(b.port)
        assert m["slot"] == "b" and m["d"] == r.digest == new.digest()
        _only(_files(b.port), {"a": base, "b": new})


@pytest.mark.slow
def test_corrupted_transfer_is_refused_old_firmware_stays_rerun_succeeds(tmp_path, monkeypatch):
    """A byte of the firmware flipped on the serial line where no decoder can notice (a base64
    letter changes case: still valid base64; the pack is incompressible so it travels raw): only
    the on-board SHA-256 check stands between it and a switch to a corrupted image."""
    blob = random.Random(2).randbytes(8000)
    with _board(tmp_path) as b:
        r0 = F.flash_board(b.port)
        assert r0.ok, r0.error
        old = _manifest(b.port)
        info = {"mpy": old["mpy"], "machine": "x"}
        base = F.build_image(info, r0.board, {})
        monkeypatch.setattr(F, "build_image", _with_blob(blob))
        # the pack this update sends (one new file, the rest copied on the board), as base64
        enc = base64.b64encode(F.pack([("/fw/b/rnfw/blob.bin", blob)])).decode()
        assert len(enc) > F.BLOCK
        k = next(i for i in range(200, 400) if enc[F.BLOCK + i].isalpha())
        armed = []

        def step(what, frac):
            # after the first block: the second block starts with raw-paste's 3 bytes, then "_a('/rn.pack', '"
            if what == "sending" and not armed:
                armed.append(b.arm_link_fault(after=3 + len("_a('/rn.pack', '") + k, kind="flip", mask=0x20))

        r = F.flash_board(b.port, progress=step)
        assert armed and b.link_fired and chr(b.link_fired[0]["was"]) == enc[F.BLOCK + k]  # it hit the data
        assert not r.ok and "transfer corrupted" in r.error and "old firmware stays active" in r.error, r.error
        m = _manifest(b.port)  # the node restarted on the old firmware, whole
        assert m["slot"] == "a" and m["d"] == old["d"]
        with NodeLink(b.port) as link:
            assert link.status()["fw_version"] == r0.version
        new = F.build_image(info, r0.board, {})
        # nothing left behind: no pack, no .tmp; slot b holds what was staged (a rerun resumes)
        _only(_files(b.port), {"a": base, "b": new})
        r2 = F.flash_board(b.port)
        assert r2.ok, r2.error
        assert r2.slot == "b" and r2.sent == 1 and r2.copied == 0  # only the corrupted file again
        m = _manifest(b.port)
        assert m["slot"] == "b" and m["d"] == r2.digest == new.digest()


@pytest.mark.parametrize("name,content", [("board.json", b"\xff\x00garbage{{"), ("board.json", b'{"name": "esp32-dev'),
                                          ("config.json", b"\x00\x13\xfe"), ("config.json", b'{"device_id": 31, "odr')])
@pytest.mark.slow
def test_corrupt_board_or_config_file_is_repaired_by_flash(tmp_path, cli, name, content):
    with _board(tmp_path) as b:
        assert F.flash_board(b.port, device_id=31).ok
        code = f"f = open('/{name}', 'wb'); f.write({content!r}); f.close()"
        assert _mp(b.port, "exec", code).returncode == 0
        _mp(b.port, "soft-reset")
        r = cli("flash", "--port", b.port, "--json")
        d = json.loads(r.stdout)
        assert r.returncode == 0 and d["ok"], d["error"]
        assert d["changed"] and d["heartbeat"]["fw_version"] == d["version"]
        m = _manifest(b.port)
        assert m["d"] == d["digest"] and not m.get("cf")
        if name == "config.json":  # the last good copy (/config.bak) had the device id, or a warning says so
            assert m["id"] == 31 or any("device id" in w for w in d["warnings"]), d["warnings"]
        else:
            assert m["id"] == 31
        assert not [f for f in _files(b.port) if f.endswith(".tmp") or f.endswith(".pack")]


@pytest.mark.slow
def test_no_switch_to_a_corrupted_image_whatever_byte_the_line_corrupts(tmp_path, monkeypatch):
    """Bytes flipped or dropped at random offsets of whole updates (code, data, control bytes):
    every time the node ends up on the old image or the new one, whole; never on a corrupted one."""
    from roadnode.usb.repl import RawRepl

    rng = random.Random(7)
    want, outcome = 12, {"refused": 0, "updated": 0, "corrupted": 0}
    with _board(tmp_path) as b:
        assert F.flash_board(b.port).ok
        info = {"mpy": _manifest(b.port)["mpy"], "machine": "x"}
        old = F.build_image(info, "esp32-devkitc-mpu6050-neo6m", {}).digest()
        injected = 0
        for i in range(3 * want):
            if injected == want:
                break
            newer = _with_blob(random.Random(100 + i).randbytes(9000))  # each trial a new release
            new = newer(info, "esp32-devkitc-mpu6050-neo6m", {}).digest()
            monkeypatch.setattr(F, "build_image", newer)
            fired = len(b.link_fired)
            b.arm_link_fault(after=rng.randrange(0, 9000), kind=rng.choice(["flip", "drop"]), mask=1 << rng.randrange(8))
            r = F.flash_board(b.port, wait_heartbeat=10)
            b.link_faults.clear()  # a fault beyond this flash's bytes is not for the next one
            monkeypatch.undo()
            try:
                m = _manifest(b.port)
            except Exception:  # left at the REPL (e.g. the restart's Ctrl-D lost): restart it by hand
                rp = RawRepl(b.port)
                rp.enter()
                rp.restart()
                rp.close()
                with NodeLink(b.port) as link:
                    link.wait_boot()
                m = _manifest(b.port)
            if len(b.link_fired) == fired:
                continue  # this flash sent fewer bytes than the offset: no fault on the line
            injected += 1
            f = b.link_fired[-1]
            what = "refused" if m["d"] == old else "updated" if m["d"] == new else "corrupted"
            outcome[what] += 1
            print(f"fault {injected}: {f['kind']} of {f['was']:#04x} at byte {f['offset']} -> {what}"
                  f"{'' if r.ok else ': ' + r.error}")
            if m["d"] == new:  # back to the old image for the next trial
                assert F.flash_board(b.port).ok
    print(f"injected link faults: {injected}; refused {outcome['refused']}, updated whole {outcome['updated']}, "
          f"switches to a corrupted image: {outcome['corrupted']}")
    assert injected == want and outcome["corrupted"] == 0
