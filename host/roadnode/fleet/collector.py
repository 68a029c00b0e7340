"""The collector's core: batches from the nodes into a database, exactly once, acknowledged after
the commit (docs/uplink.md).

`Store` is the database side (SQLite here; one transaction per batch). `Collector` subscribes to
every node's `up` and `status` topics with a persistent session, stores each batch, commits, and
only then publishes the cumulative acknowledgement the node waits for before it forgets packets.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from urllib.parse import urlparse

from roadnode.mpy.fwimport import fw

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    device_id INTEGER NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, data BLOB NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE TABLE IF NOT EXISTS progress (
    device_id INTEGER NOT NULL, epoch INTEGER NOT NULL, acked_upto INTEGER NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE IF NOT EXISTS status (
    device_id INTEGER PRIMARY KEY, data BLOB, online INTEGER NOT NULL, updated_at REAL NOT NULL
);
"""


class Store:
    """Packets by (device, epoch, seq): a seq already stored is ignored, so a batch sent again is
    harmless. Thread-safe (one connection, one lock)."""

    def __init__(self, path: str):
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged batch survives a power cut
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._PD = fw("packet_decode")

    def add_batch(self, device_id: int, epoch: int, base: int, first: int, packets: list[bytes]) -> tuple[int, int]:
        """Store a batch in one transaction; (new packets stored, acknowledge-up-to seq)."""
        now = time.time()
        rows = []
        for i, p in enumerate(packets):
            try:
                kind = self._PD.decode(p)["type"]
            except self._PD.PacketError:
                kind = "error"  # kept as received (the batch came whole over TCP): counted, not lost
            rows.append((device_id, epoch, first + i, kind, bytes(p), now))
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO packets VALUES (?, ?, ?, ?, ?, ?)", rows)
                new = db.total_changes - before
                r = db.execute("SELECT acked_upto FROM progress WHERE device_id=? AND epoch=?",
                               (device_id, epoch)).fetchone()
                upto = max(r[0] if r else -1, base - 1)
                for (s,) in db.execute("SELECT seq FROM packets WHERE device_id=? AND epoch=? AND seq>? ORDER BY seq",
                                       (device_id, epoch, upto)):
                    if s != upto + 1:
                        break
                    upto = s
                db.execute("INSERT INTO progress VALUES (?, ?, ?) ON CONFLICT(device_id, epoch) "
                           "DO UPDATE SET acked_upto=excluded.acked_upto", (device_id, epoch, upto))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new, upto

    def set_status(self, device_id: int, data: bytes | None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO status VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                             "data=COALESCE(excluded.data, status.data), online=excluded.online, "
                             "updated_at=excluded.updated_at", (device_id, data, data is not None, time.time()))

    def packets(self, device_id: int | None = None) -> list[tuple]:
        """(device_id, epoch, seq, type, data) in order."""
        q = "SELECT device_id, epoch, seq, type, data FROM packets"
        a: tuple = ()
        if device_id is not None:
            q, a = q + " WHERE device_id=?", (device_id,)
        with self._lock:
            return self._db.execute(q + " ORDER BY device_id, epoch, seq", a).fetchall()

    def settled(self, device_id: int, timeout: float = 20.0, poll: float = 0.5) -> list[tuple]:
        """packets(device_id) once no more arrive for ``poll`` s (a node that stopped may still have
        batches on their way through the broker), waiting ``timeout`` s at the most."""
        end = time.monotonic() + timeout
        rows = self.packets(device_id)
        n = -1
        while time.monotonic() < end and n != len(rows):
            n = len(rows)
            time.sleep(poll)
            rows = self.packets(device_id)
        return rows

    def close(self) -> None:
        with self._lock:
            self._db.close()


def broker_address(url: str) -> tuple[str, int]:
    """mqtt://HOST[:PORT] or HOST[:PORT] -> (host, port)."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme != "mqtt" or not u.hostname:
        raise ValueError(f"broker {url!r}: expected mqtt://HOST[:PORT]")
    return u.hostname, u.port or 1883


class Collector:
    """Subscribes to roadnode/+/up and roadnode/+/status; stores, commits, then acknowledges."""

    def __init__(self, broker: str, store: Store, client_id: str = "roadnode-collector"):
        import paho.mqtt.client as mqtt

        self.store = store
        self.host, self.port = broker_address(broker)
        self.batches = 0  # batches stored
        self.stored = 0  # new packets stored
        self.duplicates = 0  # packets that were already stored (sent again by a node)
        self.rejected = 0  # messages that were not batches
        self._PD = fw("packet_decode")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self.connected = threading.Event()

    def _on_connect(self, client, userdata, flags, reason, props):
        client.subscribe([("roadnode/+/up", 1), ("roadnode/+/status", 1)])
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        try:
            dev = int(parts[1])
        except (IndexError, ValueError):
            self.rejected += 1
            return
        if parts[2] == "status":
            self.store.set_status(dev, None if msg.payload == b"offline" else bytes(msg.payload))
            return
        try:
            epoch, base, first, pkts = self._PD.decode_batch(msg.payload)
        except self._PD.BatchError:
            self.rejected += 1
            return
        new, upto = self.store.add_batch(dev, epoch, base, first, pkts)  # committed here
        self.batches += 1
        self.stored += new
        self.duplicates += len(pkts) - new
        if upto >= 0:
            client.publish(f"roadnode/{dev}/ack", self._PD.encode_ack(epoch, upto), qos=1)

    def start(self) -> "Collector":
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
