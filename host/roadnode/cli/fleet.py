"""`roadnode fleet`: questions to the collector's database (docs/fleet.md)."""

from __future__ import annotations

import json
import time

import click

from roadnode.cli.common import out, print_json

DB_HELP = "sqlite:///PATH or postgresql://... (default: $ROADNODE_DB, else the user's data folder's fleet.db)."


def _open(db_url):
    from pathlib import Path

    from roadnode.errors import InputError
    from roadnode.fleet.store import Store, default_db_url, parse_db_url

    url = db_url or default_db_url()
    kind, where = parse_db_url(url)
    if kind == "sqlite" and not Path(where).expanduser().is_file():
        raise InputError(f"no collector database at {where} (give --db, or run `roadnode collect` first)")
    return Store(url)


def _rows(db_url, query, as_json: bool) -> list[dict]:
    """query(store) on the database, closed again; with --json the rows printed as JSON lines."""
    store = _open(db_url)
    try:
        rows = query(store)
    finally:
        store.close()
    if as_json:
        for r in rows:
            print_json(r)
    return rows


@click.group()
def fleet():
    """How every device is, what it measured, how every road is (from `roadnode collect`'s database)."""


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--at", "at", metavar="TIME", help="Judge the states as of this time (ISO 8601 or Unix s; default now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per device.")
def status(db_url, at, as_json):
    """One row per device: online / unknown / offline and its vitals, problems first."""
    from roadnode.fleet.fleet import fleet_status, parse_time

    now = parse_time(at) if at else time.time()
    rows = _rows(db_url, lambda store: fleet_status(store, now), as_json)
    if not as_json:
        out.print(status_table(rows))


def _refused(r: dict) -> str:
    """The seal's refusals (docs/security.md): auth failures, replays, rate-limited."""
    parts = [f"{r.get(k, 0)} {n}" for k, n in (("auth_failures", "auth"), ("replays", "replay"),
                                                ("rate_limited", "limited")) if r.get(k)]
    return ", ".join(parts)


def status_table(rows: list[dict]):
    """The fleet table (rich), problems first as fleet_status orders them (also `roadnode demo`'s)."""
    from rich.table import Table

    from roadnode.cli.status import self_cal_text

    t = Table(title=f"{len(rows)} devices")
    for c in ("device", "state", "last seen", "fw", "uptime s", "reset", "unexp. reboots", "min heap B", "queue",
              "GPS fix", "IMU", "self-cal", "segments", "last segment", "refused", "problems"):
        t.add_column(c)
    style = {"offline": "red", "unknown": "yellow", "online": "green"}
    for r in rows:
        q = "" if r["queue_depth"] is None else f"{r['queue_depth']}{' ↑' if r['queue_growing'] else ''}"
        t.add_row(str(r["device_id"]), f"[{style[r['state']]}]{r['state']}[/]", r["last_seen"] or "never",
                  r["fw_version"] or "", "" if r["uptime_s"] is None else str(r["uptime_s"]), r["reset_reason"] or "",
                  "" if r["unexpected_reboots"] is None else str(r["unexpected_reboots"]),
                  "" if r["min_free_heap"] is None else str(r["min_free_heap"]), q,
                  "" if r["gps_fix"] is None else str(r["gps_fix"]), "FAULT" if r["imu_fault"] else "ok",
                  self_cal_text(r.get("self_cal")), str(r["segments_total"]), r["last_segment_at"] or "",
                  _refused(r), ", ".join(r["problems"]))
    return t


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--device", type=click.IntRange(0, (1 << 24) - 1), metavar="ID", help="Only this device.")
@click.option("--since", metavar="T", help="Only segments received since T (ISO 8601, Unix s, or an age: 2h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per segment.")
def segments(db_url, device, since, as_json):
    """Every stored segment, in each device's order; `time` is when the collector received it."""
    from roadnode.fleet.fleet import parse_time, segment_records

    rows = _rows(db_url, lambda store: segment_records(store, device, parse_time(since) if since else None), as_json)
    if as_json:
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} segments")
    for c in ("device", "seq", "start m", "end m", "IRI m/km", "km/h", "lat", "lon", "time", "flags"):
        t.add_column(c, justify="right")
    for r in rows:
        iri = r["iri_m_per_km"]
        t.add_row(str(r["device_id"]), str(r["seq"]), f"{r['start_m']:.0f}", f"{r['end_m']:.0f}",
                  "n/a" if iri is None else f"{iri:.2f}", str(r["speed_kmh"]),
                  "" if r["lat"] is None else f"{r['lat']:.5f}", "" if r["lon"] is None else f"{r['lon']:.5f}",
                  r["time"], ",".join(r["flags"]))
    out.print(t)


@fleet.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--since", metavar="T", help="Only segments received since T (ISO 8601, Unix s, or an age: 30d).")
@click.option("--res", type=click.IntRange(7, 13), default=10, show_default=True,
              help="H3 resolution of a stretch (10: hexagons ~130 m across; 11: ~50 m).")
@click.option("--geojson", "geojson_file", metavar="FILE", help="Also write the stretches as a GeoJSON FeatureCollection.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per stretch, then a summary line.")
def roads(db_url, since, res, geojson_file, as_json):
    """Road condition per ~100 m stretch and direction over all passes: median IRI, quartiles, passes,
    vehicles, confidence (none below 3 passes). Flagged segments are left out and counted."""
    from roadnode.fleet.fleet import parse_time
    from roadnode.fleet.roads import geojson, road_stretches
    from roadnode.userfiles import atomic_output, output_path

    if geojson_file:
        output_path(geojson_file, "GeoJSON output")
    store = _open(db_url)
    try:
        segs = store.segments(since=parse_time(since) if since else None)
    finally:
        store.close()
    r = road_stretches(segs, res=res)
    if geojson_file:
        with atomic_output(geojson_file, "GeoJSON output") as f:
            f.write(json.dumps(geojson(r)).encode())
    summary = {"type": "summary", "stretches": len(r["stretches"]), "segments": r["segments"],
               "left_out": r["left_out"], "resolution": res}
    if as_json:
        for s in r["stretches"]:
            print_json({"type": "stretch", **s})
        print_json(summary)
        return
    from rich.table import Table

    t = Table(title=f"{len(r['stretches'])} stretches from {r['segments']} segments")
    for c in ("cell", "dir", "median IRI", "p25", "p75", "passes", "vehicles", "last pass", "confidence", "from", "to"):
        t.add_column(c)
    for s in r["stretches"]:
        t.add_row(s["cell"], s["direction"], f"{s['median_iri_m_per_km']:.2f}", f"{s['p25']:.2f}", f"{s['p75']:.2f}",
                  str(s["n_passes"]), str(s["n_vehicles"]), s["last_pass"] or "", s["confidence"],
                  f"{s['start'][0]:.5f},{s['start'][1]:.5f}", f"{s['end'][0]:.5f},{s['end'][1]:.5f}")
    out.print(t)
    lo = r["left_out"]
    out.print(f"left out: {lo['flagged']} flagged, {lo['no_iri']} without IRI, {lo['no_position']} without "
              f"position, {lo['no_heading']} without heading")


# ---- keys (docs/security.md) -------------------------------------------------------------------------
def _store(db_url):
    """The key store (created if need be: keys are registered before the first collect)."""
    from roadnode.fleet.store import Store, default_db_url

    return Store(db_url or default_db_url())


def read_key_file(path: str) -> bytes:
    """A key file: 16 raw bytes (key.bin, as on the node) or 32 hexadecimal digits."""
    from roadnode.errors import InputError
    from roadnode.fleet.keys import KEY_LEN, parse_key_hex

    data = open(path, "rb").read()
    if len(data) == KEY_LEN:
        return data
    try:
        return parse_key_hex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a key file ({e})") from None


def write_key_file(path: str, key: bytes) -> None:
    """Write a key to a file only its owner can read (mode 0600 from creation)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


@fleet.group()
def keys():
    """The devices' keys: register, list, revoke, export (the keys themselves are never logged)."""


_DEV = click.option("--device", "device", type=click.IntRange(0, (1 << 24) - 1), required=True, metavar="ID")


@keys.command("add")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@_DEV
@click.option("--key-hex", metavar="HEX", help="The key (32 hex digits); default: a new random one, printed once.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="The key from this file (16 raw bytes, e.g. the node's key.bin, or 32 hex digits).")
@click.option("--replace", is_flag=True, help="Re-key a device that has a key (the old one is refused from now on).")
@click.option("--json", "as_json", is_flag=True)
def keys_add(db_url, device, key_hex, key_file, replace, as_json):
    """Register a device's key. A generated key is printed once: put it on the node (`roadnode flash`
    does all of this itself)."""
    from roadnode.errors import InputError
    from roadnode.fleet import keys as K

    if key_hex and key_file:
        raise InputError("give --key-hex or --key-file, not both")
    try:
        key = K.parse_key_hex(key_hex) if key_hex else read_key_file(key_file) if key_file else None
    except ValueError as e:
        raise InputError(f"--key-hex: {e}") from None
    new = key is None
    key = key or K.generate()
    store = _store(db_url)
    try:
        store.add_key(device, key, replace=replace)
    finally:
        store.close()
    r = {"device_id": device, "state": "active", "generated": new}
    if new:
        r["key_hex"] = key.hex()
    if as_json:
        print_json(r)
    else:
        click.echo(f"device {device}: key registered" + (f" (new key, shown once): {key.hex()}" if new else ""))


@keys.command("list")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per device.")
def keys_list(db_url, as_json):
    """The registered devices, their key's state and last counter (not the keys)."""
    from roadnode.fleet.fleet import iso

    rows = _rows(db_url, lambda s: [{**r, "created_at": iso(r["created_at"]), "revoked_at": iso(r["revoked_at"])}
                                    for r in s.list_keys()], as_json)
    if not as_json:
        for r in rows:
            click.echo(f"{r['device_id']:>8}  {r['state']:<8} created {r['created_at']}"
                       + (f"  revoked {r['revoked_at']}" if r["revoked_at"] else "") + f"  last counter {r['last_counter']}")


@keys.command("revoke")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@_DEV
@click.option("--json", "as_json", is_flag=True)
def keys_revoke(db_url, device, as_json):
    """Refuse the device's messages from the next one on (re-key it with `keys add --replace`)."""
    from roadnode.errors import InputError

    ok = _rows(db_url, lambda s: s.revoke_key(device), False)
    if not ok:
        raise InputError(f"device {device} has no key")
    if as_json:
        print_json({"device_id": device, "state": "revoked"})
    else:
        click.echo(f"device {device}: key revoked")


@keys.command("export")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@_DEV
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the key (mode 0600).")
@click.option("--format", "fmt", type=click.Choice(["bin", "hex"]), default="bin", show_default=True,
              help="bin: the node's key.bin (16 bytes); hex: 32 hex digits.")
def keys_export(db_url, device, out_file, fmt):
    """Write a device's key to a file (for its node's flash, or another tool)."""
    from roadnode.errors import InputError

    key = _rows(db_url, lambda s: s.get_key(device), False)
    if key is None:
        raise InputError(f"device {device} has no key")
    write_key_file(out_file, key if fmt == "bin" else key.hex().encode())
    click.echo(f"device {device}: key written to {out_file}")


@fleet.command("broker-config")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for `passwd` and `acl` (Mosquitto's password_file and acl_file).")
@click.option("--collector-user", default="roadnode-collector", show_default=True, metavar="NAME")
@click.option("--collector-password-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="The collector's password (read; made and written here, mode 0600, when the file does not exist).")
@click.option("--json", "as_json", is_flag=True)
def broker_config(db_url, out_dir, collector_user, collector_password_file, as_json):
    """Mosquitto's password file and ACL: each device (user = its id, password from its key) may write
    only its own up/status topics and read only its own acks; the collector reads them all."""
    import os
    import secrets
    from pathlib import Path

    from roadnode.fleet import brokerconf

    keys_ = _rows(db_url, lambda s: {d: k for d, (k, st, _) in s.load_keys().items() if st == "active"}, False)
    pf = Path(collector_password_file or Path(out_dir) / "collector.password")
    if pf.exists():
        pw = pf.read_text().strip()
    else:
        pw = secrets.token_hex(16)
        pf.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(pf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pw + "\n")
    r = brokerconf.write(Path(out_dir), keys_, collector_user, pw)
    r.update(collector_user=collector_user, collector_password_file=str(pf))
    if as_json:
        print_json(r)
    else:
        click.echo(f"{r['passwd']} and {r['acl']}: {r['devices']} devices and {collector_user} "
                   f"(password in {pf}); in mosquitto.conf: password_file {r['passwd']} / acl_file {r['acl']}")
