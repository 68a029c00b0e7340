"""`roadnode collect`: the collector service (docs/fleet.md)."""

from __future__ import annotations

import logging
import signal
import threading
import time

import click

from roadnode.cli.common import print_json
from roadnode.errors import InputError


def _listen(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {spec!r}: expected HOST:PORT")
    return host, int(port)


def _rejects_line(st: dict) -> str:
    parts = [f"{r['source']} {r['topic']} {r['reason']} x{r['count']}" for r in st["rejects"]]
    return "; rejected " + ", ".join(parts[:20]) + (" ..." if len(parts) > 20 else "") if parts else ""


@click.command()
@click.option("--broker", metavar="mqtt://HOST:PORT", help="The MQTT broker to use (Mosquitto in production). "
              "Without it an embedded broker (amqtt) is started on --listen.")
@click.option("--listen", default="127.0.0.1:1883", show_default=True, metavar="HOST:PORT",
              help="Where the embedded broker listens (without --broker).")
@click.option("--db", "db_url", metavar="URL", help="sqlite:///PATH or postgresql://USER@HOST/DB "
              "(default: $ROADNODE_DB, else fleet.db in the user's data folder).")
@click.option("--group", metavar="NAME", help="Share the subscriptions with the other collectors of this group "
              "($share/NAME/...): each message goes to one of them. Needs --broker.")
@click.option("--client-id", metavar="ID", help="MQTT client id (default roadnode-collector[-GROUP]); the session "
              "is persistent under it: give each collector its own, and the same one after a restart.")
@click.option("--stats-every", type=click.FloatRange(min=0.1), default=60.0, show_default=True, metavar="S",
              help="Log the counts (stored, duplicates, rejected per device/topic) every S seconds.")
@click.option("--auth/--no-auth", "auth", default=None, help="Require sealed messages from every device (default: "
              "as soon as the key store holds a key; docs/security.md).")
@click.option("--rate-limit", type=click.FloatRange(min=0.1), default=200.0, show_default=True, metavar="N",
              help="Messages per second taken from one device (a token bucket); the excess is dropped and counted.")
@click.option("--burst", type=click.FloatRange(min=1), default=1000.0, show_default=True, metavar="N",
              help="Messages one device may send at once above --rate-limit.")
@click.option("--user", metavar="NAME", help="MQTT user name of the collector (see `fleet broker-config`).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="File holding the collector's MQTT password (never on the command line).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="TLS to the broker, trusting this CA certificate (PEM).")
@click.option("--json", "as_json", is_flag=True, help='First line {"broker", "db"}, then one JSON line of counts '
              "every --stats-every seconds and at the end.")
def collect(broker, listen, db_url, group, client_id, stats_every, auth, rate_limit, burst, user, password_file, ca,
            as_json):
    """Take in the nodes' packets over MQTT, store them exactly once, acknowledge after the commit.

    Runs until SIGINT/SIGTERM, then commits and acknowledges what it holds and stops (exit 0 on
    SIGTERM, 130 on SIGINT). Exit 2: bad option; 3: the database cannot be opened.
    """
    from roadnode.fleet.broker import Broker
    from roadnode.fleet.service import Collector, broker_address
    from roadnode.fleet.store import Store, default_db_url, display_url, parse_db_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("roadnode.collect")
    url = db_url or default_db_url()
    parse_db_url(url)
    if broker:
        try:
            broker_address(broker)
        except ValueError as e:
            raise InputError(f"--broker: {e}") from None
    elif group:
        raise InputError("--group needs --broker: the embedded broker has no shared subscriptions (use Mosquitto)")
    host, port = _listen(listen)
    store = Store(url)
    emb = None
    stop = threading.Event()
    got: list[int] = []

    def on_signal(signum, frame):
        """SIGINT/SIGTERM: remember which, and stop the collector cleanly."""
        got.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not broker:
            emb = Broker(port=port, kind="amqtt", host=host).start()
            broker = emb.url
        col = Collector(broker, store, client_id=client_id or ("roadnode-collector" + (f"-{group}" if group else "")),
                        group=group, auth=auth, rate=rate_limit, burst=burst, username=user, ca=ca,
                        password=open(password_file).read().strip() if password_file else None).start()
        head = {"broker": broker, "db": display_url(url)}
        if group:
            head["group"] = group
        if as_json:
            print_json(head)
        else:
            click.echo(f"collecting: broker {broker}{' (embedded)' if emb else ''}, database {head['db']}"
                       + (f", group {group}" if group else ""))

        def report(final: bool = False):
            """Print the collector's counters (JSON or a log line); ``final``: its last report."""
            st = col.stats()
            if as_json:
                print_json({"type": "stopped" if final else "stats", "time": time.time(), **st})
            else:
                log.info("%s%d packets stored, %d duplicates, %d batches, %d status messages%s%s",
                         "stopped: " if final else "", st["stored"], st["duplicates"], st["batches"], st["statuses"],
                         "" if st["db_ok"] else "; DATABASE REFUSING WRITES (not acknowledging)", _rejects_line(st))

        nxt = time.monotonic() + stats_every
        while not stop.wait(max(0.0, nxt - time.monotonic())):
            report()
            nxt += stats_every
        col.stop()
        report(final=True)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        store.close()
        if emb is not None:
            emb.close()
    if got and got[0] == signal.SIGINT:
        raise SystemExit(130)
