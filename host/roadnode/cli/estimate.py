"""`roadnode estimate`: run the firmware's own pipeline on MicroPython over a recorded drive."""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json
from roadnode.nodeconfig import parse_settings


@click.command()
@click.argument("scenario_file", metavar="SCENARIO")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Node config for the run (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per segment and event, then a summary.")
def estimate(scenario_file, sets, as_json):
    """Re-process a drive's raw IMU and GPS streams with the node's pipeline (MicroPython, ESP32
    heap) and compare each segment with the scenario's true IRI."""
    from roadnode.accuracy.golden import run_firmware
    from roadnode.accuracy.report import event_record, score, segment_record
    from roadnode.scenario import load_scenario

    sc = load_scenario(scenario_file)
    r = run_firmware(sc, parse_settings(sets))
    segs = [segment_record(t) for t in r["segments"]]
    evs = [event_record(t) for t in r["events"]]
    summ = score(segs, sc.segments)
    truth = {round(t["start_m"]): t["true_iri_m_per_km"] for t in sc.segments}
    if as_json:
        for s in segs:
            print_json({**s, "true_iri_m_per_km": truth.get(round(s["start_m"]))})
        for e in evs:
            print_json(e)
        print_json(summ)
        return
    from rich.table import Table

    t = Table(title=f"{scenario_file}: node pipeline vs truth")
    for c in ("start m", "end m", "IRI m/km", "true m/km", "err %", "RMS g", "peak g", "km/h", "flags"):
        t.add_column(c, justify="right")
    for s in segs:
        tv = truth.get(round(s["start_m"]))
        iri = s["iri_m_per_km"]
        err = "" if iri is None or tv is None else f"{100 * (iri / tv - 1):+.1f}"
        t.add_row(f"{s['start_m']:.0f}", f"{s['end_m']:.0f}", "n/a" if iri is None else f"{iri:.2f}",
                  "" if tv is None else f"{tv:.2f}", err, f"{s['rms_g']:.2f}", f"{s['peak_g']:.1f}",
                  str(s["speed_kmh"]), ",".join(s["flags"]))
    out.print(t)
    for e in evs:
        out.print(f"event: {e['kind']} at {e['dist_m']} m, {e['peak_g']:.1f} g, {e['speed_kmh']} km/h")
    if summ["scored"]:
        out.print(f"{summ['scored']} of {summ['segments']} segments scored: median |error| "
                  f"{summ['median_abs_err_pct']:.1f}%, 90th percentile {summ['p90_abs_err_pct']:.1f}%")
