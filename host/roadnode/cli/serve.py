"""`roadnode serve`: the road-condition map and the fleet dashboard (docs/dashboard.md)."""

from __future__ import annotations

import signal

import click

from roadnode.cli.common import err, print_json


@click.command()
@click.option("--db", "db_url", metavar="URL", help="sqlite:///PATH or postgresql://... "
              "(default: $ROADNODE_DB, else the user's data folder's fleet.db).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (the default answers "
              "this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--tiles", metavar="URL", help="A background tile layer, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png "
              "(default none: the shipped road network is drawn instead, and nothing is fetched from the web).")
@click.option("--refresh", type=click.FloatRange(min=0.5), default=5.0, show_default=True, metavar="S",
              help="How often the fleet page refreshes itself.")
@click.option("--json", "as_json", is_flag=True, help='First line {"url", "db"} on stdout.')
def serve(db_url, host, port, tiles, refresh, as_json):
    """Serve the map of road condition (/), the fleet table (/fleet), a page per device and JSON
    under /api/ from the collector's database, until SIGINT or SIGTERM.

    Exit 0 on SIGTERM, 130 on SIGINT; 2: bad option or no database; 3: the port is in use or the
    database cannot be opened.
    """
    from pathlib import Path

    from roadnode.errors import InputError
    from roadnode.fleet.store import Store, default_db_url, display_url, parse_db_url
    from roadnode.web.app import create_app
    from roadnode.web.server import Server

    url = db_url or default_db_url()
    kind, where = parse_db_url(url)
    if kind == "sqlite" and not Path(where).expanduser().is_file():
        raise InputError(f"no collector database at {where} (give --db, or run `roadnode collect` first)")
    if tiles is not None and not all(k in tiles for k in ("{z}", "{x}", "{y}")):
        raise InputError(f"--tiles {tiles!r}: expected a URL template with {{z}}, {{x}} and {{y}}")
    store = Store(url)
    try:
        srv = Server(create_app(store, tiles=tiles, refresh_s=refresh), host, port)
        if as_json:
            print_json({"url": srv.url, "db": display_url(url)})
        else:
            click.echo(f"roadnode serve: {srv.url} (database {display_url(url)}); Ctrl-C stops", err=False)
        got = srv.run()
    finally:
        store.close()
    if not as_json:
        err.print("stopped")
    if got == signal.SIGINT:
        raise SystemExit(130)
