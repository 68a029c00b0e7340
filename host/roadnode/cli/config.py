"""`roadnode config`: read and change a running node's configuration over its console.

Values are checked with the firmware's own schema (rnfw.config) before anything is sent; the node
checks again, saves atomically and restarts to apply. A refused value changes nothing (exit 2).
"""

from __future__ import annotations

import click

from roadnode.cli.common import out, print_json, warn

_port = click.option("--port", required=True, help="Serial port of the node.")
_json = click.option("--json", "as_json", is_flag=True, help="JSON output.")
_secrets = click.option("--show-secrets", is_flag=True, help="Print passwords instead of masking them.")

# values a screen or a log should not show: replaced by MASK (an empty one stays empty: "none set")
SECRET_KEYS = ("wifi_password", "mqtt_password")
MASK = "********"


def masked(cfg: dict, reveal: bool = False) -> dict:
    """The config to show, secrets masked unless ``reveal``."""
    if reveal:
        return dict(cfg)
    return {k: (MASK if k in SECRET_KEYS and v else v) for k, v in cfg.items()}


def fallback(link) -> str | None:
    """Why the node runs on a fallback config (its /config.json and maybe its backup unreadable),
    or None when its config is its own. The status flag says whether; `ping` says why."""
    if not link.status()["config_fallback"]:
        return None
    return link.ping().get("config_status") or "fallback (the node's firmware does not say why)"


def warn_fallback(why: str | None) -> None:
    """Warn that the node runs on a fallback config (``why`` is None: it does not)."""
    if why:
        warn(f"the node runs on a fallback config, not its saved one ({why}); "
             "repair: `roadnode config set`/`reset` or `roadnode flash` (the device id is kept)")


def _show(cfg: dict, as_json: bool, title: str, why: str | None = None):
    from roadnode.mpy.fwimport import fw

    C = fw("config")
    warn_fallback(why)
    if as_json:
        # "fallback" / "config_status" beside the keys: not config keys (docs/config.md)
        print_json({**cfg, "fallback": why is not None, "config_status": why or "ok"})
        return
    from rich.table import Table

    d = C.defaults()
    sch = C.schema()
    t = Table(title=title + (" - FALLBACK, not the node's saved config" if why else ""))
    for c in ("key", "value", "default", "unit"):
        t.add_column(c)
    order = [k for k in C.keys() if k in cfg] + [k for k in cfg if k not in C.keys()]  # schema order
    for k in order:
        v = cfg[k]
        mark = "" if v == d.get(k) else "[bold]"
        t.add_row(k, f"{mark}{v}", str(d.get(k, "")), sch[k][4] if k in sch else "")
    out.print(t)


@click.group()
def config():
    """Show, get, set or reset a node's configuration (see docs/config.md for the keys)."""


@config.command()
@_port
@_json
@_secrets
def show(port, as_json, show_secrets):
    """Every key with its value (values that differ from the default in bold; passwords masked)."""
    from roadnode.usb.link import NodeLink

    with NodeLink(port) as link:
        cfg = link.config_get()
        why = fallback(link)
    _show(masked(cfg, show_secrets), as_json, f"config of the node on {port}", why)


@config.command()
@click.argument("key")
@_port
@_json
@_secrets
def get(key, port, as_json, show_secrets):
    """One key's value."""
    from roadnode.usb.link import NodeLink
    from roadnode.errors import InputError

    with NodeLink(port) as link:
        cfg = link.config_get()
        why = fallback(link)
    if key not in cfg:
        raise InputError(f"unknown key {key!r} (known: {', '.join(cfg)})")
    warn_fallback(why)
    cfg = masked(cfg, show_secrets)
    if as_json:
        print_json({key: cfg[key]})
    else:
        out.print(cfg[key])


@config.command(name="set")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@_port
@_json
def set_(settings, port, as_json):
    """Change keys (all or none): checked, saved on the node, applied by a restart; kept across resets."""
    from roadnode.usb.link import NodeLink
    from roadnode.nodeconfig import parse_settings

    changes = parse_settings(settings)
    with NodeLink(port) as link:
        cfg = link.config_set(changes)
    changes, cfg = masked(changes), masked(cfg)
    if as_json:
        print_json({"changed": changes, "config": cfg})
    else:
        out.print(f"set {', '.join(f'{k}={v}' for k, v in changes.items())}: saved and applied (the node restarted)")


@config.command()
@_port
@_json
def reset(port, as_json):
    """Back to the defaults (the device id is kept)."""
    from roadnode.usb.link import NodeLink

    with NodeLink(port) as link:
        cfg = link.config_reset()
    cfg = masked(cfg)
    if as_json:
        print_json(cfg)
    else:
        out.print(f"config reset to the defaults (device id {cfg['device_id']} kept); the node restarted")
