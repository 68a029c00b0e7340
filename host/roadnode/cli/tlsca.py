"""`roadnode tls-ca`: put the broker's CA on a node (or remove it), for `mqtt_tls on` (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import click

from roadnode.cli.common import out, print_json, warn


@click.command("tls-ca")
@click.option("--port", required=True, help="Serial port of the node.")
@click.option("--ca", "ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The CA certificate that signed the broker's (PEM or DER); stored on the node as DER.")
@click.option("--remove", is_flag=True, help="Remove the node's CA (a node with mqtt_tls on then cannot connect).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def tls_ca(port, ca, remove, as_json):
    """Store the broker's CA on the node (kept across firmware flashes); the node restarts."""
    from roadnode.usb.tlsca import install_ca, load_ca
    from roadnode.errors import InputError

    if (ca is None) == (not remove):
        raise InputError("give --ca FILE or --remove")
    der, info = (None, {}) if remove else load_ca(ca)
    res = install_ca(port, der)
    res.update(info)
    if as_json:
        print_json(res)
        return
    if res["action"] == "written":
        out.print(f"{port}: CA {info['subject']} ({info['bytes']} B, sha256 {res['sha256'][:16]}...) stored as "
            f"{res['path']}; the node restarted")
    else:
        out.print(f"{port}: {'CA removed' if res['action'] == 'removed' else 'no CA was stored'}; the node restarted")
    if not remove and res.get("mqtt_tls") != "on":
        warn("the node's mqtt_tls is not on: `roadnode config set --port PORT mqtt_tls=on` to use the CA")
