"""The flash's decisions, from what the board said (the probe's answer) and the image: which board
definition fits, what config and identity it gets, which slot is filled and how (files copied on the
board, sent, removed), and the code blocks that carry it all. No I/O: usb.flash executes a plan.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from dataclasses import dataclass, field

from roadnode.usb.boardscript import script
from roadnode.usb.image import Image, list_boards, sha
from roadnode.errors import InputError

# WHO_AM_I of the IMU parts the board definitions name (register, accepted values)
WHO_AM_I = {"mpu6050": (0x75, (0x68, 0x98)), "icm42688": (0x75, (0x47,))}
BLOCK = 2048  # base64 bytes per exec: the string and its compilation fit a fragmented heap (4 KB failed to
# find 4,097 contiguous bytes on a running node now and then under load)
HASH_HEX = 16  # hex digits of sha256 compared when planning (64 bits)
# deflate window 2^12 = 4 KB: the board's inflater allocates it in one piece, and after a soft reset a
# heap fragmented by what boot.py left can lack 16 KB in one piece; costs 5% more bytes than 2^14
WBITS = 12
PACK_FILE = "/rn.pack"


def chip_of(machine: str) -> str:
    """'Generic ESP32S3 module with ESP32S3' -> 'ESP32-S3' (the board definitions' spelling)."""
    tail = machine.rsplit(" with ", 1)[-1].strip().upper()
    if tail.startswith("ESP32") and len(tail) > 5:
        return "ESP32-" + tail[5:].lstrip("-")
    return tail


def probes(boards: dict | None = None) -> list:
    """Per board definition, where its IMU should answer: [i2c id, scl, sda, addr, reg, [ids], name]."""
    out = []
    for name, bd in (boards or list_boards()).items():
        reg, ok = WHO_AM_I[bd["imu"]["part"]]
        out.append([bd["i2c"]["id"], bd["i2c"]["scl"], bd["i2c"]["sda"], bd["imu"]["addr"], reg, list(ok), name])
    return out


def probe_code(boards: dict | None = None) -> str:
    """The probe (scripts/probe.py): its answer is the ``info`` the rest of this module plans with."""
    return script("sha", "clean", "probe", hx=HASH_HEX, probes=probes(boards))


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


def choose_board(info: dict, board: str | None, boards: dict) -> tuple[str, bool]:
    """(board name, detected?): ``board`` checked against the chip, or the detected one."""
    if board is None:
        return detect_board(info, boards), True
    if board not in boards:
        raise InputError(f"unknown board {board!r} (known: {', '.join(boards)})")
    chip = chip_of(info["machine"])
    if boards[board]["mcu"]["chip"] != chip:
        raise InputError(f"board {board} has an {boards[board]['mcu']['chip']}, this one an {chip}")
    return board, False


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


def key_plan(info: dict, cfg: dict, rekey: bool, can_register: bool) -> str | None:
    """What becomes of the node's device key: "new" or "rekeyed" (a key is made: only where it
    can be registered), "kept", or None (no device id: no key)."""
    has = "key.bin" in info["root"]
    if not cfg["device_id"] or not (can_register or rekey or has):
        return None
    if can_register and (rekey or not has):
        return "rekeyed" if has else "new"
    return "kept"


@dataclass
class Plan:
    """What a flash does to the board: fill slot ``target`` (folders made, stale files removed,
    files the active slot holds copied on the board, the rest sent), stage the ``root`` files that
    differ, then switch /fw/active to ``switch`` ("" when the target is already active)."""
    target: str
    switch: str
    dirs: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # board paths
    copy: list[tuple[str, str]] = field(default_factory=list)  # (from, to) on the board
    send: list[tuple[str, bytes]] = field(default_factory=list)  # (board path, data)
    root: list[tuple[str, bytes]] = field(default_factory=list)  # (root file name, data)
    kept: int = 0
    digest: str = ""  # the target slot's digest once staged (rnfw.manifest, no root files)

    @property
    def changed(self) -> bool:
        """Whether the board's files change at all."""
        return bool(self.switch or self.root)

    def files(self) -> list[tuple[str, bytes]]:
        """What travels: slot files in place, root files as .tmp (renamed by the commit)."""
        return self.send + [("/" + n + ".tmp", b) for n, b in self.root]


def plan(info: dict, img: Image) -> Plan:
    """The plan that makes the board described by ``info`` hold ``img``, sending the least."""
    active = info["active"] if info["active"] in ("a", "b") else None
    have = info["slots"]
    want = {p: sha(b)[:HASH_HEX] for p, b in img.slot.items()}
    root = [(n, b) for n, b in img.root.items() if info["root"].get(n) != sha(b)[:HASH_HEX]]
    digest = img.digest(with_root=False)
    if active and have[active] == want:  # the firmware is already there, verified by the hashes just read
        return Plan(active, "", root=root, kept=len(want), digest=digest)
    target = "b" if active == "a" else "a"
    tgt, cur = have[target], have[active] if active else {}
    base = f"/fw/{target}/"
    copy = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) == h]
    send = [p for p, h in want.items() if tgt.get(p) != h and cur.get(p) != h]
    return Plan(target, target,
                dirs=["/fw", base[:-1]] + sorted({base + p.rsplit("/", 1)[0] for p in want if "/" in p}),
                stale=[base + p for p in tgt if p not in want],
                copy=[(f"/fw/{active}/" + p, base + p) for p in copy],
                send=[(base + p, img.slot[p]) for p in send],
                root=root, kept=len(want) - len(copy) - len(send), digest=digest)


def pack(files: list[tuple[str, bytes]]) -> bytes:
    """Files as one stream: per file u16 path length, path, u32 size, data (then zlib'd whole:
    the files share a lot, ~10% better than one by one)."""
    out = bytearray()
    for path, data in files:
        pb = path.encode()
        out += struct.pack("<H", len(pb)) + pb + struct.pack("<I", len(data)) + data
    return bytes(out)


def compress(data: bytes) -> bytes:
    """zlib with the board's window (WBITS)."""
    c = zlib.compressobj(9, zlib.DEFLATED, WBITS)
    return c.compress(data) + c.flush()


def transfer(p: Plan, deflate_ok: bool, wdt_ms: int) -> tuple[str, list[tuple[str, int]]]:
    """The execs that stage the plan: scripts/writer.py (an exec of its own: the pieces then
    compile with a heap that has only them to hold), then the pack in BLOCK-sized base64 pieces
    (the last one unpacks it), each with the payload bytes it carries. Compressed when the board
    has deflate and it pays (incompressible data goes as it is: no window needed on the board)."""
    files = p.files()
    data = pack(files)
    wire = compress(data) if deflate_ok else data
    z = len(wire) < len(data) * 0.9
    if not z:
        wire = data
    enc = base64.b64encode(wire).decode()
    head = script("writer", wdt=wdt_ms, wbits=WBITS, pack=PACK_FILE, dirs=p.dirs, rm=p.stale,
                  cp=[list(c) for c in p.copy])
    pieces = [enc[i : i + BLOCK] for i in range(0, len(enc), BLOCK)] or [""]
    out = [(f"_a({PACK_FILE!r}, {piece!r})", len(piece) * 3 // 4) for piece in pieces]
    allowed = sorted(f for f, _ in files)
    code, n = out[-1]
    out[-1] = (code + f"\n_unpack({PACK_FILE!r}, {int(z)}, {repr(set(allowed)) if allowed else 'set()'})", n)
    return head, out


def commit_code(p: Plan, wdt_ms: int) -> str:
    """The switch (scripts/commit.py), guarded: it runs only if it arrived intact."""
    return guarded(script("sha", "commit", wdt=wdt_ms, slot=p.switch, digest=p.digest,
                          root=[["/" + n, sha(b)] for n, b in p.root]))


def clean_code() -> str:
    """Run after a failure once staging began: nothing of the attempt stays on the flash."""
    return script("clean") + "\n_clean()"


def guarded(code: str) -> str:
    """``code`` as base64 with its CRC-32: run on the board only if it arrived intact (a byte
    changed on the line in the commit (`==` and `<=` are one bit apart) must not turn a refusal
    into a switch)."""
    b = code.encode()
    return (f"import binascii\n_c = binascii.a2b_base64({base64.b64encode(b).decode()!r})\n"
            f"{{{zlib.crc32(b)}: exec}}.get(binascii.crc32(_c), lambda c: print('rn:garbled'))(_c)")
