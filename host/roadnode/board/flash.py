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

import base64
import hashlib
import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadnode.board.repl import WDT_MS
from roadnode.errors import CheckFailed, DeviceError, InputError, RoadnodeError
from roadnode.paths import BOARDS_DIR, FIRMWARE_DIR

# sys.implementation._mpy >> 10 -> mpy-cross -march
ARCHES = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc", "rv64imc"]
MPY_CROSS_VERSION = (6, 3)  # what the mpy-cross we depend on emits (mpy-cross --version)
# modules the node never imports (host golden twins, the decoder): not sent
HOST_ONLY = {"est_twin", "packet_decode"}
# WHO_AM_I of the IMU parts the board definitions name (register, accepted values)
WHO_AM_I = {"mpu6050": (0x75, (0x68, 0x98)), "icm42688": (0x75, (0x47,))}
BLOCK = 4096  # base64 bytes per exec: the string and its compilation fit a fragmented heap
HASH_HEX = 16  # hex digits of sha256 compared when planning (64 bits)
# deflate window 2^12 = 4 KB: the board's inflater allocates it in one piece, and after a soft reset a
# heap fragmented by what boot.py left can lack 16 KB in one piece; costs 5% more bytes than 2^14
WBITS = 12

# board side: the SHA-256 of a file, read in 1 KB pieces (both the probe and the commit use it)
_SHA = """def _s(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()"""

# what an interrupted flash leaves behind (staged root files, the pack, a half-written slot switch):
# removed by the probe at the start of every flash and by _CLEAN after a failure
_LEFTOVERS = """for n in os.listdir('/'):
    if n.endswith('.tmp') or n == 'rn.pack':
        os.remove('/' + n)
try:
    os.remove('/fw/active.tmp')
except OSError:
    pass
"""

_PROBE = r"""
import os, sys, gc, hashlib, binascii, json
for _k in [k for k in sys.modules if k.startswith('rnfw')]:
    del sys.modules[_k]
gc.collect()
%(SHA)s
def _walk(d, out, pre):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        if e[1] == 0x4000:
            _walk(d + '/' + e[0], out, pre + e[0] + '/')
        else:
            out[pre + e[0]] = _s(d + '/' + e[0])[:%(HX)d]
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
for n in ('main.py', 'boot.py', 'board.json', 'config.json', 'identity.json', 'key.bin'):
    try:
        r['root'][n] = _s('/' + n)[:%(HX)d]
    except OSError:
        pass
try:
    r['identity'] = json.loads(open('/identity.json').read())
except Exception:
    r['identity'] = None
r['config'] = None
for n in ('/config.json', '/config.json.tmp', '/config.bak'):
    try:
        r['config'] = json.loads(open(n).read())
        r['config_src'] = n
        break
    except Exception:
        pass
""" + _LEFTOVERS + r"""try:
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


def compact(code: str) -> str:
    """Board code with 1-space indents and no blank lines: fewer bytes over a 115200 baud line."""
    out = []
    for line in code.splitlines():
        if line.strip():
            n = len(line) - len(line.lstrip(" "))
            out.append(" " * (n // 4) + line.lstrip(" "))
    return "\n".join(out)


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

    def digest(self, with_root: bool = True) -> str:
        """rnfw.manifest's digest of these files, as the board computes it of what it holds."""
        from roadnode.mpy.fwimport import fw

        M = fw("manifest")
        pairs = [(p, sha(b)) for p, b in self.slot.items()]
        if with_root:
            pairs += [("/" + n, sha(self.root[n])) for n in M.ROOT_FILES]
        return M.digest(pairs)

    def manifest(self) -> dict:
        return {"version": self.version, "form": self.form,
                "slot": {p: sha(b) for p, b in sorted(self.slot.items())},
                "root": {p: sha(b) for p, b in sorted(self.root.items()) if p != "key.bin"}}  # (no key, nor its hash)


def firmware_version(src: Path) -> str:
    """VERSION_STR of a firmware folder's rnfw/version.py (a literal tuple: read, not imported)."""
    import ast

    text = (src / "rnfw" / "version.py").read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "VERSION":
            return "%d.%d.%d" % tuple(ast.literal_eval(node.value))
    raise InputError(f"{src}: rnfw/version.py has no VERSION")


def check_firmware_dir(src: Path) -> Path:
    src = Path(src)
    missing = [n for n in ("main.py", "boot.py", "rnfw/version.py", "rnfw/app.py") if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src}: not a firmware folder (missing {', '.join(missing)})")
    return src


def build_image(info: dict, board: str, config: dict, firmware: Path | None = None) -> Image:
    """The image for this board, from the checkout's firmware/ or the folder ``firmware``."""
    from roadnode.mpy.build import compiled_firmware

    src = check_firmware_dir(firmware) if firmware is not None else FIRMWARE_DIR
    mpy = info["mpy"]
    ver, sub, arch_i = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
    arch = ARCHES[arch_i] if arch_i < len(ARCHES) else None
    warnings = []
    slot = {}
    if (ver, sub) == MPY_CROSS_VERSION and arch:
        d = compiled_firmware(arch, src) / "rnfw"
        for f in sorted(d.glob("*.mpy")):
            if f.stem not in HOST_ONLY:
                slot[f"rnfw/{f.name}"] = f.read_bytes()
        form = f"mpy-{arch}"
    else:
        warnings.append(f"the board's MicroPython takes .mpy v{ver}.{sub} (arch {arch}); mpy-cross here makes "
                        f"v{MPY_CROSS_VERSION[0]}.{MPY_CROSS_VERSION[1]}: sending .py sources (slower imports, more heap)")
        for f in sorted((src / "rnfw").glob("*.py")):
            if f.stem not in HOST_ONLY:
                slot[f"rnfw/{f.name}"] = f.read_bytes()
        form = "py"
    bd = (BOARDS_DIR / f"{board}.json").read_bytes()
    root = {"main.py": (src / "main.py").read_bytes(), "boot.py": (src / "boot.py").read_bytes(),
            "board.json": bd, "config.json": json.dumps(config, sort_keys=True).encode()}
    version = firmware_version(src)
    # the slot says what it is (for anyone reading the board later); the per-file SHA-256s are in
    # the flash result (--json) and are checked on the board, not stored (64 hex digits a file cost
    # more over 115200 baud than they tell)
    img = Image(slot, root, form, version, warnings)
    slot["manifest.json"] = json.dumps({"version": version, "form": form, "board": board,
                                        "digest": img.digest(with_root=False)}, sort_keys=True).encode()
    return img


def _image(info, board, config, firmware):
    # the three-argument call when no folder is given (tests substitute build_image with it)
    return build_image(info, board, config) if firmware is None else build_image(info, board, config, firmware)


def board_identity(info: dict) -> int | None:
    """The device id in the board's /identity.json (rnfw.config.identity), or None."""
    from roadnode.mpy.fwimport import fw

    C = fw("config")
    try:
        return C.check("device_id", info["identity"]["device_id"])
    except Exception:
        return None


def device_config(info: dict, device_id: int | None) -> tuple[dict, list[str]]:
    """The board's own config kept (validated); the device id from --device-id, else the board's
    identity file, else its config."""
    from roadnode.mpy.fwimport import fw

    C = fw("config")
    warn = []
    cur = info.get("config")
    src = info.get("config_src", "/config.json")
    ident = board_identity(info)
    if device_id is None and ident is not None:
        device_id = ident  # the identity outlives a corrupt config (and wins over a hand-edited one)
        lost = f"; device id {ident} kept (from /identity.json)"
    else:
        lost = "" if device_id is not None else "; its device id is lost (pass --device-id)"
    if cur is None and info.get("root", {}).get("config.json"):
        warn.append("the board's /config.json was unreadable and no good copy was left: the defaults replace it"
                    + lost)
    elif src != "/config.json":
        warn.append(f"the board's /config.json was unreadable: restored from {src} "
                    f"(device id {cur.get('device_id') if isinstance(cur, dict) else '?'})")
    try:
        cfg = C.validate(cur if isinstance(cur, dict) else {})
    except (C.ConfigError, TypeError, ValueError) as e:
        cfg = C.defaults()
        try:  # the device id is what identifies the node's data: keep it if it alone is valid
            cfg["device_id"] = C.check("device_id", cur["device_id"])
            kept = f"device id {cfg['device_id']} kept"
        except Exception:
            kept = ("its device id is lost (pass --device-id)" if device_id is None else
                    f"device id {ident} kept (from /identity.json)" if device_id == ident else "device id from --device-id")
        warn.append(f"the board's config was invalid ({e}): replaced by the defaults; {kept}")
    if device_id is not None:
        cfg["device_id"] = C.check("device_id", device_id)
    return cfg, warn


def identity_file(info: dict, cfg: dict, device_id: int | None) -> bytes | None:
    """/identity.json for the board (written once: at provisioning or when --device-id changes
    it; a board flashed before identity files existed gets one from its config's id), or None: a
    board with no id at all gets none (id 0 is not an identity)."""
    if device_id is None and board_identity(info) is None and not cfg["device_id"]:
        return None
    return json.dumps({"device_id": cfg["device_id"]}).encode()


def pack(files: list[tuple[str, bytes]]) -> bytes:
    """Files as one stream: per file u16 path length, path, u32 size, data (then zlib'd whole:
    the files share a lot, ~10% better than one by one)."""
    out = bytearray()
    for path, data in files:
        pb = path.encode()
        out += struct.pack("<H", len(pb)) + pb + struct.pack("<I", len(data)) + data
    return bytes(out)


def compress(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, WBITS)
    return c.compress(data) + c.flush()


# board side of the transfer: append base64 pieces to a pack file (re-arming the watchdog, which
# keeps running at the REPL), then unpack it; only the paths the host announced may be written, so a
# pack garbled on the line can never touch the active slot or anything else
_WRITER = """import binascii, os, struct, machine
_w = machine.WDT(timeout=%(WDT)d)
def _a(p, d):
    _w.feed()
    with open(p, 'ab') as f:
        f.write(binascii.a2b_base64(d))
def _unpack(p, z, W):
    f = open(p, 'rb')
    s = f
    if z:
        import deflate
        s = deflate.DeflateIO(f, deflate.ZLIB, %(WBITS)d)
    b = bytearray(512)
    while True:
        _w.feed()
        h = s.read(2)
        if not h:
            break
        path = s.read(struct.unpack('<H', h)[0]).decode()
        if path not in W:
            raise OSError('pack garbled: unexpected path')
        n = struct.unpack('<I', s.read(4))[0]
        with open(path, 'wb') as o:
            while n:
                k = s.readinto(memoryview(b)[:min(n, 512)])
                if not k:
                    raise OSError('pack cut short')
                o.write(memoryview(b)[:k])
                n -= k
    f.close()
    os.remove(p)
"""

# the switch: every staged file checked (slot: SHA-256 digest by the staged firmware's own manifest
# code; root files: SHA-256 each) and only if all equal, root files renamed and /fw/active switched
# (renames are atomic on LittleFS); else the staged root files are removed. Sent with its CRC-32
# and run only if that matches (_guarded): a byte changed on the line in this code (`==` and `<=`
# are one bit apart) must not turn a refusal into a switch.
_COMMIT = """import os, sys, hashlib, binascii, machine
machine.WDT(timeout=%(WDT)d).feed()
%(SHA)s
_bad = [p for p, x in %(ROOT)r if _s(p + '.tmp') != x]
_d = %(DIGEST)r
if %(SLOT)r:
    sys.path.insert(0, '/fw/' + %(SLOT)r)
    from rnfw import manifest
    _d = manifest.installed(%(SLOT)r, False)[0]
    sys.path.pop(0)
    del sys.modules['rnfw.manifest']
    if _d != %(DIGEST)r:
        _bad.append('slot')
if _bad:
    for p, x in %(ROOT)r:
        try:
            os.remove(p + '.tmp')
        except OSError:
            pass
else:
    for p, x in %(ROOT)r:
        os.rename(p + '.tmp', p)
    if %(SLOT)r:
        f = open('/fw/active.tmp', 'w')
        f.write(%(SLOT)r)
        f.close()
        os.rename('/fw/active.tmp', '/fw/active')
print('rn:commit', 'refused' if _bad else 'ok', _d, ' '.join(_bad))
"""

# run on a failure after the node was stopped: nothing of the attempt stays on the flash
_CLEAN = "import os\n" + _LEFTOVERS


def _guarded(code: str) -> str:
    """``code`` as base64 with its CRC-32: run on the board only if it arrived intact."""
    b = code.encode()
    return (f"import binascii\n_c = binascii.a2b_base64({base64.b64encode(b).decode()!r})\n"
            f"{{{zlib.crc32(b)}: exec}}.get(binascii.crc32(_c), lambda c: print('rn:garbled'))(_c)")


@dataclass
class Result:
    port: str
    ok: bool = False
    board: str | None = None
    detected: bool = False
    form: str | None = None
    version: str | None = None
    sent: int = 0
    copied: int = 0
    kept: int = 0
    deleted: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    changed: bool = False
    slot: str | None = None
    digest: str | None = None  # rnfw.manifest digest of what the board now runs
    manifest: dict | None = None  # sha256 per file, version (what was installed or found)
    heartbeat: dict | None = None
    key: str | None = None  # the node's device key (docs/security.md): "new", "rekeyed", "kept", or None (no id)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0  # what this board's outcome means (README "Exit codes"): 1 check, 2 input, 3 device

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def flash_board(port: str, board: str | None = None, device_id: int | None = None, baud: int = 115200,
                progress: Callable[[str, float], None] | None = None, wait_heartbeat: float = 30.0,
                micropython: Path | None = None, firmware: Path | None = None, rekey: bool = False,
                key_sink: Callable[[int, bytes], None] | None = None) -> Result:
    """Flash one board; never raises for a board problem: the Result says what happened.
    ``firmware``: a firmware folder (main.py, boot.py, rnfw/) instead of the checkout's.
    With ``key_sink`` (`roadnode flash` always gives one), a board with a device id and no key gets a
    new random one (key.bin beside its config, kept on every later flash; ``rekey``: a new one
    anyway); ``key_sink(device_id, key)`` is called with it once the board holds it (to register
    it: the key never goes in the Result). Without one no key is made (nowhere to register it)."""
    res = Result(port)
    t0 = time.monotonic()
    step = progress or (lambda what, frac: None)
    try:
        # the port is this flash's from the probe to the restarted node's heartbeat: the opens
        # inside re-enter the lock, no other command slips in between them (board.portlock)
        from roadnode.board.portlock import hold

        with hold(port):
            _flash_locked(port, board, device_id, baud, step, wait_heartbeat, micropython, firmware, res,
                          (rekey, key_sink))
        res.ok = True
    except RoadnodeError as e:
        res.error, res.exit_code = str(e), e.exit_code
    except OSError as e:
        res.error, res.exit_code = f"{port}: {e}", DeviceError.exit_code
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def _flash_locked(port, board, device_id, baud, step, wait_heartbeat, micropython, firmware, res: Result,
                  keying=(False, None)):
    if micropython is not None:
        from roadnode.board.base_image import write_base_image

        step("writing MicroPython", 0.0)
        write_base_image(port, micropython, progress=lambda d, t: step("writing MicroPython", 0.3 * d / max(t, 1)))
        time.sleep(1.5)  # the new MicroPython boots and creates its filesystem
    _flash(port, board, device_id, baud, step, wait_heartbeat, res, firmware, keying)


def _unchanged(port, board, device_id, baud, res: Result, firmware=None) -> bool:
    """Ask a running node what it holds (protocol MANIFEST: the node keeps measuring). True when
    it already runs exactly this firmware, board definition and device id: nothing to do."""
    from roadnode.board.link import NodeLink

    try:
        link = NodeLink(port, baud, timeout=0.5)
    except DeviceError:
        raise
    try:
        req = link.send(link.P.MANIFEST, b"\x00\x00")
        end = time.monotonic() + 0.4
        r = None
        while r is None and time.monotonic() < end:
            r = link.wait(req, 0.05)
            if r is None and link.echoed:
                return False  # a REPL read our request as Python: no firmware running
        if r is None:
            return False
        if r["status"] != link.P.OK:
            return False  # an older firmware: the REPL path finds out
        m = json.loads(bytes(r["payload"]))
        boards = list_boards()
        name = board or m.get("board")
        if name not in boards or not m.get("slot") or m.get("cf"):
            return False
        if device_id is not None and m.get("id") != device_id:
            return False
        if m.get("id") and not m.get("ik"):
            return False  # no identity file yet (rnfw.config.identity): the REPL path writes it
        img = _image({"mpy": m["mpy"], "machine": m["m"]}, name, {}, firmware)
        if m["d"] != img.digest() or m["fw"] != img.version:
            return False
        hb = link.status()  # the running node's vitals stand for the heartbeat: it never stopped
    except (DeviceError, ValueError, KeyError):  # ValueError: a manifest cut short by an older firmware
        return False  # not running our firmware (at the REPL, blank, older): the REPL path
    finally:
        link.close()
    res.board, res.detected, res.form, res.version, res.slot = name, board is None, img.form, img.version, m["slot"]
    res.kept, res.heartbeat, res.digest, res.manifest = m["n"], hb, m["d"], img.manifest()
    res.warnings += img.warnings
    return True


def _flash(port, board, device_id, baud, step, wait_heartbeat, res: Result, firmware=None, keying=(False, None)):
    from roadnode.board.repl import RawRepl

    rekey, key_sink = keying
    step("asking the node", 0.0)
    if not rekey and _unchanged(port, board, device_id, baud, res, firmware):
        step("done", 1.0)
        return

    repl = RawRepl(port, baud)
    staging = False
    try:
        step("connecting", 0.0)
        # a soft reset in the raw REPL: a clean heap (main.py does not run there), the watchdog re-armed
        repl.enter(soft_reset=True)
        step("reading the board", 0.05)
        info = json.loads(repl.exec(compact(_PROBE % {"HX": HASH_HEX, "PROBES": repr(probes()), "SHA": _SHA})).strip().splitlines()[-1])
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
        img = _image(info, board, cfg, firmware)
        ident = identity_file(info, cfg, device_id)
        if ident is not None:
            img.root["identity.json"] = ident  # a root file like config.json: staged, checked, renamed
        new_key = None
        if cfg["device_id"] and (key_sink is not None or rekey or "key.bin" in info["root"]):
            # (a key is made only where it can go: the caller's key_sink; `roadnode flash` always has one)
            if key_sink is not None and (rekey or "key.bin" not in info["root"]):
                import secrets

                new_key = img.root["key.bin"] = secrets.token_bytes(16)  # staged and renamed the same way
                res.key = "rekeyed" if "key.bin" in info["root"] else "new"
            else:
                res.key = "kept"
        res.warnings += img.warnings
        res.form, res.version, res.digest, res.manifest = img.form, img.version, img.digest(), img.manifest()
        active = info["active"] if info["active"] in ("a", "b") else None
        have = info["slots"]
        want = {p: sha(b)[:HASH_HEX] for p, b in img.slot.items()}
        prep, files = [], []
        if active and have[active] == want:
            target = active  # the firmware is already there, verified by the hashes just read
            res.kept = len(want)
        else:
            res.changed = True
            target = "b" if active == "a" else "a"
            prep, files = _plan_slot(img, target, active, have, want, res)
        res.slot = target
        # root files: loader, board, config (each written as .tmp in the same pack, checked, renamed)
        root_todo = [(n, b) for n, b in img.root.items() if info["root"].get(n) != sha(b)[:HASH_HEX]]
        res.changed |= bool(root_todo)
        files += [("/" + n + ".tmp", b) for n, b in root_todo]
        switch = target if target != active else ""
        if files or prep:
            step("staging", 0.1)
            staging = True
            repl.exec(_send_pack(repl, prep, files, info.get("deflate"), step, res), timeout=60)
        want_d = img.digest(with_root=False)
        if switch or root_todo:
            # an exec of its own: the board compiles it with the heap the unpacking used free again
            code = _guarded(compact(_COMMIT % {"WDT": WDT_MS, "SHA": _SHA, "SLOT": switch, "DIGEST": want_d,
                                               "ROOT": [("/" + n, sha(b)) for n, b in root_todo]}))
            step("verifying", 0.85)
            out = repl.exec(code, timeout=60).decode().strip().splitlines()
            last = out[-1].split() if out else []
            if last[:2] != ["rn:commit", "ok"] or (switch and last[2:3] != [want_d]):
                why = ("the switch code arrived garbled" if last[:1] == ["rn:garbled"] else
                       f"files staged on the board differ from what was sent ({' '.join(last[3:]) or '?'}; digest "
                       f"{last[2] if len(last) > 2 else '?'}, expected {want_d})")
                raise CheckFailed(f"{port}: transfer corrupted: {why}; nothing was switched, the old firmware "
                                  "stays active; run the flash again")
        staging = False
        if new_key is not None and key_sink is not None:  # the board holds it now: register it
            key_sink(cfg["device_id"], new_key)
        if info.get("legacy"):  # firmware copied at the root by hand earlier: now unused, remove it
            repl.exec("import os\nfor e in os.listdir('/rnfw'):\n    os.remove('/rnfw/' + e)\nos.rmdir('/rnfw')")
        step("restarting", 0.95)
        repl.restart()
    except BaseException:
        # refused or failed after the node was stopped: nothing of the attempt left on the flash,
        # and the node restarted on the firmware that is active (the old one, whole), so a failed
        # flash never leaves a node that does not measure
        try:
            if staging:
                repl.exec(_CLEAN, timeout=10)
        except Exception:
            pass  # the next flash's probe removes what is left
        try:
            repl.restart()
        except Exception:
            pass
        raise
    finally:
        repl.close()
    if wait_heartbeat:
        hb = wait_for_heartbeat(port, baud, wait_heartbeat)
        res.heartbeat = hb
        if hb["fw_version"] != res.version:
            raise DeviceError(f"{port}: the node came back with firmware {hb['fw_version']}, expected {res.version}")
    step("done", 1.0)


def _plan_slot(img: Image, target, active, have, want, res: Result):
    """Board-side preparation of the target slot (dirs, stale files out, files the active slot
    already has copied on the board) and the files that must travel."""
    tgt = have[target]
    cur = have[active] if active else {}
    stale = [p for p in tgt if p not in want]
    copy = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) == h]
    send = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) != h]
    res.kept = len(want) - len(copy) - len(send)
    res.copied, res.sent, res.deleted = len(copy), len(send), len(stale)
    base = f"/fw/{target}/"
    dirs = sorted({base + p.rsplit("/", 1)[0] for p in want if "/" in p})
    prep = ["def _md(d):\n    try:\n        os.mkdir(d)\n    except OSError:\n        pass",
            "_md('/fw')", f"_md({base[:-1]!r})"] + [f"_md({d!r})" for d in dirs]
    prep += [f"os.remove({base + p!r})" for p in stale]
    for p in copy:  # the active slot has it already: copy on the board, nothing on the wire
        prep.append(f"with open({f'/fw/{active}/' + p!r}, 'rb') as a, open({base + p!r}, 'wb') as b:\n"
                    f"    while True:\n        d = a.read(1024)\n        if not d:\n            break\n        b.write(d)")
    return prep, [(base + p, img.slot[p]) for p in send]


def _send_pack(repl, prep: list[str], files, deflate_ok, step, res: Result) -> str:
    """Send files as one pack in raw-paste blocks; returns the code of the last block (it unpacks).
    Compressed when the board has deflate and
    it pays (incompressible data goes as it is: no 16 KB window needed on the board)."""
    data = pack(files)
    wire = compress(data) if deflate_ok else data
    z = len(wire) < len(data) * 0.9
    if not z:
        wire = data
    enc = base64.b64encode(wire).decode()
    packf = "/rn.pack"
    allowed = sorted(p for p, _ in files)
    head = compact("import os\n" + _WRITER % {"WDT": WDT_MS, "WBITS": WBITS} + "\n" + "\n".join(prep)
                   + f"\ntry:\n    os.remove({packf!r})\nexcept OSError:\n    pass") + "\n"
    pieces = [enc[i : i + BLOCK] for i in range(0, len(enc), BLOCK)] or [""]
    for i, piece in enumerate(pieces[:-1]):
        repl.exec((head if i == 0 else "") + f"_a({packf!r}, {piece!r})", timeout=60)
        res.bytes_sent += len(piece) * 3 // 4
        step("sending", 0.1 + 0.75 * (i + 1) / len(pieces))
    res.bytes_sent += len(pieces[-1]) * 3 // 4
    return ((head if len(pieces) == 1 else "") + f"_a({packf!r}, {pieces[-1]!r})\n"
            f"_unpack({packf!r}, {int(z)}, {repr(set(allowed)) if allowed else 'set()'})")


def wait_for_heartbeat(port: str, baud: int = 115200, timeout: float = 30.0) -> dict:
    """The node's first status after the flash's restart (boot heartbeat or status reply)."""
    from roadnode.board.link import NodeLink

    with NodeLink(port, baud) as link:
        return link.wait_boot(timeout)
