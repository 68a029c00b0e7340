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
    """One corner of a vehicle as a quarter car (SI units, per corner)."""

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
        """Body bounce frequency (suspension and tyre springs in series under the sprung mass)."""
        k = self.ks * self.kt / (self.ks + self.kt)
        return float(np.sqrt(k / self.ms) / (2 * np.pi))

    def wheel_hop_hz(self) -> float:
        """Wheel-hop frequency (the unsprung mass between both springs, body held still)."""
        return float(np.sqrt((self.ks + self.kt) / self.mu) / (2 * np.pi))

    def damping_ratio(self) -> float:
        """Body-mode damping ratio of the suspension, c_s / (2 sqrt(k_s m_s))."""
        return float(self.cs / (2 * np.sqrt(self.ks * self.ms)))

    def wheel_damping(self) -> float:
        """Wheel-hop damping ratio, c_s / (2 sqrt((k_s + k_t) m_u)): the node's `wheel_damping`."""
        return float(self.cs / (2 * np.sqrt((self.ks + self.kt) * self.mu)))

    def node_settings(self) -> dict:
        """The node settings this vehicle's own resonances call for (what a calibration should find)."""
        return {"wheel_hop_hz": round(self.wheel_hop_hz(), 1), "wheel_damping": round(self.wheel_damping(), 3),
                "body_hz": round(self.body_hz(), 2), "body_damping": round(self.damping_ratio(), 3)}

    def as_dict(self) -> dict:
        """The parameters as a JSON-ready dict (the keys a vehicle file takes)."""
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


# Random vehicles, per corner, by kind. Each range is (low, high), drawn uniformly (masses
# log-uniformly). Sources (docs/models.md): Gillespie, Fundamentals of Vehicle Dynamics (1992), ch. 5:
# cars' body bounce 1-1.5 Hz, wheel hop ~10-12 Hz, damping ratio 0.2-0.4, tyre ~10x as stiff as the
# suspension; TRL SR12 (cars: body heave ~1.75 Hz, wheel hop 10-15 Hz); Cebon, Handbook of Vehicle-Road
# Interaction (1999): heavy vehicles' body bounce 1.5-4 Hz (2 Hz and below on air and soft steel
# suspensions), axle hop 8-15 Hz, lower damping; Wong, Theory of Ground Vehicles: mass ratios ~0.1-0.2.
# The wheel hop is drawn (8-18 Hz over all kinds) and the tyre/suspension stiffness ratio follows
# from it, so the four frequencies and ratios are consistent by construction.
KINDS: dict[str, dict[str, tuple[float, float]]] = {
    "car": {"ms": (220.0, 450.0), "ratio": (0.09, 0.16), "body_hz": (1.0, 1.5), "hop_hz": (10.0, 18.0),
            "zeta": (0.2, 0.45), "tyre_radius_m": (0.28, 0.34), "tyre_contact_m": (0.10, 0.16),
            "wheelbase_m": (2.4, 2.9)},
    "suv": {"ms": (380.0, 700.0), "ratio": (0.10, 0.16), "body_hz": (1.05, 1.6), "hop_hz": (9.0, 16.0),
            "zeta": (0.2, 0.4), "tyre_radius_m": (0.33, 0.40), "tyre_contact_m": (0.14, 0.20),
            "wheelbase_m": (2.7, 3.2)},
    "van": {"ms": (500.0, 1100.0), "ratio": (0.09, 0.15), "body_hz": (1.15, 1.8), "hop_hz": (8.5, 15.0),
            "zeta": (0.2, 0.4), "tyre_radius_m": (0.32, 0.38), "tyre_contact_m": (0.15, 0.21),
            "wheelbase_m": (3.0, 4.0)},
    "truck": {"ms": (1200.0, 3500.0), "ratio": (0.10, 0.18), "body_hz": (1.3, 2.0), "hop_hz": (8.0, 13.0),
              "zeta": (0.15, 0.35), "tyre_radius_m": (0.45, 0.53), "tyre_contact_m": (0.20, 0.28),
              "wheelbase_m": (4.0, 6.5)},
}
TYRE_TO_SUSPENSION = (2.5, 16.0)  # k_t / k_s: trucks' stiff steel springs ~3, soft cars ~12


def _stiffness_ratio(ratio: float, body_hz: float, hop_hz: float) -> float | None:
    """k_t/k_s that gives these body and wheel-hop frequencies: with q = k_t/k_s and r = m_u/m_s,
    (f_hop/f_body)^2 r = (1+q)^2/q; the root above 1 (tyre stiffer than the spring), or None."""
    big = ratio * (hop_hz / body_hz) ** 2 - 2.0
    if big < 2.0:
        return None
    return (big + np.sqrt(big * big - 4.0)) / 2.0


def random_vehicle(seed: int, kind: str | None = None) -> VehicleParams:
    """A physically consistent quarter car drawn from ``seed`` (the same seed, the same vehicle):
    a kind (car, suv, van, truck; any if None), then its sprung mass, mass ratio, body and
    wheel-hop frequencies and damping ratio in the kind's ranges (KINDS); stiffnesses and damping
    follow. Draws whose tyre/suspension stiffness ratio falls outside TYRE_TO_SUSPENSION are
    redrawn."""
    rng = np.random.default_rng([int(seed), 0x7E41C1E])
    if kind is None:
        kind = list(KINDS)[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise InputError(f"unknown vehicle kind {kind!r}: use {', '.join(KINDS)}")
    rg = KINDS[kind]
    for _ in range(1000):
        lo, hi = rg["ms"]
        ms = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        ratio, fb, fw, zeta = (float(rng.uniform(*rg[k])) for k in ("ratio", "body_hz", "hop_hz", "zeta"))
        q = _stiffness_ratio(ratio, fb, fw)
        if q is None or not TYRE_TO_SUSPENSION[0] <= q <= TYRE_TO_SUSPENSION[1]:
            continue
        ks = ms * (2 * np.pi * fb) ** 2 * (1 + q) / q
        geo = {k: round(float(rng.uniform(*rg[k])), 3) for k in ("tyre_radius_m", "tyre_contact_m", "wheelbase_m")}
        return VehicleParams(f"{kind}-{seed}", ms=round(ms, 1), mu=round(ratio * ms, 2), ks=round(float(ks), 0),
                             cs=round(float(2 * zeta * np.sqrt(ks * ms)), 1), kt=round(float(q * ks), 0), **geo)
    raise AssertionError("no consistent vehicle in 1000 draws")  # the ranges make this unreachable


def check_vehicle(v: VehicleParams) -> list[str]:
    """What is physically off about a vehicle ([] when it is consistent): frequencies, ratios and
    stiffness order outside what road vehicles have (the union of KINDS, with a little slack)."""
    out = []
    if not 0.9 <= v.body_hz() <= 2.2:
        out.append(f"body bounce {v.body_hz():.2f} Hz outside 0.9-2.2 Hz")
    if not 7.5 <= v.wheel_hop_hz() <= 19.0:
        out.append(f"wheel hop {v.wheel_hop_hz():.1f} Hz outside 7.5-19 Hz")
    if not 0.12 <= v.damping_ratio() <= 0.5:
        out.append(f"damping ratio {v.damping_ratio():.2f} outside 0.12-0.5")
    if not 0.07 <= v.mu / v.ms <= 0.2:
        out.append(f"mass ratio {v.mu / v.ms:.3f} outside 0.07-0.2")
    if not TYRE_TO_SUSPENSION[0] * 0.95 <= v.kt / v.ks <= TYRE_TO_SUSPENSION[1] * 1.05:
        out.append(f"tyre/suspension stiffness {v.kt / v.ks:.1f} outside {TYRE_TO_SUSPENSION}")
    return out


def load_vehicle(name_or_path) -> VehicleParams:
    """A preset name (sedan, suv, van, truck), a VehicleParams (returned as is, e.g. from
    random_vehicle) or a JSON file with the keys of VehicleParams."""
    if isinstance(name_or_path, VehicleParams):
        return name_or_path
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
    """Continuous state space (A, B, C, D) from road height to body/axle acceleration and height."""
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
