"""International Roughness Index from a longitudinal profile (ASTM E1926, Sayers 1995).

The Golden Car quarter-car is driven at 80 km/h over the profile *slope*; IRI is the mean
rectified suspension stroke rate |z_s' - z_u'| (states z1 - z3), in m/km (= mm/m).

Conventions (documented in docs/iri.md):
- The profile is sampled regularly at ``dx`` (a divisor of 0.25 m); irregular profiles are resampled
  first (see :func:`compute_iri`).
- The 250 mm moving average turns each elevation pair ``(z[i], z[i+k])`` (``k = 0.25/dx``) into one
  smoothed slope, attributed to the interval that *ends* at ``x[i+k]``: the rectified slope of step
  ``j`` belongs to the road between ``x[j+k-1]`` and ``x[j+k]``. Hence the first 0.25 m of a profile
  carries no IRI output (it is the first averaging base).
- The state starts from the slope over the first 11 m (z1 = z3 = that slope, z2 = z4 = 0) and is
  carried across segment boundaries, never reset.
- The core recursion is linear and time invariant, so it runs in blocks of steps as matrix products
  (:func:`lti_response`): numpy only, since importing scipy.signal for ``lfilter`` costs more than
  the whole computation of a long profile. :func:`rectified_slope_loop` is the plain per-sample
  reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from roadnode.errors import InputError

# Golden Car, per unit sprung mass (GUIDE §1; World Bank TP 46).
K1 = 653.0  # tyre spring, s^-2
K2 = 63.3  # suspension spring, s^-2
C = 6.0  # suspension damper, s^-1
MU = 0.15  # unsprung / sprung mass
V_REF = 80.0 / 3.6  # m/s
BASE_M = 0.25  # moving-average base
INIT_M = 11.0  # initialisation length
# A step longer than GAP_FACTOR median spacings (and than GAP_MIN_M) is missing road, not a sample
# spacing: bridging it with a straight line would score unmeasured road as perfectly smooth.
GAP_FACTOR = 4.0
GAP_MIN_M = 0.5
# Bounds checked before allocating: 10 M points is 500 km at 0.05 m; a million segments is more
# than any report needs (1,000 km at 1 m).
MAX_POINTS = 10_000_000
MAX_SEGMENTS = 1_000_000


def golden_car_ss(k1=K1, k2=K2, c=C, mu=MU) -> tuple[np.ndarray, np.ndarray]:
    """Continuous state-space (A, B) of the quarter car, states [z_s, z_s', z_u, z_u']."""
    a = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [-k2, -c, k2, c],
            [0.0, 0.0, 0.0, 1.0],
            [k2 / mu, c / mu, -(k1 + k2) / mu, -c / mu],
        ]
    )
    b = np.array([0.0, 0.0, 0.0, k1 / mu])
    return a, b


def golden_car_matrices(dx: float, speed_mps: float = V_REF) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretisation for an input linear between samples: ST = e^(A dt), PR = A^-1 (ST - I) B."""
    from scipy.linalg import expm  # on demand: scipy takes longer to import than most profiles to score

    a, b = golden_car_ss()
    dt = dx / speed_mps
    st = expm(a * dt)
    pr = np.linalg.solve(a, (st - np.eye(4)) @ b)
    return st, pr


def base_samples(dx: float) -> int:
    """Samples in the 250 mm averaging base; dx must divide 0.25 m."""
    k = int(round(BASE_M / dx))
    if k < 1 or abs(k * dx - BASE_M) > 1e-6 * BASE_M:
        raise InputError(f"sample spacing {dx:g} m does not divide 0.25 m; resample the profile first")
    return k


def _smoothed_slope(elev: np.ndarray, dx: float) -> np.ndarray:
    k = base_samples(dx)
    return (elev[k:] - elev[:-k]) / (k * dx)


def _initial_state(elev: np.ndarray, dx: float, init_m: float) -> np.ndarray:
    n = min(int(round(init_m / dx)), len(elev) - 1)
    s0 = (elev[n] - elev[0]) / (n * dx)
    return np.array([s0, 0.0, s0, 0.0])


def rectified_slope_loop(elev, dx, init_m=INIT_M, speed_mps=V_REF):
    """Reference implementation: the plain per-sample recursion of Sayers' program."""
    elev = np.asarray(elev, dtype=float)
    st, pr = golden_car_matrices(dx, speed_mps)
    slope = _smoothed_slope(elev, dx)
    x = _initial_state(elev, dx, init_m)
    out = np.empty(len(slope))
    st_l = st.tolist()
    pr_l = pr.tolist()
    x0, x1, x2, x3 = x.tolist()
    for i, s in enumerate(slope.tolist()):
        x0, x1, x2, x3 = (
            st_l[0][0] * x0 + st_l[0][1] * x1 + st_l[0][2] * x2 + st_l[0][3] * x3 + pr_l[0] * s,
            st_l[1][0] * x0 + st_l[1][1] * x1 + st_l[1][2] * x2 + st_l[1][3] * x3 + pr_l[1] * s,
            st_l[2][0] * x0 + st_l[2][1] * x1 + st_l[2][2] * x2 + st_l[2][3] * x3 + pr_l[2] * s,
            st_l[3][0] * x0 + st_l[3][1] * x1 + st_l[3][2] * x2 + st_l[3][3] * x3 + pr_l[3] * s,
        )
        out[i] = abs(x0 - x2)
    return out


def lti_response(st, pr, c, x0, u, block: int = 64) -> np.ndarray:
    """Outputs ``y_j = c . x_(j+1)`` of the recursion ``x_(j+1) = st x_j + pr u_j`` from state ``x0``.

    The per-sample recursion in exact block form, as matrix products: within a block of L steps
    the output is the zero-state response (the block's inputs times a lower-triangular Toeplitz
    matrix of the impulse response) plus the free response to the block's start state; the start
    states follow ``X_(k+1) = st^L X_k + drive_k``, summed by doubling (log steps, stopped once
    ``st^(L 2^i)`` is below 1e-20: older blocks no longer reach). As fast as
    ``scipy.signal.lfilter`` without importing scipy.signal (which costs more than scoring a long
    profile), and closer to the loop: no transfer-function polynomial in between.
    """
    u = np.asarray(u, dtype=float)
    n = len(u)
    if n == 0:
        return np.zeros(0)
    ell = min(block, n)
    nb = -(-n // ell)
    ub = np.zeros(nb * ell)
    ub[:n] = u
    ub = ub.reshape(nb, ell)
    p = np.empty((ell + 1, len(x0), len(x0)))  # p[m] = st^m
    p[0] = np.eye(len(x0))
    for m in range(1, ell + 1):
        p[m] = st @ p[m - 1]
    cp = c @ p  # cp[m] = c st^m
    h = cp[:ell] @ pr  # impulse response: u_j reaches y_(j+m) through c st^m pr
    lag = np.subtract.outer(np.arange(ell), np.arange(ell))
    toeplitz = np.where(lag >= 0, h[np.maximum(lag, 0)], 0.0)
    # block start states: x0, then each block's inputs carried to the end of the block, then summed
    starts = np.empty((nb, len(x0)))
    starts[0] = x0
    starts[1:] = ub[:-1] @ (p[ell - 1 :: -1] @ pr)
    step, span = p[ell], 1
    while span < nb and np.abs(step).max() > 1e-20:
        starts[span:] += starts[:-span] @ step.T
        step, span = step @ step, 2 * span
    y = ub @ toeplitz.T
    y += starts @ cp[1:].T
    return y.ravel()[:n]


def rectified_slope(elev, dx, init_m=INIT_M, speed_mps=V_REF) -> np.ndarray:
    """|z1 - z3| after each step of the recursion, vectorised (see :func:`lti_response`)."""
    elev = np.asarray(elev, dtype=float)
    st, pr = golden_car_matrices(dx, speed_mps)
    slope = _smoothed_slope(elev, dx)
    x0 = _initial_state(elev, dx, init_m)
    return np.abs(lti_response(st, pr, np.array([1.0, 0.0, -1.0, 0.0]), x0, slope))


@dataclass
class SegmentIRI:
    """IRI of one report segment; NaN where the segment crosses missing road."""

    start_m: float
    end_m: float
    iri_m_per_km: float
    partial: bool = False  # shorter than the requested segment length (last piece of a profile)
    gap: bool = False  # crosses missing road: no IRI (NaN), the road there was not measured

    def as_dict(self) -> dict:
        """The JSON object of `roadnode iri --json`'s segments list."""
        return {"start_m": self.start_m, "end_m": self.end_m, "iri_m_per_km": self.iri_m_per_km,
                "partial": self.partial, "gap": self.gap}


@dataclass
class IRIResult:
    """What :func:`compute_iri` found: overall and per-segment IRI, the spacing used, whether the
    profile was resampled, the gaps, and the rectified slope per step (for plots and checks)."""

    iri_m_per_km: float
    segments: list[SegmentIRI]
    dx_m: float
    start_m: float
    end_m: float
    points: int
    resampled: dict | None = None
    rs: np.ndarray | None = field(default=None, repr=False)  # rectified slope per step (m/m)
    rs_x: np.ndarray | None = field(default=None, repr=False)  # distance at the start of each step
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (from_m, to_m) of missing road

    def as_dict(self) -> dict:
        """The JSON object `roadnode iri --json` prints (without the per-step arrays)."""
        return {
            "iri_m_per_km": self.iri_m_per_km,
            "segments": [s.as_dict() for s in self.segments],
            "dx_m": self.dx_m,
            "start_m": self.start_m,
            "end_m": self.end_m,
            "length_m": self.end_m - self.start_m,
            "points": self.points,
            "resampled": self.resampled,
            "gaps": [{"start_m": a, "end_m": b, "length_m": b - a} for a, b in self.gaps],
        }


def _check_profile(d: np.ndarray, z: np.ndarray) -> None:
    if d.ndim != 1 or d.shape != z.shape:
        raise InputError("distance and elevation must be 1-D arrays of the same length")
    if len(d) < 3:
        raise InputError(f"profile has only {len(d)} points")
    bad = ~(np.isfinite(d) & np.isfinite(z))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"profile point {i + 1} is not a number (distance {d[i]!r}, elevation {z[i]!r})")
    step = np.diff(d)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0))
        raise InputError(
            f"distances must increase: point {i + 2} ({d[i + 1]:g} m) follows {d[i]:g} m"
        )


def find_gaps(distance_m) -> np.ndarray:
    """Indices ``i`` where the step ``d[i] -> d[i+1]`` is missing road (see GAP_FACTOR)."""
    step = np.diff(np.asarray(distance_m, dtype=float))
    if len(step) == 0:
        return np.zeros(0, dtype=int)
    limit = max(GAP_FACTOR * float(np.median(step)), GAP_MIN_M)
    return np.flatnonzero(step > limit)


def regularise(d: np.ndarray, z: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray, float, dict | None]:
    """Return a regularly spaced profile with dx dividing 0.25 m.

    Regular input whose spacing divides 0.25 m is used as is. Otherwise the profile, taken as
    piecewise linear between its points (the same assumption the exact discretisation makes), is
    resampled by linear interpolation to dx = 0.25/k with k the smallest integer >= 5 that makes dx
    no coarser than the median input spacing: at dx <= 0.05 m the Golden Car result is converged
    (GUIDE §1), and the 250 mm average then spans whole samples. More than ``max_points`` grid
    points is refused before anything is allocated.
    """
    step = np.diff(d)
    med = float(np.median(step))
    regular = np.allclose(step, med, rtol=1e-6, atol=1e-9)
    if regular:
        k = BASE_M / med
        if abs(k - round(k)) < 1e-6 and round(k) >= 1:
            return d, z, med, None
    k = max(5, int(np.ceil(BASE_M / med - 1e-9)))
    dx = BASE_M / k
    n_f = np.floor((d[-1] - d[0]) / dx + 1e-9) + 1
    if n_f > max_points:
        raise InputError(
            f"profile of {d[-1] - d[0]:.6g} m would need {n_f:.3g} points at {dx:g} m (limit {max_points:,}); "
            "split the file"
        )
    n = int(n_f)
    grid = d[0] + dx * np.arange(n)
    zz = np.interp(grid, d, z)
    info = {
        "from": "regular" if regular else "irregular",
        "input_spacing_m": med,
        "dx_m": dx,
        "method": "linear interpolation (profile taken as piecewise linear)",
    }
    return grid, zz, dx, info


def segment_edges(start: float, end: float, segment_m: float) -> np.ndarray:
    """Edges of whole segments from ``start``, plus a short last one to ``end``; too many is refused
    before allocating (MAX_SEGMENTS)."""
    n_f = np.floor((end - start) / segment_m + 1e-9)
    if not n_f <= MAX_SEGMENTS:
        raise InputError(
            f"{end - start:.6g} m in {segment_m:g} m segments is {n_f:.3g} segments (limit {MAX_SEGMENTS:,}); "
            "use a longer segment"
        )
    n_full = int(n_f)
    edges = start + segment_m * np.arange(n_full + 1)
    if end - edges[-1] > 1e-6:
        edges = np.append(edges, end)
    return edges


def _segments_from_rs(rs_x, rs, edges, segment_m=None, gaps=()) -> list[SegmentIRI]:
    out = []
    # a step belongs to a segment when its start point lies in (lo, hi]
    idx = np.searchsorted(rs_x, edges - 1e-9, side="right")
    cs = np.concatenate([[0.0], np.cumsum(rs)])
    g = np.asarray(gaps, dtype=float).reshape(-1, 2)
    for i in range(len(edges) - 1):
        a, b = edges[i], edges[i + 1]
        lo, hi = idx[i], idx[i + 1]
        # any overlap with missing road voids the segment: part of it was never measured
        crosses = bool(((g[:, 0] < b) & (g[:, 1] > a)).any()) if len(g) else False
        if hi <= lo or crosses:
            val = float("nan")
        else:
            val = (cs[hi] - cs[lo]) / (hi - lo) * 1000.0
        length = b - a
        partial = segment_m is not None and length < segment_m - 1e-6
        out.append(SegmentIRI(float(a), float(b), val, bool(partial), crosses))
    return out


def _runs(d: np.ndarray) -> list[tuple[int, int]]:
    """[(i0, i1)) index ranges of the continuous pieces between gaps."""
    cut = find_gaps(d) + 1
    bounds = np.concatenate([[0], cut, [len(d)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _run(distance_m, elevation_m):
    """Check, split at gaps, regularise and run the car over each continuous piece.

    Each piece gets its own 11 m initialisation (the car cannot carry its state over road that was
    not measured); a piece shorter than that yields no IRI. Returns the concatenated rectified
    slope, the step positions, the spacing (of the longest piece), resampling info and the gaps.
    """
    d = np.asarray(distance_m, dtype=float)
    z = np.asarray(elevation_m, dtype=float)
    _check_profile(d, z)
    runs = _runs(d)
    gaps = [(float(d[b - 1]), float(d[b])) for _, b in runs[:-1]]
    scored = [(a, b) for a, b in runs if b - a >= 3 and d[b - 1] - d[a] >= INIT_M]
    if not scored:
        longest = max(d[b - 1] - d[a] for a, b in runs)
        what = "profile" if len(runs) == 1 else "longest piece between gaps of the profile"
        raise InputError(
            f"{what} is {longest:.2f} m long; IRI needs at least {INIT_M:g} m for initialisation"
        )
    budget = MAX_POINTS
    rs_all, x_all, infos = [], [], []
    dx_main, longest = None, -1.0
    end = float(d[-1])
    for a, b in scored:
        gd, gz, dx, info = regularise(d[a:b], z[a:b], max_points=budget)
        budget -= len(gd)
        rs_all.append(rectified_slope(gz, dx))
        k = base_samples(dx)
        # RS_j comes from the step over [x_(j+k-1), x_(j+k)]; it is reported at that step's start
        # (the convention of the published reference program, which the sorel check values use)
        x_all.append(gd[k - 1 : -1])
        if info:
            infos.append(info)
        if gd[-1] - gd[0] > longest:
            longest, dx_main = gd[-1] - gd[0], dx
        if b == len(d):
            end = float(gd[-1])
    info = infos[0] if infos else None
    return d, end, dx_main, info, np.concatenate(rs_all), np.concatenate(x_all), gaps


def segment_iri(distance_m, elevation_m, edges_m) -> list[SegmentIRI]:
    """IRI over consecutive segments [edges[i], edges[i+1]] of a profile (gaps void a segment)."""
    d, end, dx, info, rs, rs_x, gaps = _run(distance_m, elevation_m)
    return _segments_from_rs(rs_x, rs, np.asarray(edges_m, dtype=float), gaps=gaps)


def compute_iri(distance_m, elevation_m, segment_m: float = 100.0, start_m: float | None = None) -> IRIResult:
    """Overall and per-segment IRI of a profile (see the module doc for conventions).

    Segments of ``segment_m`` start at ``start_m`` (default: the profile start); the last one may be
    shorter and is then flagged ``partial``. Points before ``start_m`` still drive the car (they act
    as lead-in), as in Sayers' program when a report starts mid-profile. Gaps in the distances
    (see :func:`find_gaps`) split the profile: segments that overlap one are flagged ``gap`` with no
    IRI, and the overall IRI is over measured road only.
    """
    if not (np.isfinite(segment_m) and segment_m > 0):
        raise InputError(f"segment length must be a positive number of metres, got {segment_m:g}")
    if start_m is not None and not np.isfinite(start_m):
        raise InputError(f"start must be a finite distance, got {start_m:g}")
    d, end, dx, info, rs, rs_x, gaps = _run(distance_m, elevation_m)
    start = float(d[0] if start_m is None else start_m)
    if start < d[0] or start >= end:
        raise InputError(f"start {start:g} m lies outside the profile ({d[0]:g}–{end:g} m)")
    if end - start < min(segment_m, BASE_M * 2):
        raise InputError(f"profile after {start:g} m is too short for one segment")
    edges = segment_edges(start, end, segment_m)
    segs = _segments_from_rs(rs_x, rs, edges, segment_m, gaps)
    sel = rs_x > start + 1e-9
    overall = float(np.mean(rs[sel]) * 1000.0) if sel.any() else float("nan")
    return IRIResult(overall, segs, dx, start, end, len(d), info, rs, rs_x, gaps)
