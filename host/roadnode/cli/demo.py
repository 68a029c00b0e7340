"""`roadnode demo`: the main job where there is no hardware.

Builds a drive scenario over an ISO 8608 road, runs the unchanged firmware on the simulated board
(MicroPython, ESP32 heap, register-level IMU, NMEA UART) over it, and prints the device's segments
beside the truth, plus the vitals; writes a PNG of the drive.
"""

from __future__ import annotations

import click

from roadnode.cli.common import err, out, print_json


@click.command()
@click.option("--iso-class", default="C", show_default=True, type=click.Choice(list("ABCDE"), case_sensitive=False))
@click.option("--length-m", type=float, default=1000.0, show_default=True)
@click.option("--speed-kmh", type=float, default=50.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default="out", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def demo(iso_class, length_m, speed_kmh, seed, out_dir, as_json):
    """Simulate a drive, show the true roughness per segment and write a plot."""
    from rich.progress import Progress

    from roadnode.scenario import make_scenario, save_scenario, summarize
    from roadnode.scenario.report import plot
    from roadnode.science.roads import parse_feature

    from roadnode.userfiles import output_dir, output_path

    od = output_dir(out_dir, "--out-dir", create=False)  # refuse a bad target before the drive is simulated
    if od.is_dir():
        for name in ("demo_scenario.npz", "demo.png"):
            output_path(od / name, "--out-dir")
    stages = ["road", "speed", "vehicle", "imu", "gps", "truth"]
    with Progress(console=err, transient=True, disable=not err.is_terminal) as prog:
        task = prog.add_task("building scenario", total=len(stages) + 1)
        sc = make_scenario(iso_class=iso_class, length_m=length_m, speed_kmh=speed_kmh, seed=seed,
                           features=[parse_feature(f"pothole@{length_m * 0.45:.0f}"), parse_feature(f"bump@{length_m * 0.8:.0f}")],
                           progress=lambda s: prog.update(task, completed=stages.index(s) + 1, description=s))
        prog.update(task, description="running the firmware on the simulated board")
        from roadnode.sim.offline import run_scenario

        # the vehicle then stands with the engine on: after stop_close_s the node closes the drive's
        # last segment (flagged partial) instead of leaving it open
        from roadnode.mpy.fwimport import fw

        run = run_scenario(sc, linger_s=fw("config").defaults()["stop_close_s"] + 5)
    od = output_dir(out_dir, "--out-dir")
    path = od / "demo_scenario.npz"
    save_scenario(sc, path)
    png = od / "demo.png"
    dev = {p["seg_index"]: p for p in run["packets"] if p["type"] == "segment"}
    events = [p for p in run["packets"] if p["type"] == "event"]
    plot(sc, png, device_segments=list(dev.values()), events=events)
    s = summarize(sc)
    hb = [p for p in run["packets"] if p["type"] == "status"]
    for i, seg in enumerate(s["segments"]):
        d = dev.get(i)
        seg["device"] = None if d is None else {k: d[k] for k in ("iri_m_per_km", "rms_g", "peak_g", "speed_kmh", "flags")}
    if as_json:
        print_json({**s, "scenario": str(path), "plot": str(png), "vitals": hb[-1] if hb else None,
                    "events": events})
        return
    from rich.table import Table

    t = Table(title=f"ISO 8608 class {iso_class.upper()} road, {length_m:.0f} m at {speed_kmh:g} km/h (seed {seed})")
    for c in ("start m", "end m", "true IRI m/km", "device IRI", "device RMS g", "peak g", "km/h", "flags"):
        t.add_column(c, justify="right")
    for seg in s["segments"]:
        d = seg["device"]
        if d is None:
            t.add_row(f"{seg['start_m']:.0f}", f"{seg['end_m']:.0f}", f"{seg['true_iri_m_per_km']:.2f}", "-", "-", "-", "-", "not reported")
            continue
        iri = "n/a" if d["iri_m_per_km"] is None else f"{d['iri_m_per_km']:.2f}"
        t.add_row(f"{seg['start_m']:.0f}", f"{seg['end_m']:.0f}", f"{seg['true_iri_m_per_km']:.2f}", iri,
                  f"{d['rms_g']:.2f}", f"{d['peak_g']:.1f}", str(d["speed_kmh"]), ",".join(d["flags"]))
    out.print(t)
    for e in events:
        out.print(f"event: {e['kind']} at {e['dist_m']} m ({e['peak_g']:.1f} g at {e['speed_kmh']} km/h)")
    if hb:
        v = hb[-1]
        out.print(f"vitals: fw {v['fw_version']}, reset {v['reset_reason']}, uptime {v['uptime_s']} s, free heap "
                  f"{v['free_heap']} B (min {v['min_free_heap']}), GPS fix {v['gps_fix']} sats {v['gps_sats']}, "
                  f"FIFO overflows {v['fifo_overflows']}, I2C errors {v['i2c_errors']}, packets {v['packets_sent']}")
    out.print(f"IMU {s['imu']['part']} {s['imu']['odr_hz']:g} Hz: {s['imu']['samples']} samples; "
              f"GPS: {s['gps']['sentences']} NMEA sentences; features: "
              + ", ".join(f"{f['kind']} at {f['position_m']:.0f} m" for f in s["features"]))
    out.print(f"scenario: {path}\nplot: {png}")
