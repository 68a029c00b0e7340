"""Vehicle models: a quarter car per wheel with tyre enveloping, realistic presets, JSON parameters.

States [z_s, z_s', z_u, z_u'] (sprung body and unsprung axle heights):
    m_s z_s'' = -k_s (z_s - z_u) - c_s (z_s' - z_u')
    m_u z_u'' =  k_s (z_s - z_u) + c_s (z_s' - z_u') - k_t (z_u - z_r)
driven by the road height under the tyre z_r(t). Tyre damping is negligible next to c_s and is
left out (it would make the model depend on z_r', which a piecewise-linear input does not have).

Tyre enveloping: the tyre is a rigid circle of radius R that cannot reach into anything narrower
than it (the upper envelope of the road as seen by a rolling circle), then averaged over the
contact patch length. A 50 mm joint is bridged; a 0.6 m pothole is felt; a 3.7 m hump passes
through unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from roadnode.errors import InputError


@dataclass(frozen=True)
class VehicleParams:
    name: str
    ms: float  # sprung mass per corner, kg
    mu: float  # unsprung mass per corner, kg
    ks: float  # suspension stiffness, N/m
    cs: float  # suspension damping, N s/m
    kt: float  # tyre vertical stiffness, N/m
    tyre_radius_m: float
    tyre_contact_m: float  # contact patch length
    wheelbase_m: float

    def body_hz(self) -> float:
        k = self.ks * self.kt / (self.ks + self.kt)
        return float(np.sqrt(k / self.ms) / (2 * np.pi))

    def wheel_hop_hz(self) -> float:
        return float(np.sqrt((self.ks + self.kt) / self.mu) / (2 * np.pi))

    def damping_ratio(self) -> float:
        return float(self.cs / (2 * np.sqrt(self.ks * self.ms)))

    def as_dict(self) -> dict:
        return asdict(self)


# Per-corner values of typical vehicles (front axle). Chosen so body bounce is 1.1–1.6 Hz, wheel
# hop 9–13 Hz and suspension damping ratio 0.25–0.35, the ranges vehicle-dynamics texts give for
# passenger cars and light trucks (e.g. Gillespie, Fundamentals of Vehicle Dynamics, ch. 5).
PRESETS: dict[str, VehicleParams] = {
    "sedan": VehicleParams("sedan", ms=380.0, mu=40.0, ks=24000.0, cs=1750.0, kt=200000.0,
                           tyre_radius_m=0.31, tyre_contact_m=0.14, wheelbase_m=2.7),
    "suv": VehicleParams("suv", ms=520.0, mu=55.0, ks=34000.0, cs=2500.0, kt=250000.0,
                         tyre_radius_m=0.36, tyre_contact_m=0.17, wheelbase_m=2.85),
    "van": VehicleParams("van", ms=650.0, mu=62.0, ks=47000.0, cs=3300.0, kt=300000.0,
                         tyre_radius_m=0.33, tyre_contact_m=0.17, wheelbase_m=3.4),
    "truck": VehicleParams("truck", ms=2300.0, mu=320.0, ks=260000.0, cs=15000.0, kt=1000000.0,
                           tyre_radius_m=0.49, tyre_contact_m=0.25, wheelbase_m=5.0),
}

_RANGES = {
    "ms": (50.0, 10000.0), "mu": (5.0, 1500.0), "ks": (1e3, 2e6), "cs": (50.0, 1e5), "kt": (2e4, 1e7),
    "tyre_radius_m": (0.15, 0.8), "tyre_contact_m": (0.02, 0.5), "wheelbase_m": (1.0, 12.0),
}


def load_vehicle(name_or_path: str) -> VehicleParams:
    """A preset name (sedan, suv, van, truck) or a JSON file with the keys of VehicleParams."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    p = Path(name_or_path)
    if not p.suffix.lower() == ".json" and not p.exists():
        raise InputError(f"unknown vehicle {name_or_path!r}: use {', '.join(PRESETS)} or a JSON file")
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: no such vehicle file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a readable JSON vehicle file ({e})") from None
    if not isinstance(d, dict):
        raise InputError(f"{p}: vehicle file must hold a JSON object")
    base = d.pop("base", None)
    start = asdict(PRESETS[base]) if base in PRESETS else {}
    if base is not None and base not in PRESETS:
        raise InputError(f"{p}: base {base!r} is not a preset ({', '.join(PRESETS)})")
    names = {f.name for f in fields(VehicleParams)}
    for k in d:
        if k not in names:
            raise InputError(f"{p}: unknown key {k!r} (known: base, {', '.join(sorted(names))})")
    start.update(d)
    start.setdefault("name", p.stem)
    for k in names:
        if k not in start:
            raise InputError(f"{p}: missing key {k!r}")
    for k, (lo, hi) in _RANGES.items():
        v = start[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise InputError(f"{p}: {k} = {v!r} is outside {lo:g}..{hi:g}")
    return VehicleParams(**{k: (float(v) if k != "name" else str(v)) for k, v in start.items()})


def envelope(x: np.ndarray, z: np.ndarray, radius_m: float, contact_m: float) -> np.ndarray:
    """Road height seen by the tyre: rolling-circle upper envelope, then contact-patch average."""
    dx = float(np.median(np.diff(x)))
    r = max(1, int(round(radius_m * 0.6 / dx)))  # beyond ~0.6 R the circle is far above the road
    s = dx * np.arange(-r, r + 1)
    drop = radius_m - np.sqrt(np.maximum(radius_m**2 - s**2, 0.0))
    # max over offsets of z(x+s) - drop(s): a grey dilation with a non-flat structuring element
    env = ndimage.grey_dilation(z, structure=-drop, mode="nearest")
    n = max(1, int(round(contact_m / dx)))
    if n > 1:
        env = ndimage.uniform_filter1d(env, n, mode="nearest")
    return env


def quarter_car_ss(v: VehicleParams):
    a = np.array([
        [0, 1, 0, 0],
        [-v.ks / v.ms, -v.cs / v.ms, v.ks / v.ms, v.cs / v.ms],
        [0, 0, 0, 1],
        [v.ks / v.mu, v.cs / v.mu, -(v.ks + v.kt) / v.mu, -v.cs / v.mu],
    ])
    b = np.array([[0.0], [0.0], [0.0], [v.kt / v.mu]])
    c = np.vstack([a[1], a[3], [1, 0, 0, 0], [0, 0, 1, 0]])  # body acc, axle acc, body z, axle z
    d = np.vstack([b[1], b[3], [0.0], [0.0]])
    return a, b, c, d


def simulate_quarter_car(vehicle: VehicleParams, road_x, road_z, t, pos_m) -> dict[str, np.ndarray]:
    """Response to driving ``pos_m(t)`` along the road (t uniform). Accelerations in m/s^2.

    The road under the tyre is linear between time steps (first-order hold, exact discretisation);
    the car starts at rest in equilibrium on the road. Each output is an SOS filter (sosfilt),
    so a 10 km drive at 1 kHz takes well under a second.
    """
    t = np.asarray(t, dtype=float)
    dt = float(t[1] - t[0])
    env = envelope(np.asarray(road_x, float), np.asarray(road_z, float), vehicle.tyre_radius_m, vehicle.tyre_contact_m)
    zr = np.interp(pos_m, road_x, env)
    u = zr - zr[0]
    a, b, c, d = quarter_car_ss(vehicle)
    ad, bd, cd, dd, _ = signal.cont2discrete((a, b, c, d), dt, method="foh")
    outs = {}
    for i, name in enumerate(("body_acc", "axle_acc", "body_z", "axle_z")):
        zz, pp, kk = signal.ss2zpk(ad, bd, cd[i : i + 1], dd[i : i + 1])
        sos = signal.zpk2sos(zz, pp, kk)
        outs[name] = signal.sosfilt(sos, u)
    outs["body_z"] += zr[0]
    outs["axle_z"] += zr[0]
    outs["road_z"] = zr
    return outs
