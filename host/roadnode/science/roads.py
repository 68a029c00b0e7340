"""Synthetic roads: ISO 8608 random profiles and discrete features (bumps, potholes, steps, joints).

ISO 8608: displacement PSD Gd(n) = Gd(n0) (n/n0)^-w with n0 = 0.1 cycle/m and w = 2. Class means
Gd(n0) are 16e-6 m^3 for A and x4 per class up to H. A profile is a sum of cosines with amplitude
sqrt(2 Gd(n_k) dn) and uniform random phase, evaluated in one inverse FFT.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from roadnode.errors import InputError

N0 = 0.1  # cycle/m
ISO_CLASSES: dict[str, float] = {c: 16e-6 * 4**i for i, c in enumerate("ABCDEFGH")}


def iso8608_profile(
    length_m: float,
    dx: float = 0.05,
    iso_class: str | None = "C",
    gd_n0: float | None = None,
    seed: int = 0,
    n_min: float = 0.01,
    n_max: float | None = None,
    waviness: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (from 0) and elevation (m) of a random road; deterministic for a seed.

    ``n_min`` = 0.01 cycle/m leaves out wavelengths over 100 m (hills; IRI ignores them and they
    would only make elevations wander). ``n_max`` defaults to the Nyquist limit 1/(2 dx), capped at
    10 cycle/m (0.1 m: shorter texture is enveloped by the tyre anyway).
    """
    if gd_n0 is None:
        if iso_class is None or iso_class.upper() not in ISO_CLASSES:
            raise InputError(f"ISO 8608 class must be one of {', '.join(ISO_CLASSES)}, got {iso_class!r}")
        gd_n0 = ISO_CLASSES[iso_class.upper()]
    if not gd_n0 > 0:
        raise InputError(f"Gd(n0) must be positive, got {gd_n0}")
    if not (length_m > 0 and dx > 0 and length_m / dx >= 8):
        raise InputError(f"road length {length_m} m at dx {dx} m is too short")
    n = int(round(length_m / dx)) + 1
    nfft = 1 << int(np.ceil(np.log2(n)))  # periodic synthesis over >= the length
    dn = 1.0 / (nfft * dx)
    k = np.arange(nfft // 2 + 1)
    freq = k * dn
    hi = min(n_max if n_max else 0.5 / dx, 10.0, 0.5 / dx)
    band = (freq >= n_min) & (freq <= hi) & (k > 0)
    amp = np.zeros_like(freq)
    amp[band] = np.sqrt(2.0 * gd_n0 * (freq[band] / N0) ** (-waviness) * dn)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * np.pi, len(freq))
    spec = 0.5 * nfft * amp * np.exp(1j * phase)
    z = np.fft.irfft(spec, n=nfft)[:n]
    x = dx * np.arange(n)
    return x, z - z[0]


FEATURE_KINDS = ("bump", "pothole", "step", "joint")
# Typical sizes: a speed hump ~3.7 m x 75 mm; a pothole ~0.6 m x 50 mm with near-vertical edges;
# a kerb-like step 20 mm; an expansion-joint gap 50 mm wide, 20 mm deep.
_DEFAULTS = {
    "bump": (3.7, 0.075),
    "pothole": (0.6, 0.05),
    "step": (0.05, 0.02),
    "joint": (0.05, 0.02),
}


@dataclass
class Feature:
    """A discrete road feature laid on a profile (bump, pothole, step, joint); see make_feature."""

    kind: str
    position_m: float
    length_m: float
    height_m: float  # up for bump/step; depth (positive) for pothole/joint

    def as_dict(self) -> dict:
        """The feature as stored in a scenario's truth."""
        return asdict(self)


def make_feature(kind: str, position_m: float, length_m: float | None = None, height_m: float | None = None) -> Feature:
    """A checked feature with the kind's default length and height where none is given."""
    if kind not in FEATURE_KINDS:
        raise InputError(f"unknown feature {kind!r}; use one of {', '.join(FEATURE_KINDS)}")
    dl, dh = _DEFAULTS[kind]
    f = Feature(kind, float(position_m), float(length_m if length_m is not None else dl),
                float(height_m if height_m is not None else dh))
    if not (f.length_m > 0 and 0 < abs(f.height_m) <= 0.5):
        raise InputError(f"feature {kind}@{position_m}: length must be > 0 and height within 0.5 m")
    return f


def parse_feature(spec: str) -> Feature:
    """Parse ``KIND@POSITION[:len=L,h=H]`` (metres), e.g. ``pothole@250:len=0.8,h=0.06``."""
    m = re.fullmatch(r"\s*([a-z]+)\s*@\s*([0-9.]+)\s*(?::(.*))?", spec)
    if not m:
        raise InputError(f"feature {spec!r}: expected KIND@POSITION[:len=L,h=H], e.g. bump@120:h=0.08")
    kind, pos, rest = m.group(1), float(m.group(2)), m.group(3)
    opts: dict[str, float] = {}
    for part in filter(None, (rest or "").split(",")):
        k, _, v = part.partition("=")
        k = k.strip()
        if k not in ("len", "h"):
            raise InputError(f"feature {spec!r}: unknown option {k!r} (use len=, h=)")
        try:
            opts[k] = float(v)
        except ValueError:
            raise InputError(f"feature {spec!r}: {k}={v!r} is not a number") from None
    return make_feature(kind, pos, opts.get("len"), opts.get("h"))


def feature_shape(f: Feature, x: np.ndarray) -> np.ndarray:
    """Elevation added by one feature at distances x."""
    u = (x - f.position_m) / f.length_m  # 0..1 across the feature
    inside = (u >= 0) & (u <= 1)
    out = np.zeros_like(x, dtype=float)
    if f.kind == "bump":  # raised cosine hump
        out[inside] = f.height_m * 0.5 * (1 - np.cos(2 * np.pi * u[inside]))
    elif f.kind == "pothole":  # flat bottom, edges 10% of its length
        edge = 0.1
        depth = np.clip(np.minimum(u, 1 - u) / edge, 0, 1)
        out[inside] = -f.height_m * depth[inside]
    elif f.kind == "joint":  # rectangular gap
        out[inside] = -f.height_m
    elif f.kind == "step":  # smooth ramp up over its length, then stays up
        out = f.height_m * (0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0, 1)))
    return out


def apply_features(distance_m, elevation_m, features) -> np.ndarray:
    """The profile with each feature's shape added; a feature off the road is refused."""
    z = np.array(elevation_m, dtype=float, copy=True)
    x = np.asarray(distance_m, dtype=float)
    for f in features:
        if not (x[0] <= f.position_m <= x[-1]):
            raise InputError(f"feature {f.kind}@{f.position_m:g} m lies outside the road (0–{x[-1]:g} m)")
        z += feature_shape(f, x)
    return z
