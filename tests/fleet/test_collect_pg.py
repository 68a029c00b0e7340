"""The collector on PostgreSQL (a real server started by the tests): the same schema and migrations,
exactly once, a server that goes down stops the acknowledgements and loses nothing, and two
collectors sharing the subscriptions through Mosquitto store every batch once between them."""

from __future__ import annotations

import itertools
import threading

import pytest

from fleet_helpers import Collect, Node, fleet, seg, status, wait
from roadnode.fleet.broker import Broker, mosquitto_path
from roadnode.fleet.messages import Parser
from roadnode.fleet.pgserver import PgServer, pg_bindir
from roadnode.fleet.store import SCHEMA_VERSION, Store

_n = itertools.count()


@pytest.fixture
def pg_db(pg_server, request):
    return pg_server.create_db(f"t{next(_n)}_{request.node.name[:20].lower().replace('[', '_').replace(']', '')}")


def test_schema_migrations_and_idempotent_ingest(pg_db):
    s = Store(pg_db)
    assert s.dialect == "postgresql" and s.schema_version == SCHEMA_VERSION
    s.close()
    s = Store(pg_db)  # opened again: nothing to migrate, nothing lost
    assert s.schema_version == SCHEMA_VERSION
    p = Parser()
    from fleet_helpers import batch

    pk = [seg(5, i, i) for i in range(5)]
    up = lambda first, k: p.parse("roadnode/5/up", batch(7, 0, first, pk[first:first + k]), 1.0)[0]  # noqa: E731
    assert s.ingest([up(0, 3)]) == {(5, 7): (2, 3, 0)}
    assert s.ingest([up(0, 3), up(3, 2)]) == {(5, 7): (4, 2, 3)}  # one transaction, a resend inside
    assert [r[2] for r in s.packets(5)] == [0, 1, 2, 3, 4]
    assert s.count("segments") == 5
    s.close()


def test_collect_on_postgresql_stores_once(mqtt_broker, pg_db, tmp_path):
    col = Collect(mqtt_broker.url, pg_db, "--client-id", f"c-{tmp_path.name}")
    node = Node(mqtt_broker, 201).start()
    try:
        pk = [seg(201, i, i) for i in range(10)]
        node.send(3, 0, pk[:6])
        node.send(3, 4, pk[4:])  # overlapping resend
        node.wait_acked(3, 9)
        node.status(status(201))
        col.wait_stats(lambda s: s["statuses"] >= 1)
    finally:
        node.stop()
        final = col.stop()
    assert col.head["db"] == pg_db and final["stored"] == 10 and final["duplicates"] == 2
    assert [(s["device_id"], s["seq"]) for s in fleet("segments", "--db", pg_db)] == [(201, i) for i in range(10)]
    (row,) = [r for r in fleet("status", "--db", pg_db) if r["device_id"] == 201]
    assert row["state"] == "online" and row["segments_total"] == 10 and row["fw_version"] == "0.4.0"


@pytest.mark.slow
def test_postgresql_down_stops_acks_and_drops_nothing(tmp_path):
    if not pg_bindir():
        pytest.skip("PostgreSQL is not installed")
    with PgServer() as pg, Broker() as b:
        col = Collect(b.url, pg.url)
        node = Node(b, 211).start()
        try:
            pk = [seg(211, i, i) for i in range(9)]
            node.send(1, 0, pk[:3])
            node.wait_acked(1, 2)
            pg.stop()  # PostgreSQL goes down
            node.send(1, 3, pk[3:6])
            col.wait_stats(lambda s: not s["db_ok"], what="the collector sees the database gone")
            node.send(1, 6, pk[6:])
            assert node.acked[1] == 2, "acknowledged what is not committed"
            pg.start()
            node.wait_acked(1, 8, timeout=60)  # reconnected, committed what it held, acknowledged
            st = col.wait_stats(lambda s: s["db_ok"] and s["stored"] == 9)
            assert st["duplicates"] == 0 and st["db_failures"] >= 1
        finally:
            node.stop()
            col.stop()
        assert [s["seq"] for s in fleet("segments", "--db", pg.url)] == list(range(9))


@pytest.mark.slow
def test_two_collectors_share_the_subscriptions_without_duplicates(pg_db, tmp_path):
    if not mosquitto_path():
        pytest.skip("shared subscriptions: the embedded amqtt has none; Mosquitto is not installed")
    group = f"g{tmp_path.name[-8:]}"
    with Broker(kind="mosquitto") as b:
        cols = [Collect(b.url, pg_db, "--group", group, "--client-id", f"c{i}-{group}") for i in range(2)]
        nodes = [Node(b, 220 + d).start() for d in range(5)]
        n, per = 120, 3
        try:
            def stream(node):
                pk = [seg(node.dev, i, i) for i in range(n)]
                for i in range(0, n, per):
                    node.send(4, i, pk[i:i + per]).wait_for_publish(20)

            ts = [threading.Thread(target=stream, args=(nd,)) for nd in nodes]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            for nd in nodes:
                nd.wait_acked(4, n - 1, timeout=60)
            wait(lambda: sum(c.stats()["batches"] for c in cols) == len(nodes) * n // per, 30, "every batch taken")
        finally:
            for nd in nodes:
                nd.stop()
            finals = [c.stop() for c in cols]
    assert all(f["batches"] > 0 for f in finals), f"one collector got nothing: {finals}"
    assert sum(f["batches"] for f in finals) == len(nodes) * n // per
    assert sum(f["duplicates"] for f in finals) == 0 and sum(f["stored"] for f in finals) == len(nodes) * n
    got = [(s["device_id"], s["seq"]) for s in fleet("segments", "--db", pg_db)]
    assert got == [(220 + d, i) for d in range(5) for i in range(n)]
