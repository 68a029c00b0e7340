"""`roadnode status`: a node's vitals, asked for while it keeps measuring."""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json, warn


def _uplink_rows(d: dict) -> list[tuple[str, str]]:
    """The WiFi/MQTT uplink's state (nodes before 0.4 do not report it: no rows)."""
    if d.get("mqtt") is None:
        return []
    if d["mqtt"] == "off":
        return [("uplink", "console (no WiFi/MQTT)")]
    ack = d.get("last_ack_s")
    return [
        ("WiFi / MQTT", f"{d['wifi']} / {d['mqtt']}, {d['reconnects']} reconnects"),
        ("queue", f"{d['queue_depth']} packets waiting, {d['queue_dropped']} dropped (full)"
         + (f", {d['queue_torn']} torn at boot" if d.get("queue_torn") else "")),
        ("last ack", "none since boot" if ack is None else f"{ack} s ago"),
    ]


def self_cal_text(sc: dict | None) -> str:
    """A heartbeat's self-calibration in a few words, for a table cell (`fleet status`, `demo`):
    "identified 11.8 Hz", "learning (12 windows)", "off"; "" from nodes before it. The long form is
    _self_cal_rows'."""
    if not sc:
        return ""
    if sc.get("wheel_hop_hz") is None:
        return f"learning ({sc['windows']} windows)" if sc["state"] == "learning" else sc["state"]
    return f"{sc['state']} {sc['wheel_hop_hz']:g} Hz"


def _self_cal_rows(d: dict) -> list[tuple[str, str]]:
    """Self-calibration's state and the settings in force (nodes before it: no row)."""
    sc = d.get("self_cal")
    if sc is None:
        return []
    if sc["state"] == "off":
        return [("self-calibration", "off (the configured settings)")]
    if sc["wheel_hop_hz"] is None:
        return [("self-calibration", f"learning ({sc['windows']} windows)")]
    return [("self-calibration", f"{sc['state']} ({sc['windows']} windows): wheel hop {sc['wheel_hop_hz']} Hz, "
             f"damping {sc['wheel_damping']}, body {sc['body_hz']} Hz, mass ratio {sc['mass_ratio']}")]


@click.command()
@click.option("--port", required=True, help="Serial port of the node.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the vitals' field names.")
def status(port, as_json):
    """Ask a running node for its vitals (no restart, no gap in its samples)."""
    from roadnode.usb.link import NodeLink

    with NodeLink(port) as link:
        d = link.status()
        why = (link.ping().get("config_status") or "fallback") if d["config_fallback"] else None
    d.pop("payload", None)
    d["config_status"] = why or "ok"
    if why:
        warn(f"the node runs on a fallback config, not its saved one ({why}); "
             "see `roadnode config show`, repair with `roadnode config set`/`reset` or `roadnode flash`")
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
        ("supply", f"{d['supply_mv']} mV" if d["supply_mv"] else (
            "unknown (ADC reading at its rail: check the divider)" if "supply_at_rail" in d["flags"] else "not measured")),
        ("start", f"SAFE MODE ({d.get('boot_error')}): repair with `roadnode flash` / `config`"
         if "safe_mode" in d["flags"] else (f"normal (the previous boot failed: {d['boot_error']})"
                                            if d.get("boot_error") not in (None, "none") else "normal")),
        ("config", f"FALLBACK, not the saved config: {why}" if why else "ok (its saved config)"),
        ("heartbeat", f"every {d['heartbeat_s']} s"), ("bad console frames", d.get("console_bad_frames")),
        ("watchdog", "armed" if "wdt_armed" in d["flags"] else "not armed"),
        *_uplink_rows(d), *_self_cal_rows(d),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    out.print(t)
