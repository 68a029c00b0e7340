"""`roadnode sim`: the simulated board."""

from __future__ import annotations

import signal
import sys

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
@click.option("--broker", default=None, metavar="HOST:PORT",
              help="MQTT broker the node sends to (its config: uplink=mqtt, mqtt_host/port, the AP's WiFi).")
@click.option("--wifi", default=None, metavar="SSID[:KEY]",
              help="The access point around the board (default depot:roadnode).")
@click.option("--net-outage", "net_outages", multiple=True, metavar="T0:T1[:KIND]",
              help="Network outage in board seconds since power-on; KIND: assoc (default), reset, "
                   "unreachable, refused, blackhole.")
@click.option("--json", "as_json", is_flag=True, help="First line: {\"port\": ...} as JSON.")
def serve(board, scenario_file, flash_dir, baud, fast, faults, deploy, sets, power_cut, broker, wifi, net_outages,
          as_json):
    """Start a board and keep it running until interrupted; the first line printed is the port."""
    from roadnode.nodeconfig import parse_settings
    from roadnode.sim.serve import ServedBoard

    settings = parse_settings(sets)
    with ServedBoard(board, scenario_file, flash_dir, baud, realtime=not fast, faults=faults,
                     net_outages=net_outages, wifi=wifi) as sb:
        info = sb.info()
        if as_json:
            print_json(info)
        else:
            click.echo(info["port"])
            usb = " (native USB: the port goes away and comes back at each reset)" if info["usb"] == "native" else ""
            err.print(f"simulated {board} on {info['port']}{usb} (flash in {info['flash']}); Ctrl-C to stop")
        sys.stdout.flush()
        note = sb.prepare(deploy, settings, broker)
        if note:
            err.print(note)
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        try:
            sb.run(lambda: bool(stop), power_cut, on_cut=lambda: err.print("power cut"))
        except KeyboardInterrupt:
            pass


@sim.command("run")
@click.argument("scenario_file", metavar="SCENARIO")
@click.option("--board", default=None, help="Board definition (default: the one with the scenario's IMU).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Node config for the run (repeatable).")
@click.option("--fault", "faults", multiple=True, metavar="NAME@T[:DUR]",
              help="imu_nack@T:DUR, imu_stuck@T, gps_silent@T:DUR (seconds of board time).")
@click.option("--uplink", type=click.Choice(["console", "mqtt", "none"]), default=None,
              help="Where the node sends its packets (mqtt: needs --broker; default: the config's).")
@click.option("--broker", default=None, metavar="HOST:PORT", help="The MQTT broker for --uplink mqtt.")
@click.option("--wifi", default=None, metavar="SSID[:KEY]",
              help="The access point around the board (default depot:roadnode); the node gets its credentials.")
@click.option("--net-outage", "net_outages", multiple=True, metavar="T0:T1[:KIND]",
              help="Network outage in board seconds; KIND: assoc (default: the AP goes), reset, unreachable, "
                   "refused, blackhole (repeatable).")
@click.option("--power-cut", "power_cuts", multiple=True, type=float, metavar="T",
              help="The power fails at board second T; the node boots again while the drive goes on (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet, then a summary.")
def run(scenario_file, board, sets, faults, uplink, broker, wifi, net_outages, power_cuts, as_json):
    """A fresh simulated board runs SCENARIO to its end in virtual time; its packets are decoded
    and its segments compared with the scenario's true IRI. With --uplink mqtt the node sends
    through the simulated WiFi and real sockets to the broker (the console then carries none)."""
    from roadnode.errors import InputError
    from roadnode.nodeconfig import parse_settings
    from roadnode.accuracy.report import score
    from roadnode.scenario import load_scenario
    from roadnode.sim.faults import parse_fault, parse_net_outage
    from roadnode.sim.offline import run_scenario
    from roadnode.sim.serve import mqtt_settings, wifi_aps

    sc = load_scenario(scenario_file)
    fl = {}
    for f in faults:
        fl.update(parse_fault(f))
    if net_outages:
        fl["net"] = [parse_net_outage(o) for o in net_outages]
    settings = parse_settings(sets)
    aps = wifi_aps(wifi)
    if uplink == "mqtt" and not broker:
        raise InputError("--uplink mqtt needs --broker HOST:PORT")
    if broker:
        if uplink not in (None, "mqtt"):
            raise InputError(f"--broker is for --uplink mqtt, not {uplink}")
        settings = {**mqtt_settings(broker, aps), **settings}
    elif uplink:
        settings.setdefault("uplink", uplink)
    r = run_scenario(sc, board=board, settings=settings, faults=fl or None, power_cuts=power_cuts, wifi=aps)
    pk = r["packets"]
    segs = [p for p in pk if p["type"] == "segment"]
    summ = score(segs, sc.segments)
    hb = [p for p in pk if p["type"] == "status"]
    summ.update({"packets": len(pk), "events": sum(p["type"] == "event" for p in pk), "heartbeats": len(hb),
                 "bad_packets": sum(p["type"] == "error" for p in pk), "boots": r["boots"],
                 "power_cuts": r["cuts"], "net": r["net"]})
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
    if r["cuts"]:
        out.print(f"{r['boots']} boots: power cut at {', '.join(f'{t:.1f}' for t in r['cuts'])} s")
    if r["net"] and r["net"].get("connects"):
        n = r["net"]
        out.print(f"network: {n['connects']} connects ({n['refused']} failed), {n['dropped']} connections lost, "
                  f"{n['bytes_out']} B out, {n['bytes_in']} B in")
    if summ["scored"]:
        out.print(f"{summ['scored']} segments scored: median |error| {summ['median_abs_err_pct']:.1f}%, "
                  f"p90 {summ['p90_abs_err_pct']:.1f}%")
