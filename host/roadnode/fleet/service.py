"""The collector's MQTT side: subscribe, hand messages to one writer, commit, then acknowledge.

paho-mqtt's network thread only queues what arrives. The writer thread takes everything queued at
once (many messages, one transaction: the way to thousands of packets per second), stores it, commits,
and only then publishes each node's acknowledgement (``roadnode/<id>/ack``, docs/uplink.md) and
acknowledges the MQTT messages themselves (manual PUBACK). So:

- a message is PUBACKed to the broker only once it is committed (or rejected for good): a collector
  that dies holding messages gets them again from the broker (persistent session, clean_session off);
- a database that refuses a write leaves the messages in hand, unacknowledged, and the writer tries
  again (1 s doubling to 30 s): the broker's in-flight window fills and the flow stops, nothing dropped;
- a broker that goes away is reconnected by paho (1 s doubling to 30 s); the subscriptions are made
  again on every connection; a PUBACK for a message of an earlier connection is never sent on a new
  one (its packet id may name another message there);
- ``stop()`` (SIGINT/SIGTERM in `roadnode collect`) stops taking messages, commits what is in hand,
  publishes its acknowledgements, then disconnects.

Before anything is parsed, stored or acknowledged, a sealed message's counter and tag are checked
with the device's key (roadnode.fleet.keys.Verifier; docs/security.md), and each device's messages
pass a token bucket in the network thread (a flood is dropped there and counted ``rate_limited``).

``group``: the subscriptions are shared (``$share/<group>/roadnode/+/up``, MQTT 5 shared subscriptions,
also offered by Mosquitto to 3.1.1 clients): the broker gives each message to one collector of the
group, so collectors on several machines split the load and each batch is stored by one of them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from urllib.parse import urlparse

from roadnode.fleet.keys import AUTH_FAILURES, RateLimit, Verifier
from roadnode.fleet.messages import Parser, Reject, Status, Up
from roadnode.fleet.store import Store, StoreError

log = logging.getLogger("roadnode.collect")

TOPICS = ("roadnode/+/up", "roadnode/+/status")


def broker_address(url: str) -> tuple[str, int]:
    """mqtt://HOST[:PORT], mqtts://HOST[:PORT] (TLS, port 8883 by default) or HOST[:PORT] -> (host, port)."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or port == -1:
        raise ValueError(f"broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    return u.hostname, port or (8883 if u.scheme == "mqtts" else 1883)


def _no_delay(client, userdata, sock) -> None:
    """Small writes go out at once: an acknowledgement followed by PUBACKs would otherwise wait
    for the broker's delayed TCP ACK (Nagle's algorithm; paho leaves it on)."""
    import socket

    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # not a TCP socket (a websocket wrapper, a test double)
        pass


class _Msg:
    __slots__ = ("topic", "payload", "mid", "qos", "retain", "t", "gen")

    def __init__(self, topic, payload, mid, qos, retain, t, gen):
        self.topic, self.payload, self.mid, self.qos, self.retain, self.t, self.gen = \
            topic, payload, mid, qos, retain, t, gen


class Collector:
    """Subscribes to roadnode/+/up and roadnode/+/status; stores, commits, then acknowledges."""

    def __init__(self, broker: str, store: Store, client_id: str = "roadnode-collector", group: str | None = None,
                 max_batch: int = 2000, keepalive: int = 30, auth: bool | None = None, rate: float = 200.0,
                 burst: float = 1000.0, username: str | None = None, password: str | None = None,
                 ca: str | None = None):
        """``auth``: sealed messages required (None: as soon as the store holds a key; docs/security.md);
        ``rate``/``burst``: each device's token bucket (messages/s); ``ca``: TLS to the broker,
        trusting this CA file (also for an mqtts:// broker with the system's CAs when None)."""
        import paho.mqtt.client as mqtt

        self.store = store
        self.host, self.port = broker_address(broker)
        self.group = group
        self.max_batch = max_batch
        self.keepalive = keepalive
        # counters (read by stats(); written by the writer thread only)
        self.batches = 0  # batches stored
        self.stored = 0  # new packets stored
        self.duplicates = 0  # packets that were already stored (sent again by a node)
        self.statuses = 0  # status messages (heartbeats, wills)
        self.transactions = 0
        self.db_failures = 0
        self.rejects: Counter = Counter()  # (source, topic, reason) -> count, since start
        self.last_error: str | None = None
        self.db_ok = True
        self.connects = 0
        self._parser = Parser()
        self.verifier = Verifier(store, auth, refresh=3600.0)  # (read again per transaction: _commit)
        self.limit = RateLimit(rate, burst)
        self._limited: Counter = Counter()  # (source, topic, "rate_limited") not yet counted by the writer
        self._limited_lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()
        self._gen = 0  # connection generation: PUBACKs only go to the connection that delivered
        self._taking = True
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        manual_ack=True)
        c.max_inflight_messages_set(100)
        if username:
            c.username_pw_set(username, password)
        if ca or broker.startswith("mqtts://"):
            c.tls_set(ca_certs=ca)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = lambda client, userdata: log.warning("cannot reach the broker %s:%s: retrying",
                                                                 self.host, self.port)
        c.on_message = self._on_message
        c.on_socket_open = _no_delay
        self.client = c
        self.connected = threading.Event()  # connected and subscribed (set on the SUBACK)

    @property
    def rejected(self) -> int:
        """Messages refused so far, all reasons together."""
        return sum(self.rejects.values())

    def topics(self) -> list[str]:
        """The topics to subscribe, shared ($share/<group>/...) when collectors split the load."""
        return [f"$share/{self.group}/{t}" if self.group else t for t in TOPICS]

    # ---- network thread -------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, props):
        if reason.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        self._gen += 1
        self.connects += 1
        # `connected` waits for the SUBACK: before it, on a first connection, the broker would drop
        # what a node publishes (the persistent session has no subscription yet)
        client.subscribe([(t, 1) for t in self.topics()])
        if self.connects > 1:
            log.warning("reconnected to the broker %s:%s", self.host, self.port)

    def _on_subscribe(self, client, userdata, mid, reasons, props):
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.warning("broker %s:%s refused a subscription: %s", self.host, self.port,
                        ", ".join(str(r) for r in refused))
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, props):
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("lost the broker %s:%s (%s): reconnecting", self.host, self.port, reason)

    def _on_message(self, client, userdata, msg):
        if not self._taking:  # stopping: not PUBACKed, the broker gives it to us (or another) again
            return
        parts = msg.topic.split("/")
        src = parts[1] if len(parts) == 3 else msg.topic
        if not self.limit.allow(src):
            # a flood from one device: dropped here, before the writer (PUBACKed, so the broker's
            # window to this collector stays open for the others; the node, unacknowledged, sends again)
            with self._limited_lock:
                self._limited[(src[:40], parts[2] if len(parts) == 3 else "other", "rate_limited")] += 1
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self._q.put(_Msg(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), time.time(), self._gen))

    # ---- writer thread ---------------------------------------------------------------------------------
    def _take(self, block: bool) -> list[_Msg]:
        out = []
        try:
            out.append(self._q.get(timeout=0.2) if block else self._q.get_nowait())
            while len(out) < self.max_batch:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return out

    def _write(self) -> None:
        hand: list[_Msg] = []
        delay = 1.0
        while True:
            if not hand:
                if self._stop.is_set() and self._q.empty() and not self._limited:
                    return
                hand = self._take(block=True)
                if not hand and not self._limited:  # (rate-limited counts alone are written too)
                    continue
            elif len(hand) < self.max_batch:
                hand += self._take(block=False)
            try:
                self._commit(hand)
                hand, delay = [], 1.0
                if not self.db_ok:
                    log.warning("the database takes writes again")
                self.db_ok = True
            except StoreError as e:
                self.db_failures += 1
                self.last_error = str(e)
                if self.db_ok:
                    log.error("%s: not acknowledging; holding %d messages, retrying", e, len(hand))
                self.db_ok = False
                if self._stop.is_set():
                    if time.monotonic() > self._stop_deadline:
                        log.error("stopping with %d messages uncommitted and unacknowledged (the nodes send "
                                  "them again)", len(hand))
                        return
                    time.sleep(min(delay, 1.0))
                else:
                    self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    _stop_deadline: float = float("inf")

    def _commit(self, hand: list[_Msg]) -> None:
        ups: list[Up] = []
        statuses: list[Status] = []
        bad = Counter()
        self.verifier.reload()  # (a database refusing: StoreError, all of it again later)
        with self._limited_lock:
            bad.update(self._limited)
            self._limited.clear()
        for m in hand:
            item, rejects = self._parser.parse(m.topic, m.payload, m.t, m.retain, self.verifier)
            for r in rejects:
                bad[(r.source, r.topic, r.reason)] += 1
            if isinstance(item, Up):
                ups.append(item)
            elif isinstance(item, Status):
                statuses.append(item)
        try:  # committed here (or StoreError: all again later)
            acks = self.store.ingest(ups, statuses, dict(bad), dict(self.verifier.counters))
        except StoreError:
            with self._limited_lock:
                self._limited.update({k: n for k, n in bad.items() if k[2] == "rate_limited"})
            raise
        self.verifier.counters.clear()
        self.rejects.update(bad)
        self.transactions += 1
        self.batches += len(ups)
        self.statuses += len(statuses)
        for (dev, epoch), (upto, new, dup) in acks.items():
            self.stored += new
            self.duplicates += dup
            if upto >= 0:
                self.client.publish(f"roadnode/{dev}/ack", self._parser.PD.encode_ack(epoch, upto), qos=1)
        gen = self._gen
        for m in hand:
            if m.qos and m.gen == gen:
                self.client.ack(m.mid, m.qos)

    # ---- control -------------------------------------------------------------------------------------------
    def start(self) -> "Collector":
        """Start the writer thread and connect (retried in the background); returns self."""
        self._writer = threading.Thread(target=self._write, name="collector-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages; commit and acknowledge what is in hand (trying for ``grace`` s
        when the database refuses); disconnect."""
        self._taking = False
        self._stop_deadline = time.monotonic() + grace
        self._stop.set()
        if self._writer is not None:
            self._writer.join(grace + 35)
        # the last acknowledgements leave before the DISCONNECT (paho sends in order)
        self.client.disconnect()
        self.client.loop_stop()

    def stats(self) -> dict:
        """Counters for reports and `--json`: stored, duplicates, rejects by reason, database and broker state."""
        return {"batches": self.batches, "stored": self.stored, "duplicates": self.duplicates,
                "statuses": self.statuses, "transactions": self.transactions, "rejected": self.rejected,
                "auth_failures": sum(n for (_, _, r), n in self.rejects.items() if r in AUTH_FAILURES),
                "replays": sum(n for (_, _, r), n in self.rejects.items() if r == "replay"),
                "rate_limited": sum(n for (_, _, r), n in self.rejects.items() if r == "rate_limited"),
                "rejects": [{"source": s, "topic": t, "reason": r, "count": n}
                            for (s, t, r), n in sorted(self.rejects.items())],
                "db_ok": self.db_ok, "db_failures": self.db_failures, "connected": self.connected.is_set(),
                "connects": self.connects, "queued": self._q.qsize()}


__all__ = ["Collector", "Reject", "broker_address"]
