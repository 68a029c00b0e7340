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

This module is the executor: usb.image builds what the board should hold, usb.flashplan
decides what to do (no I/O), usb/scripts/*.py are the code that runs on the board. (The image
and planner names callers use, build_image, Image, pack..., are importable from here too.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadnode.usb.boardscript import script
from roadnode.usb.flashplan import (BLOCK, choose_board, clean_code, commit_code, detect_board, device_config,  # noqa: F401
                                      identity_file, key_plan, pack, plan, probe_code, transfer)
from roadnode.usb.image import Image, build_image, check_firmware_dir, list_boards, sha  # noqa: F401
from roadnode.usb.repl import WDT_MS, BoardRestarted
from roadnode.errors import CheckFailed, DeviceError, InputError, RoadnodeError


def _image(info, board, config, firmware):
    # the three-argument call when no folder is given (tests substitute build_image with it)
    return build_image(info, board, config) if firmware is None else build_image(info, board, config, firmware)


@dataclass
class Result:
    """One board's flash, as `roadnode flash --json` prints it."""

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
        """The fields as a JSON-ready dict."""
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
        # inside re-enter the lock, no other command slips in between them (usb.portlock)
        from roadnode.usb.portlock import hold

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


def flash_boards(ports: list[str], progress: Callable[[str, str, float], None] | None = None,
                 **kw) -> dict[str, Result]:
    """flash_board on every port at once (a thread each: boards are slow, not the host); the
    results by port, in the order given. ``progress(port, what, frac)``; ``kw``: flash_board's."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p):
        """Flash one port, its progress reported under its own name."""
        step = None if progress is None else (lambda what, frac: progress(p, what, frac))
        return flash_board(p, progress=step, **kw)

    with ThreadPoolExecutor(max_workers=max(1, len(ports))) as ex:
        futs = {p: ex.submit(one, p) for p in ports}
        return {p: f.result() for p, f in futs.items()}


def outcome(results: dict[str, Result]) -> RoadnodeError | None:
    """The error the whole flash ends with (None: every board ok). The gravest outcome decides: a
    board unreachable (3) over bad input (2) over a failed check (1); one board's error is named
    as it is (naming the port), several are counted."""
    failed = [r for r in results.values() if not r.ok]
    if not failed:
        return None
    code = max(r.exit_code or 1 for r in failed)
    e = {3: DeviceError, 2: InputError}.get(code, CheckFailed)
    if len(results) == 1:
        r = failed[0]
        why = r.error or "no reason given"
        if why.startswith(f"{r.port}: "):
            return e(f"{r.port}: flash failed: {why[len(r.port) + 2:]}")
        return e(f"flash failed: {why}" if r.port in why else f"{r.port}: flash failed: {why}")
    return e(f"{len(failed)} of {len(results)} board(s) failed")


def _flash_locked(port, board, device_id, baud, step, wait_heartbeat, micropython, firmware, res: Result,
                  keying=(False, None)):
    if micropython is not None:
        from roadnode.usb.base_image import write_base_image

        step("writing MicroPython", 0.0)
        write_base_image(port, micropython, progress=lambda d, t: step("writing MicroPython", 0.3 * d / max(t, 1)))
        time.sleep(1.5)  # the new MicroPython boots and creates its filesystem
    _flash(port, board, device_id, baud, step, wait_heartbeat, res, firmware, keying)


def _unchanged(port, board, device_id, baud, res: Result, firmware=None) -> bool:
    """Ask a running node what it holds (protocol MANIFEST: the node keeps measuring). True when
    it already runs exactly this firmware, board definition and device id: nothing to do."""
    from roadnode.usb.link import NodeLink

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
    from roadnode.usb.repl import RawRepl

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
        boards = list_boards()
        info = json.loads(repl.exec(probe_code(boards)).strip().splitlines()[-1])
        res.board, res.detected = choose_board(info, board, boards)
        cfg, w = device_config(info, device_id)
        res.warnings += w
        img = _image(info, res.board, cfg, firmware)
        ident = identity_file(info, cfg, device_id)
        if ident is not None:
            img.root["identity.json"] = ident  # a root file like config.json: staged, checked, renamed
        new_key = None
        # (a key is made only where it can go: the caller's key_sink; `roadnode flash` always has one)
        res.key = key_plan(info, cfg, rekey, key_sink is not None)
        if res.key in ("new", "rekeyed"):
            import secrets

            new_key = img.root["key.bin"] = secrets.token_bytes(16)  # staged and renamed the same way
        res.warnings += img.warnings
        res.form, res.version, res.digest, res.manifest = img.form, img.version, img.digest(), img.manifest()
        p = plan(info, img)
        res.slot, res.changed, res.kept = p.target, p.changed, p.kept
        res.copied, res.sent, res.deleted = len(p.copy), len(p.send), len(p.stale)
        if p.files() or p.dirs or p.stale or p.copy:
            step("staging", 0.1)
            staging = True
            head, blocks = transfer(p, bool(info.get("deflate")), WDT_MS)
            repl.exec(head, timeout=60)
            for i, (code, n) in enumerate(blocks):
                repl.exec(code, timeout=60)
                res.bytes_sent += n
                if i < len(blocks) - 1:
                    step("sending", 0.1 + 0.75 * (i + 1) / len(blocks))
        if p.switch or p.root:
            # an exec of its own: the board compiles it with the heap the unpacking used free again
            step("verifying", 0.85)
            out = repl.exec(commit_code(p, WDT_MS), timeout=60).decode().strip().splitlines()
            last = out[-1].split() if out else []
            if last[:2] != ["rn:commit", "ok"] or (p.switch and last[2:3] != [p.digest]):
                why = ("the switch code arrived garbled" if last[:1] == ["rn:garbled"] else
                       f"files staged on the board differ from what was sent ({' '.join(last[3:]) or '?'}; digest "
                       f"{last[2] if len(last) > 2 else '?'}, expected {p.digest})")
                raise CheckFailed(f"{port}: transfer corrupted: {why}; nothing was switched, the old firmware "
                                  "stays active; run the flash again")
        staging = False
        if new_key is not None and key_sink is not None:  # the board holds it now: register it
            key_sink(cfg["device_id"], new_key)
        if info.get("legacy"):  # firmware copied at the root by hand earlier: now unused, remove it
            repl.exec(script("legacy"))
        step("restarting", 0.95)
        repl.restart()
    except BoardRestarted:
        # the board restarted by itself (a power cut, the watchdog) and runs the firmware that is
        # active, the old one, whole; it is left running (and its reset reason as it is): what was
        # staged, the next flash's probe removes
        raise
    except BaseException:
        # refused or failed after the node was stopped: nothing of the attempt left on the flash,
        # and the node restarted on the firmware that is active (the old one, whole), so a failed
        # flash never leaves a node that does not measure
        try:
            if staging:
                repl.exec(clean_code(), timeout=10)
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


def wait_for_heartbeat(port: str, baud: int = 115200, timeout: float = 30.0) -> dict:
    """The node's first status after the flash's restart (boot heartbeat or status reply)."""
    from roadnode.usb.link import NodeLink

    with NodeLink(port, baud) as link:
        return link.wait_boot(timeout)
