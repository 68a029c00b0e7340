"""`roadnode scenario make|show`: build drive scenarios and inspect them."""

from __future__ import annotations

import click

from roadnode.cli.common import err, out, print_json
from roadnode.errors import InputError


def _route(ctx, param, value):
    if value is None:
        return None
    try:
        lat, lon, hdg = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected LAT,LON,HEADING_DEG, e.g. 48.1486,17.1077,90") from None
    if not (-85 <= lat <= 85 and -180 <= lon <= 180 and abs(hdg) <= 360):
        raise click.BadParameter("latitude must be within ±85°, longitude ±180°, heading ±360°")
    return lat, lon, hdg


def _dropout(spec: str):
    a, _, b = spec.partition(":")
    try:
        t0, t1 = float(a), float(b)
    except ValueError:
        raise InputError(f"--gps-dropout {spec!r}: expected START_S:END_S") from None
    if not 0 <= t0 < t1:
        raise InputError(f"--gps-dropout {spec!r}: start must be >= 0 and before the end")
    return t0, t1


@click.group()
def scenario():
    """Drive scenarios: raw IMU and GPS streams of a simulated drive, with the truth."""


@scenario.command("make")
@click.option("--iso-class", type=click.Choice(list("ABCDEFGH"), case_sensitive=False), help="ISO 8608 road class.")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), help="Drive a measured profile file instead.")
@click.option("--length-m", type=float, default=None,
              help="Road length (default 1000 m; a profile's or a route file's own length).")
@click.option("--speed-kmh", type=float, default=None, show_default="60; on --network each road's own",
              help="Cruise speed (from rest, +-3% wander).")
@click.option("--speed-profile", type=click.Path(dir_okay=False), help="CSV: time_s or distance_m, speed_kmh.")
@click.option("--stop-at", "stops", multiple=True, metavar="DIST[:SECONDS]", help="Stop at a distance (repeatable).")
@click.option("--vehicle", default="sedan", show_default=True, help="sedan, suv, van, truck or a JSON file.")
@click.option("--mount", type=click.Choice(["axle", "body"]), default="axle", show_default=True)
@click.option("--imu", type=click.Choice(["mpu6050", "icm42688"]), default="mpu6050", show_default=True)
@click.option("--range-g", type=click.Choice(["2", "4", "8", "16"]), default="16", show_default=True,
              help="Accelerometer range; axle mounts see 10-30 g on potholes.")
@click.option("--odr-hz", type=float, default=200.0, show_default=True)
@click.option("--gps-hz", type=float, default=5.0, show_default=True)
@click.option("--gps-baud", type=int, default=38400, show_default=True)
@click.option("--gps-talker", default="GP", show_default=True)
@click.option("--gps-dropout", "dropouts", multiple=True, metavar="START_S:END_S", help="No fix (tunnel), repeatable.")
@click.option("--feature", "features", multiple=True, metavar="SPEC", help="e.g. pothole@250, bump@120:len=3.7,h=0.075")
@click.option("--route", callback=_route, default=None, show_default="48.1486,17.1077,90", metavar="LAT,LON,HEADING_DEG",
              help="A straight drive from this point at this heading.")
@click.option("--route-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Follow a GeoJSON LineString or a GPX track/route instead (docs/roads.md).")
@click.option("--network", metavar="NAME|FILE", help="Drive the road network (town, or a GeoJSON file; docs/roads.md) "
              "as one vehicle of a fleet; the roads give the roughness.")
@click.option("--vehicle-index", type=int, default=None, metavar="K", help="With --network: this vehicle (0..N-1).")
@click.option("--vehicles", type=int, default=None, metavar="N", help="With --network: the fleet's size (default 1).")
@click.option("--minutes", type=float, default=None, help="With --network: drive about this long (default 5; or --length-m).")
@click.option("--segment-m", type=float, default=100.0, show_default=True, help="Truth IRI segment length.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Scenario file to write (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def make(iso_class, profile_path, length_m, speed_kmh, speed_profile, stops, vehicle, mount, imu, range_g, odr_hz,
         gps_hz, gps_baud, gps_talker, dropouts, features, route, route_file, network, vehicle_index, vehicles, minutes,
         segment_m, seed, output, as_json):
    """Simulate a drive and write its scenario file."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from roadnode.scenario import make_scenario, save_scenario, summarize
    from roadnode.scenario.speed import parse_stop
    from roadnode.science.roads import parse_feature
    from roadnode.userfiles import output_path

    if route is not None and route_file is not None:
        raise InputError("give one of --route or --route-file, not both")
    if network is not None:
        given = [n for n, v in (("--iso-class", iso_class), ("--profile", profile_path), ("--route", route),
                                ("--route-file", route_file), ("--speed-profile", speed_profile)) if v is not None]
        if given:
            raise InputError(f"--network drives the network's roads and routes; leave out {', '.join(given)}")
        if length_m is not None and minutes is not None:
            raise InputError("give one of --length-m or --minutes")
        vehicles = 1 if vehicles is None else vehicles
        vehicle_index = 0 if vehicle_index is None else vehicle_index
        if not 1 <= vehicles <= 1000 or not 0 <= vehicle_index < vehicles:
            raise InputError(f"--vehicle-index must be 0–{vehicles - 1} of --vehicles 1–1000, got {vehicle_index} of {vehicles}")
        if length_m is None and minutes is None:
            minutes = 5.0
    else:
        extra = [n for n, v in (("--vehicle-index", vehicle_index), ("--vehicles", vehicles), ("--minutes", minutes))
                 if v is not None]
        if extra:
            raise InputError(f"{', '.join(extra)}: only with --network (a drive over the road network)")
    if route is None and route_file is None:
        route = (48.1486, 17.1077, 90.0)
    output_path(output, "scenario")  # refuse a bad target before minutes of work
    feats = [parse_feature(f) for f in features]
    stop_list = [parse_stop(s) for s in stops]
    drops = [_dropout(d) for d in dropouts]
    stages = ["road", "speed", "vehicle", "imu", "gps", "truth"]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as prog:
        task = prog.add_task("building scenario", total=len(stages) + 1)

        def step(name):
            """Move the progress bar to the named build stage."""
            prog.update(task, description=f"building scenario: {name}", completed=stages.index(name))

        common = dict(stops=stop_list, vehicle=vehicle, mount=mount, imu=imu, range_g=int(range_g), odr_hz=odr_hz,
                      gps_hz=gps_hz, gps_baud=gps_baud, gps_talker=gps_talker, gps_dropouts=drops, seed=seed,
                      features=feats, segment_m=segment_m, progress=step)
        if network is not None:
            from roadnode.roads import network_scenario

            sc = network_scenario(vehicle_index, vehicles, network=network, length_m=length_m, minutes=minutes,
                                  speed_kmh=speed_kmh, **common)
        else:
            sc = make_scenario(iso_class=iso_class, profile_path=profile_path, length_m=length_m,
                               speed_kmh=60.0 if speed_kmh is None else speed_kmh, speed_profile=speed_profile,
                               route=route, route_file=route_file, **common)
        prog.update(task, description="writing")
        save_scenario(sc, output)
    s = summarize(sc)
    if as_json:
        print_json({**s, "file": output})
    else:
        err.print(f"wrote {output}: {s['length_m']:.0f} m, {s['duration_s']:.1f} s, {s['imu']['samples']} IMU samples, "
                  f"{s['gps']['sentences']} NMEA sentences, mean true IRI {s['mean_true_iri_m_per_km']:.2f} m/km",
                  markup=False)


@scenario.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Profile, speed, vertical accelerations and true IRI per segment.")
def show(file, as_json, plot_path):
    """Summarise a scenario file."""
    from roadnode.scenario import load_scenario, summarize
    from roadnode.scenario.report import plot
    from roadnode.userfiles import image_path

    if plot_path is not None:
        image_path(plot_path, "--plot")
    sc = load_scenario(file)
    s = summarize(sc)
    if plot_path:
        plot(sc, plot_path)
    if as_json:
        print_json(s)
        return
    from rich.markup import escape
    from rich.table import Table

    more = ("no truth: a captured drive" if s["max_speed_kmh"] is None else
            f"max {s['max_speed_kmh']:.1f}, stopped {s['stopped_s']:.1f} s")
    out.print(f"[bold]{escape(file)}[/bold]: {s['length_m']:.0f} m in {s['duration_s']:.1f} s "
              f"(mean {s['mean_speed_kmh']:.1f} km/h, {more})")
    out.print(f"road {s['road']} · vehicle {s['vehicle']} · {s['mount']} mount · IMU {s['imu']['part']} "
              f"{s['imu']['odr_hz']:g} Hz ±{s['imu']['range_g']} g ({s['imu']['samples']} samples) · "
              f"GPS {s['gps']['rate_hz']:g} Hz ({s['gps']['sentences']} sentences)", markup=False)
    t = Table(title="true IRI per segment")
    for c in ("start m", "end m", "IRI m/km"):
        t.add_column(c, justify="right")
    for seg in s["segments"]:
        t.add_row(f"{seg['start_m']:.0f}", f"{seg['end_m']:.0f}", f"{seg['true_iri_m_per_km']:.2f}")
    out.print(t)
    for f in s["features"]:
        out.print(f"feature: {f['kind']} at {f['position_m']:.1f} m ({f['length_m']:g} m long, {f['height_m'] * 1000:.0f} mm)", markup=False)
    r = s["route"]
    if r.get("kind") == "polyline":
        out.print(f"route: {r['source']}, {r['length_m']:.0f} m, {r['points']} points", markup=False)
    if s["stretches"]:
        t = Table(title="road stretches driven (true IRI is the road's own)")
        for c in ("stretch", "road", "from m", "to m", "along drive m", "IRI m/km"):
            t.add_column(c, justify="right")
        for st in s["stretches"]:
            t.add_row(st["stretch_id"], st["name"], f"{st['from_m']:.0f}", f"{st['to_m']:.0f}",
                      f"{st['route_start_m']:.0f}–{st['route_end_m']:.0f}", f"{st['true_iri_m_per_km']:.2f}")
        out.print(t)
