"""`roadnode decode`: decode packets captured elsewhere (LoRa console, serial log, hex dump)."""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json


@click.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet.")
def decode(source, as_json):
    """Decode SOURCE: a hex string, a file of hex lines, or a binary file of COBS frames.

    Exit code 1 if any packet was bad (CRC, truncated, unknown type, newer version), 2 if the
    input could not be read.
    """
    from roadnode.packets import decode_packet, read_packets

    rows = [decode_packet(p) for p in read_packets(source)]
    if as_json:
        for r in rows:
            print_json(r)
    else:
        from rich.table import Table

        t = Table(title=f"{len(rows)} packet(s)")
        for c in ("#", "type", "seq", "device", "fields"):
            t.add_column(c, overflow="fold")
        skip = {"type", "seq", "device_id", "version"}
        for i, r in enumerate(rows, 1):
            if r["type"] == "error":
                t.add_row(str(i), "[red]error[/red]", "", "", r["error"])
            else:
                t.add_row(str(i), r["type"], str(r["seq"]), str(r["device_id"]),
                          ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip))
        out.print(t)
    if any(r["type"] == "error" for r in rows):
        raise SystemExit(1)
