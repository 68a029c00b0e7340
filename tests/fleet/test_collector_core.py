"""The collector's core against a real broker: batches stored exactly once, acknowledged only after
the commit (the acknowledged packets are in the database file when the ack arrives), a seq the
node dropped stepped over with `base`, malformed messages counted and never acknowledged."""

from __future__ import annotations

import queue
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest

from roadnode.fleet.collector import Collector, Store, broker_address
from roadnode.mpy.fwimport import fw

B = fw("batch")
P = fw("packet")


def _seg(seq: int, idx: int) -> bytes:
    buf = bytearray(64)
    n = P.encode_segment(buf, seq, 7, idx, 100, 481486000, 171077000, 250 + idx, 40, 30, 50, 0)
    return bytes(buf[:n])


def _batch(epoch: int, base: int, first: int, pkts: list[bytes]) -> bytes:
    h = bytearray(B.HDR)
    B.put_header(h, epoch, base, first, len(pkts))
    return bytes(h) + b"".join(bytes([len(p)]) + p for p in pkts)


def _wait(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def rig(mqtt_broker, tmp_path):
    db = tmp_path / "fleet.db"
    store = Store(str(db))
    col = Collector(mqtt_broker.url, store).start()
    assert col.connected.wait(20)
    acks: queue.Queue = queue.Queue()
    node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roadnode-7")

    def on_ack(c, u, m):
        # what the database file holds at the moment the ack arrives (a separate connection)
        with sqlite3.connect(db) as con:
            n = con.execute("SELECT COUNT(*) FROM packets").fetchone()[0]
        acks.put((B.decode_ack(m.payload), n))

    import threading

    subscribed = threading.Event()
    node.on_message = on_ack
    node.on_subscribe = lambda *a: subscribed.set()
    node.on_connect = lambda c, *a: c.subscribe("roadnode/7/ack", 1)
    node.connect(mqtt_broker.host, mqtt_broker.port)
    node.loop_start()
    assert subscribed.wait(20)
    yield node, acks, col, store, db
    node.loop_stop()
    node.disconnect()
    col.stop()
    store.close()


def test_batches_stored_once_acked_after_commit(rig):
    node, acks, col, store, db = rig
    pk = [_seg(i, i) for i in range(10)]
    node.publish("roadnode/7/up", _batch(99, 0, 0, pk[:4]), qos=1)
    (ep, upto), stored = acks.get(timeout=20)
    assert (ep, upto) == (99, 3) and stored == 4  # committed before the ack went out
    node.publish("roadnode/7/up", _batch(99, 0, 0, pk[:4]), qos=1)  # sent again (a lost ack)
    (_, upto), stored = acks.get(timeout=20)
    assert upto == 3 and stored == 4
    # a gap: 6-9 before 4-5 -> the ack stays at 3 until 4-5 arrive
    node.publish("roadnode/7/up", _batch(99, 0, 6, pk[6:]), qos=1)
    (_, upto), _ = acks.get(timeout=20)
    assert upto == 3
    node.publish("roadnode/7/up", _batch(99, 0, 4, pk[4:6]), qos=1)
    (_, upto), stored = acks.get(timeout=20)
    assert upto == 9 and stored == 10
    rows = store.packets(7)
    assert [r[2] for r in rows] == list(range(10)) and [r[4] for r in rows] == pk
    assert col.duplicates == 4 and col.stored == 10
    # its acknowledgement and PUBACKs leave at once, not after the broker's delayed TCP ACK
    import socket

    assert col.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_base_steps_over_what_the_node_dropped_and_epochs_are_apart(rig):
    node, acks, col, store, db = rig
    node.publish("roadnode/7/up", _batch(5, 100, 100, [_seg(1, 1)]), qos=1)  # 0-99 dropped (queue full)
    (ep, upto), _ = acks.get(timeout=20)
    assert (ep, upto) == (5, 100)
    node.publish("roadnode/7/up", _batch(6, 0, 0, [_seg(1, 1)]), qos=1)  # a new queue: its own seqs
    (ep, upto), _ = acks.get(timeout=20)
    assert (ep, upto) == (6, 0)
    assert len(store.packets(7)) == 2


@pytest.mark.parametrize("payload", [b"", b"\x01" * 5, b"\x02" + bytes(13), _batch(1, 5, 0, [])[:14] + b"\x09",
                                     _batch(1, 0, 0, [_seg(0, 0)]) + b"x", _batch(1, 0, 0, [_seg(0, 0)])[:-3]])
def test_malformed_batches_are_counted_never_acked(rig, payload):
    node, acks, col, store, db = rig
    node.publish("roadnode/7/up", payload, qos=1)
    _wait(lambda: col.rejected == 1)
    node.publish("roadnode/7/up", _batch(1, 0, 0, [_seg(0, 0)]), qos=1)
    (ep, upto), stored = acks.get(timeout=20)  # the first ack is the good batch's
    assert (ep, upto) == (1, 0) and stored == 1


def test_status_and_will_kept_per_device(rig):
    node, acks, col, store, db = rig
    buf = bytearray(64)
    n = P.encode_status(buf, 1, 7, [60] + [0] * 21 + [3, 0, 14, 0, 5, 0])
    node.publish("roadnode/7/status", bytes(buf[:n]), qos=1, retain=True)

    def row():
        with sqlite3.connect(db) as con:
            return con.execute("SELECT online, status FROM devices WHERE device_id=7").fetchone()

    assert _wait(row)[0] == 1
    node.publish("roadnode/7/status", b"offline", qos=1, retain=True)
    _wait(lambda: row()[0] == 0)
    assert row()[1] == bytes(buf[:n])  # the last heartbeat is kept beside "offline"


def test_broker_address():
    assert broker_address("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert broker_address("broker.local") == ("broker.local", 1883)
    with pytest.raises(ValueError, match="expected mqtt://"):
        broker_address("http://x")


def test_the_collectors_codec_is_the_firmwares_with_the_c_crc():
    """The collector decodes with a private instance of rnfw/packet_decode.py whose CRC is
    binascii's: the same results as the shared codec on the golden vectors and on random bytes."""
    import json
    import random
    import re
    from pathlib import Path

    from roadnode.fleet.messages import host_codec

    H, PD, crc = host_codec(), fw("packet_decode"), fw("crc").crc16
    assert H is not PD and H.crc16 is not crc
    rnd = random.Random(7)
    for _ in range(300):
        b = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 70)))
        assert H.crc16(b) == crc(b) and H.crc16(b, len(b) // 3) == crc(b, len(b) // 3)
    vectors = json.loads((Path(__file__).parents[1] / "golden" / "packets.json").read_text())["vectors"]
    for v in vectors:
        raw = bytes.fromhex(v["hex"])
        for data in (raw, raw[:-1] + bytes([raw[-1] ^ 1])):
            try:
                want = PD.decode(data)
            except PD.PacketError as e:
                with pytest.raises(H.PacketError, match=re.escape(str(e))):
                    H.decode(data)
            else:
                assert H.decode(data) == want


def test_a_database_of_the_first_core_is_migrated(tmp_path):
    """Issue 12's schema (packets, progress, status; no version): opened, brought to the current
    version, its packets and acknowledgements kept; opened again, nothing to do."""
    from roadnode.fleet.store import SCHEMA_VERSION

    f = tmp_path / "old.db"
    with sqlite3.connect(f) as con:
        con.executescript("""
            CREATE TABLE packets (device_id INTEGER NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
                type TEXT NOT NULL, data BLOB NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (device_id, epoch, seq));
            CREATE TABLE progress (device_id INTEGER NOT NULL, epoch INTEGER NOT NULL, acked_upto INTEGER NOT NULL,
                PRIMARY KEY (device_id, epoch));
            CREATE TABLE status (device_id INTEGER PRIMARY KEY, data BLOB, online INTEGER NOT NULL, updated_at REAL NOT NULL);
        """)
        con.executemany("INSERT INTO packets VALUES (7, 3, ?, 'segment', ?, 1.0)", [(i, _seg(i, i)) for i in (0, 1, 3)])
        con.execute("INSERT INTO progress VALUES (7, 3, 1)")
    store = Store(str(f))
    assert store.schema_version == SCHEMA_VERSION
    assert [r[2] for r in store.packets(7)] == [0, 1, 3]
    assert store.add_batch(7, 3, 0, 2, [_seg(2, 2)]) == (1, 3)  # seq 3, stored before, now counts
    store.close()
    with sqlite3.connect(f) as con:
        assert con.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == \
            [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_reader_does_not_hold_up_the_collectors_commit(tmp_path):
    """The dashboard reads while the collector writes (two connections, one SQLite file in WAL mode):
    a reader's transaction in progress must not take the one writer's lock, or every commit would
    wait for it (and after 5 s count as a database refusing the write)."""
    import threading

    from roadnode.fleet.messages import Parser

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    writer, reader = Store(url), Store(url)
    inside, release = threading.Event(), threading.Event()

    def long_read():
        rows = reader._x("SELECT COUNT(*) FROM segments").fetchall()
        inside.set()
        release.wait(30)
        return rows

    t = threading.Thread(target=lambda: reader._tx(long_read, write=False), daemon=True)
    t.start()
    try:
        assert inside.wait(20)
        up, rejects = Parser().parse("roadnode/7/up", _batch(1, 0, 0, [_seg(0, 0), _seg(1, 1)]), time.time())
        assert up is not None and not rejects
        writer.ingest([up])  # committed while the read is open (a locked file: StoreError after 5 s)
        assert t.is_alive()  # the read was still in its transaction
    finally:
        release.set()
        t.join(10)
    assert reader.query("SELECT COUNT(*) FROM segments") == [(2,)]
    writer.close()
    reader.close()
