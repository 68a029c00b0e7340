"""`roadnode status`: a node's vitals, asked for while it keeps measuring."""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json


@click.command()
@click.option("--port", required=True, help="Serial port of the node.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the vitals' field names.")
def status(port, as_json):
    """Ask a running node for its vitals (no restart, no gap in its samples)."""
    from roadnode.board.link import NodeLink

    with NodeLink(port) as link:
        d = link.status()
    d.pop("payload", None)
    if as_json:
        print_json(d)
        return
    from rich.table import Table

    t = Table(title=f"node {d['device_id']} on {port}", show_header=False)
    rows = [
        ("firmware", d["fw_version"]), ("uptime", f"{d['uptime_s']} s"),
        ("last reset", d["reset_reason"]), ("unexpected reboots", d["unexpected_reboots"]),
        ("free heap", f"{d['free_heap']} B (min {d['min_free_heap']} B)"),
        ("GPS", f"fix {d['gps_fix']}, {d['gps_sats']} sats, HDOP {d['gps_hdop']:.2f}"),
        ("IMU", "FAULT" if "imu_fault" in d["flags"] else "ok"),
        ("FIFO overflows / samples lost", f"{d['fifo_overflows']} / {d['samples_lost']}"),
        ("I2C errors", d["i2c_errors"]), ("NMEA errors", d["nmea_checksum_errors"]),
        ("packets sent / queued", f"{d['packets_sent']} / {d['packets_queued']}"),
        ("supply", f"{d['supply_mv']} mV" if d["supply_mv"] else "not measured"),
        ("config", "FALLBACK (file bad, see config)" if d["config_fallback"] else "ok"),
        ("heartbeat", f"every {d['heartbeat_s']} s"), ("bad console frames", d.get("console_bad_frames")),
        ("watchdog", "armed" if "wdt_armed" in d["flags"] else "not armed"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    out.print(t)
