"""`roadnode fleet`: questions to the collector's database (docs/fleet.md)."""

from __future__ import annotations

import json
import time

import click

from roadnode.cli.common import out, print_json

DB_HELP = "sqlite:///PATH or postgresql://... (default: $ROADNODE_DB, else the user's data folder's fleet.db)."


def _open(db_url):
    from pathlib import Path

    from roadnode.errors import InputError
    from roadnode.fleet.store import Store, default_db_url, parse_db_url

    url = db_url or default_db_url()
    kind, where = parse_db_url(url)
    if kind == "sqlite" and not Path(where).expanduser().is_file():
        raise InputError(f"no collector database at {where} (give --db, or run `roadnode collect` first)")
    return Store(url)


def _rows(db_url, query, as_json: bool) -> list[dict]:
    """query(store) on the database, closed again; with --json the rows printed as JSON lines."""
    store = _open(db_url)
    try:
        rows = query(store)
    finally:
        store.close()
    if as_json:
        for r in rows:
            print_json(r)
    return rows


@click.group()
def fleet():
    """How every device is, what it measured, how every road is (from `roadnode collect`'s database)."""


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--at", "at", metavar="TIME", help="Judge the states as of this time (ISO 8601 or Unix s; default now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per device.")
def status(db_url, at, as_json):
    """One row per device: online / unknown / offline and its vitals, problems first."""
    from roadnode.fleet.fleet import fleet_status, parse_time

    now = parse_time(at) if at else time.time()
    rows = _rows(db_url, lambda store: fleet_status(store, now), as_json)
    if not as_json:
        out.print(status_table(rows))


def status_table(rows: list[dict]):
    """The fleet table (rich), problems first as fleet_status orders them (also `roadnode demo`'s)."""
    from rich.table import Table

    t = Table(title=f"{len(rows)} devices")
    for c in ("device", "state", "last seen", "fw", "uptime s", "reset", "unexp. reboots", "min heap B", "queue",
              "GPS fix", "IMU", "segments", "last segment", "problems"):
        t.add_column(c)
    style = {"offline": "red", "unknown": "yellow", "online": "green"}
    for r in rows:
        q = "" if r["queue_depth"] is None else f"{r['queue_depth']}{' ↑' if r['queue_growing'] else ''}"
        t.add_row(str(r["device_id"]), f"[{style[r['state']]}]{r['state']}[/]", r["last_seen"] or "never",
                  r["fw_version"] or "", "" if r["uptime_s"] is None else str(r["uptime_s"]), r["reset_reason"] or "",
                  "" if r["unexpected_reboots"] is None else str(r["unexpected_reboots"]),
                  "" if r["min_free_heap"] is None else str(r["min_free_heap"]), q,
                  "" if r["gps_fix"] is None else str(r["gps_fix"]), "FAULT" if r["imu_fault"] else "ok",
                  str(r["segments_total"]), r["last_segment_at"] or "", ", ".join(r["problems"]))
    return t


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--device", type=click.IntRange(0, (1 << 24) - 1), metavar="ID", help="Only this device.")
@click.option("--since", metavar="T", help="Only segments received since T (ISO 8601, Unix s, or an age: 2h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per segment.")
def segments(db_url, device, since, as_json):
    """Every stored segment, in each device's order; `time` is when the collector received it."""
    from roadnode.fleet.fleet import parse_time, segment_records

    rows = _rows(db_url, lambda store: segment_records(store, device, parse_time(since) if since else None), as_json)
    if as_json:
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} segments")
    for c in ("device", "seq", "start m", "end m", "IRI m/km", "km/h", "lat", "lon", "time", "flags"):
        t.add_column(c, justify="right")
    for r in rows:
        iri = r["iri_m_per_km"]
        t.add_row(str(r["device_id"]), str(r["seq"]), f"{r['start_m']:.0f}", f"{r['end_m']:.0f}",
                  "n/a" if iri is None else f"{iri:.2f}", str(r["speed_kmh"]),
                  "" if r["lat"] is None else f"{r['lat']:.5f}", "" if r["lon"] is None else f"{r['lon']:.5f}",
                  r["time"], ",".join(r["flags"]))
    out.print(t)


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--since", metavar="T", help="Only segments received since T (ISO 8601, Unix s, or an age: 30d).")
@click.option("--res", type=click.IntRange(7, 13), default=10, show_default=True,
              help="H3 resolution of a stretch (10: hexagons ~130 m across; 11: ~50 m).")
@click.option("--geojson", "geojson_file", metavar="FILE", help="Also write the stretches as a GeoJSON FeatureCollection.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per stretch, then a summary line.")
def roads(db_url, since, res, geojson_file, as_json):
    """Road condition per ~100 m stretch and direction over all passes: median IRI, quartiles, passes,
    vehicles, confidence (none below 3 passes). Flagged segments are left out and counted."""
    from roadnode.fleet.fleet import parse_time
    from roadnode.fleet.roads import geojson, road_stretches
    from roadnode.userfiles import atomic_output, output_path

    if geojson_file:
        output_path(geojson_file, "GeoJSON output")
    store = _open(db_url)
    try:
        segs = store.segments(since=parse_time(since) if since else None)
    finally:
        store.close()
    r = road_stretches(segs, res=res)
    if geojson_file:
        with atomic_output(geojson_file, "GeoJSON output") as f:
            f.write(json.dumps(geojson(r)).encode())
    summary = {"type": "summary", "stretches": len(r["stretches"]), "segments": r["segments"],
               "left_out": r["left_out"], "resolution": res}
    if as_json:
        for s in r["stretches"]:
            print_json({"type": "stretch", **s})
        print_json(summary)
        return
    from rich.table import Table

    t = Table(title=f"{len(r['stretches'])} stretches from {r['segments']} segments")
    for c in ("cell", "dir", "median IRI", "p25", "p75", "passes", "vehicles", "last pass", "confidence", "from", "to"):
        t.add_column(c)
    for s in r["stretches"]:
        t.add_row(s["cell"], s["direction"], f"{s['median_iri_m_per_km']:.2f}", f"{s['p25']:.2f}", f"{s['p75']:.2f}",
                  str(s["n_passes"]), str(s["n_vehicles"]), s["last_pass"] or "", s["confidence"],
                  f"{s['start'][0]:.5f},{s['start'][1]:.5f}", f"{s['end'][0]:.5f},{s['end'][1]:.5f}")
    out.print(t)
    lo = r["left_out"]
    out.print(f"left out: {lo['flagged']} flagged, {lo['no_iri']} without IRI, {lo['no_position']} without "
              f"position, {lo['no_heading']} without heading")
