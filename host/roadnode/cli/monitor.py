"""`roadnode monitor`: live segments, events and heartbeats from a node's serial console."""

from __future__ import annotations

import os

import click

from roadnode.cli.common import err, out, print_json, stop_on_signals
from roadnode.errors import InputError
from roadnode.userfiles import open_append, output_path


@click.command()
@click.option("--port", required=True, help="Serial port of the node (e.g. /dev/ttyUSB0, or a simulated board's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet (JSON lines).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), help="Save the raw frames (for `roadnode decode`).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C).")
def monitor(port, as_json, record_path, duration):
    """Watch a node: decoded packets as they arrive. Frames that fail their CRC are counted, never
    misread; the console's text (REPL, prints) is ignored."""
    from roadnode.usb.stream import monitor as mon
    from roadnode.usb.stream import open_port_when_there

    if duration is not None and not 0 < duration < float("inf"):
        raise InputError(f"--duration must be a positive number of seconds, got {duration:g}")
    rec = _Recording(record_path) if record_path is not None else None  # checked now, created at the first frame
    stop = stop_on_signals()
    # the port before any output: one that cannot be opened is one line on stderr, no empty table
    try:
        port_s = open_port_when_there(port, stop=stop)
    except BaseException:
        if rec:
            rec.close()
        raise
    if port_s is None:  # Ctrl-C while waiting for the port to appear
        if rec:
            rec.close()
        return
    bad = n = 0

    def note(msg):  # the port went away and back (a native-USB node resetting): said, not fatal
        """Say on stderr what happened to the port, without stopping."""
        err.print(msg, highlight=False, soft_wrap=True)

    try:
        if as_json:
            for p in mon(port, duration, rec, on_note=note, opened=port_s, stop=stop):
                n += 1
                bad += p["type"] == "error"
                print_json(p)
            return
        from rich.live import Live
        from rich.table import Table

        rows = []
        hb = None

        def view():
            """The live table: the last 15 packets decoded."""
            t = Table(title=f"{port}: {n} packets, {bad} bad frames")
            for c in ("type", "where", "IRI m/km", "peak g", "km/h", "flags / kind"):
                t.add_column(c)
            for p in rows[-15:]:
                if p["type"] == "segment":
                    iri = "n/a" if p["iri_m_per_km"] is None else f"{p['iri_m_per_km']:.2f}"
                    t.add_row("segment", f"{p['start_m']}-{p['end_m']} m", iri, f"{p['peak_g']:.1f}",
                              str(p["speed_kmh"]), ",".join(p["flags"]))
                elif p["type"] == "event":
                    t.add_row("event", f"{p['dist_m']} m", "", f"{p['peak_g']:.1f}", str(p["speed_kmh"]), p["kind"])
            if hb:
                t.caption = (f"node {hb['device_id']} fw {hb['fw_version']} up {hb['uptime_s']} s, reset "
                             f"{hb['reset_reason']}, heap {hb['free_heap']} B (min {hb['min_free_heap']}), GPS fix "
                             f"{hb['gps_fix']}/{hb['gps_sats']} sats, I2C err {hb['i2c_errors']}, FIFO ovf "
                             f"{hb['fifo_overflows']}")
            return t

        with Live(view(), console=out, refresh_per_second=4) as live:
            for p in mon(port, duration, rec, on_note=note, opened=port_s, stop=stop):
                n += 1
                if p["type"] == "error":
                    bad += 1
                elif p["type"] == "status":
                    hb = p
                else:
                    rows.append(p)
                live.update(view())
    except KeyboardInterrupt:
        pass
    finally:
        port_s.close()  # (the watch closed it already, unless it never started)
        if rec:
            rec.close()
        if not as_json:
            err.print(f"{n} packets, {bad} bad frames")


class _Recording:
    """The --record file, opened at once (a folder, a device, a missing or unwritable folder: exit 2
    before the port is opened); a file that was not there is removed again and created at the first
    frame, so a port that cannot be opened or never sends a frame leaves no empty recording behind."""

    def __init__(self, path):
        self.path = path
        target = output_path(path, "--record")
        new = not os.path.lexists(target)
        self.f = open_append(path, "--record")
        if new:
            self.f.close()
            self.f = None
            os.unlink(target)

    def _do(self, op, *a):
        try:
            return op(*a)
        except OSError as e:
            raise InputError(f"cannot write --record {self.path}: {e.strerror or e}") from None

    def write(self, data: bytes) -> None:
        """Append raw bytes to the recording, opening it on first use."""
        if self.f is None:
            self.f = open_append(self.path, "--record")
        self._do(self.f.write, data)

    def flush(self) -> None:
        """Flush the recording so far to disk."""
        if self.f is not None:
            self._do(self.f.flush)

    def close(self) -> None:
        """Close the recording (idempotent)."""
        if self.f is not None:
            f, self.f = self.f, None
            self._do(f.close)
