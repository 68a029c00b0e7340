"""`roadnode calibrate`: fit a vehicle's node settings from a drive over a reference section."""

from __future__ import annotations

import click

from roadnode.cli.common import err, out, print_json


def _fmt(s: dict) -> str:
    if not s.get("n"):
        return "no segment measured and covered"
    return (f"median |error| {s['median_abs_err_pct']:.1f}%, p90 {s['p90_abs_err_pct']:.1f}%, "
            f"bias {s['bias_pct']:+.1f}% ({s['n']} segments)")


@click.command()
@click.argument("drive_file", metavar="DRIVE.npz")
@click.option("--reference-profile", "profile", type=click.Path(dir_okay=False), default=None, metavar="PROFILE",
              help="The section's profile as a profiler measured it (any file `roadnode iri` reads).")
@click.option("--reference-iri", "iri_csv", type=click.Path(dir_okay=False), default=None, metavar="CSV",
              help="The section's IRI per segment: CSV with start_m, iri_m_per_km (end_m optional).")
@click.option("--start-m", type=float, default=None, metavar="METRES",
              help="Where the drive starts along the reference, in its own distances (default: its start).")
@click.option("--units", type=click.Choice(["m", "mm"]), default="m", show_default=True,
              help="Elevation unit of a CSV/column reference profile.")
@click.option("--mount", type=click.Choice(["axle", "body"]), default=None,
              help="How the node was mounted (default: the drive's own record).")
@click.option("--port", default=None, help="Apply the fitted settings to the node on this port (config set).")
@click.option("--json", "as_json", is_flag=True, help='Print {"settings", "before", "after"} as one JSON object.')
def calibrate(drive_file, profile, iri_csv, start_m, units, mount, port, as_json):
    """Fit the vehicle's settings (axle: wheel_hop_hz, wheel_damping; body: body_gain) from a drive
    (`roadnode capture`, or a simulated scenario) over a reference section, show the node's error
    on the reference before and after, and with --port set them on the node. The drive's distance
    0 is the reference's start (or its distance --start-m); docs/calibration.md."""
    from roadnode.errors import InputError

    if (profile is None) == (iri_csv is None):
        raise InputError("give one reference: --reference-profile PROFILE or --reference-iri CSV")
    link = None
    if port is not None:  # held from the start: a port that cannot be had is known before the fit
        from roadnode.usb.link import NodeLink

        link = NodeLink(port)
    try:
        r = _fit(drive_file, profile, iri_csv, start_m, units, mount, as_json)
        if link is not None:
            applied = dict(r["settings"])
            if "wheel_hop_hz" in applied:  # axle: the node's self-calibration would replace the technician's fit
                applied["self_cal"] = "off"
            cfg = link.config_set(applied)
            if not as_json:
                err.print(f"applied on {port}: " + ", ".join(f"{k}={cfg[k]}" for k in applied), highlight=False)
    finally:
        if link is not None:
            link.close()
    if as_json:
        print_json(r)
        return
    out.print("settings: " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()), highlight=False)
    out.print(f"before: {_fmt(r['before'])}", highlight=False)
    out.print(f"after:  {_fmt(r['after'])}", highlight=False)
    if port is None:
        out.print("apply with: roadnode config set " + " ".join(f"{k}={v}" for k, v in r["settings"].items())
                  + " --port PORT", highlight=False)


def _fit(drive_file, profile, iri_csv, start_m, units, mount, as_json) -> dict:
    from roadnode.accuracy import calibration as C
    from roadnode.scenario import load_scenario

    sc = load_scenario(drive_file)
    if profile is not None:
        ref = C.reference_from_profile(profile, sc, start_m, units, C.drive_settings(sc))
    else:
        ref = C.reference_from_csv(iri_csv, sc, start_m, C.drive_settings(sc))
    if not as_json:
        err.print(f"fitting {mount or sc.meta['mount']} settings on {len(ref)} reference segments...", highlight=False)
    return C.calibrate(sc, ref, mount)
