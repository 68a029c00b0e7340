"""`roadnode flash`: put the firmware on a board, fast, verified, and never half-installed.

Layout on the board's flash (see docs/flash.md):
    /main.py, /boot.py     the loader: runs the slot named in /fw/active
    /fw/a/, /fw/b/         two firmware slots (rnfw/*.mpy); /fw/active holds "a" or "b"
    /board.json, /config.json

A flash stages the new firmware in the inactive slot (copying only what differs from what is
already there or in the active slot), verifies every file's hash on the board, and then switches
/fw/active with one rename, which LittleFS does atomically. A cable pulled or a power cut at any
moment leaves a board that boots the old firmware or the new one, never a mix.

One round trip reads everything needed to plan (MicroPython and .mpy versions, architecture, chip,
I2C probes for board detection, the hashes of every firmware file, the config); files travel as
zlib-compressed base64 in large raw-paste blocks (mpremote sends repr() text in 256-byte chunks).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadnode.errors import DeviceError, InputError
from roadnode.paths import BOARDS_DIR, FIRMWARE_DIR

# sys.implementation._mpy >> 10 -> mpy-cross -march
ARCHES = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc", "rv64imc"]
MPY_CROSS_VERSION = (6, 3)  # what the mpy-cross we depend on emits (mpy-cross --version)
# modules the node never imports (host golden twins, the decoder): not sent
HOST_ONLY = {"est_twin", "packet_decode"}
# WHO_AM_I of the IMU parts the board definitions name (register, accepted values)
WHO_AM_I = {"mpu6050": (0x75, (0x68, 0x98)), "icm42688": (0x75, (0x47,))}
BLOCK = 6000  # base64 bytes per exec: small enough for a node's heap at the REPL
HASH_HEX = 16  # hex digits of sha256 compared when planning (64 bits)

_PROBE = r"""
import os, sys, gc, hashlib, binascii, json
for _k in [k for k in sys.modules if k.startswith('rnfw')]:
    del sys.modules[_k]
gc.collect()
def _h(p):
    s = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            s.update(b)
    return binascii.hexlify(s.digest()).decode()[:%(HX)d]
def _walk(d, out, pre):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        if e[1] == 0x4000:
            _walk(d + '/' + e[0], out, pre + e[0] + '/')
        else:
            out[pre + e[0]] = _h(d + '/' + e[0])
r = {'mpy': sys.implementation._mpy, 'ver': list(sys.implementation.version[:3]), 'machine': os.uname().machine}
try:
    import deflate
    r['deflate'] = 1
except ImportError:
    r['deflate'] = 0
r['slots'] = {}
for s in ('a', 'b'):
    r['slots'][s] = {}
    _walk('/fw/' + s, r['slots'][s], '')
try:
    r['active'] = open('/fw/active').read().strip()
except OSError:
    r['active'] = None
r['root'] = {}
for n in ('main.py', 'boot.py', 'board.json', 'config.json'):
    try:
        r['root'][n] = _h('/' + n)
    except OSError:
        pass
try:
    r['config'] = json.loads(open('/config.json').read())
except Exception:
    r['config'] = None
try:
    os.stat('/rnfw')
    r['legacy'] = 1
except OSError:
    r['legacy'] = 0
r['imu'] = []
from machine import I2C, Pin
for c in %(PROBES)s:
    try:
        i = I2C(c[0], scl=Pin(c[1]), sda=Pin(c[2]), freq=100000)
        if c[3] in i.scan() and i.readfrom_mem(c[3], c[4], 1)[0] in c[5]:
            r['imu'].append(c[6])
    except Exception:
        pass
s = os.statvfs('/')
r['free'] = s[0] * s[3]
print(json.dumps(r))
"""

_WRITER = """import binascii, io
def _w(p, d, a, z):
    d = binascii.a2b_base64(d)
    if z:
        import deflate
        d = deflate.DeflateIO(io.BytesIO(d), deflate.ZLIB).read()
    with open(p, 'ab' if a else 'wb') as f:
        f.write(d)
"""

_VERIFY = r"""
import hashlib, binascii
_bad = []
for p, want in %s:
    try:
        s = hashlib.sha256()
        with open(p, 'rb') as f:
            while True:
                b = f.read(1024)
                if not b:
                    break
                s.update(b)
        if binascii.hexlify(s.digest()).decode() != want:
            _bad.append(p)
    except OSError:
        _bad.append(p)
print(repr(_bad))
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_boards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(BOARDS_DIR.glob("*.json"))}


def chip_of(machine: str) -> str:
    """'Generic ESP32S3 module with ESP32S3' -> 'ESP32-S3' (the board definitions' spelling)."""
    tail = machine.rsplit(" with ", 1)[-1].strip().upper()
    if tail.startswith("ESP32") and len(tail) > 5:
        return "ESP32-" + tail[5:].lstrip("-")
    return tail


def probes() -> list:
    out = []
    for name, bd in list_boards().items():
        part = bd["imu"]["part"]
        reg, ok = WHO_AM_I[part]
        out.append([bd["i2c"]["id"], bd["i2c"]["scl"], bd["i2c"]["sda"], bd["imu"]["addr"], reg, list(ok), name])
    return out


def detect_board(info: dict, boards: dict | None = None) -> str:
    """The one board definition that fits the chip and the IMU that answered; InputError listing
    the candidates otherwise."""
    boards = boards or list_boards()
    chip = chip_of(info["machine"])
    same_chip = [n for n, b in boards.items() if b["mcu"]["chip"] == chip]
    found = [n for n in info.get("imu", []) if n in same_chip]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{n} ({b['mcu']['chip']}, {b['imu']['part']})" for n, b in boards.items())
    if not same_chip:
        raise InputError(f"unknown board: chip {chip} ({info['machine']!r}) matches no board definition; known: {known}")
    if not found:
        raise InputError(f"chip {chip}, but no IMU answered where the definitions expect one "
                         f"(candidates: {', '.join(same_chip)}); check the wiring or pass --board")
    raise InputError(f"ambiguous board: {', '.join(found)} all fit; pass --board")


@dataclass
class Image:
    """What a board should hold: slot files (path in the slot -> bytes) and root files."""
    slot: dict[str, bytes]
    root: dict[str, bytes]
    form: str  # "mpy-<arch>" or "py"
    version: str
    warnings: list[str] = field(default_factory=list)

    def manifest(self) -> dict:
        return {"version": self.version, "form": self.form,
                "slot": {p: sha(b) for p, b in sorted(self.slot.items())},
                "root": {p: sha(b) for p, b in sorted(self.root.items())}}


def build_image(info: dict, board: str, config: dict) -> Image:
    from roadnode.mpy.build import compiled_firmware
    from roadnode.mpy.fwimport import fw

    mpy = info["mpy"]
    ver, sub, arch_i = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
    arch = ARCHES[arch_i] if arch_i < len(ARCHES) else None
    warnings = []
    slot = {}
    if (ver, sub) == MPY_CROSS_VERSION and arch:
        d = compiled_firmware(arch) / "rnfw"
        for f in sorted(d.glob("*.mpy")):
            if f.stem not in HOST_ONLY:
                slot[f"rnfw/{f.name}"] = f.read_bytes()
        form = f"mpy-{arch}"
    else:
        warnings.append(f"the board's MicroPython takes .mpy v{ver}.{sub} (arch {arch}); mpy-cross here makes "
                        f"v{MPY_CROSS_VERSION[0]}.{MPY_CROSS_VERSION[1]}: sending .py sources (slower imports, more heap)")
        for f in sorted((FIRMWARE_DIR / "rnfw").glob("*.py")):
            if f.stem not in HOST_ONLY:
                slot[f"rnfw/{f.name}"] = f.read_bytes()
        form = "py"
    bd = (BOARDS_DIR / f"{board}.json").read_bytes()
    root = {"main.py": (FIRMWARE_DIR / "main.py").read_bytes(), "boot.py": (FIRMWARE_DIR / "boot.py").read_bytes(),
            "board.json": bd, "config.json": json.dumps(config, sort_keys=True).encode()}
    return Image(slot, root, form, fw("version").VERSION_STR, warnings)


def device_config(info: dict, device_id: int | None) -> tuple[dict, list[str]]:
    """The board's own config kept (validated), device_id set if given."""
    from roadnode.mpy.fwimport import fw

    C = fw("config")
    warn = []
    cur = info.get("config")
    try:
        cfg = C.validate(cur if isinstance(cur, dict) else {})
    except C.ConfigError as e:
        warn.append(f"the board's config was invalid ({e}): replaced by the defaults")
        cfg = C.defaults()
    if device_id is not None:
        cfg["device_id"] = C.check("device_id", device_id)
    return cfg, warn


def _b64_blocks(files: list[tuple[str, bytes]], deflate_ok: bool):
    """exec blocks of at most ~BLOCK base64 bytes: ('_w(path, data, append, z)' lines, raw bytes)."""
    block, size, raw = [], 0, 0
    for path, data in files:
        z = 0
        payload = data
        if deflate_ok:
            c = zlib.compressobj(9, zlib.DEFLATED, 10)  # 1 KB window: the board decompresses in 1 KB
            comp = c.compress(data) + c.flush()
            if len(comp) < len(data):
                payload, z = comp, 1
        chunk = (BLOCK * 3) // 4
        for i in range(0, max(len(payload), 1), chunk):
            # compressed data must arrive whole per call: decompress once, at the last piece
            part = payload[i : i + chunk]
            enc = base64.b64encode(part).decode()
            if z and len(payload) > chunk:
                line = f"_w({path + '.z'!r}, {enc!r}, {1 if i else 0}, 0)"
            else:
                line = f"_w({path!r}, {enc!r}, {1 if i else 0}, {z})"
            block.append(line)
            size += len(line)
            raw += len(part)
            if size >= BLOCK:
                yield "\n".join(block), raw
                block, size, raw = [], 0, 0
        if z and len(payload) > (BLOCK * 3) // 4:
            block.append(f"_unz({path + '.z'!r}, {path!r})")
    if block:
        yield "\n".join(block), raw


_UNZ = """def _unz(src, dst):
    import deflate, os
    with open(src, 'rb') as f, open(dst, 'wb') as o:
        d = deflate.DeflateIO(f, deflate.ZLIB)
        while True:
            b = d.read(512)
            if not b:
                break
            o.write(b)
    os.remove(src)
"""


@dataclass
class Result:
    port: str
    ok: bool = False
    board: str | None = None
    detected: bool = False
    form: str | None = None
    version: str | None = None
    previous: str | None = None
    sent: int = 0
    copied: int = 0
    kept: int = 0
    deleted: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    changed: bool = False
    slot: str | None = None
    heartbeat: dict | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def flash_board(port: str, board: str | None = None, device_id: int | None = None, baud: int = 115200,
                progress: Callable[[str, float], None] | None = None, wait_heartbeat: float = 30.0,
                micropython: Path | None = None) -> Result:
    """Flash one board; never raises for a board problem: the Result says what happened."""
    res = Result(port)
    t0 = time.monotonic()
    step = progress or (lambda what, frac: None)
    try:
        if micropython is not None:
            from roadnode.board.base_image import write_base_image

            step("writing MicroPython", 0.0)
            write_base_image(port, micropython, progress=lambda d, t: step("writing MicroPython", 0.3 * d / max(t, 1)))
            time.sleep(1.5)  # the new MicroPython boots and creates its filesystem
        _flash(port, board, device_id, baud, step, wait_heartbeat, res)
        res.ok = True
    except (DeviceError, InputError) as e:
        res.error = str(e)
    except OSError as e:
        res.error = f"{port}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def _flash(port, board, device_id, baud, step, wait_heartbeat, res: Result):
    from roadnode.board.repl import RawRepl

    repl = RawRepl(port, baud)
    try:
        step("connecting", 0.0)
        repl.enter()
        step("reading the board", 0.05)
        info = json.loads(repl.exec(_PROBE % {"HX": HASH_HEX, "PROBES": repr(probes())}).strip().splitlines()[-1])
        boards = list_boards()
        if board is None:
            board = detect_board(info, boards)
            res.detected = True
        elif board not in boards:
            raise InputError(f"unknown board {board!r} (known: {', '.join(boards)})")
        else:
            chip = chip_of(info["machine"])
            if boards[board]["mcu"]["chip"] != chip:
                raise InputError(f"board {board} has an {boards[board]['mcu']['chip']}, this one an {chip}")
        res.board = board
        cfg, w = device_config(info, device_id)
        res.warnings += w
        img = build_image(info, board, cfg)
        res.warnings += img.warnings
        res.form, res.version = img.form, img.version
        active = info["active"] if info["active"] in ("a", "b") else None
        have = info["slots"]
        want = {p: sha(b)[:HASH_HEX] for p, b in img.slot.items()}
        if active and have[active] == want:
            target = active  # the firmware is already there, verified by the hashes just read
            res.kept = len(want)
        else:
            res.changed = True
            target = "b" if active == "a" else "a"
            _stage(repl, img, target, active, have, want, info.get("deflate"), step, res)
        res.slot = target
        # root files: loader, board, config (each replaced atomically: tmp, then rename)
        root_todo = [(n, b) for n, b in img.root.items() if info["root"].get(n) != sha(b)[:HASH_HEX]]
        if root_todo:
            res.changed = True
            code = [_WRITER]
            for n, b in root_todo:
                code.append(f"_w({'/' + n + '.tmp'!r}, {base64.b64encode(b).decode()!r}, 0, 0)")
            code.append("import os")
            for n, _ in root_todo:
                code.append(f"os.rename({'/' + n + '.tmp'!r}, {'/' + n!r})")
            repl.exec("\n".join(code))
            res.bytes_sent += sum(len(b) for _, b in root_todo)
        if target != active:
            step("switching", 0.9)
            repl.exec("import os\nf = open('/fw/active.tmp', 'w')\nf.write(%r)\nf.close()\nos.rename('/fw/active.tmp', '/fw/active')"
                      % target)
        if info.get("legacy"):  # firmware copied at the root by hand earlier: now unused, remove it
            repl.exec("import os\nfor e in os.listdir('/rnfw'):\n    os.remove('/rnfw/' + e)\nos.rmdir('/rnfw')")
        step("restarting", 0.95)
        repl.restart()
    finally:
        repl.close()
    if wait_heartbeat:
        hb = wait_for_heartbeat(port, baud, wait_heartbeat)
        res.heartbeat = hb
        if hb["fw_version"] != res.version:
            raise DeviceError(f"{port}: the node came back with firmware {hb['fw_version']}, expected {res.version}")
    step("done", 1.0)


def _stage(repl, img: Image, target, active, have, want, deflate_ok, step, res: Result):
    tgt = have[target]
    cur = have[active] if active else {}
    stale = [p for p in tgt if p not in want]
    copy = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) == h]
    send = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) != h]
    res.kept = len(want) - len(copy) - len(send)
    res.copied, res.sent, res.deleted = len(copy), len(send), len(stale)
    base = f"/fw/{target}/"
    dirs = sorted({base + p.rsplit("/", 1)[0] for p in want if "/" in p})
    prep = ["import os", "def _md(d):\n    try:\n        os.mkdir(d)\n    except OSError:\n        pass",
            "_md('/fw')", f"_md({base[:-1]!r})"] + [f"_md({d!r})" for d in dirs]
    prep += [f"os.remove({base + p!r})" for p in stale]
    for p in copy:  # the active slot has it already: copy on the board, nothing on the wire
        prep.append(f"with open({f'/fw/{active}/' + p!r}, 'rb') as a, open({base + p!r}, 'wb') as b:\n"
                    f"    while True:\n        d = a.read(1024)\n        if not d:\n            break\n        b.write(d)")
    step("staging", 0.1)
    repl.exec("\n".join(prep))
    files = [(base + p, img.slot[p]) for p in send]
    total = sum(len(b) for _, b in files) or 1
    done = 0
    repl.exec(_WRITER + _UNZ)  # the raw REPL keeps its globals: define the writers once
    for code, raw in _b64_blocks(files, bool(deflate_ok)):
        repl.exec(code, timeout=60)
        done += raw
        res.bytes_sent += raw
        step("sending", 0.1 + 0.7 * min(done / total, 1.0))
    step("verifying", 0.85)
    full = [[base + p, sha(b)] for p, b in img.slot.items()]
    bad = []
    for i in range(0, len(full), 40):
        bad += ast.literal_eval(repl.exec(_VERIFY % repr(full[i : i + 40])).decode().strip().splitlines()[-1])
    if bad:
        raise DeviceError(f"{repl.port}: {len(bad)} file(s) differ on the board after writing ({', '.join(bad[:3])}...): "
                          "the old firmware stays active; try again")


def wait_for_heartbeat(port: str, baud: int = 115200, timeout: float = 30.0) -> dict:
    """The node's first status packet after a (re)start."""
    from roadnode.board.console import ConsoleSplitter, decode_frame, open_port

    s = open_port(port, baud)
    sp = ConsoleSplitter()
    end = time.monotonic() + timeout
    text = b""
    try:
        while time.monotonic() < end:
            data = s.read(4096)
            for kind, item in sp.feed(data):
                if kind == "text":
                    text = (text + item)[-300:]
                    continue
                d = decode_frame(item)
                if d.get("type") == "status":
                    return d
    finally:
        s.close()
    tail = text.decode(errors="replace").strip().splitlines()[-3:]
    raise DeviceError(f"{port}: no heartbeat within {timeout:.0f} s after the restart"
                      + (f"; the console said: {' | '.join(tail)}" if tail else ""))
