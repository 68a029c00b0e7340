"""The scenario file: one .npz (no pickles) with a JSON "meta" record; see docs/scenario.md."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roadnode.errors import InputError

FORMAT = "roadnode-scenario"
VERSION = 1

ARRAYS = (
    "imu_t_s", "imu_counts", "gps_t_s", "gps_offsets", "gps_bytes",
    "road_x_m", "road_z_m", "truth_t_s", "truth_pos_m", "truth_speed_mps", "truth_lat", "truth_lon",
    "truth_vert_acc", "seg_start_m", "seg_end_m", "seg_true_iri",
)


@dataclass
class Scenario:
    meta: dict
    arrays: dict[str, np.ndarray] = field(repr=False)

    def __getattr__(self, name):
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def segments(self) -> list[dict]:
        return [
            {"start_m": float(a), "end_m": float(b), "true_iri_m_per_km": float(c)}
            for a, b, c in zip(self.seg_start_m, self.seg_end_m, self.seg_true_iri)
        ]

    @property
    def features(self) -> list[dict]:
        return self.meta.get("features", [])

    def gps_sentences(self):
        """[(t_s, bytes)] in order."""
        b = self.gps_bytes.tobytes()
        off = self.gps_offsets
        return [(float(t), b[off[i] : off[i + 1]]) for i, t in enumerate(self.gps_t_s)]

    def gps_bytes_between(self, t0: float, t1: float) -> bytes:
        i0, i1 = np.searchsorted(self.gps_t_s, [t0, t1])
        return self.gps_bytes[self.gps_offsets[i0] : self.gps_offsets[i1]].tobytes()


def save_scenario(sc: Scenario, path) -> None:
    """Write atomically and byte-for-byte deterministically (fixed zip timestamps)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            items = [("meta", np.frombuffer(json.dumps(sc.meta, sort_keys=True).encode(), dtype=np.uint8))]
            items += [(k, sc.arrays[k]) for k in ARRAYS]
            for name, arr in items:
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(name + ".npy", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())
        tmp.replace(p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write scenario {p}: {e.strerror or e}") from None


def load_scenario(path) -> Scenario:
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise InputError(f"{p}: not a roadnode scenario (no meta record)")
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise InputError(f"{p}: not a roadnode scenario (format {meta.get('format')!r})")
            if meta.get("version") != VERSION:
                raise InputError(f"{p}: scenario version {meta.get('version')} is not supported (this roadnode reads {VERSION})")
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise InputError(f"{p}: scenario is missing {', '.join(missing)}")
            arrays = {k: z[k] for k in ARRAYS}
    except FileNotFoundError:
        raise InputError(f"{p}: no such scenario file") from None
    except (zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a readable scenario file ({type(e).__name__})") from None
    return Scenario(meta, arrays)
