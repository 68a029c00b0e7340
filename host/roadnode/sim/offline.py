"""Run the firmware on the simulated board over a whole scenario, offline and in virtual time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware
from roadnode.mpy.fwimport import fw
from roadnode.packets import decode_packet, split_frames
from roadnode.paths import BOARDS_DIR
from roadnode.scenario.fileformat import Scenario
from roadnode.sim.tape import write_tapes

SCRIPT = Path(__file__).resolve().parents[1] / "mpy" / "scripts" / "run_node.py"

DEFAULT_BOARD = {"mpu6050": "esp32-devkitc-mpu6050-neo6m", "icm42688": "esp32s3-icm42688-neom8n"}


FAULTS = ("imu_nack", "imu_gone", "imu_stuck", "gps_silent", "gps_garbage", "hang")


def parse_fault(spec: str) -> dict:
    """``NAME@T[:DUR]`` (seconds of board time) -> simhw.faults entries."""
    name, _, rest = spec.partition("@")
    if name not in FAULTS:
        raise InputError(f"fault {spec!r}: unknown fault {name!r} (known: {', '.join(FAULTS)})")
    t, _, dur = rest.partition(":")
    try:
        t0 = float(t)
        d = float(dur) if dur else 1e6
    except ValueError:
        raise InputError(f"fault {spec!r}: expected NAME@SECONDS[:DURATION]") from None
    if t0 < 0 or d <= 0:
        raise InputError(f"fault {spec!r}: times must be positive")
    a, b = int(t0 * 1e6), int((t0 + d) * 1e6)
    if name in ("imu_nack", "imu_gone"):  # gone = a NACK that never ends
        return {"imu_nack_from": a, "imu_nack": b if name == "imu_nack" else 1 << 62}
    if name == "imu_stuck":
        return {"imu_stuck_from": a, "imu_stuck": b}
    if name == "hang":
        return {"hang_from": a, "hang": 1}
    return {f"{name}_from": a, name: b}


def board_path(name: str | None, part: str) -> Path:
    name = name or DEFAULT_BOARD[part]
    p = BOARDS_DIR / f"{name}.json"
    if not p.exists():
        known = ", ".join(sorted(x.stem for x in BOARDS_DIR.glob("*.json")))
        raise InputError(f"unknown board {name!r} (known: {known})")
    bd = json.loads(p.read_text())
    if bd["imu"]["part"] != part:
        raise InputError(f"board {name} has an {bd['imu']['part']}, the scenario was recorded with an {part}")
    return p


def run_scenario(sc: Scenario, board: str | None = None, settings: dict | None = None,
                 faults: dict | None = None, config_text: str | None = None) -> dict:
    """{"packets": [decoded dicts], "heap_min_free": int, "stderr": str}."""
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
    with tempfile.TemporaryDirectory() as d:
        tapes = write_tapes(sc, Path(d) / "tape")
        cp = Path(d) / "config.json"
        cp.write_text(json.dumps(cfg))
        # the GPS UART runs at the scenario's baud: the node is told so via gps_baud
        if cfg["gps_baud"] == 0 and tapes["baud"] != bd["gps"]["baud"]:
            cfg["gps_baud"] = tapes["baud"]
            cp.write_text(json.dumps(cfg))
        if config_text is not None:  # a raw (possibly broken) config file, as found on a node's flash
            cp.write_text(config_text)
        args = [str(SCRIPT), str(Path(d) / "tape"), str(bp), str(cp), part, str(tapes["baud"]),
                str(sc.meta["duration_s"])]
        if faults:
            args.append(json.dumps(faults))
        proc = runtime.run(args, sim=True, timeout=3600, path=[compiled_firmware()])
    packets = [decode_packet(f) for f in split_frames(proc.stdout)]
    err = proc.stderr.decode(errors="replace")
    heap = None
    for line in err.splitlines():
        if line.startswith("heap "):
            heap = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return {"packets": packets, "heap": heap, "stderr": err, "config": cfg}
