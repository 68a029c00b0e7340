"""Build a drive scenario: road -> speed profile -> quarter car -> IMU and GPS -> raw streams + truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roadnode import __version__
from roadnode.errors import InputError
from roadnode.models.geo import destination
from roadnode.models.gps import GpsConfig, GpsModel
from roadnode.models.imu import ImuConfig, ImuModel, get_part
from roadnode.models.vehicle import VehicleParams, load_vehicle, simulate_quarter_car
from roadnode.scenario import speed as speedmod
from roadnode.scenario.fileformat import FORMAT, VERSION, Scenario
from roadnode.scenario.route import Route, read_route_file
from roadnode.science.iri import find_gaps, segment_edges, segment_iri
from roadnode.science.profile_io import read_profile
from roadnode.science.roads import ISO_CLASSES, apply_features, iso8608_profile

MAX_LENGTH_M = 200_000.0
ROAD_DX = 0.01  # m: fine enough for joints and pothole edges; divides 0.25 m
TRUTH_HZ = 100


def _check_sensors(imu: str, odr_hz: float, gps_hz: float, gps_baud: int, seed: int) -> None:
    """Refuse impossible sensor settings before any work (the models check again, later)."""
    part = get_part(imu)
    if not part.odr_min <= odr_hz <= part.odr_max:  # NaN fails too
        raise InputError(f"{part.title}: ODR must be {part.odr_min:g}–{part.odr_max:g} Hz, got {odr_hz:g}")
    if not 1 <= gps_hz <= 10:
        raise InputError(f"GPS rate must be 1–10 Hz, got {gps_hz:g}")
    if not 1200 <= gps_baud <= 921600:
        raise InputError(f"GPS baud rate must be 1200–921600, got {gps_baud}")
    if not 0 <= seed < 2**63:
        raise InputError(f"seed must be a whole number from 0 to 2^63-1, got {seed}")


def _sim_rate(odr_hz: float) -> float:
    """Internal rate: >= 1 kHz and an integer multiple (>= 2x) of the ODR."""
    return odr_hz * max(2, int(np.ceil(1000.0 / odr_hz - 1e-9)))


def mixed_iso_road(stretches, seed: int = 0, ramp_m: float = 5.0):
    """A road of consecutive ISO 8608 stretches [(class, length_m), ...] for make_scenario(road=...).

    One random class-A surface whose slope is scaled per stretch by sqrt(Gd(class)/Gd(A)) (classes
    differ only in level), the scale changing over ``ramp_m`` at each boundary, then integrated:
    every stretch has its class's spectrum and the joins add no step or kink of their own (two
    independent surfaces joined end to end would: a kink the node reads as a hump). 20 m of the
    last class run on past the end, as an ISO road does."""
    total = float(sum(n for _, n in stretches))
    x, za = iso8608_profile(total + 20.0, dx=ROAD_DX, iso_class="A", seed=seed)
    ends = np.cumsum([float(n) for _, n in stretches])
    level = np.log([np.sqrt(ISO_CLASSES[str(c).upper()] / ISO_CLASSES["A"]) for c, _ in stretches])
    mid = x[:-1] + ROAD_DX / 2
    logs = np.full_like(mid, level[0])
    for k in range(1, len(stretches)):  # a ramp centred on each boundary
        w = np.clip((mid - ends[k - 1]) / ramp_m + 0.5, 0.0, 1.0)
        logs += w * (level[k] - level[k - 1])
    z = np.concatenate([[0.0], np.cumsum(np.diff(za) * np.exp(logs))])
    return x, z, {"iso_classes": [[str(c).upper(), float(n_m)] for c, n_m in stretches]}


def make_scenario(
    *,
    iso_class: str | None = None,
    profile_path: str | None = None,
    length_m: float | None = None,
    speed_kmh: float = 60.0,
    speed_profile: str | None = None,
    stops=(),
    speed_limits=None,
    vehicle: str | VehicleParams = "sedan",
    mount: str = "axle",
    imu: str = "mpu6050",
    range_g: int = 16,
    odr_hz: float = 200.0,
    gps_hz: float = 5.0,
    gps_baud: int = 38400,
    gps_talker: str = "GP",
    gps_dropouts=(),
    route=(48.1486, 17.1077, 90.0),
    route_file: str | None = None,
    route_line: Route | None = None,
    road=None,
    seed: int = 0,
    features=(),
    segment_m: float = 100.0,
    start_dwell_s: float = 6.0,
    progress=None,
) -> Scenario:
    """A simulated drive. The road is an ISO 8608 class, a measured ``profile_path``, or ``road`` =
    (x, z, description) already laid along the route (the network's roads, roadnode.roads). The
    route is a straight line from ``route`` = (lat, lon, heading), or the polyline of ``route_file``
    (GeoJSON/GPX) or ``route_line``: then the drive is the route's length (or a shorter
    ``length_m``), positions and headings follow it, and corners and U-turns are driven slower."""
    step = progress or (lambda msg: None)
    if sum(v is not None for v in (iso_class, profile_path, road)) != 1:
        raise InputError("give exactly one of --iso-class or --profile (or drive the road network: --network)")
    if route_file is not None and route_line is not None:
        raise InputError("give one of route_file or route_line")
    if route_file is not None:
        route_line = read_route_file(route_file)
    if mount not in ("axle", "body"):
        raise InputError(f"mount must be axle or body, got {mount!r}")
    if not 10 <= segment_m <= 1000:
        raise InputError(f"segment length must be 10–1000 m, got {segment_m:g}")
    _check_sensors(imu, odr_hz, gps_hz, gps_baud, seed)
    veh = load_vehicle(vehicle)
    step("road")
    if length_m is not None and not 20 <= length_m <= MAX_LENGTH_M:
        raise InputError(f"length must be 20 m–200 km, got {length_m:g}")
    if route_line is not None:
        avail = route_line.length_m
        if length_m is not None and length_m > avail + 1e-6:
            raise InputError(f"--length-m {length_m:g} is longer than the route ({route_line.source}: {avail:.1f} m)")
        if length_m is None and avail > MAX_LENGTH_M:
            raise InputError(f"{route_line.source}: route is {avail / 1000:.6g} km long; drives are limited to "
                             "200 km (use --length-m)")
        length_m = float(length_m if length_m is not None else avail)
    if road is not None:
        x, z, road_src = road
        x, z = np.asarray(x, float), np.asarray(z, float)
        length = float(length_m if length_m is not None else x[-1])
        if not (len(x) == len(z) and abs(x[1] - x[0] - ROAD_DX) < 1e-9 and x[-1] >= length - 1e-6):
            raise InputError(f"the road given covers {x[-1]:g} m at {x[1] - x[0]:g} m spacing; the drive needs "
                             f"{length:g} m at {ROAD_DX} m")
    elif iso_class is not None:
        length = float(length_m if length_m is not None else 1000.0)
        if not 20 <= length <= MAX_LENGTH_M:
            raise InputError(f"length must be 20 m–200 km, got {length:g}")
        x, z = iso8608_profile(length + 20.0, dx=ROAD_DX, iso_class=iso_class, seed=seed)
        road_src = {"iso_class": iso_class.upper()}
    else:
        prof = read_profile(profile_path)
        d = prof.distance_m - prof.distance_m[0]
        avail = float(d[-1])
        if route_line is not None and length_m > avail:
            raise InputError(f"{profile_path}: profile is only {avail:.1f} m long; the drive along the route is "
                             f"{length_m:.1f} m (use --length-m)")
        length = float(min(length_m, avail) if length_m else avail)
        if length < 20:
            raise InputError(f"{profile_path}: profile is only {avail:.1f} m long (need >= 20 m)")
        if length > MAX_LENGTH_M:
            raise InputError(f"{profile_path}: profile is {avail / 1000:.6g} km long; drives are limited to "
                             "200 km (use --length-m)")
        gaps = [i for i in find_gaps(prof.distance_m) if d[i] < length]
        if gaps:
            i = gaps[0]
            raise InputError(f"{profile_path}: profile has a gap from {prof.distance_m[i]:g} to "
                             f"{prof.distance_m[i + 1]:g} m; a drive needs continuous road (use --length-m to stop before it)")
        # the road runs a little past the drive's end (as an ISO road does), not to the file's end
        x = np.arange(0.0, min(avail, length + 20.0) + ROAD_DX / 2, ROAD_DX)
        z = np.interp(x, d, prof.elevation_m)
        road_src = {"profile": str(Path(profile_path).name), "profile_start_m": float(prof.distance_m[0])}
    z = apply_features(x, z, features)

    step("speed")
    if speed_profile:
        t_k, x_k, v_k = speedmod.csv_profile(speed_profile, length)
    elif route_line is not None:
        uturns, slow = route_line.driving_constraints(length)
        t_k, x_k, v_k = speedmod.cruise_profile(length, speed_kmh, [*stops, *uturns], seed=seed,
                                                start_dwell_s=start_dwell_s, limits=route_line.speed_limits,
                                                slow=slow)
    else:
        t_k, x_k, v_k = speedmod.cruise_profile(length, speed_kmh, stops, seed=seed, start_dwell_s=start_dwell_s,
                                                limits=speed_limits)
    duration = float(t_k[-1])

    step("vehicle")
    fs = _sim_rate(odr_hz)
    t = np.arange(0.0, duration, 1.0 / fs)
    pos = np.interp(t, t_k, x_k)
    vel = np.interp(t, t_k, v_k)
    resp = simulate_quarter_car(veh, x, z, t, pos)
    vert = resp["axle_acc"] if mount == "axle" else resp["body_acc"]
    lon_acc = np.gradient(vel, t)
    acc = np.column_stack([lon_acc, np.zeros_like(t), vert])

    step("imu")
    model = ImuModel(ImuConfig(part=imu, range_g=range_g, odr_hz=odr_hz, seed=seed))
    imu_t, counts = model.sample(t, acc)

    step("gps")
    tt = np.arange(0.0, duration, 1.0 / TRUTH_HZ)
    tpos = np.interp(tt, t_k, x_k)
    tvel = np.interp(tt, t_k, v_k)
    if route_line is not None:
        lat, lon, heading = route_line.at(tpos)
        route_meta = route_line.meta()
    else:
        lat0, lon0, hdg = route
        if not (-85 <= lat0 <= 85 and -180 <= lon0 <= 180):
            raise InputError(f"route origin {lat0},{lon0} is not a valid latitude/longitude")
        lat, lon = destination(lat0, lon0, hdg, tpos)
        heading = np.full_like(tt, hdg % 360.0)
        route_meta = {"lat": lat0, "lon": lon0, "heading_deg": hdg}
    gps = GpsModel(GpsConfig(rate_hz=gps_hz, baud=gps_baud, talker=gps_talker,
                             dropouts=list(gps_dropouts), seed=seed))
    # unwrapped, so that the receiver's course interpolated between truth samples never sweeps
    # through 180° where the heading crosses north
    course = np.degrees(np.unwrap(np.radians(heading)))
    sentences = gps.nmea_stream(tt, lat, lon, tvel, course)
    gps_t = np.array([s[0] for s in sentences])
    blobs = [s[1] for s in sentences]
    offs = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)

    step("truth")
    edges = segment_edges(0.0, length, segment_m)
    segs = segment_iri(x, z, edges)
    vert_truth = np.interp(tt, t, vert)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "generator": f"roadnode {__version__}",
        "length_m": length,
        "duration_s": duration,
        "road": {**road_src, "dx_m": ROAD_DX},
        "speed": {"profile": str(speed_profile) if speed_profile else None, "speed_kmh": speed_kmh,
                  "start_dwell_s": 0.0 if speed_profile else start_dwell_s,
                  "stops": [[s.position_m, s.dwell_s] for s in stops],
                  **({"limits": [[float(a), float(b)] for a, b in speed_limits]} if speed_limits else {})},
        "vehicle": veh.as_dict(),
        "mount": mount,
        "imu": {"part": imu, "range_g": range_g, "odr_hz": odr_hz, "lsb_per_g": model.lsb_per_g,
                "aaf_hz": model.aaf_hz, "mount_rpy_deg": [float(a) for a in model.mount_rpy_deg],
                "sim_rate_hz": fs},
        "gps": {"rate_hz": gps_hz, "baud": gps_baud, "talker": gps_talker,
                "dropouts": [list(d) for d in gps_dropouts], "start_utc": gps.cfg.start_utc,
                "time_to_fix_s": gps.cfg.time_to_fix_s},
        "route": route_meta,
        "segment_m": segment_m,
        "features": [f.as_dict() for f in features],
        "seed": seed,
    }
    arrays = {
        "imu_t_s": imu_t,
        "imu_counts": counts,
        "gps_t_s": gps_t,
        "gps_offsets": offs,
        "gps_bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "road_x_m": x,
        "road_z_m": z,
        "truth_t_s": tt,
        "truth_pos_m": tpos,
        "truth_speed_mps": tvel,
        "truth_lat": lat,
        "truth_lon": lon,
        "truth_vert_acc": vert_truth,
        "seg_start_m": edges[:-1],
        "seg_end_m": edges[1:],
        "seg_true_iri": np.array([s.iri_m_per_km for s in segs]),
        "truth_heading_deg": heading,
    }
    if route_line is not None:
        arrays.update(route_lat=route_line.lat, route_lon=route_line.lon, route_m=route_line.vertex_m)
    return Scenario(meta, arrays)
