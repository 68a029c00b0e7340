"""`roadnode replay`: run a scenario through a real node's firmware over USB (HIL on hardware)."""

from __future__ import annotations

import click

from roadnode.cli.common import err, out, print_json


@click.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False))
@click.option("--port", required=True, help="Serial port of the node (running the roadnode firmware).")
@click.option("--baud", type=click.IntRange(1, 12_000_000), default=115200, show_default=True)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Config for the replay (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Segments and events as JSON lines, then a summary line.")
def replay(scenario, port, baud, settings, as_json):
    """Stream SCENARIO's raw IMU samples and NMEA bytes to the node; print the packets it computes.
    The node restarts afterwards and measures live again."""
    from rich.progress import Progress

    from roadnode.usb.replay import replay as run
    from roadnode.nodeconfig import parse_settings
    from roadnode.scenario.fileformat import load_scenario

    sc = load_scenario(scenario)
    st = parse_settings(settings)
    if as_json or not err.is_terminal:  # a progress bar only where someone watches (in a log: a stray blank line)
        r = run(port, sc, st, baud)
    else:
        with Progress(console=err, transient=True) as prog:
            task = prog.add_task(f"replaying on {port}", total=1.0)
            r = run(port, sc, st, baud, progress=lambda f: prog.update(task, completed=f))
    if as_json:
        for p in r["segments"] + r["events"]:
            print_json(p)
        print_json({"type": "summary", **{k: r[k] for k in ("frames", "seconds", "realtime_factor", "bad_frames")},
                    "segments": len(r["segments"]), "events": len(r["events"])})
        return
    from rich.table import Table

    t = Table(title=f"replay of {scenario} on {port}")
    for c in ("segment", "IRI m/km", "rms g", "peak g", "km/h", "flags"):
        t.add_column(c)
    for p in r["segments"]:
        iri = "n/a" if p["iri_m_per_km"] is None else f"{p['iri_m_per_km']:.2f}"
        t.add_row(f"{p['start_m']}-{p['end_m']} m", iri, f"{p['rms_g']:.2f}", f"{p['peak_g']:.1f}", str(p["speed_kmh"]),
                  ",".join(p["flags"]))
    out.print(t)
    for e in r["events"]:
        out.print(f"{e['kind']} at {e['dist_m']} m, {e['peak_g']:.1f} g, {e['speed_kmh']} km/h")
    out.print(f"{r['frames']} frames in {r['seconds']} s ({r['realtime_factor']}x real time), {r['bad_frames']} bad frames")
