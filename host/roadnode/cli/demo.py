"""`roadnode demo`: the whole system where there is no hardware (library: roadnode.demo)."""

from __future__ import annotations

import click

from roadnode.cli.common import err, out, print_json


@click.command()
@click.option("--vehicles", type=click.IntRange(1, 20), default=3, show_default=True, help="Simulated vehicles (boards).")
@click.option("--minutes", type=click.FloatRange(1, 60), default=5.0, show_default=True, help="Each vehicle's drive.",
              callback=lambda ctx, p, v: v if v == v else _bad(p, "nan"))
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=1, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default="out", show_default=True)
@click.option("--serve", is_flag=True, help="Then keep the dashboard up (roadnode serve) until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="The dashboard's port with --serve.")
@click.option("--json", "as_json", is_flag=True, help="The summary (out/fleet.json's content) on stdout.")
def demo(vehicles, minutes, seed, out_dir, serve, port, as_json):
    """Vehicles drive the town's roads on simulated boards running the real firmware, uplink over
    MQTT through `roadnode collect` into SQLite; then the fleet table, the worst stretches of road,
    out/map.html and out/fleet.json (and with --serve, the dashboard)."""
    from rich.status import Status

    from roadnode.demo import run_demo
    from roadnode.userfiles import output_dir

    od = output_dir(out_dir, "--out-dir")
    with Status("starting", console=err, spinner="dots") as st:
        if not err.is_terminal:
            st.stop()
        summary = run_demo(od, vehicles=vehicles, minutes=minutes, seed=seed,
                           progress=lambda s: (st.update(s), None if err.is_terminal else err.print(s)))
    if as_json:
        print_json(summary)
    else:
        _show(summary)
    if serve:
        _serve(summary["files"]["db"], port, as_json)


def _bad(param, value):
    raise click.BadParameter(f"{value!r} is not a number of minutes", param=param)


def _show(s: dict) -> None:
    from rich.table import Table

    from roadnode.cli.fleet import status_table
    from roadnode.cli.status import self_cal_text

    f = s["figures"]
    out.print(status_table(s["fleet"]))
    t = Table(title=f"worst stretches of road ({f['stretches_judged']} of {f['stretches']} with 3 passes or more)")
    for c in ("road", "dir", "median IRI m/km", "p25-p75", "true IRI", "passes", "vehicles", "confidence"):
        t.add_column(c, justify="right")
    for x in s["worst"]:
        true = x.get("true_iri_m_per_km")
        t.add_row(x.get("road") or x["cell"], x["direction"], f"{x['median_iri_m_per_km']:.2f}",
                  f"{x['p25']:.2f}-{x['p75']:.2f}", "" if true is None else f"{true:.2f}", str(x["n_passes"]),
                  str(x["n_vehicles"]), x["confidence"])
    out.print(t)
    err_s = "" if f["median_abs_error_vs_truth"] is None else \
        f"; median |error| against the true IRI {100 * f['median_abs_error_vs_truth']:.1f}%"
    out.print(f"{f['vehicles']} vehicles x {f['minutes']:g} min: {f['segments_stored']} segments stored "
              f"({f['packets_stored']} packets, {f['duplicates_on_the_wire']} duplicates on the wire, none stored twice)"
              f"{err_s}; {f['wall_s']:.0f} s in all")
    cal = {r["device_id"]: self_cal_text(r.get("self_cal")) for r in s["fleet"]}
    for d in s["devices"]:
        sc = cal.get(d["device_id"])
        out.print(f"  device {d['device_id']} ({d['vehicle']}): {d['length_m'] / 1000:.1f} km"
                  + (f", self-calibration {sc}" if sc else ""))
    files = s["files"]
    out.print(f"map: {files['map']}\nfleet: {files['fleet']}\ndatabase: {files['db']} "
              f"(roadnode fleet status --db sqlite:///{files['db']})")


def _serve(db_path: str, port: int, as_json: bool) -> None:
    from roadnode.demo import dashboard

    with dashboard(db_path, port) as srv:
        if as_json:
            print_json({"url": srv.url, "db": f"sqlite:///{db_path}"})
        else:
            out.print(f"dashboard: {srv.url}  (Ctrl-C stops)")
        srv.run()
