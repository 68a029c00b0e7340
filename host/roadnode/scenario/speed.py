"""Speed profiles for drives: cruise with gentle variation, stops, or a user CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadnode.errors import InputError

DT = 0.01  # s, resolution of the kinematics (upsampled later)
A_ACC = 1.5  # m/s^2, brisk but ordinary acceleration
A_DEC = 2.0  # m/s^2, ordinary braking


@dataclass
class Stop:
    """A stop on the drive: the vehicle brakes to rest at ``position_m`` and waits ``dwell_s``."""

    position_m: float
    dwell_s: float = 5.0


def parse_stop(spec: str) -> Stop:
    """``DIST[:SECONDS]``, e.g. ``500:8``."""
    a, _, b = spec.partition(":")
    try:
        s = Stop(float(a), float(b) if b else 5.0)
    except ValueError:
        raise InputError(f"stop {spec!r}: expected DIST_M[:SECONDS]") from None
    if not (0 < s.position_m < float("inf") and 0 <= s.dwell_s <= 3600):
        raise InputError(f"stop {spec!r}: distance must be > 0 and dwell 0–3600 s")
    return s


def _drive(length_m, target_of_x, stops, v0=0.0, slow=()):
    """Rate-limited tracking of a target speed along the road, with stops and slow points
    ((position_m, max m/s): corners, a lower limit ahead) braked for in time. Returns t, x, v."""
    stops = sorted(stops, key=lambda s: s.position_m)
    slow = sorted(slow)
    sj = 0
    t, x, v = 0.0, 0.0, v0
    ts, xs, vs = [0.0], [0.0], [v0]
    si = 0
    dwell = 0.0
    limit = 3.6e4 / DT  # guard: a drive that never ends is a bug in the inputs
    n = 0
    while x < length_m:
        n += 1
        if n > limit:
            raise InputError("speed profile never reaches the end of the road (speed stays at 0?)")
        tgt = target_of_x(x)
        if si < len(stops):
            gap = stops[si].position_m - x
            if gap <= 0.05 and v < 0.05:
                v = 0.0
                dwell += DT
                if dwell >= stops[si].dwell_s:
                    si, dwell = si + 1, 0.0
                    tgt = target_of_x(x)
                else:
                    tgt = 0.0
            else:
                tgt = min(tgt, np.sqrt(2 * A_DEC * max(gap, 0.0)))
        while sj < len(slow) and slow[sj][0] < x:
            sj += 1
        j = sj
        reach = v * v / (2 * A_DEC) + 1.0
        while j < len(slow) and slow[j][0] - x <= reach:
            tgt = min(tgt, np.sqrt(slow[j][1] ** 2 + 2 * A_DEC * (slow[j][0] - x)))
            j += 1
        dv = np.clip(tgt - v, -A_DEC * DT, A_ACC * DT)
        v_new = max(0.0, v + dv)
        x += 0.5 * (v + v_new) * DT
        v = v_new
        t += DT
        ts.append(t)
        xs.append(x)
        vs.append(v)
    return np.array(ts), np.array(xs), np.array(vs)


def cruise_profile(length_m, speed_kmh, stops=(), seed=0, variation=0.03, start_dwell_s=0.0, limits=None,
                   slow=()):
    """Parked for ``start_dwell_s`` (engine on, GPS getting its fix), then from rest: accelerate at 1.5 m/s^2 to the cruise speed, which wanders +-3% over ~400 m
    (drivers never hold speed exactly), brake at 2 m/s^2 for each stop and wait there.

    ``limits`` [(start_m, km/h), ...] replaces the one cruise speed by a speed per stretch (each road
    of a network its own); the driver brakes ahead of a lower one. ``slow`` [(position_m, max m/s)]
    are corners taken slower."""
    if not 5 <= speed_kmh <= 200:
        raise InputError(f"speed must be 5–200 km/h, got {speed_kmh:g}")
    ph = np.random.default_rng(seed + 31).uniform(0, 2 * np.pi)
    stops = list(stops)
    if start_dwell_s > 0:
        stops.insert(0, Stop(0.0, start_dwell_s))
    wander = lambda x: 1 + variation * np.sin(2 * np.pi * x / 400.0 + ph)  # noqa: E731
    if not limits:
        vc = speed_kmh / 3.6
        return _drive(length_m, lambda x: vc * wander(x), stops, slow=slow)
    at = np.array([a for a, _ in limits], float)
    vs = np.array([v for _, v in limits], float) / 3.6
    if not (np.all(np.diff(at) > 0) and np.all((vs >= 5 / 3.6) & (vs <= 200 / 3.6))):
        raise InputError("speed limits must start at increasing distances and be 5–200 km/h")
    slow = list(slow) + [(float(a), float(v)) for a, v, prev in zip(at[1:], vs[1:], vs[:-1]) if v < prev]

    def target(x):
        """The speed aimed at ``x`` m along: the limit in force there, wandering."""
        return vs[max(0, int(np.searchsorted(at, x, side="right")) - 1)] * wander(x)

    return _drive(length_m, target, stops, slow=slow)


def varied_limits(length_m, seed, lo_kmh=30.0, hi_kmh=110.0, stretch_m=(250.0, 600.0), stops_per_km=0.5):
    """A driving program for ``cruise_profile(limits=...)``: stretches of ``stretch_m`` at speeds drawn
    from ``lo_kmh``..``hi_kmh`` (each at least 15 km/h from the last, so the driver really speeds up
    or slows down), and stops (traffic lights: 2-15 s) about ``stops_per_km`` a kilometre, never in
    the first or last 100 m. Returns (limits [(start_m, km/h)], stops [Stop])."""
    rng = np.random.default_rng([int(seed), 0x5BEED])
    limits, at, last = [], 0.0, None
    while at < length_m:
        v = float(rng.uniform(lo_kmh, hi_kmh))
        while last is not None and abs(v - last) < min(15.0, (hi_kmh - lo_kmh) / 3):
            v = float(rng.uniform(lo_kmh, hi_kmh))
        limits.append((round(at, 1), round(v, 1)))
        last = v
        at += float(rng.uniform(*stretch_m))
    n_stops = int(rng.poisson(stops_per_km * length_m / 1000.0))
    stops = sorted((Stop(round(float(rng.uniform(100.0, max(101.0, length_m - 100.0))), 1),
                         round(float(rng.uniform(2.0, 15.0)), 1)) for _ in range(n_stops)),
                   key=lambda s: s.position_m)
    return limits, stops


def read_speed_csv(path) -> tuple[str, np.ndarray, np.ndarray]:
    """CSV with a header naming ``time_s`` or ``distance_m``, and ``speed_kmh``."""
    p = Path(path)
    try:
        rows = list(csv.reader(p.read_text().splitlines()))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read speed profile ({e})") from None
    if len(rows) < 3:
        raise InputError(f"{p}: speed profile needs a header and at least two rows")
    head = [h.strip() for h in rows[0]]
    if "speed_kmh" not in head or not ({"time_s", "distance_m"} & set(head)):
        raise InputError(f"{p}: header must name speed_kmh and time_s or distance_m, got {','.join(head)}")
    key = "time_s" if "time_s" in head else "distance_m"
    ia, iv = head.index(key), head.index("speed_kmh")
    a, v = [], []
    for n, r in enumerate(rows[1:], 2):
        if not r or not "".join(r).strip():
            continue
        try:
            a.append(float(r[ia]))
            v.append(float(r[iv]))
        except (ValueError, IndexError):
            raise InputError(f"{p}:{n}: expected numbers in columns {key}, speed_kmh") from None
    a, v = np.array(a), np.array(v)
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(v)) or (np.diff(a) <= 0).any():
        raise InputError(f"{p}: {key} must increase and all values be finite")
    if (v < 0).any() or (v > 250).any():
        raise InputError(f"{p}: speeds must be within 0–250 km/h")
    return key, a, v / 3.6


def csv_profile(path, length_m):
    """(t, x, v) of a speed CSV (by time or by distance) over the first ``length_m`` of road."""
    key, a, v = read_speed_csv(path)
    if key == "distance_m":
        return _drive(length_m, lambda x: float(np.interp(x, a, v)), ())
    t = np.arange(a[0], a[-1] + DT / 2, DT) - a[0]
    vv = np.interp(t + a[0], a, v)
    x = np.concatenate([[0.0], np.cumsum(0.5 * (vv[1:] + vv[:-1]) * DT)])
    if x[-1] < length_m:
        raise InputError(f"speed profile covers only {x[-1]:.0f} m of the {length_m:.0f} m road")
    end = int(np.searchsorted(x, length_m)) + 1
    return t[:end], x[:end], vv[:end]
