"""`roadnode capture`: record a node's raw IMU samples and GPS bytes as a scenario without truth."""

from __future__ import annotations

import click

from roadnode.cli.common import err, print_json, stop_on_signals


@click.command()
@click.option("--port", required=True, help="The node's serial port.")
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The drive file to write (.npz, the scenario format).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Seconds of drive to record (the node's clock); default: until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def capture(port, out_path, duration, as_json):
    """Record a drive from a running node: its raw IMU samples and GPS bytes, streamed over USB
    while it goes on measuring. The node restarts first (the file holds everything its pipeline
    sees from the boot); Ctrl-C ends the recording and keeps what was captured. The file works
    with `estimate`, `replay`, `sim run` and `calibrate` (docs/calibration.md)."""
    from roadnode.usb.capture import capture as run

    stop = stop_on_signals()
    state = {"shown": -1.0}

    def progress(rec):
        """Show the recording's progress on stderr, once a second at most."""
        s = rec.seconds
        if not as_json and s - state["shown"] >= 1.0:
            state["shown"] = s
            gb = sum(len(b) for _, b in rec.gps)
            err.print(f"recording: {s:6.1f} s, {rec.samples} samples, {gb} GPS bytes"
                      + (f", {rec.lost_records} records lost" if rec.lost_records else ""), highlight=False)

    r = run(port, out_path, duration, progress=progress, stop=stop)
    if as_json:
        print_json(r)
        return
    click.echo(f"{r['file']}: {r['seconds']:.1f} s of drive ({r['samples']} IMU samples at {r['odr_hz']} Hz, "
               f"{r['gps_bytes']} GPS bytes, {r['length_m']:.0f} m); {r['ended']}")
    if r["lost_records"] or r["lost_samples"]:
        err.print(f"[yellow]warning:[/yellow] {r['lost_records']} stream records lost on the way, "
                  f"{r['lost_samples']} samples lost by the node: the file has gaps", highlight=False)
    if r["off_grid_batches"]:
        err.print(f"[yellow]warning:[/yellow] {r['off_grid_batches']} batches left the node off the 50 ms grid: "
                  "`roadnode estimate` on the file may differ slightly from the node's own segments", highlight=False)
