"""The scenario file: one .npz (no pickles) with a JSON "meta" record; see docs/scenario.md."""

from __future__ import annotations

import io
import json
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
import numpy as np

from roadnode.errors import InputError
from roadnode.userfiles import atomic_output, input_path

FORMAT = "roadnode-scenario"
VERSION = 1

ARRAYS = (
    "imu_t_s", "imu_counts", "gps_t_s", "gps_offsets", "gps_bytes",
    "road_x_m", "road_z_m", "truth_t_s", "truth_pos_m", "truth_speed_mps", "truth_lat", "truth_lon",
    "truth_vert_acc", "seg_start_m", "seg_end_m", "seg_true_iri",
)
# added in version 1 without a version bump (older files lack them; readers must not need them):
# the truth's heading, and the polyline of a route that is not a straight line
OPTIONAL_ARRAYS = ("truth_heading_deg", "route_lat", "route_lon", "route_m")


@dataclass
class Scenario:
    """A scenario file loaded: its metadata and named arrays (read as attributes)."""

    meta: dict
    arrays: dict[str, np.ndarray] = field(repr=False)

    def __getattr__(self, name):
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def segments(self) -> list[dict]:
        """The ground-truth segments: start, end and true IRI."""
        return [
            {"start_m": float(a), "end_m": float(b), "true_iri_m_per_km": float(c)}
            for a, b, c in zip(self.seg_start_m, self.seg_end_m, self.seg_true_iri)
        ]

    @property
    def features(self) -> list[dict]:
        """The road features the scenario was built with, as dicts."""
        return self.meta.get("features", [])

    def gps_sentences(self):
        """[(t_s, bytes)] in order."""
        b = self.gps_bytes.tobytes()
        off = self.gps_offsets
        return [(float(t), b[off[i] : off[i + 1]]) for i, t in enumerate(self.gps_t_s)]

    def gps_bytes_between(self, t0: float, t1: float) -> bytes:
        """The NMEA bytes the receiver sent between t0 and t1 s."""
        i0, i1 = np.searchsorted(self.gps_t_s, [t0, t1])
        return self.gps_bytes[self.gps_offsets[i0] : self.gps_offsets[i1]].tobytes()


def save_scenario(sc: Scenario, path) -> None:
    """Write atomically (see roadnode.userfiles) and byte-for-byte deterministically (fixed zip
    timestamps)."""
    with atomic_output(path, "scenario") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            items = [("meta", np.frombuffer(json.dumps(sc.meta, sort_keys=True).encode(), dtype=np.uint8))]
            items += [(k, sc.arrays[k]) for k in ARRAYS]
            items += [(k, sc.arrays[k]) for k in OPTIONAL_ARRAYS if k in sc.arrays]
            for name, arr in items:
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(name + ".npy", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())


MAX_UNPACKED_BYTES = 4 << 30  # a 200 km scenario unpacks to well under 1 GiB


class _Bad(Exception):
    """What is wrong with a scenario's content (becomes one InputError naming the file)."""


def _num(d: dict, key: str, where: str, *, positive=True, integer=False):
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _Bad(f"meta {where}{key} is {v!r}, expected a {'whole ' if integer else ''}number")
    if not np.isfinite(v) or (positive and not v > 0):
        raise _Bad(f"meta {where}{key} is {v!r}, expected a finite{' positive' if positive else ''} number")
    return v


def _check_meta(m: dict) -> None:
    if not isinstance(m, dict):
        raise _Bad("meta record is not a JSON object")
    _num(m, "length_m", "")
    _num(m, "duration_s", "")
    _num(m, "segment_m", "")
    _num(m, "seed", "", positive=False, integer=True)
    imu, gps = m.get("imu"), m.get("gps")
    if not isinstance(imu, dict) or not isinstance(gps, dict):
        raise _Bad("meta has no imu or gps record")
    _num(imu, "odr_hz", "imu.")
    _num(imu, "lsb_per_g", "imu.")
    if imu.get("range_g") not in (2, 4, 8, 16):
        raise _Bad(f"meta imu.range_g is {imu.get('range_g')!r}, expected 2, 4, 8 or 16")
    if not isinstance(imu.get("part"), str):
        raise _Bad("meta imu.part is missing")
    _num(gps, "baud", "gps.", integer=True)
    _num(gps, "rate_hz", "gps.")
    if m.get("mount") not in ("axle", "body"):
        raise _Bad(f"meta mount is {m.get('mount')!r}, expected axle or body")
    if not isinstance(m.get("vehicle"), dict) or not isinstance(m.get("road"), dict):
        raise _Bad("meta has no vehicle or road record")
    if not isinstance(m.get("features", []), list):
        raise _Bad("meta features is not a list")
    for f in m.get("features", []):
        if not isinstance(f, dict) or not isinstance(f.get("kind"), str):
            raise _Bad(f"meta feature {f!r} has no kind")
        for k in ("position_m", "length_m", "height_m"):
            _num(f, k, "feature.", positive=False)
    if not isinstance(m["vehicle"].get("name"), str):
        raise _Bad("meta vehicle.name is missing")
    st = m.get("stretches", [])
    if not isinstance(st, list) or not all(isinstance(x, dict) and isinstance(x.get("road_id"), str) for x in st):
        raise _Bad("meta stretches is not a list of road stretches")
    for x in st:
        for k in ("route_start_m", "route_end_m", "from_m", "to_m"):
            _num(x, k, "stretch.", positive=False)


def _check_arrays(a: dict[str, np.ndarray], truth: bool = True) -> None:
    """Shapes, kinds and lengths that agree, times and offsets in order, finite values. ``truth``
    False (meta.truth, a captured drive): the road and truth arrays may be empty."""

    def vec(name, kind="f", n=None):
        """Array ``name``, checked 1-D of the kind (and length) expected, finite if float."""
        x = a[name]
        if x.ndim != 1 or x.dtype.kind not in kind:
            raise _Bad(f"{name} has shape {x.shape} and type {x.dtype}, expected a 1-D array of kind {kind!r}")
        if n is not None and len(x) != n:
            raise _Bad(f"{name} has {len(x)} values, expected {n}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise _Bad(f"{name} holds a value that is not a finite number")
        return x

    def increasing(name, strict=True):
        """Check array ``name`` never goes backwards (``strict``: never repeats either)."""
        x = a[name]
        bad = np.diff(x) <= 0 if strict else np.diff(x) < 0
        if bad.any():
            raise _Bad(f"{name} goes backwards at index {int(np.argmax(bad)) + 1}")

    t = vec("imu_t_s")
    increasing("imu_t_s")
    c = a["imu_counts"]
    if c.ndim != 2 or c.shape != (len(t), 3) or c.dtype != np.int16:
        raise _Bad(f"imu_counts has shape {c.shape} and type {c.dtype}, expected ({len(t)}, 3) int16 "
                   "(one raw sample per IMU timestamp)")
    g = vec("gps_t_s")
    increasing("gps_t_s", strict=False)
    b = vec("gps_bytes", "u")
    if b.dtype != np.uint8:
        raise _Bad(f"gps_bytes has type {b.dtype}, expected uint8")
    off = vec("gps_offsets", "iu", len(g) + 1)
    if off[0] != 0 or off[-1] != len(b):
        raise _Bad(f"gps_offsets run from {off[0]} to {off[-1]}, expected 0 to {len(b)} (the NMEA byte count)")
    increasing("gps_offsets", strict=False)
    x = vec("road_x_m")
    vec("road_z_m", n=len(x))
    if len(x) < 2 and (truth or len(x)):
        raise _Bad("road profile has fewer than 2 points")
    increasing("road_x_m")
    tt = vec("truth_t_s")
    increasing("truth_t_s")
    for k in ("truth_pos_m", "truth_speed_mps", "truth_lat", "truth_lon", "truth_vert_acc"):
        vec(k, n=len(tt))
    s0 = vec("seg_start_m")
    s1 = vec("seg_end_m", n=len(s0))
    iri = a["seg_true_iri"]  # NaN is allowed: a segment without measured road has no true IRI
    if iri.ndim != 1 or iri.dtype.kind != "f" or len(iri) != len(s0) or np.isinf(iri).any() or (iri < 0).any():
        raise _Bad(f"seg_true_iri has shape {iri.shape} and type {iri.dtype}, expected {len(s0)} non-negative numbers")
    if (s1 <= s0).any():
        raise _Bad("a truth segment ends before it starts")
    if "truth_heading_deg" in a:
        vec("truth_heading_deg", n=len(tt))
    have = [k for k in ("route_lat", "route_lon", "route_m") if k in a]
    if have:
        if len(have) < 3:
            raise _Bad(f"route polyline has {', '.join(have)} but not all of route_lat, route_lon, route_m")
        rm = vec("route_m")
        if len(rm) < 2:
            raise _Bad("route polyline has fewer than 2 points")
        la, lo = vec("route_lat", n=len(rm)), vec("route_lon", n=len(rm))
        increasing("route_m")
        if (np.abs(la) > 90).any() or (np.abs(lo) > 180).any():
            raise _Bad("route polyline holds a point that is not a valid latitude/longitude")


def load_scenario(path) -> Scenario:
    """Read and validate a scenario; anything wrong is one InputError naming the file and the fault."""
    p = input_path(path, "scenario file")
    try:
        with zipfile.ZipFile(p) as zf:
            total = sum(i.file_size for i in zf.infolist())
        if total > MAX_UNPACKED_BYTES:
            raise _Bad(f"unpacks to {total:,} bytes (limit {MAX_UNPACKED_BYTES:,})")
        with np.load(p, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise InputError(f"{p}: not a roadnode scenario (no meta record)")
            meta = json.loads(z["meta"].tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                fmt = meta.get("format") if isinstance(meta, dict) else None
                raise InputError(f"{p}: not a roadnode scenario (format {fmt!r})")
            if meta.get("version") != VERSION:
                raise InputError(f"{p}: scenario version {meta.get('version')} is not supported (this roadnode reads {VERSION})")
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise InputError(f"{p}: scenario is missing {', '.join(missing)}")
            arrays = {k: z[k] for k in ARRAYS}
            arrays.update({k: z[k] for k in OPTIONAL_ARRAYS if k in z.files})
        _check_meta(meta)
        _check_arrays(arrays, truth=meta.get("truth", True) is not False)
    except _Bad as e:
        raise InputError(f"{p}: invalid scenario: {e}") from None
    except MemoryError:
        raise InputError(f"{p}: not a readable scenario file (an array is too large)") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, KeyError, EOFError, OSError, UnicodeDecodeError,
            NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError) as e:
        # json.JSONDecodeError is a ValueError; a flipped bit shows as a bad CRC or zlib.error, or
        # in an array's header as numpy's parser failing on it (SyntaxError, tokenize.TokenError)
        raise InputError(f"{p}: not a readable scenario file ({type(e).__name__}: {_short(e)})") from None
    return Scenario(meta, arrays)


def _short(e: Exception) -> str:
    s = " ".join(str(e).split())
    return s[:80] + ("..." if len(s) > 80 else "")
