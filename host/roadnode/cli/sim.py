"""`roadnode sim`: the simulated board."""

from __future__ import annotations

import signal
import sys
import time

import click

from roadnode.cli.common import err, print_json


@click.group()
def sim():
    """The simulated board: the real firmware on MicroPython behind a serial port."""


@sim.command("serve")
@click.option("--board", default="esp32-devkitc-mpu6050-neo6m", show_default=True, help="Board definition (boards/).")
@click.option("--scenario", "scenario_file", type=click.Path(dir_okay=False), help="Drive whose IMU/GPS streams the hardware plays.")
@click.option("--flash", "flash_dir", type=click.Path(file_okay=False), help="Folder holding the flash image (kept across runs).")
@click.option("--baud", type=int, default=0, help="Pace the port like a USB-UART bridge at this baud (default: unpaced).")
@click.option("--fast/--realtime", default=True, help="Virtual time (default) or wall-clock time.")
@click.option("--fault", "faults", multiple=True, metavar="NAME@T[:DUR]",
              help="imu_nack@T:DUR, imu_stuck@T, gps_silent@T:DUR (seconds of board time).")
@click.option("--deploy", is_flag=True, help="Put the current firmware on the board first (then main.py runs).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Node config written with --deploy.")
@click.option("--power-cut", "power_cut", type=float, default=None, metavar="SECONDS",
              help="Cut the power this many wall-clock seconds after start (it then powers up again).")
@click.option("--json", "as_json", is_flag=True, help="First line: {\"port\": ...} as JSON.")
def serve(board, scenario_file, flash_dir, baud, fast, faults, deploy, sets, power_cut, as_json):
    """Start a board and keep it running until interrupted; the first line printed is the port."""
    import tempfile
    from pathlib import Path

    from roadnode.sim.board import SimBoard

    tape = None
    gps_baud = 9600
    tmp = None
    if scenario_file:
        from roadnode.scenario import load_scenario
        from roadnode.sim.tape import write_tapes as write_sim_tapes

        sc = load_scenario(scenario_file)
        tmp = tempfile.TemporaryDirectory(prefix="roadnode-tape-")
        write_sim_tapes(sc, Path(tmp.name))
        tape = tmp.name
        gps_baud = sc.meta["gps"]["baud"]
    from roadnode.sim.offline import parse_fault

    fl = {}
    for f in faults:
        fl.update(parse_fault(f))
    b = SimBoard(board=board, flash_dir=flash_dir, tape_dir=tape, gps_baud=gps_baud, baud=baud,
                 realtime=not fast, faults=fl).start()
    if as_json:
        # native USB: "port" is a stable by-id style link (the tty behind it changes at each reset)
        print_json({"port": b.port, "board": board, "flash": str(b.flash_dir), "baud": baud or None, "usb": b.usb})
    else:
        click.echo(b.port)
        usb = " (native USB: the port goes away and comes back at each reset)" if b.usb == "native" else ""
        err.print(f"simulated {board} on {b.port}{usb} (flash in {b.flash_dir}); Ctrl-C to stop")
    sys.stdout.flush()
    if deploy:
        # as a technician would: `roadnode flash`, then `roadnode config set`
        from roadnode.board.flash import flash_board
        from roadnode.board.link import NodeLink
        from roadnode.errors import DeviceError
        from roadnode.nodeconfig import parse_settings

        settings = parse_settings(sets)
        if tape and "gps_baud" not in settings:
            settings["gps_baud"] = gps_baud  # the recorded GPS talks at the scenario's baud
        time.sleep(0.3)
        r = flash_board(b.port, device_id=settings.pop("device_id", None))
        if not r.ok:
            b.stop()
            raise DeviceError(f"deploy failed: {r.error}")
        if settings:
            with NodeLink(b.port) as link:
                link.config_set(settings)
        err.print(f"firmware {r.version} flashed ({r.board}); the node is running")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    t0 = time.monotonic()
    try:
        while not stop:
            time.sleep(0.1)
            if power_cut is not None and time.monotonic() - t0 >= power_cut:
                err.print("power cut")
                b.power_cut()
                power_cut = None
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
        if tmp:
            tmp.cleanup()


@sim.command("run")
@click.argument("scenario_file", metavar="SCENARIO")
@click.option("--board", default=None, help="Board definition (default: the one with the scenario's IMU).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Node config for the run (repeatable).")
@click.option("--fault", "faults", multiple=True, metavar="NAME@T[:DUR]",
              help="imu_nack@T:DUR, imu_stuck@T, gps_silent@T:DUR (seconds of board time).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet, then a summary.")
def run(scenario_file, board, sets, faults, as_json):
    """A fresh simulated board runs SCENARIO to its end in virtual time; its packets are decoded
    and its segments compared with the scenario's true IRI."""
    from roadnode.nodeconfig import parse_settings
    from roadnode.estimator.report import score
    from roadnode.scenario import load_scenario
    from roadnode.sim.offline import parse_fault, run_scenario

    sc = load_scenario(scenario_file)
    fl = {}
    for f in faults:
        fl.update(parse_fault(f))
    r = run_scenario(sc, board=board, settings=parse_settings(sets), faults=fl or None)
    pk = r["packets"]
    segs = [p for p in pk if p["type"] == "segment"]
    summ = score(segs, sc.segments)
    hb = [p for p in pk if p["type"] == "status"]
    summ.update({"packets": len(pk), "events": sum(p["type"] == "event" for p in pk), "heartbeats": len(hb),
                 "bad_packets": sum(p["type"] == "error" for p in pk)})
    if as_json:
        for p in pk:
            print_json(p)
        print_json(summ)
        return
    from roadnode.cli.common import out

    for p in pk:
        if p["type"] == "segment":
            iri = "n/a" if p["iri_m_per_km"] is None else f"{p['iri_m_per_km']:.2f}"
            out.print(f"segment {p['start_m']:>5}-{p['end_m']:<5} m  IRI {iri:>6}  {','.join(p['flags'])}")
        elif p["type"] == "event":
            out.print(f"event   {p['kind']} at {p['dist_m']} m, {p['peak_g']:.1f} g")
    if hb:
        v = hb[-1]
        out.print(f"vitals: uptime {v['uptime_s']} s, reset {v['reset_reason']}, free heap {v['free_heap']} B, "
                  f"I2C errors {v['i2c_errors']}, FIFO overflows {v['fifo_overflows']}, GPS fix {v['gps_fix']}")
    if summ["scored"]:
        out.print(f"{summ['scored']} segments scored: median |error| {summ['median_abs_err_pct']:.1f}%, "
                  f"p90 {summ['p90_abs_err_pct']:.1f}%")
