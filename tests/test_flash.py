"""`roadnode flash` on simulated boards: detection, only-what-changed, verification, atomic switch under
power cuts, several boards in parallel, and the MicroPython base image via esptool (mocked at its API)."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time

import pytest

from roadnode.board import flash as F
from roadnode.board.link import NodeLink
from roadnode.errors import InputError
from roadnode.sim.board import SimBoard


@contextlib.contextmanager
def _board(tmp_path, name="esp32-devkitc-mpu6050-neo6m", **kw):
    with SimBoard(board=name, flash_dir=tmp_path / name, realtime=True, **kw) as b:
        time.sleep(0.3)
        yield b


def _mp(port, *args):
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
        m = _manifest(b.port)  # what the running node reports it holds
        assert m["slot"] == "a" and m["board"] == "esp32s3-icm42688-neom8n" and m["id"] == 4242
        assert m["d"] == d["digest"]  # the node computes, over its own files, the digest flash reported
        assert d["manifest"]["version"] == d["version"] and len(d["manifest"]["slot"]) == m["n"]
        r2 = cli("flash", "--port", b.port, "--json")
        d2 = json.loads(r2.stdout)
        assert r2.returncode == 0 and d2["ok"] and not d2["changed"] and d2["sent"] == 0 and d2["bytes_sent"] == 0
        # the node never stopped: its uptime went on
        assert d2["heartbeat"]["uptime_s"] >= d["heartbeat"]["uptime_s"]


def test_only_the_changed_file_travels_and_the_slot_switches(tmp_path):
    with _board(tmp_path) as b:
        assert F.flash_board(b.port).ok
        # one file of the installed firmware goes bad on the board
        assert _mp(b.port, "exec", "f = open('/fw/a/rnfw/cobs.mpy', 'wb'); f.write(b'junk'); f.close()").returncode == 0
        r = F.flash_board(b.port)
        assert r.ok and r.changed and r.slot == "b"
        assert r.sent == 1 and r.copied == r.kept + r.copied - r.kept and r.copied >= 15  # the rest copied on the board
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


def test_wrong_board_is_refused_before_anything_is_written(tmp_path, cli):
    with _board(tmp_path) as b:
        r = cli("flash", "--port", b.port, "--board", "esp32s3-icm42688-neom8n")
        assert r.returncode == 1 and "ESP32-S3" in r.stderr and "failed" in r.stderr
        assert "fw" not in _mp(b.port, "exec", "import os; print(os.listdir('/'))").stdout
        # on a board that runs a firmware, the refusal leaves it running (restarted), unchanged
        assert F.flash_board(b.port).ok
        before = _manifest(b.port)["d"]
        r = cli("flash", "--port", b.port, "--board", "esp32s3-icm42688-neom8n")
        assert r.returncode == 1
        m = _manifest(b.port)
        assert m["d"] == before


def test_power_cut_at_any_moment_boots_old_or_new_never_a_mix(tmp_path, monkeypatch):
    """The new firmware differs from the old (an extra module); the power goes at random moments of
    the flash. Afterwards the node boots and runs exactly the old or exactly the new files."""
    orig = F.build_image

    def newer(info, board, config):
        img = orig(info, board, config)
        img.slot["rnfw/extra.py"] = b"# new in this release\n" + bytes(2000)
        return img

    rng = random.Random(5)
    with _board(tmp_path, baud=115200) as b:
        assert F.flash_board(b.port).ok
        old = _manifest(b.port)["d"]
        seen = set()
        for trial in range(4):
            monkeypatch.setattr(F, "build_image", newer)
            t = threading.Thread(target=F.flash_board, args=(b.port,), kwargs={"wait_heartbeat": 0})
            t.start()
            time.sleep(rng.uniform(0.2, 3.0))
            b.power_cut()
            t.join(30)
            time.sleep(2.5)  # power back: boot.py, main.py
            m = _manifest(b.port)
            monkeypatch.setattr(F, "build_image", orig)
            new = newer({"mpy": m["mpy"], "machine": m["m"]}, m["board"], {}).digest()
            assert m["d"] in (old, new), (trial, m)
            seen.add("new" if m["d"] == new else "old")
            # back to the old firmware for the next trial (a normal flash: switch to the other slot)
            assert F.flash_board(b.port).ok
            assert _manifest(b.port)["d"] == old
        assert seen  # at least one cut observed; both outcomes are allowed


def test_parallel_boards_one_failure_does_not_stop_the_others(tmp_path, cli):
    with _board(tmp_path / "1") as b1, _board(tmp_path / "2", "esp32s3-icm42688-neom8n") as b2:
        r = cli("flash", "--port", b1.port, "--port", "/dev/does-not-exist", "--port", b2.port, "--json")
        res = [json.loads(x) for x in r.stdout.splitlines()]
        assert r.returncode == 1 and "1 of 3 board(s) failed" in r.stderr
        by = {x["port"]: x for x in res}
        assert by[b1.port]["ok"] and by[b2.port]["ok"] and not by["/dev/does-not-exist"]["ok"]
        assert "cannot open /dev/does-not-exist" in by["/dev/does-not-exist"]["error"]
        # the human form: a summary table with every board
        r = cli("flash", "--port", b1.port, "--port", b2.port)
        assert r.returncode == 0 and "roadnode flash" in r.stdout and r.stdout.count(" ok ") >= 2


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

    from roadnode.cli.flash import esp_ports

    fake = [SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60),  # CP2102
            SimpleNamespace(device="/dev/ttyACM0", vid=0x303A, pid=0x1001),  # ESP32-S3 native USB
            SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None),  # a UART, not a board
            SimpleNamespace(device="/dev/ttyACM1", vid=0x2341, pid=0x0043)]  # an Arduino
    monkeypatch.setattr(list_ports, "comports", lambda: fake)
    assert esp_ports() == ["/dev/ttyACM0", "/dev/ttyUSB0"]
    r = cli("flash", "--all")  # this machine has no such port
    assert r.returncode == 2 and "no ESP32 USB-serial port" in r.stderr


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
