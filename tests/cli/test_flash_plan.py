"""The flash planner (usb.flashplan: no I/O) on hand-made board states, and the board-side
scripts (usb/scripts/) run on the simulated board's MicroPython as the flash sends them."""

from __future__ import annotations

import ast
import base64
import json
import struct
import time
import zlib

import pytest

from roadnode.usb import flashplan as P
from roadnode.usb.boardscript import SCRIPTS_DIR, compact, script
from roadnode.usb.image import Image, sha


def _img(**slot) -> Image:
    files = {f"rnfw/{k}.mpy": v for k, v in slot.items()}
    return Image(files, {"main.py": b"main", "boot.py": b"boot", "board.json": b"{}", "config.json": b"{}"},
                 "mpy-xtensawin", "1.2.3")


def _h(b: bytes) -> str:
    return sha(b)[: P.HASH_HEX]


def _info(active=None, a=None, b=None, root=None) -> dict:
    return {"active": active, "slots": {"a": a or {}, "b": b or {}}, "root": root or {}}


def _unpack(data: bytes) -> list[tuple[str, bytes]]:
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<H", data, i)
        path = data[i + 2 : i + 2 + n].decode()
        i += 2 + n
        (m,) = struct.unpack_from("<I", data, i)
        out.append((path, data[i + 4 : i + 4 + m]))
        i += 4 + m
    return out


def test_blank_board_gets_everything_in_slot_a_and_switches():
    img = _img(app=b"A" * 100, imu=b"I" * 50)
    p = P.plan(_info(), img)
    assert (p.target, p.switch) == ("a", "a") and p.changed
    assert p.dirs == ["/fw", "/fw/a", "/fw/a/rnfw"]
    assert sorted(f for f, _ in p.send) == ["/fw/a/rnfw/app.mpy", "/fw/a/rnfw/imu.mpy"]
    assert not p.copy and not p.stale and p.kept == 0
    assert sorted(n for n, _ in p.root) == ["board.json", "boot.py", "config.json", "main.py"]
    assert p.digest == img.digest(with_root=False)


def test_same_firmware_already_active_sends_only_changed_root_files():
    img = _img(app=b"A")
    slot = {k: _h(v) for k, v in img.slot.items()}
    root = {n: _h(b) for n, b in img.root.items()}
    root["config.json"] = "0" * 16  # the config differs
    p = P.plan(_info("b", b=slot, root=root), img)
    assert (p.target, p.switch) == ("b", "") and p.kept == 1
    assert [n for n, _ in p.root] == ["config.json"] and p.changed
    assert not (p.send or p.copy or p.stale or p.dirs)
    assert p.files() == [("/config.json.tmp", b"{}")]
    same = P.plan(_info("b", b=slot, root={n: _h(b) for n, b in img.root.items()}), img)
    assert not same.changed and same.files() == []


def test_update_copies_on_the_board_sends_the_changed_and_removes_the_stale():
    img = _img(app=b"new app", imu=b"same imu", nmea=b"nmea v2")
    a = {"rnfw/app.mpy": _h(b"old app"), "rnfw/imu.mpy": _h(b"same imu"), "rnfw/nmea.mpy": _h(b"nmea v1")}
    b = {"rnfw/nmea.mpy": _h(b"nmea v2"), "rnfw/gone.mpy": "1" * 16}  # a half-staged earlier try
    p = P.plan(_info("a", a=a, b=b), img)
    assert (p.target, p.switch) == ("b", "b")
    assert p.copy == [("/fw/a/rnfw/imu.mpy", "/fw/b/rnfw/imu.mpy")]
    assert [f for f, _ in p.send] == ["/fw/b/rnfw/app.mpy"]
    assert p.stale == ["/fw/b/rnfw/gone.mpy"] and p.kept == 1  # nmea: already staged in b


@pytest.mark.parametrize("deflate_ok", [True, False])
def test_transfer_carries_exactly_the_plan_as_data(deflate_ok):
    img = _img(app=b"x" * 9000, imu=bytes(range(256)) * 20)
    p = P.plan(_info(), img)
    head, blocks = P.transfer(p, deflate_ok, 60000)
    # the writer: its parameters as data on the first line, then the file itself (no generated code)
    first, rest = head.split("\n", 1)
    assert first.startswith("_A = ") and rest == compact((SCRIPTS_DIR / "writer.py").read_text())
    data = ast.literal_eval(first[len("_A = "):])
    assert data["dirs"] == p.dirs and data["rm"] == [] and data["cp"] == [] and data["wdt"] == 60000
    enc, n = "", 0
    for code, k in blocks[:-1]:
        assert code.startswith(f"_a({P.PACK_FILE!r}, '")
        enc += ast.literal_eval(code[len(f"_a({P.PACK_FILE!r}, "):-1])
        n += k
    last, unpack = blocks[-1][0].split("\n")
    enc += ast.literal_eval(last[len(f"_a({P.PACK_FILE!r}, "):-1])
    n += blocks[-1][1]
    wire = base64.b64decode(enc)
    assert 0 <= n - len(wire) <= 2 and all(  # (counted as 3/4 of the base64, padding included)
        len(c) < P.BLOCK + 40 for c, _ in blocks)
    z = int(unpack.split(", ")[1])
    assert z == int(deflate_ok)  # 9 KB of x: compression pays when the board can inflate
    got = _unpack(zlib.decompress(wire, P.WBITS) if z else wire)
    assert got == p.files()
    assert ast.literal_eval(unpack[unpack.index("{"):-1]) == {f for f, _ in p.files()}


def test_commit_is_guarded_and_carries_the_checks_as_data():
    img = _img(app=b"A")
    p = P.plan(_info(), img)
    code = P.commit_code(p, 60000)
    b64 = code.split("a2b_base64(")[1].split(")")[0]
    inner = base64.b64decode(ast.literal_eval(b64))
    assert f"{{{zlib.crc32(inner)}: exec}}" in code  # run only if it arrived intact
    first = inner.decode().split("\n", 1)[0]
    data = ast.literal_eval(first[len("_A = "):])
    assert data["slot"] == "a" and data["digest"] == img.digest(with_root=False)
    assert sorted(data["root"]) == sorted(["/" + n, sha(b)] for n, b in img.root.items())


def test_board_detection_and_key_decisions():
    boards = {"s3": {"mcu": {"chip": "ESP32-S3"}, "imu": {"part": "icm42688"}},
              "dev": {"mcu": {"chip": "ESP32"}, "imu": {"part": "mpu6050"}}}
    assert P.chip_of("Generic ESP32S3 module with ESP32S3") == "ESP32-S3"
    assert P.choose_board({"machine": "x with ESP32S3", "imu": ["s3"]}, None, boards) == ("s3", True)
    assert P.choose_board({"machine": "x with ESP32", "imu": []}, "dev", boards) == ("dev", False)
    with pytest.raises(Exception, match="has an ESP32-S3, this one an ESP32"):
        P.choose_board({"machine": "x with ESP32"}, "s3", boards)
    with pytest.raises(Exception, match="no IMU answered"):
        P.choose_board({"machine": "x with ESP32", "imu": []}, None, boards)
    with_key, without = {"root": {"key.bin": "k"}}, {"root": {}}
    assert P.key_plan(without, {"device_id": 0}, False, True) is None  # no id: no key
    assert P.key_plan(without, {"device_id": 7}, False, True) == "new"
    assert P.key_plan(with_key, {"device_id": 7}, False, True) == "kept"
    assert P.key_plan(with_key, {"device_id": 7}, True, True) == "rekeyed"
    assert P.key_plan(without, {"device_id": 7}, False, False) is None  # nowhere to register one


def test_board_scripts_run_on_the_simulated_boards_micropython(tmp_path):
    """The probe reads a board as planned and clears what an interrupted flash left; the writer,
    a pack and the commit install a slot; the commit refuses a file that differs."""
    from roadnode.usb.repl import WDT_MS, RawRepl
    from roadnode.sim.board import SimBoard

    with SimBoard(board="esp32-devkitc-mpu6050-neo6m", flash_dir=tmp_path / "b") as b:
        r = RawRepl(b.port)
        try:
            r.enter(soft_reset=True)
            r.exec("f = open('/config.json.tmp', 'w'); f.write('{\"device_id\": 5}'); f.close()")
            info = json.loads(r.exec(P.probe_code()).decode().strip().splitlines()[-1])
            assert info["active"] is None and info["slots"] == {"a": {}, "b": {}}
            assert info["config"] == {"device_id": 5} and info["config_src"] == "/config.json.tmp"
            assert info["imu"] == ["esp32-devkitc-mpu6050-neo6m"] and info["free"] > 0
            assert "config.json.tmp" not in r.exec("import os; print(os.listdir('/'))").decode()  # cleaned
            from roadnode.paths import FIRMWARE_DIR

            img = _img()
            img.slot = {"rnfw/app.py": b"print('app')\n" * 50,  # (sources: the commit imports the manifest code)
                        **{f"rnfw/{n}": (FIRMWARE_DIR / "rnfw" / n).read_bytes() for n in ("__init__.py", "manifest.py")}}
            p = P.plan(info, img)
            head, blocks = P.transfer(p, bool(info["deflate"]), WDT_MS)
            r.exec(head)
            for code, _ in blocks:
                r.exec(code)
            listing = r.exec("import os; print(sorted(os.listdir('/')), os.listdir('/fw/a/rnfw'))").decode()
            assert "'main.py.tmp'" in listing and "app.py" in listing and "rn.pack" not in listing
            # the commit computes the staged slot's digest with its own rnfw.manifest: one that is not
            # the expected one is refused, and the staged root files go; the right one switches
            right, p.digest = p.digest, "0" * 16
            out = r.exec(P.commit_code(p, WDT_MS)).decode().split()
            assert out[:2] == ["rn:commit", "refused"] and out[2] == right and out[3:] == ["slot"]
            assert ".tmp" not in r.exec("import os; print(os.listdir('/'))").decode()
            p.digest = right
            p.root = []  # (staged above and removed by the refusal)
            r.enter(soft_reset=True)  # a flash commits once per interpreter (the commit unloads rnfw.manifest)
            out = r.exec(P.commit_code(p, WDT_MS)).decode().split()
            assert out[:3] == ["rn:commit", "ok", right]
            assert r.exec("print(open('/fw/active').read())").decode().strip() == "a"
        finally:
            r.close()


def test_the_gravest_board_outcome_decides_the_exit():
    from roadnode.usb.flash import Result, outcome
    from roadnode.errors import CheckFailed, DeviceError, InputError

    ok = Result("/dev/a", ok=True)
    check = Result("/dev/b", error="/dev/b: transfer corrupted", exit_code=1)
    gone = Result("/dev/c", error="/dev/c: no answer", exit_code=3)
    assert outcome({"a": ok}) is None
    e = outcome({"b": check})
    assert isinstance(e, CheckFailed) and str(e) == "/dev/b: flash failed: transfer corrupted"
    e = outcome({"a": ok, "b": check, "c": gone})
    assert isinstance(e, DeviceError) and str(e) == "2 of 3 board(s) failed"
    assert isinstance(outcome({"d": Result("/dev/d", error="unknown board 'x'", exit_code=2)}), InputError)
