"""Reading longitudinal road profiles: CSV, whitespace columns, and UMTRI/ProVAL ERD text files.

Every reader returns distances and elevations in metres; problems become a one-line
:class:`~roadnode.errors.InputError` naming the file, line and reason.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roadnode.errors import InputError
from roadnode.userfiles import read_input

_UNIT_TO_M = {"m": 1.0, "mm": 1e-3, "cm": 1e-2, "km": 1e3, "in": 0.0254, "ft": 0.3048, "mi": 1609.344}


@dataclass
class Profile:
    """A profile as read: distances and elevations in metres, where it came from and how."""

    distance_m: np.ndarray
    elevation_m: np.ndarray
    source: str
    fmt: str  # "csv" | "columns" | "erd"
    meta: dict = field(default_factory=dict)


def number(tok: str, where: str) -> float:
    """A token of a text file as a finite float; InputError naming ``where`` (file and line) otherwise."""
    tok = tok.strip()
    if tok == "":
        raise InputError(f"{where}: blank value")
    try:
        v = float(tok)
    except ValueError:
        raise InputError(f"{where}: {tok!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: {tok!r} is not a finite number")
    return v


def _read_columns(lines: list[str], name: str, delim: str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Distance and elevation from the first two columns. Extra columns (a second wheel track, a
    quality channel) are reported in ``meta["columns"]`` for the caller to warn about; rows with a
    different number of columns than the first data row are refused (a mangled or joined file)."""
    d, z = [], []
    header = None
    ncols = first_row = None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(delim) if delim else line.split()
        while delim and len(parts) > 2 and not parts[-1].strip():
            parts.pop()  # trailing separators
        where = f"{name}:{n}"
        if len(parts) < 2:
            raise InputError(f"{where}: expected two columns (distance, elevation), got {line[:40]!r}")
        if not d and header is None:
            try:
                float(parts[0]), float(parts[1])
            except ValueError:
                header = [p.strip() for p in parts]  # one header line allowed
                continue
        if ncols is None:
            ncols, first_row = len(parts), n
        elif len(parts) != ncols:
            raise InputError(f"{where}: {len(parts)} columns, but line {first_row} has {ncols}")
        d.append(number(parts[0], where))
        z.append(number(parts[1], where))
    meta = {"header": header} if header else {}
    meta["columns"] = ncols or 0
    return np.array(d), np.array(z), meta


# Characters Python's str.splitlines()/split() treat as line breaks or spaces but numpy's parser does
# not (or the other way round): a file holding any of them takes the exact line-by-line reader.
_NUMPY_DIFFERS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def _read_columns_fast(raw: bytes, text: str, delim: str | None) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The same result as :func:`_read_columns` for a clean file, parsed by numpy's C reader.

    Returns None (the caller then runs the exact reader, which names the first bad line) whenever
    the file is not plainly ASCII rows of finite numbers with a constant column count after an
    optional header and leading comment lines: comments or blank-with-spaces lines inside the data,
    trailing separators, NaN/inf, one column, or anything numpy's parser reads differently.
    """
    if not text.isascii() or any(c in text for c in _NUMPY_DIFFERS):
        return None
    pos, header = 0, None
    while True:  # the first line with content: the header or the first data row
        end = text.find("\n", pos)
        line = (text[pos:] if end < 0 else text[pos:end]).strip()
        if line and not line.startswith("#"):
            break
        if end < 0:
            return None
        pos = end + 1
    parts = line.split(delim) if delim else line.split()
    while delim and len(parts) > 2 and not parts[-1].strip():
        parts.pop()  # as the exact reader does
    if len(parts) < 2:
        return None
    try:
        float(parts[0]), float(parts[1])
    except ValueError:
        header = [p.strip() for p in parts]
        pos = len(text) if end < 0 else end + 1
    if not text[pos:].strip():
        return None
    try:
        rows = np.loadtxt(io.BytesIO(raw[pos:]), delimiter=delim, comments=None, ndmin=2, encoding="ascii")
    except ValueError:
        return None
    if rows.shape[1] < 2 or not np.isfinite(rows).all():
        return None
    meta = {"header": header} if header else {}
    meta["columns"] = rows.shape[1]
    return np.ascontiguousarray(rows[:, 0]), np.ascontiguousarray(rows[:, 1]), meta


def _read_erd(lines: list[str], name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """ERD (UMTRI RoadRuf/ProVAL) text file.

    Line 1 starts with "ERD"; line 2 holds NCHAN NPTS NSKIP KEY DX X0 (we use NCHAN, NPTS, DX and,
    when present, X0); then KEYWORD = value lines (XUNITS, UNITS, SCALFACT, LABELS, ...) up to a line
    "END"; then the numbers, NCHAN per record. Channel 1 (the left wheel track by convention) is
    used. Elevation units come from UNITS (default m) times SCALFACT; distance units from XUNITS.
    """
    if len(lines) < 3:
        raise InputError(f"{name}: ERD file too short")
    try:
        nums = lines[1].split()
        where = f"{name}:2"
        nchan, npts = int(number(nums[0], where)), int(number(nums[1], where))
        dx = number(nums[4], where)
        x0 = number(nums[5], where) if len(nums) > 5 else 0.0
    except IndexError:
        raise InputError(f"{name}:2: ERD line 2 must be 'NCHAN NPTS NSKIP KEY DX X0'") from None
    if nchan < 1 or npts < 1 or not dx > 0:
        raise InputError(f"{name}:2: ERD header has NCHAN={nchan}, NPTS={npts}, DX={dx}")
    kw: dict[str, str] = {}
    i = 2
    while i < len(lines) and lines[i].strip().upper() != "END":
        m = re.match(r"\s*([A-Za-z_]+)\s*=\s*(.*)", lines[i])
        if m:
            kw[m.group(1).upper()] = m.group(2).strip()
        i += 1
    if i >= len(lines):
        raise InputError(f"{name}: ERD header has no END line")
    data = []
    for n in range(i + 1, len(lines)):
        for tok in lines[n].replace(",", " ").split():
            data.append(number(tok, f"{name}:{n + 1}"))
    if len(data) < nchan * npts:
        raise InputError(f"{name}: ERD header promises {npts} points x {nchan} channels, file has {len(data)} values")
    vals = np.array(data[: nchan * npts]).reshape(npts, nchan)[:, 0]

    def unit(s: str, what: str) -> float:
        """Metres per unit named in an ERD keyword (its first comma-separated entry)."""
        u = s.split(",")[0].strip().strip("'\"").lower()
        if u not in _UNIT_TO_M:
            raise InputError(f"{name}: unknown {what} unit {u!r} (known: {', '.join(_UNIT_TO_M)})")
        return _UNIT_TO_M[u]

    zscale = unit(kw.get("UNITS", "m"), "UNITS")
    if "SCALFACT" in kw:
        zscale *= number(kw["SCALFACT"].replace(",", " ").split()[0], f"{name}: SCALFACT")
    xscale = unit(kw.get("XUNITS", "m"), "XUNITS")
    dist = (x0 + dx * np.arange(npts)) * xscale
    meta = {"erd": kw, "channels": nchan}
    return dist, vals * zscale, meta


def read_profile(path, units: str = "m") -> Profile:
    """Read a profile file; ``units`` is the elevation unit of CSV/column files ("m" or "mm")."""
    p = Path(path)
    if units not in ("m", "mm"):
        raise InputError(f"--units must be m or mm, got {units!r}")
    raw = read_input(p, "profile file")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a text profile file (binary content)") from None
    if "\x00" in text:
        raise InputError(f"{p}: not a text profile file (binary content)")
    first = _first_content_line(text)
    if first.lstrip().upper().startswith("ERD"):
        d, z, meta = _read_erd(text.splitlines(), p.name)
        fmt = "erd"
    else:
        delim = "," if "," in first or p.suffix.lower() == ".csv" else (";" if ";" in first else None)
        fast = _read_columns_fast(raw, text, delim)
        d, z, meta = fast if fast is not None else _read_columns(text.splitlines(), p.name, delim)
        fmt = "csv" if delim else "columns"
        if units == "mm":
            z = z * 1e-3
    if len(d) == 0:
        raise InputError(f"{p}: no profile points found")
    return Profile(d, z, str(p), fmt, meta)


# a line's characters: anything but what str.splitlines() breaks lines at
_LINE = re.compile("[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*")


def _first_content_line(text: str) -> str:
    """The first line that is not blank (leading spaces dropped), without splitting the whole file."""
    m = re.search(r"\S", text)
    return "" if m is None else _LINE.match(text, m.start()).group()


def looks_like_millimetres(elevation_m: np.ndarray, distance_m: np.ndarray) -> bool:
    """Heuristic for a unit mistake: slopes that real roads never have when read as metres.

    Road grades stay below ~30%; a profile in mm read as m shows a typical point-to-point slope
    1000x too large. The median absolute slope is robust to a few spikes.
    """
    if len(distance_m) < 3:
        return False
    dd = np.diff(distance_m)
    ok = dd > 0
    if not ok.any():
        return False
    slope = np.abs(np.diff(elevation_m)[ok] / dd[ok])
    return bool(np.median(slope) > 0.5)
