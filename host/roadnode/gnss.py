"""Check captured GPS logs with the firmware's own NMEA parser, run on MicroPython."""

from __future__ import annotations

from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy import runtime

SCRIPT = Path(__file__).resolve().parent / "mpy" / "scripts" / "nmea_dump.py"


def _tod(ms: int) -> str | None:
    if ms < 0:
        return None
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def check_log(path) -> tuple[list[dict], dict]:
    """Run the firmware parser over ``path``: (one dict per sentence found, counters)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    proc = runtime.run([str(SCRIPT), str(p.resolve())], timeout=3600)
    rows, counters = [], {}
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        parts = line.split("\t")
        if parts[0] == "S" and len(parts) >= 10:
            _, ln, typ, err, haspos, lat, lon, spd, tod = parts[:9]
            sentence = "\t".join(parts[9:])
            pos = haspos == "1"
            spd_i = int(spd)
            if err == "unsupported":
                err = ""  # a valid sentence the node does not use: fine for the module under test
            if typ == "other" and len(sentence) > 6 and sentence[3:6] in ("RMC", "GGA", "VTG", "GNS"):
                typ = sentence[3:6]
            rows.append({
                "line": int(ln),
                "sentence": sentence,
                "ok": err == "",
                "error": err or None,
                "type": typ,
                "lat": int(lat) / 1e7 if pos else None,
                "lon": int(lon) / 1e7 if pos else None,
                "speed_mps": spd_i / 1000.0 if spd_i >= 0 else None,
                "time": _tod(int(tod)),
            })
        elif parts[0] == "C":
            counters[parts[1]] = int(parts[2])
    return rows, counters
