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
@click.option("--json", "as_json", is_flag=True, help="First line: {\"port\": ...} as JSON.")
def serve(board, scenario_file, flash_dir, baud, fast, as_json):
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
    b = SimBoard(board=board, flash_dir=flash_dir, tape_dir=tape, gps_baud=gps_baud, baud=baud,
                 realtime=not fast).start()
    if as_json:
        print_json({"port": b.port, "board": board, "flash": str(b.flash_dir), "baud": baud or None})
    else:
        click.echo(b.port)
        err.print(f"simulated {board} on {b.port} (flash in {b.flash_dir}); Ctrl-C to stop")
    sys.stdout.flush()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
        if tmp:
            tmp.cleanup()
