"""`roadnode iri`: IRI of a longitudinal profile file (ASTM E1926)."""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json, warn


@click.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=str))
@click.option("--segment", "segment_m", type=float, default=100.0, show_default=True, metavar="METRES",
              help="Segment length for the per-segment report.")
@click.option("--start", "start_m", type=float, default=None, metavar="METRES",
              help="Distance where the first segment starts (default: first profile point). "
                   "Points before it still drive the model as lead-in.")
@click.option("--units", type=click.Choice(["m", "mm"]), default="m", show_default=True,
              help="Elevation unit of CSV/column files (ERD files carry their own units).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="OUT.png",
              help="Write a PNG of the profile and the IRI per segment.")
def iri(profile, segment_m, start_m, units, as_json, plot_path):
    """International Roughness Index of PROFILE (CSV, two columns, or ERD), overall and per segment.

    The Golden Car runs at 80 km/h over the 250 mm moving-average slope, initialised over the
    first 11 m, its state carried across segments. Irregularly spaced profiles are resampled
    (linear interpolation) to a spacing that divides 0.25 m; the JSON says so under "resampled".
    A gap in the distances (a step over 4 median spacings and 0.5 m) splits the profile: segments
    that overlap it are flagged "gap" with no IRI, and the gaps are listed.
    """
    from roadnode.science.iri import compute_iri
    from roadnode.science.profile_io import looks_like_millimetres, read_profile
    from roadnode.userfiles import image_path

    if plot_path is not None:
        image_path(plot_path, "--plot")  # refuse a bad target before reading and computing
    prof = read_profile(profile, units=units)
    if units == "m" and prof.fmt != "erd" and looks_like_millimetres(prof.elevation_m, prof.distance_m):
        warn(f"{profile}: elevations change by more than 0.5 m per metre; are they in millimetres? (use --units mm)")
    ignored = max(0, prof.meta.get("columns", 2) - 2)
    if ignored:
        warn(f"{profile}: {ignored} column(s) after the second ignored: column 1 is distance, column 2 elevation")
    if prof.meta.get("channels", 1) > 1:
        warn(f"{profile}: ERD file has {prof.meta['channels']} channels; only channel 1 is used")
    res = compute_iri(prof.distance_m, prof.elevation_m, segment_m=segment_m, start_m=start_m)
    if plot_path:
        _plot(prof, res, plot_path)
    if as_json:
        obj = res.as_dict()
        obj.update({"file": profile, "format": prof.fmt, "segment_m": segment_m, "ignored_columns": ignored})
        print_json(obj)
        return
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    t = Table(title=escape(f"IRI of {Path(profile).name}"), caption=f"{prof.fmt}, {res.points} points, dx {res.dx_m:g} m")
    t.add_column("start m", justify="right")
    t.add_column("end m", justify="right")
    t.add_column("IRI m/km", justify="right")
    t.add_column("")
    rows = []
    for s in res.segments:
        note = ", ".join(n for n, on in (("gap", s.gap), ("partial", s.partial)) if on)
        val = "n/a" if s.iri_m_per_km != s.iri_m_per_km else f"{s.iri_m_per_km:.3f}"
        rows.append((f"{s.start_m:.2f}", f"{s.end_m:.2f}", val, note))
    # one multi-line cell per column draws the same table as one row per segment, ~5x faster:
    # rich's cost is per cell, and a long profile has thousands of segments
    if rows:
        t.add_row(*(Text("\n".join(col)) for col in zip(*rows)))
    out.print(t)
    if res.resampled:
        out.print(f"resampled: {res.resampled['from']} spacing (median {res.resampled['input_spacing_m']:.4g} m) "
                  f"-> {res.resampled['dx_m']:g} m by {res.resampled['method']}")
    for a, b in res.gaps:
        out.print(f"gap: no profile from {a:.2f} m to {b:.2f} m ({b - a:.2f} m); segments over it have no IRI")
    length = res.end_m - res.start_m - sum(min(b, res.end_m) - max(a, res.start_m) for a, b in res.gaps
                                          if b > res.start_m and a < res.end_m)
    measured = " of measured road" if res.gaps else ""
    out.print(f"overall IRI: [bold]{res.iri_m_per_km:.3f}[/bold] m/km over {length:.1f} m{measured}")


def _plot(prof, res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roadnode.userfiles import save_figure

    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    a1.plot(prof.distance_m, prof.elevation_m, lw=0.8)
    a1.set_ylabel("elevation (m)")
    a1.set_title(f"Profile {prof.source}")
    for s in res.segments:
        a2.hlines(s.iri_m_per_km, s.start_m, s.end_m, colors="C3" if s.partial else "C1", lw=2)
    for a, b in res.gaps:
        a2.axvspan(a, b, color="0.85", lw=0)
    a2.axhline(res.iri_m_per_km, color="k", ls="--", lw=0.8, label=f"overall {res.iri_m_per_km:.2f}")
    a2.set_ylabel("IRI (m/km)")
    a2.set_xlabel("distance (m)")
    a2.legend(loc="upper right")
    fig.tight_layout()
    try:
        save_figure(fig, path, "--plot", dpi=110)
    finally:
        plt.close(fig)
