"""`roadnode collect` as a real subprocess against a real broker (Mosquitto and the embedded amqtt):
exactly once under redelivery, bad messages counted and never stored, SIGTERM mid-stream loses
nothing acknowledged, a broker restart is reconnected, a database that refuses writes stops the
acknowledgements and drops nothing."""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections import Counter

import pytest

from fleet_helpers import Collect, Node, batch, fleet, seg, status, wait
from roadnode.fleet.broker import Broker
from roadnode.mpy.fwimport import fw

CRC = fw("crc")


def _db(tmp_path) -> tuple[str, str]:
    f = tmp_path / "fleet.db"
    return "sqlite:///" + str(f), str(f)


def _keys(db: str) -> list[tuple]:
    return [(s["device_id"], s["epoch"], s["seq"], s["seg_index"]) for s in fleet("segments", "--db", db)]


def test_redelivered_and_resent_batches_are_stored_once(mqtt_broker, tmp_path):
    db, _ = _db(tmp_path)
    col = Collect(mqtt_broker.url, db, "--client-id", f"c-{tmp_path.name}")
    node = Node(mqtt_broker, 101).start()
    try:
        pk = [seg(101, i, i, iri=2 + i / 10) for i in range(12)]
        node.send(5, 0, pk[:6])
        node.wait_acked(5, 5)
        node.send(5, 0, pk[:6])  # the ack was lost: the node sends it all again
        node.send(5, 3, pk[3:9])  # a reconnect: overlapping what is stored
        node.send(5, 9, pk[9:])
        node.wait_acked(5, 11)
        col.wait_stats(lambda s: s["batches"] == 4)
    finally:
        node.stop()
        final = col.stop()
    assert col.proc.returncode == 0 and final["type"] == "stopped"
    assert final["stored"] == 12 and final["duplicates"] == 9, final
    assert _keys(db) == [(101, 5, i, i) for i in range(12)]
    got = fleet("segments", "--db", db, "--device", "101")
    assert [s["iri_m_per_km"] for s in got] == [2 + i / 10 for i in range(12)]
    assert all(s["time"].endswith("Z") and s["lat"] == 48.1486 for s in got)
    assert fleet("segments", "--db", db, "--device", "102") == []


def _version2(p: bytes) -> bytes:
    b = bytearray(p)
    b[0] = (2 << 4) | (b[0] & 0x0F)
    c = CRC.crc16(b, len(b) - 2)
    b[-2], b[-1] = c & 0xFF, c >> 8
    return bytes(b)


def test_bad_messages_are_counted_and_never_stored(mqtt_broker, tmp_path):
    db, dbfile = _db(tmp_path)
    col = Collect(mqtt_broker.url, db, "--client-id", f"c-{tmp_path.name}")
    node = Node(mqtt_broker, 111).start()
    good = [seg(111, i, i) for i in range(3)]
    broken = bytearray(good[1])
    broken[10] ^= 0x40  # a bit flipped: its CRC fails
    sent = [
        ("roadnode/111/up", b"\x03" + bytes(13), "wrong_version"),  # a batch format from the future (2: sealed)
        ("roadnode/111/up", batch(1, 0, 0, good)[:-3], "truncated"),
        ("roadnode/111/up", b"", "truncated"),
        ("roadnode/111/up", batch(1, 0, 0, good) + b"x", "malformed"),
        ("roadnode/111/up", batch(2, 0, 0, [seg(112, 0, 0)]), "unknown_device"),  # another node's packet
        ("roadnode/abc/up", batch(1, 0, 0, good), "unknown_device"),
        ("roadnode/111/status", b"\x13gar", "truncated"),
        ("roadnode/111/status", status(113), "unknown_device"),
        ("roadnode/111/status", good[0], "unexpected_type"),
    ]
    try:
        for topic, payload, _ in sent:
            node.client.publish(topic, payload, qos=1)
        col.wait_stats(lambda s: s["rejected"] == len(sent))
        # inside well-formed batches: a corrupt packet (stepped over: sending it again cannot mend it)
        # and one of a newer version (held: not stored, not acknowledged, kept by the node)
        node.send(3, 0, [good[0], bytes(broken), good[2]])
        node.wait_acked(3, 2)
        node.send(4, 0, [_version2(good[0]), good[1]])
        col.wait_stats(lambda s: s["rejected"] == len(sent) + 2)
        node.send(4, 2, [good[2]])  # (a later batch: its ack still stops before the held packet)
        col.wait_stats(lambda s: s["batches"] == 3)
        assert col.proc.poll() is None, "the collector died"
    finally:
        node.stop()
        final = col.stop()
    want: Counter = Counter()
    for topic, _, r in sent:
        want[(topic.split("/")[1], topic.split("/")[2], r)] += 1
    want[("111", "up", "malformed")] += 1
    want[("111", "up", "wrong_version")] += 1
    assert Counter({(r["source"], r["topic"], r["reason"]): r["count"] for r in final["rejects"]}) == want
    assert 4 not in node.acked, "acknowledged past a packet it could not read"
    assert _keys(db) == [(111, 3, 0, 0), (111, 3, 2, 2), (111, 4, 1, 1), (111, 4, 2, 2)]
    with sqlite3.connect(dbfile) as con:
        assert con.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 4
        assert con.execute("SELECT seq, reason FROM quarantine").fetchall() == [(1, "malformed")]
        assert con.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM devices WHERE device_id <> 111").fetchone()[0] == 0
        kept = {(s, t, r): n for s, t, r, n in con.execute("SELECT source, topic, reason, count FROM rejects")}
    assert kept == dict(want), "the counts in the database differ from the log's"


def test_sigterm_mid_stream_loses_nothing_acknowledged(mqtt_broker, tmp_path):
    db, dbfile = _db(tmp_path)
    cid = f"c-{tmp_path.name}"
    col = Collect(mqtt_broker.url, db, "--client-id", cid)
    node = Node(mqtt_broker, 121).start()
    n, per = 400, 4
    pk = [seg(121, i, i) for i in range(n)]
    done, go = threading.Event(), threading.Event()

    def stream():
        for i in range(0, n, per):
            if i == n // 2:  # the second half goes with the signal (a loaded machine once let the
                go.wait(60)  # whole stream through before the test's thread sent it)
            node.send(9, i, pk[i:i + per]).wait_for_publish(20)
        done.set()

    t = threading.Thread(target=stream, daemon=True)
    try:
        t.start()
        node.wait_acked(9, 40)
        go.set()
        final = col.stop(signal.SIGTERM)  # mid-stream
        acked = node.acked[9]
        assert col.proc.returncode == 0 and final["type"] == "stopped"
        with sqlite3.connect(dbfile) as con:
            have = {r[0] for r in con.execute("SELECT seq FROM packets WHERE device_id = 121")}
        assert set(range(acked + 1)) <= have, f"acknowledged up to {acked}, missing {sorted(set(range(acked + 1)) - have)[:5]}"
        assert acked < n - 1, "the stream had ended before the signal: nothing shown"
        assert t.join(60) is None and done.is_set()
        # a collector again under the same session: the broker hands over what the first left
        # unacknowledged; the node sends again everything past its last ack (as after 30 s without one)
        col = Collect(mqtt_broker.url, db, "--client-id", cid)
        first = node.acked[9] + 1
        for i in range(first, n, per):
            node.send(9, i, pk[i:i + per])
        node.wait_acked(9, n - 1)
    finally:
        node.stop()
        col.stop()
    assert _keys(db) == [(121, 9, i, i) for i in range(n)]


@pytest.mark.slow
def test_broker_restart_is_reconnected(broker_kind, tmp_path):
    db, _ = _db(tmp_path)
    with Broker(kind=broker_kind) as b:
        col = Collect(b.url, db)
        node = Node(b, 131).start()
        try:
            pk = [seg(131, i, i) for i in range(6)]
            node.send(1, 0, pk[:3])
            node.wait_acked(1, 2)
            b.stop()
            col.wait_stats(lambda s: not s["connected"], what="the collector sees the broker gone")
            b.start()
            col.wait_stats(lambda s: s["connected"] and s["connects"] >= 2, what="the collector reconnected")
            wait(lambda: node.client.is_connected(), 30, "the node reconnected")
            node._sub.clear()
            node.client.subscribe("roadnode/131/ack", 1)
            assert node._sub.wait(20)
            node.send(1, 3, pk[3:])
            node.wait_acked(1, 5)
        finally:
            node.stop()
            col.stop()
    assert _keys(db) == [(131, 1, i, i) for i in range(6)]


@pytest.mark.slow
def test_database_refusing_writes_stops_acks_drops_nothing(tmp_path):
    db, dbfile = _db(tmp_path)
    with Broker() as b:
        col = Collect(b.url, db)
        node = Node(b, 141).start()
        try:
            pk = [seg(141, i, i) for i in range(8)]
            node.send(2, 0, pk[:2])
            node.wait_acked(2, 1)
            lock = sqlite3.connect(dbfile, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")  # the database refuses every write (as a full disk would)
            try:
                node.send(2, 2, pk[2:5])
                node.send(2, 5, pk[5:])
                col.wait_stats(lambda s: not s["db_ok"], what="the collector sees the database refuse")
                assert node.acked[2] == 1 and node.acks.qsize() == 1, "acknowledged what is not committed"
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            node.wait_acked(2, 7)  # retried, committed, acknowledged: nothing dropped
            st = col.wait_stats(lambda s: s["db_ok"] and s["stored"] == 8)
            assert st["db_failures"] >= 1
        finally:
            node.stop()
            col.stop()
    assert _keys(db) == [(141, 2, i, i) for i in range(8)]


def test_bad_options_one_line_exit_2(tmp_path, cli):
    r = cli("collect", "--db", "mysql://x/y")
    assert r.returncode == 2 and "sqlite:///PATH or postgresql" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("collect", "--broker", "http://x", "--db", str(tmp_path / "a.db"))
    assert r.returncode == 2 and "mqtt://HOST" in r.stderr
    r = cli("collect", "--group", "g", "--db", str(tmp_path / "a.db"))
    assert r.returncode == 2 and "--group needs --broker" in r.stderr
    r = cli("fleet", "status", "--db", str(tmp_path / "none.db"))
    assert r.returncode == 2 and "no collector database" in r.stderr
