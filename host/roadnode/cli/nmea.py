"""`roadnode nmea`: check a captured GPS log with the firmware's own parser (run on MicroPython)."""

from __future__ import annotations

from collections import Counter

import click

from roadnode.cli.common import out, print_json


@click.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sentence found.")
def nmea(log, as_json):
    """Parse LOG (raw NMEA bytes as captured from the module's UART) exactly as the node would.

    Reports every sentence found: accepted, or rejected with the reason (checksum, truncated,
    too_long, bad_char, bad_field, no_checksum; "unsupported" = a valid sentence the node ignores).
    """
    from roadnode.gnss import check_log

    rows, counters = check_log(log)
    if as_json:
        for r in rows:
            print_json({k: r[k] for k in ("line", "sentence", "ok", "error", "lat", "lon", "speed_mps", "time")} | {"type": r["type"]})
        return
    from rich.table import Table

    by = Counter((r["sentence"][1:3], r["type"], r["error"] or "ok") for r in rows if r["sentence"].startswith("$"))
    t = Table(title=f"{log}: {len(rows)} sentences")
    for c in ("talker", "type", "result", "count"):
        t.add_column(c)
    for (talker, typ, res), n in sorted(by.items()):
        t.add_row(talker, typ, res, str(n))
    out.print(t)
    fixes = [r for r in rows if r["ok"] and r["lat"] is not None]
    nav = [r for r in rows if r["type"] in ("RMC", "GGA", "GNS")]
    if fixes:
        out.print(f"positions: {len(fixes)} ({100 * len(fixes) / max(1, len(nav)):.0f}% of RMC/GGA/GNS); "
                  f"first {fixes[0]['lat']:.7f},{fixes[0]['lon']:.7f} at {fixes[0]['time']} (line {fixes[0]['line']}), "
                  f"last {fixes[-1]['lat']:.7f},{fixes[-1]['lon']:.7f} at {fixes[-1]['time']}")
    else:
        out.print("positions: none (no fix in this log)")
    bad = [r for r in rows if r["error"] and r["error"] != "unsupported"]
    if bad:
        e = Table(title=f"{len(bad)} rejected")
        e.add_column("line", justify="right")
        e.add_column("error")
        e.add_column("sentence", overflow="fold")
        for r in bad[:50]:
            e.add_row(str(r["line"]), r["error"], r["sentence"][:100])
        out.print(e)
        if len(bad) > 50:
            out.print(f"... and {len(bad) - 50} more (use --json for all)")
    out.print(f"parser counters: {counters}")
